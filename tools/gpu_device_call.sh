#!/usr/bin/env bash
# One call on a lent GPU machine (a CUDA PyTorch image, no OpenMMLab packages, no network): install the bundle,
# build mmcv with CUDA ops, run the GPU check and the training-throughput benchmark; every table and log in OUT.
#
#   bash tools/gpu_device_call.sh BUNDLE OUT [SECONDS]
#
# BUNDLE: what `make gpu-bundle` made here (carried); OUT: where the results go (the device tool's $OUT: at most 8
# files come back); SECONDS: the time budget (default 570): the optional stages (compiled throughput, the
# RetinaNet step) start only while enough of it is left. Stages, in order:
#   1. env.txt: GPU, driver, CUDA, Python, torch, CPU;
#   2. the bundle's wheels (pip --no-index --no-deps), then the training-throughput benchmark of the timm
#      classifiers eager (ReXNet-1.0, ReXNet-lite-1.0, RegNetX-800MF, ResNet-50; 224 px, batch 256, bf16 autocast,
#      channels-last): train_cuda.md / .json;
#   3. tools/gpu_check.py --bundle: mmcv built from its sdist with CUDA ops on all cores, the ops against CPU,
#      --amp (float16) + sync_bn + torchrun steps of RetinaNet, Faster R-CNN, Mask R-CNN, Semantic FPN and
#      tools/test.py: gpu_check.md / .json (with the install and build times) / gpu_check_logs.tar.gz;
#   4. if time is left: ReXNet-1.0, RegNetX-800MF and ResNet-50 compiled (torch.compile), appended to train_cuda.md;
#   5. if time is left: one RetinaNet training step at 800x1216, batch 2, bf16 (ReXNet-1.0, ReXNet-lite-1.0,
#      mmdet's RegNetX-800MF and ResNet-50 configs), appended to train_cuda.md.
# The whole output goes to OUT/device_call.log; the last line gives the wall time.
set -u
BUNDLE=${1:?usage: tools/gpu_device_call.sh BUNDLE OUT [SECONDS]}
OUT=${2:?usage: tools/gpu_device_call.sh BUNDLE OUT [SECONDS]}
BUDGET=${3:-570}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY=${PYTHON:-python3}
START=$SECONDS
mkdir -p "$OUT"
LOG="$OUT/device_call.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
left() { echo $(( BUDGET - (SECONDS - START) )); }
stage() { echo "=== [$(( SECONDS - START )) s] $*"; }
cd "$ROOT" || exit 1

stage "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())"
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) logical CPUs"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

stage "bundle wheels"
"$PY" -m pip install -q --no-index --no-deps --disable-pip-version-check --find-links "$BUNDLE" -r "$BUNDLE/requirements.txt" \
  || echo "bundle wheels: pip failed"

OPTS=(--train-step --device cuda --input-size 224 224 --batch-sizes 256 --runs 10 --warmup 3 --train-dtype bf16
      --channels-last --mem-efficient off)
BENCH=(tools/benchmark.py rexnet_100 rexnet_lite_100 regnetx_008 resnet50 "${OPTS[@]}")
stage "throughput, timm classifiers, eager"
timeout "$(left)" "$PY" "${BENCH[@]}" --out-json "$OUT/train_cuda.json" --out-md "$OUT/train_cuda.md" \
  || echo "throughput eager: failed or out of time"

stage "gpu-check (bundle install, mmcv build, ops, training steps, tools/test.py)"
timeout "$(left)" "$PY" tools/gpu_check.py --bundle "$BUNDLE" --work-dir /tmp/gpu_check --out-dir "$OUT" \
  || echo "gpu-check: failed or out of time (exit $?)"

if [ "$(left)" -gt 200 ]; then
  stage "throughput, timm classifiers, compiled"
  timeout "$(( $(left) - 20 ))" "$PY" tools/benchmark.py rexnet_100 regnetx_008 resnet50 "${OPTS[@]}" --compile \
    --out-json /tmp/train_cuda_compiled.json \
    --out-md /tmp/train_cuda_compiled.md && { echo; cat /tmp/train_cuda_compiled.md; } >> "$OUT/train_cuda.md" \
    || echo "throughput compiled: failed or out of time"
else
  stage "throughput compiled: skipped, $(left) s left"
fi
if [ "$(left)" -gt 90 ]; then
  stage "throughput, RetinaNet step at 800x1216"
  timeout "$(( $(left) - 10 ))" "$PY" tools/benchmark.py configs/det/retinanet_rexnet.py \
    configs/det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py \
    mmdet::retinanet/retinanet_r50_fpn_1x_coco.py --train-step --device cuda --input-size 800 1216 \
    --batch-sizes 2 --runs 5 --warmup 2 --train-dtype bf16 --channels-last --out-md /tmp/train_retinanet.md \
    && { echo; cat /tmp/train_retinanet.md; } >> "$OUT/train_cuda.md" || echo "RetinaNet step: failed or out of time"
else
  stage "RetinaNet step: skipped, $(left) s left"
fi
stage "done: wall time $(( SECONDS - START )) s"
