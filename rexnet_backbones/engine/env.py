"""Checks of the installed mmcv, run before training or testing and by ``make setup``.

Two set-ups fail late and far from their cause:

* an mmcv outside mmdet 3.x's and mmseg 1.x's range (``>=2.0.0,<2.2.0``): ``import mmdet`` ends
  in an ``AssertionError`` (mmcv 2.2) or an ``ImportError`` of a missing op;
* a CPU-only mmcv (ops built with ``FORCE_CUDA=0``) under a CUDA torch on a machine with a GPU:
  training starts and its first step fails in ``sigmoid_focal_loss`` (RetinaNet) or
  ``RoIAlign``/``nms`` (Faster/Mask R-CNN) on CUDA tensors.

:func:`mmcv_problem` names either, with the command that fixes it; :func:`check_mmcv` raises it as
a :class:`~.errors.ToolError`. :func:`main` is the set-up check (``tools/check_setup.py``).
"""
from __future__ import annotations

import sys
from typing import Dict, Optional

from ..errors import ToolError

__all__ = ['MMCV_MIN', 'MMCV_MAX', 'mmcv_problem', 'check_mmcv', 'environment_summary', 'main']

#: the mmcv versions mmdet 3.3 and mmsegmentation 1.2 accept: ``MMCV_MIN <= version < MMCV_MAX``
MMCV_MIN, MMCV_MAX = '2.0.0', '2.2.0'


def _fix_command() -> str:
    return f'bash tools/install_mmcv.sh {sys.executable}  (in a rexnet-backbones checkout)'


def _version_tuple(version: str) -> tuple:
    from mmengine.utils import digit_version
    return digit_version(version)


def mmcv_problem(cuda_available: Optional[bool] = None) -> Optional[str]:
    """What is wrong with the installed mmcv for this torch and machine, or None.

    ``cuda_available`` defaults to ``torch.cuda.is_available()``.
    """
    import torch
    try:
        import mmcv
    except ImportError as e:
        return (f'mmcv is not installed ({e}); mmdet and mmseg need mmcv>={MMCV_MIN},<{MMCV_MAX} '
                f'with its compiled ops: {_fix_command()}')
    version = mmcv.__version__
    if not _version_tuple(MMCV_MIN) <= _version_tuple(version) < _version_tuple(MMCV_MAX):
        return (f'mmcv {version} is installed, but mmdet 3.x and mmsegmentation 1.x need '
                f'mmcv>={MMCV_MIN},<{MMCV_MAX}: {sys.executable} -m pip uninstall -y mmcv && {_fix_command()}')
    try:
        from mmcv.ops import get_compiling_cuda_version
    except (ImportError, OSError) as e:
        return (f"mmcv {version}'s compiled ops do not import (mmcv-lite, or ops built for another torch "
                f'than {torch.__version__}): {e}. Rebuild them: {sys.executable} -m pip uninstall -y mmcv '
                f'&& {_fix_command()}')
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_available and get_compiling_cuda_version() == 'not available':
        return (f'torch {torch.__version__} uses CUDA {torch.version.cuda} and a GPU is visible, but mmcv '
                f"{version}'s ops were built without CUDA kernels, so nms, roi_align and sigmoid_focal_loss "
                f'fail on the GPU. Rebuild them with CUDA (needs nvcc {torch.version.cuda}; the script says what '
                f'to install if it is missing): {_fix_command()}')
    return None


def check_mmcv(cuda_available: Optional[bool] = None) -> None:
    """Raise :class:`ToolError` with :func:`mmcv_problem`'s message, if there is one."""
    problem = mmcv_problem(cuda_available)
    if problem:
        raise ToolError(problem)


def environment_summary() -> Dict[str, str]:
    """Versions of the stack, and what mmcv's ops were compiled for."""
    import importlib.metadata as md

    import torch
    info = {'torch': f'{torch.__version__} (CUDA {torch.version.cuda or "none"}, '
                     f'GPUs visible: {torch.cuda.device_count() if torch.cuda.is_available() else 0})'}
    for dist in ('torchvision', 'timm', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'numpy', 'setuptools'):
        try:
            info[dist] = md.version(dist)
        except md.PackageNotFoundError:
            info[dist] = 'not installed'
    try:
        from mmcv.ops import get_compiling_cuda_version
        cuda = get_compiling_cuda_version()
        info['mmcv ops'] = 'CPU only' if cuda == 'not available' else f'CUDA {cuda}'
    except (ImportError, OSError):
        info['mmcv ops'] = 'do not import'
    return info


def main() -> int:
    """The set-up check: mmcv fits, mmdet and mmseg import; prints the versions."""
    from ..quiet import quiet_known_warnings
    quiet_known_warnings()
    problem = mmcv_problem()
    if problem is None:
        import mmcv.ops  # noqa: F401
        import mmdet.models  # noqa: F401
        import mmseg.models  # noqa: F401
    for name, value in environment_summary().items():
        print(f'{name:>15}: {value}')
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 1
    print('set-up ok')
    return 0

