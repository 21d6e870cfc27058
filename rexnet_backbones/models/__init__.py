"""timm registrations: ReXNet-lite (``rexnet_lite_*``) and the extra v1 widths (``rexnet_090``, ``rexnet_220``)."""
from .mem_efficient import convert_mem_efficient  # noqa: F401
from .rexnet_lite import RexNetLite, rexnet_lite_100, rexnet_lite_130, rexnet_lite_150, rexnet_lite_200  # noqa: F401
from .rexnet_v1 import rexnet_090, rexnet_220  # noqa: F401
