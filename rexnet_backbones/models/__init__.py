"""timm registrations: ReXNet-lite (``rexnet_lite_*``) and the extra v1 widths (``rexnet_090``, ``rexnet_220``)."""
from .rexnet_lite import RexNetLite, rexnet_lite_100, rexnet_lite_130, rexnet_lite_150, rexnet_lite_200  # noqa: F401
from .rexnet_v1 import rexnet_090, rexnet_220  # noqa: F401

#: every ReXNet name this package knows, with the official release name (None: no official file)
REXNET_ARCHS = {
    'rexnet_090': None,
    'rexnet_100': 'rexnetv1_1.0',
    'rexnet_130': 'rexnetv1_1.3',
    'rexnet_150': 'rexnetv1_1.5',
    'rexnet_200': 'rexnetv1_2.0',
    'rexnet_220': None,
    'rexnet_300': 'rexnetv1_3.0',
    'rexnet_lite_100': 'rexnetv1_lite_1.0',
    'rexnet_lite_130': 'rexnetv1_lite_1.3',
    'rexnet_lite_150': 'rexnetv1_lite_1.5',
    'rexnet_lite_200': 'rexnetv1_lite_2.0',
}
