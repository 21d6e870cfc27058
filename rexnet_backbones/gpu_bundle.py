"""The bundle a bare GPU machine needs for ``make gpu-check``: wheels and mmcv's sdist, made here, installed there
offline (standard library only: this module runs before mmengine is installed).

``make_bundle(DIR)`` (``make gpu-bundle``, ``tools/make_gpu_bundle.py``) downloads with pip, at the versions of
``requirements/constraints.txt``:

* pure-python wheels: mmengine, mmdet, mmsegmentation, timm and those of their needs that a CUDA PyTorch image
  lacks (:data:`PURE`);
* binary wheels of the small compiled needs (:data:`BINARY`: pycocotools, shapely) for each of ``pythons``
  (default CPython 3.11 and 3.12, manylinux x86-64);
* mmcv's sdist (:data:`MMCV`): PyPI has no mmcv 2.1 wheels; ``tools/install_mmcv.sh`` builds it on the GPU
  machine with CUDA ops, all its cores and C++20;

and writes ``requirements.txt`` (the exact pins to install) and ``MANIFEST.txt`` (files and sizes) beside them.
What the image is expected to hold already (torch, torchvision, numpy, scipy, matplotlib, opencv-python-headless,
Pillow, PyYAML, rich, six, tqdm, packaging, regex, huggingface_hub, safetensors) is not bundled; the install
checks the imports and names what is missing.

``install_bundle(DIR)`` (``tools/gpu_check.py --bundle DIR``) installs the wheels with
``pip install --no-index --no-deps --find-links DIR -r DIR/requirements.txt`` (no network; ``--no-deps`` because
mmengine asks for ``opencv-python`` where the image has ``opencv-python-headless``), then mmcv through
``tools/install_mmcv.sh`` with pip pointed at the bundle only (``PIP_NO_INDEX=1``, ``PIP_FIND_LINKS=DIR``) and
``MAX_JOBS`` = all cores.
"""
from __future__ import annotations

import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import BundleError

__all__ = ['PURE', 'BINARY', 'MMCV', 'BUNDLE_LIMIT_MIB', 'pins', 'make_bundle', 'install_bundle', 'BundleError']

#: pure-python distributions bundled as wheels (the OpenMMLab stack, timm, and needs a CUDA PyTorch image lacks)
PURE = ('mmengine', 'mmdet', 'mmsegmentation', 'timm', 'addict', 'yapf', 'platformdirs', 'termcolor',
        'terminaltables', 'prettytable', 'wcwidth', 'ftfy')
#: compiled needs, one wheel per Python version
BINARY = ('pycocotools', 'shapely')
#: built on the GPU machine from its sdist
MMCV = 'mmcv'
#: what the device tool carries at most
BUNDLE_LIMIT_MIB = 64
#: modules the installed bundle must import (with the image's own packages)
IMPORTS = ('mmengine', 'mmdet', 'mmseg', 'timm', 'pycocotools.coco', 'shapely', 'prettytable', 'terminaltables',
           'cv2', 'scipy', 'matplotlib')
_PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
              'manylinux1_x86_64')


def pins(constraints: str) -> Dict[str, str]:
    """``{normalized name: version}`` of a constraints file (the checkout's ``requirements/constraints.txt``)."""
    path = constraints
    found = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            m = re.match(r'^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)', line)
            if m:
                found[_norm(m.group(1))] = m.group(2)
    return found


def _norm(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def _pip(args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'pip', *args], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kwargs)


def _download(specs: Sequence[str], dest: str, extra: Sequence[str]) -> None:
    proc = _pip(['download', '-q', '--no-deps', '-d', dest, *extra, *specs])
    if proc.returncode != 0:
        raise BundleError(f'pip download {" ".join(specs)} failed (PyPI must be reachable when the bundle is '
                          f'made): {proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"}')


