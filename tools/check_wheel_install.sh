#!/usr/bin/env bash
# The wheel works outside the checkout (`make wheel-check`): build it, install it (not editable) into a
# new venv, and from an empty folder load a config by its short name, build the model, run the demo's
# training for a few iterations, then the console commands: rexnet-test on the result, rexnet-make-synthetic-data,
# rexnet-train, rexnet-export and rexnet-benchmark.
#
#   bash tools/check_wheel_install.sh [DEPS_VENV]     (default: .venv)
#
# The new venv has no packages of its own but the wheel: one .pth line puts DEPS_VENV's site-packages
# after its own. Python does not process .pth files in a folder added that way, so the editable
# install's finder (__editable__*.pth) stays inactive and `import rexnet_backbones` is the wheel's.
set -euo pipefail

DEPS=${1:-.venv}
PY="$DEPS/bin/python"
REPO=$(pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rexnet-wheel-check.XXXXXX")
echo "[wheel-check] working in $WORK"

# 1. the wheel, built from a copy of the checkout (the build writes build/ and *.egg-info)
mkdir -p "$WORK/src" "$WORK/outside"
tar -C "$REPO" --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=./.venv \
    --exclude=./work_dirs --exclude=./data --exclude=./checkpoints --exclude=./outputs -cf - . \
    | tar -C "$WORK/src" -xf -
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/rexnet_backbones-*.whl)
echo "[wheel-check] $WHEEL: $(unzip -l "$WHEEL" | grep -c '\.mim/configs/.*\.py') config files"

# 2. a venv with only the wheel; the dependencies come from DEPS_VENV
BASE=$("$PY" -c 'import sys; print(sys._base_executable)')
"$BASE" -m venv --without-pip "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > "$SITE/zz_dependencies.pth"
"$PY" -m pip --python "$WORK/venv/bin/python" install --no-deps -q "$WHEEL"
"$PY" -m pip --python "$WORK/venv/bin/python" check

# 3. outside the checkout
cd "$WORK/outside"
env -u PYTHONPATH "$WORK/venv/bin/python" - "$SITE" <<'EOF'
import os, sys
import rexnet_backbones
from rexnet_backbones import config_file
site = sys.argv[1]
assert rexnet_backbones.__file__.startswith(site), rexnet_backbones.__file__
assert config_file('det/retinanet_rexnet.py').startswith(site)
from rexnet_backbones.engine.config import load_config
cfg = load_config('rexnet_backbones::det/retinanet_rexnet.py')
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
register_all_modules()
model = MODELS.build(cfg.model)
print(f'[wheel-check] {cfg.filename}: {type(model).__name__} with a {type(model.backbone).__name__} backbone')
from rexnet_backbones.demo import run_demo
run_demo(epochs=2, num_train=16, num_val=8)  # 4 iterations: not expected to beat the untrained model
assert os.path.isfile('work_dirs/demo/epoch_2.pth') and os.path.isfile('work_dirs/demo/demo_metrics.json')
EOF
# the console commands of the wheel (no checkout: tools/*.py are not there)
BIN="$WORK/venv/bin"
step() {  # step NAME COMMAND...: run it, keep its output in NAME.log, show the tail when it fails
  local name=$1; shift
  env -u PYTHONPATH SYNTHETIC_DATA_ROOT=data/synthetic "$@" > "$name.log" 2>&1 || { tail -20 "$name.log"; exit 1; }
}
step test "$BIN/rexnet-test" det/retinanet_rexnet_synthetic.py work_dirs/demo/epoch_2.pth --work-dir work_dirs/test
step data "$BIN/rexnet-make-synthetic-data" --out data/small --num-train 8 --num-val 2
step train env SYNTHETIC_DATA_ROOT=data/small "$BIN/rexnet-train" det/retinanet_rexnet_synthetic.py \
    --work-dir work_dirs/train --cfg-options train_cfg.max_epochs=1
test -f work_dirs/train/epoch_1.pth
step export "$BIN/rexnet-export" rexnet_100 rexnet_100.onnx --input-size 64 64 --verify
step benchmark "$BIN/rexnet-benchmark" rexnet_100 --input-size 64 64 --batch-sizes 1 --runs 1 --warmup 0
echo "[wheel-check] passed: the wheel's configs, model, demo training and the commands rexnet-test,"
echo "[wheel-check] rexnet-make-synthetic-data, rexnet-train, rexnet-export, rexnet-benchmark ran in $WORK/outside"
