#!/usr/bin/env bash
# Install mmcv (default 2.1.0) with its compiled ops into a Python environment, with CUDA kernels
# when torch has CUDA and a CUDA compiler is at hand.
#
#   1. An installed mmcv 2.0/2.1 whose ops import is kept, unless torch has CUDA, a CUDA build is
#      wanted (see 3.) and that mmcv's ops have no CUDA kernels.
#   2. Otherwise a prebuilt wheel is used if pip finds one (PIP_FIND_LINKS, or the per-machine cache)
#      and its ops import and have the wanted kind (CUDA or CPU-only).
#   3. Otherwise mmcv is built from its sdist (PyPI has no mmcv 2.1 wheels), with the C++ standard
#      switched to C++20 (torch >= 2.10 headers need it), and the wheel is cached per torch version:
#      * torch has CUDA and an nvcc of its CUDA major version is found (CUDA_HOME, the pip wheels
#        nvidia-cuda-nvcc + nvidia-cuda-cccl in this environment, nvcc on PATH, /usr/local/cuda): FORCE_CUDA=1, for
#        TORCH_CUDA_ARCH_LIST from the environment or else the visible GPUs;
#      * torch has CUDA, no nvcc, a GPU is visible: stop, saying what to install;
#      * otherwise (CPU torch, or no GPU and no nvcc): CPU-only ops (about 23 CPU-minutes).
#      A CUDA build on a machine without GPUs needs TORCH_CUDA_ARCH_LIST (e.g. 9.0 for H100/H200).
# Usage: tools/install_mmcv.sh [--check] [PYTHON]   (default: .venv/bin/python)
#   --check: say what would be done; exit 0 if the installed mmcv is kept, 3 if something would be installed.
# Environment: MMCV_VERSION, TORCH_CUDA_ARCH_LIST, CUDA_HOME, MAX_JOBS, REXNET_WHEEL_CACHE,
#              REXNET_MMCV_CUDA=0 (force CPU-only ops), PIP_CONSTRAINT / PIP_FIND_LINKS (pip's own).
set -euo pipefail
CHECK_ONLY=0
if [ "${1:-}" = --check ]; then CHECK_ONLY=1; shift; fi
PY=${1:-.venv/bin/python}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE_ROOT=${REXNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rexnet-backbones/wheels}
PIP=("$PY" -m pip)
say() { echo "[install_mmcv] $*"; }
die() { echo "[install_mmcv] error: $*" >&2; exit 1; }

# --- what torch is, what the machine has --------------------------------------------------------
# prints: torch version, torch CUDA version ('' for CPU), visible GPUs, their arch list, site-packages
read -r TORCH_VERSION TORCH_CUDA NGPU GPU_ARCHS SITE < <("$PY" - <<'EOF'
import sysconfig, torch
cuda = torch.version.cuda or ''
n = torch.cuda.device_count() if cuda and torch.cuda.is_available() else 0
archs = sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(n)})
print(torch.__version__, cuda or '-', n, ';'.join(archs) or '-', sysconfig.get_paths()['purelib'])
EOF
) || die "cannot import torch with $PY: install torch first"
[ "$TORCH_CUDA" = "-" ] && TORCH_CUDA=''
[ "$GPU_ARCHS" = "-" ] && GPU_ARCHS=''