def make_bundle(dest: str, constraints: str, pythons: Sequence[str] = ('3.11', '3.12')) -> str:
    """Download the bundle into ``dest`` (see the module); returns the manifest text."""
    versions = pins(constraints)
    missing = [n for n in PURE + BINARY + (MMCV,) if _norm(n) not in versions]
    if missing:
        raise BundleError(f'requirements/constraints.txt pins no version of {", ".join(missing)}')
    os.makedirs(dest, exist_ok=True)
    pure = [f'{n}=={versions[_norm(n)]}' for n in PURE]
    binary = [f'{n}=={versions[_norm(n)]}' for n in BINARY]
    _download(pure, dest, ['--only-binary=:all:', '--python-version', pythons[-1], '--implementation', 'py'])
    platform_args = [a for p in _PLATFORMS for a in ('--platform', p)]
    for py in pythons:
        _download(binary, dest, ['--only-binary=:all:', '--python-version', py, '--implementation', 'cp',
                                 *platform_args])
    mmcv = f'{MMCV}=={versions[MMCV]}'
    _download([mmcv], dest, ['--no-binary=:all:', '--no-build-isolation'])
    with open(osp.join(dest, 'requirements.txt'), 'w', encoding='utf-8') as f:
        f.write('# installed by tools/gpu_check.py --bundle (pip --no-index --no-deps); mmcv is built from its '
                'sdist by tools/install_mmcv.sh\n' + '\n'.join(pure + binary) + '\n')
    files = sorted(os.listdir(dest))
    sizes = {name: osp.getsize(osp.join(dest, name)) for name in files}
    total = sum(sizes.values())
    lines = [f'{sizes[n] / 2 ** 20:8.2f} MiB  {n}' for n in files]
    lines.append(f'{total / 2 ** 20:8.2f} MiB  total (limit {BUNDLE_LIMIT_MIB} MiB); mmcv: {mmcv} (sdist); '
                 f'binary wheels for CPython {", ".join(pythons)}')
    manifest = '\n'.join(lines) + '\n'
    with open(osp.join(dest, 'MANIFEST.txt'), 'w', encoding='utf-8') as f:
        f.write(manifest)
    if total > BUNDLE_LIMIT_MIB * 2 ** 20:
        raise BundleError(f'the bundle is {total / 2 ** 20:.1f} MiB, over the {BUNDLE_LIMIT_MIB} MiB the device '
                          'tool carries')
    return manifest


def _missing_imports(python: str) -> List[str]:
    code = ('import importlib, sys\nbad = []\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n'
            '    except Exception as e:\n        bad.append(f"{m} ({type(e).__name__}: {e})")\nprint("\\n".join(bad))')
    proc = subprocess.run([python, '-c', code, *IMPORTS], text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def install_bundle(bundle: str, log_file: str, install_mmcv: str, python: str = sys.executable,
                   jobs: Optional[int] = None) -> Tuple[float, float, str]:
    """Install the bundle offline, then mmcv (a build from the sdist with CUDA ops where torch has CUDA);
    returns (wheels seconds, mmcv seconds, mmcv line of install_mmcv.sh). Everything pip and the build print
    goes to ``log_file``. ``install_mmcv``: the checkout's ``tools/install_mmcv.sh``."""
    req = osp.join(bundle, 'requirements.txt')
    if not osp.isfile(req):
        raise BundleError(f'{bundle} is no bundle (no requirements.txt): make one with `make gpu-bundle` on a '
                          'machine that reaches PyPI, and carry it')
    env = dict(os.environ, PIP_NO_INDEX='1', PIP_FIND_LINKS=osp.abspath(bundle), PIP_DISABLE_PIP_VERSION_CHECK='1',
               MAX_JOBS=str(jobs or os.cpu_count() or 1))
    with open(log_file, 'a', encoding='utf-8') as log:
        t0 = time.time()
        proc = subprocess.run([python, '-m', 'pip', 'install', '--no-index', '--no-deps', '--find-links',
                               osp.abspath(bundle), '-r', req], env=env, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise BundleError(f'pip install of the bundle failed (exit {proc.returncode}); see {log_file}')
        wheels_s = time.time() - t0
        t0 = time.time()
        script = install_mmcv
        proc = subprocess.run(['bash', script, python], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        log.write(proc.stdout)
        mmcv_s = time.time() - t0
    if proc.returncode != 0:
        last = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ['?']
        raise BundleError(f'mmcv install failed after {mmcv_s:.0f} s: {last[0][:300]}')
    missing = _missing_imports(python)
    if missing:
        raise BundleError('after installing the bundle these do not import: ' + '; '.join(missing))
    said = [line for line in proc.stdout.splitlines() if line.startswith('[install_mmcv]')]
    return wheels_s, mmcv_s, said[-1] if said else ''
