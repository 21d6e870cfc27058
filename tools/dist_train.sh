#!/usr/bin/env bash
# Multi-process training with torchrun (torch.distributed.run), like mmdet's tools/dist_train.sh.
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py options...]
#
# NNODES, NODE_RANK, MASTER_ADDR, PORT and PYTHON: see tools/torchrun.sh, the body it shares with dist_test.sh.
exec bash "$(dirname "$0")/torchrun.sh" train "$0 CONFIG GPUS [tools/train.py options...]" 1 "$@"
