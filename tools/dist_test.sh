#!/usr/bin/env bash
# Multi-process testing with torchrun (torch.distributed.run), like mmdet's tools/dist_test.sh.
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options...]
#
# NNODES, NODE_RANK, MASTER_ADDR, PORT and PYTHON: see tools/torchrun.sh, the body it shares with dist_train.sh.
exec bash "$(dirname "$0")/torchrun.sh" test "$0 CONFIG CHECKPOINT GPUS [tools/test.py options...]" 2 "$@"
