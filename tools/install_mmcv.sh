#!/usr/bin/env bash
# Install mmcv==2.1.0 with its compiled ops into the current virtual environment.
#
# mmcv 2.1.0 is on PyPI only as an sdist. Its setup.py imports torch (so build isolation must be
# off) and forces -std=c++17, while torch 2.14 headers require C++20. We therefore:
#   1. use a prebuilt wheel if pip can find one (PIP_FIND_LINKS, or our per-machine wheel cache);
#   2. otherwise download the sdist with pip, switch its C++ standard to C++20, build a wheel once
#      (about 23 CPU-minutes: ~12 min on 2 idle cores, CPU ops) and keep it in the per-machine cache.
# Usage: tools/install_mmcv.sh [PYTHON]   (default: .venv/bin/python)
set -euo pipefail
PY=${1:-.venv/bin/python}
MMCV_VERSION=2.1.0
CACHE=${REXNET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rexnet-backbones/wheels}
mkdir -p "$CACHE"
PIP=("$PY" -m pip)

check() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; }

if check; then
  echo "[install_mmcv] mmcv $MMCV_VERSION with ops is already installed"
  exit 0
fi

if "${PIP[@]}" install --no-build-isolation --no-deps --only-binary mmcv --find-links "$CACHE" \
     "mmcv==$MMCV_VERSION" 2>/dev/null; then
  echo "[install_mmcv] installed a prebuilt mmcv $MMCV_VERSION wheel"
else
  echo "[install_mmcv] no prebuilt wheel found: building mmcv $MMCV_VERSION from source (about 23 CPU-minutes, ~12 min on 2 idle cores; once per machine, the wheel is cached in $CACHE)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "${PIP[@]}" download --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$work"
  tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  # torch >= 2.10 headers need C++20; mmcv's setup.py hard-codes older standards.
  sed -i 's/-std=c++1[47]/-std=c++20/g' "$src/setup.py"
  grep -q 'c++20' "$src/setup.py" || { echo "[install_mmcv] could not patch setup.py" >&2; exit 1; }
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "${PIP[@]}" wheel --no-build-isolation --no-deps "$src" -w "$work/dist"
  cp "$work"/dist/mmcv-*.whl "$CACHE/"
  "${PIP[@]}" install --no-build-isolation --no-deps --find-links "$CACHE" "mmcv==$MMCV_VERSION"
fi

check || { echo "[install_mmcv] mmcv installed but 'import mmcv.ops' fails" >&2; exit 1; }
echo "[install_mmcv] ok: $("$PY" -c 'import mmcv; print(mmcv.__file__)')"
