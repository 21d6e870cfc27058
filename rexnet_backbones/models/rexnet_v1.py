"""ReXNet v1 widths that timm does not register (0.9x and 2.2x, from the paper's detection tables).

They reuse timm's own ``RexNet`` class; timm's ``rexnet_100`` ... ``rexnet_300`` entries are left
untouched. Any other width is ``timm.create_model('rexnet_100', width_mult=w)``.
"""
from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model
from timm.models.rexnet import RexNet

from ._builder import create, default_cfg

__all__ = ['rexnet_090', 'rexnet_220']


default_cfgs = generate_default_cfgs({
    'rexnet_090.untrained': default_cfg(),
    'rexnet_220.untrained': default_cfg(),
})


@register_model
def rexnet_090(pretrained: bool = False, **kwargs: Any) -> RexNet:
    """ReXNet V1 0.9x (no released weights)"""
    return create(RexNet, 'rexnet_090', pretrained, width_mult=0.9, **kwargs)


@register_model
def rexnet_220(pretrained: bool = False, **kwargs: Any) -> RexNet:
    """ReXNet V1 2.2x (no released weights; the paper's Faster R-CNN 41.5 AP backbone)"""
    return create(RexNet, 'rexnet_220', pretrained, width_mult=2.2, **kwargs)
