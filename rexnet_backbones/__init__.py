"""ReXNet backbones for timm, mmdetection and mmsegmentation.

``import rexnet_backbones`` only registers things; it replaces no function of another library:

* timm entrypoints: the ReXNet-lite family and the extra v1 widths (``rexnet_090``, ``rexnet_220``);
* the types that mmengine writes into checkpoints, on torch's weights-only allowlist
  (``torch.serialization.add_safe_globals``);
* with mmengine installed: ``type='ReXNet'`` (mmdet/mmseg backbone), the ``AtomicCheckpointHook``
  and ``CheckpointCheckHook`` hooks and the ``'atomic_local'`` file backend.
"""
from . import models  # noqa: F401  (registers timm entrypoints)
from .checkpoint import register_mmengine_safe_globals, safe_load  # noqa: F401
from .config_files import config_file, resolve_config  # noqa: F401
from .convert import convert_official_state_dict, detect_arch  # noqa: F401

__version__ = '0.1.0'

register_mmengine_safe_globals()

try:  # optional OpenMMLab part
    import mmengine  # noqa: F401
except ImportError as _e:  # pragma: no cover - depends on the environment
    _MM_IMPORT_ERROR = _e

    def __getattr__(name):
        if name == 'ReXNet':
            raise ImportError(
                "rexnet_backbones.ReXNet needs the OpenMMLab stack: pip install 'rexnet_backbones[mm]' "
                f'(and tools/install_mmcv.sh for mmcv). Original error: {_MM_IMPORT_ERROR}')
        raise AttributeError(name)
else:
    from . import engine  # noqa: F401  (registers hooks and the file backend)
    from .mm import ReXNet  # noqa: F401
