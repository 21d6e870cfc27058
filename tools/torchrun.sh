#!/usr/bin/env bash
# The one body of tools/dist_train.sh and tools/dist_test.sh: tools/TOOL.py under torchrun
# (torch.distributed.run), with --launcher pytorch.
#
#   bash tools/torchrun.sh TOOL USAGE NARGS ARGS...
#
# ARGS are the tool's NARGS positional arguments (CONFIG, or CONFIG CHECKPOINT), then GPUS, then the tool's
# options; too few print "usage: USAGE" and exit 2. GPUS processes are started on this node (one per GPU;
# on a CPU-only machine the tool switches torch.distributed to the gloo backend). Multi-node: set NNODES,
# NODE_RANK, MASTER_ADDR and PORT (defaults 1, 0, 127.0.0.1, 29500) on every node. PYTHON selects the
# interpreter (default: the project's .venv/bin/python when it exists, else python, else python3).
TOOL=$1
USAGE=$2
NARGS=$3
shift 3
if [ "$#" -lt $((NARGS + 1)) ]; then
    echo "usage: $USAGE" >&2
    exit 2
fi

POSITIONAL=("${@:1:NARGS}")
GPUS=${*:NARGS+1:1}
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
    "$TOOLS_DIR/$TOOL.py" \
    "${POSITIONAL[@]}" \
    --launcher pytorch "${@:NARGS+2}"