# nvcc: CUDA_HOME, NVIDIA's pip wheels in this environment (CUDA 13: nvidia/cu13/bin, CUDA 12:
# nvidia/cuda_nvcc/bin), nvcc on PATH, /usr/local/cuda; the first whose major version is torch's.
# Prints the toolkit root (where bin/nvcc and include/ are; nvcc on PATH may be a wrapper script).
find_cuda_home() {
  local c root major
  for c in ${CUDA_HOME:+"$CUDA_HOME/bin/nvcc"} "$SITE"/nvidia/cu*/bin/nvcc "$SITE"/nvidia/cuda_nvcc/bin/nvcc \
           "$(command -v nvcc 2>/dev/null || true)" /usr/local/cuda/bin/nvcc; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    root=$("$c" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -1)
    root=$(cd "${root:-$(dirname "$c")}/.." && pwd)
    major=$("$c" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    if [ "$major" = "${TORCH_CUDA%%.*}" ]; then echo "$root"; return 0; fi
    say "skipping $c: CUDA $major, torch needs CUDA ${TORCH_CUDA%%.*}" >&2
  done
  return 1
}
NVCC_HOME=''
[ -n "$TORCH_CUDA" ] && NVCC_HOME=$(find_cuda_home || true)
NVCC=${NVCC_HOME:+$NVCC_HOME/bin/nvcc}

# the pip command that gives this torch a matching nvcc with its own cicc (nvidia-nvvm), crt headers and CCCL
# (thrust, cub, nv/target). The parts must be one CUDA release: `pip install nvidia-cuda-nvcc==13.0.*` alone
# pulls the newest nvidia-nvvm, whose PTX the 13.0 ptxas rejects ("Unsupported .version 9.5").
nvcc_hint() {
  local major=${TORCH_CUDA%%.*} tk
  # CUDA 13 torch wheels require cuda-toolkit[...]==X.Y.Z: its nvcc,cccl extras pin the same release
  tk=$("$PY" -c "import importlib.metadata as m, re
r = [x for x in (m.requires('torch') or []) if x.startswith('cuda-toolkit')]
v = re.search(r'==\s*([0-9.]+)', r[0]) if r else None
print(v.group(1) if v else '')" 2>/dev/null || true)
  if [ -n "$tk" ]; then
    echo "$PY -m pip install 'cuda-toolkit[nvcc,cccl]==$tk'"
  elif [ "$major" -ge 13 ]; then
    echo "$PY -m pip install 'nvidia-cuda-nvcc==$TORCH_CUDA.*' 'nvidia-nvvm==$TORCH_CUDA.*' 'nvidia-cuda-crt==$TORCH_CUDA.*' 'nvidia-cuda-cccl==$TORCH_CUDA.*'"
  else
    echo "$PY -m pip install 'nvidia-cuda-nvcc-cu$major==$TORCH_CUDA.*' 'nvidia-cuda-cccl-cu$major==$TORCH_CUDA.*'"
  fi
}

# the pip package that provides a CUDA header torch's extension headers include
header_package() {
  case "$1" in
    nv/*|thrust/*|cub/*|cuda/std/*|cuda/*) echo nvidia-cuda-cccl ;;
    cublas*) echo nvidia-cublas ;;
    cusparse*) echo nvidia-cusparse ;;
    cusolver*) echo nvidia-cusolver ;;
    curand*) echo nvidia-curand ;;
    cufft*) echo nvidia-cufft ;;
    crt/*) echo nvidia-cuda-crt ;;
    *) echo nvidia-cuda-runtime ;;
  esac
}

# compile one small kernel with the headers torch's CUDA headers include, for every arch, in seconds,
# before the long build: a missing header or mismatched compiler parts show here
preflight() {  # preflight DIR ENV...
  local dir=$1 arch out missing; shift
  cat > "$dir/preflight.cu" <<'CU'
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cublas_v2.h>
#include <cusparse.h>
#include <cusolverDn.h>
#include <curand_kernel.h>
#include <thrust/device_vector.h>
__global__ void add_one(float *x) { x[threadIdx.x] += 1.f; }
CU
  for arch in ${ARCHS//;/ }; do
    arch=${arch%+PTX}; arch=${arch//./}
    if ! out=$(env "$@" "$NVCC" -std=c++20 -c "$dir/preflight.cu" -o "$dir/preflight.o" \
               -gencode "arch=compute_$arch,code=sm_$arch" 2>&1); then
      missing=$(echo "$out" | sed -n 's/.*fatal error: \([^:]*\): No such file.*/\1/p' | head -1)
      [ -n "$missing" ] && die "the CUDA header <$missing> that torch's headers include is missing: install" \
        "$(header_package "$missing") for CUDA $TORCH_CUDA ($(nvcc_hint) gives nvcc with CCCL), then run this again"
      die "nvcc ($NVCC) cannot compile a kernel for sm_$arch: $(echo "$out" | tail -2 | tr '\n' ' ')." \
        "Its parts must be one CUDA release: $(nvcc_hint)"
    fi
  done
}

WANT=cpu
ARCHS=${TORCH_CUDA_ARCH_LIST:-$GPU_ARCHS}
if [ -n "$TORCH_CUDA" ] && [ "${REXNET_MMCV_CUDA:-1}" != 0 ]; then
  if [ -n "$NVCC" ] && [ -n "$ARCHS" ]; then
    WANT=cuda
  elif [ -n "$NVCC" ]; then
    say "nvcc found ($NVCC) but no GPU is visible and TORCH_CUDA_ARCH_LIST is not set: CPU-only ops" \
        "(for CUDA kernels set e.g. TORCH_CUDA_ARCH_LIST=9.0 and run this again)"
  elif [ "$NGPU" -gt 0 ]; then
    die "torch $TORCH_VERSION has CUDA $TORCH_CUDA and $NGPU GPU(s) are visible, but no CUDA compiler (nvcc) was found" \
        "(CUDA_HOME, PATH, or the nvidia-cuda-nvcc wheel), so mmcv's ops (nms, roi_align, sigmoid_focal_loss) would" \
        "have no CUDA kernels. Install one matching torch's CUDA: $(nvcc_hint)   (or set CUDA_HOME to a CUDA" \
        "$TORCH_CUDA toolkit), then run this again. To build CPU-only ops anyway: REXNET_MMCV_CUDA=0 $0 $PY"
  fi
fi
if [ "$WANT" = cuda ]; then KIND="CUDA $TORCH_CUDA ops for sm ${ARCHS}"; else KIND="CPU-only ops"; fi
say "torch $TORCH_VERSION (CUDA: ${TORCH_CUDA:-none}, GPUs visible: $NGPU); wanted: mmcv $MMCV_VERSION with $KIND"

# --- an mmcv that is already there (or a prebuilt wheel) -----------------------------------------
# prints 'cuda', 'cpu', or why the installed mmcv is unusable
mmcv_state() {
  "$PY" - "$@" <<'EOF' 2>/dev/null || echo "mmcv's ops do not import"
import sys
import mmcv
from mmengine.utils import digit_version
v = digit_version(mmcv.__version__)
want = sys.argv[1] if len(sys.argv) > 1 else ''
if not digit_version('2.0.0') <= v < digit_version('2.2.0'):
    print(f'mmcv {mmcv.__version__} is outside the supported range >=2.0.0,<2.2.0'); sys.exit()
if want and mmcv.__version__ != want:
    print(f'mmcv {mmcv.__version__} is not the wanted {want}'); sys.exit()
from mmcv.ops import get_compiling_cuda_version, nms  # noqa: F401  (loads mmcv._ext)
print('cpu' if get_compiling_cuda_version() == 'not available' else 'cuda')
EOF
}
usable() {  # the state fits: CUDA kernels when wanted (CUDA kernels are fine when not wanted)
  [ "$1" = cuda ] || { [ "$1" = cpu ] && [ "$WANT" = cpu ]; }
}

if "$PY" -c 'import mmcv' 2>/dev/null; then
  state=$(mmcv_state)
  if usable "$state"; then
    say "kept the installed mmcv $("$PY" -c 'import mmcv; print(mmcv.__version__)') ($state ops)"
    exit 0
  fi
  say "the installed mmcv is not kept: ${state/cpu/its ops have no CUDA kernels}"
fi
if [ "$CHECK_ONLY" = 1 ]; then
  say "--check: mmcv $MMCV_VERSION with $KIND would be installed (a prebuilt wheel, or a build)"
  exit 3
fi

KEY="torch-${TORCH_VERSION//+/-}-${WANT}${ARCHS:+-sm${ARCHS//[;. ]/}}"
[ "$WANT" = cpu ] && KEY="torch-${TORCH_VERSION//+/-}-cpu"
CACHE="$CACHE_ROOT/$KEY"
mkdir -p "$CACHE"
# this machine's cache for this torch first; then pip's own find-links (PIP_FIND_LINKS) and the flat
# cache directory where earlier versions of this script kept CPU-ops wheels
try_prebuilt() {  # try_prebuilt DESCRIPTION PIP-OPTIONS...
  local desc=$1; shift
  "${PIP[@]}" install -q --no-build-isolation --no-deps --only-binary mmcv --force-reinstall "$@" \
    "mmcv==$MMCV_VERSION" 2>/dev/null || return 1
  state=$(mmcv_state "$MMCV_VERSION")
  if usable "$state"; then
    say "installed a prebuilt mmcv $MMCV_VERSION wheel from $desc ($state ops)"
    return 0
  fi
  say "the prebuilt mmcv $MMCV_VERSION wheel from $desc does not fit (${state/cpu/CPU-only ops})"
  "${PIP[@]}" uninstall -q -y mmcv
  return 1
}
try_prebuilt "$CACHE" --isolated --no-index --find-links "$CACHE" && exit 0
try_prebuilt "pip's find-links${PIP_FIND_LINKS:+ ($PIP_FIND_LINKS)} or $CACHE_ROOT" --find-links "$CACHE_ROOT" && exit 0

# --- build from the sdist ------------------------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
build_env=(MMCV_WITH_OPS=1 "MAX_JOBS=${MAX_JOBS:-$(nproc)}")
if [ "$WANT" = cuda ]; then
  cuda_home=$NVCC_HOME
  # NVIDIA's pip wheels ship only versioned libraries (libcudart.so.13): give the linker the names
  mkdir -p "$work/lib"
  for lib in "$SITE"/nvidia/*/lib/lib*.so.* "$cuda_home"/lib*/lib*.so.*; do
    [ -e "$lib" ] || continue
    base=$(basename "$lib"); ln -sf "$lib" "$work/lib/${base%%.so.*}.so"
  done
  incs=$(ls -d "$SITE"/nvidia/*/include "$SITE"/nvidia/*/include/cccl 2>/dev/null | paste -sd: || true)
  build_env+=(FORCE_CUDA=1 "CUDA_HOME=$cuda_home" "TORCH_CUDA_ARCH_LIST=$ARCHS" "PATH=$cuda_home/bin:$PATH"
              "LIBRARY_PATH=$work/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
              "CPATH=${incs}${CPATH:+:$CPATH}")
  preflight "$work" "${build_env[@]}"
  say "building mmcv $MMCV_VERSION from source with CUDA ops: nvcc $NVCC ($("$NVCC" --version | tail -2 | head -1)), TORCH_CUDA_ARCH_LIST=$ARCHS (the CPU build's 23 CPU-minutes plus 58 CUDA files, minutes each on few cores; once per machine, cached in $CACHE)"
else
  build_env+=(FORCE_CUDA=0)
  say "building mmcv $MMCV_VERSION from source with CPU-only ops (about 23 CPU-minutes, ~12 min on 2 idle cores; once per machine, cached in $CACHE)"
fi
"${PIP[@]}" download -q --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$work"
tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
src="$work/mmcv-$MMCV_VERSION"
# torch >= 2.10 headers need C++20; mmcv's setup.py hard-codes older standards.
sed -i 's/-std=c++1[47]/-std=c++20/g' "$src/setup.py"
grep -q 'c++20' "$src/setup.py" || die "could not patch $src/setup.py"
start=$SECONDS
env "${build_env[@]}" "${PIP[@]}" wheel --no-build-isolation --no-deps "$src" -w "$work/dist"
cp "$work"/dist/mmcv-*.whl "$CACHE/"
# the file just built (pip's find-links may hold another mmcv of the same version, e.g. CPU-only)
"${PIP[@]}" install --no-deps --force-reinstall "$work"/dist/mmcv-*.whl
state=$(mmcv_state "$MMCV_VERSION")
case "$state" in
  cuda|cpu) ;;
  *) die "mmcv was built but is not usable: $state" ;;
esac
[ "$WANT" = cuda ] && [ "$state" != cuda ] && die "mmcv was built with FORCE_CUDA=1 but its ops report no CUDA"
say "built mmcv $MMCV_VERSION with ${state/cpu/CPU-only} ops in $(( (SECONDS - start) / 60 )) min: $("$PY" -c 'import mmcv; print(mmcv.__file__)')"
