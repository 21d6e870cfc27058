"""ReXNet backbones for timm, mmdetection and mmsegmentation.

``import rexnet_backbones`` registers the ReXNet-lite family (and the extra ReXNet v1 widths used in
the paper) in timm's model registry, makes mmengine's checkpoints loadable under torch's safe
``weights_only=True`` loader, and, when mmengine is installed, registers ``type='ReXNet'`` for
mmdet/mmseg configs.
"""
from . import models  # noqa: F401  (registers timm entrypoints)
from .checkpoint import safe_load  # noqa: F401  (also allowlists mmengine checkpoint types)
from .convert import convert_official_state_dict, detect_arch  # noqa: F401

__version__ = '0.1.0'

try:  # optional OpenMMLab part
    from .mm import ReXNet  # noqa: F401
except ImportError as _e:  # pragma: no cover - depends on the environment
    _MM_IMPORT_ERROR = _e

    def __getattr__(name):
        if name == 'ReXNet':
            raise ImportError(
                "rexnet_backbones.ReXNet needs the OpenMMLab stack: pip install 'rexnet_backbones[mm]' "
                f'(and tools/install_mmcv.sh for mmcv). Original error: {_MM_IMPORT_ERROR}')
        raise AttributeError(name)
