#!/usr/bin/env bash
# Multi-process testing with torchrun (torch.distributed.run), like mmdet's tools/dist_test.sh.
#
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py options...]
#
# GPUS processes are started on this node (one per GPU; on a CPU-only machine test.py switches
# torch.distributed to the gloo backend). Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT
# (defaults 1, 0, 127.0.0.1, 29500) on every node. PYTHON selects the interpreter (default: the
# project's .venv/bin/python when it exists, else python, else python3).
if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py options...]" >&2
    exit 2
fi

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
TOOLS_DIR="$(cd "$(dirname "$0")" && pwd)"
if [ -z "$PYTHON" ]; then
    if [ -x "$TOOLS_DIR/../.venv/bin/python" ]; then
        PYTHON="$TOOLS_DIR/../.venv/bin/python"
    else
        PYTHON=$(command -v python || command -v python3)
    fi
fi

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$TOOLS_DIR/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
