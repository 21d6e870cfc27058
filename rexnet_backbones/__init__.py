"""ReXNet backbones for timm, mmdetection and mmsegmentation.

``import rexnet_backbones`` (what every config's ``custom_imports`` does) only registers things; it
replaces no function of another library:

* timm entrypoints: the ReXNet-lite family and the extra v1 widths (``rexnet_090``, ``rexnet_220``);
* the types that mmengine writes into checkpoints, on torch's weights-only allowlist
  (``torch.serialization.add_safe_globals``);
* with mmengine installed: ``type='ReXNet'`` (mmdet/mmseg backbone), the ``AtomicCheckpointHook``
  and ``CheckpointCheckHook`` hooks, the ``'atomic_local'`` file backend, the optimizer wrapper
  ``CpuAmpOptimWrapper`` (``--amp`` on the CPU) and the model wrapper ``GlooSyncBNDistributedDataParallel``
  (``sync_bn='torch'`` in CPU multi-process runs).

It does not import the train/test job code (:mod:`.engine.runner`), mmdet/mmseg, ONNX, OpenVINO or
matplotlib: the other submodules (``analysis``, ``benchmark``, ``demo``, ``deploy``, ``hub``, ...) load
on first use, e.g. ``rexnet_backbones.deploy.export_onnx``; ``engine.train``/``engine.test`` too.
"""
import importlib

from . import models  # noqa: F401  (registers timm entrypoints)
from .checkpoint import register_mmengine_safe_globals, safe_load  # noqa: F401
from .config_files import config_file, resolve_config  # noqa: F401
from .convert import convert_official_state_dict, detect_arch  # noqa: F401

__version__ = '0.1.0'

register_mmengine_safe_globals()

#: submodules loaded on first attribute access (module ``__getattr__``, PEP 562)
_LAZY_SUBMODULES = ('analysis', 'benchmark', 'data', 'demo', 'deploy', 'engine', 'hub', 'mm', 'sources')

try:  # optional OpenMMLab part
    import mmengine  # noqa: F401
except ImportError as _e:  # pragma: no cover - depends on the environment
    _MM_IMPORT_ERROR = _e
else:
    _MM_IMPORT_ERROR = None
    # register the backend, the hooks, CpuAmpOptimWrapper and GlooSyncBNDistributedDataParallel
    from .engine import amp as _amp, fileio as _fileio, hooks as _hooks, sync_bn as _sync_bn  # noqa: F401
    from .mm import ReXNet  # noqa: F401  (registers the backbone in mmengine's MODELS)


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f'{__name__}.{name}')
    if name == 'ReXNet' and _MM_IMPORT_ERROR is not None:
        raise ImportError(
            "rexnet_backbones.ReXNet needs the OpenMMLab stack: pip install 'rexnet_backbones[mm]' "
            f'(and tools/install_mmcv.sh for mmcv). Original error: {_MM_IMPORT_ERROR}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
