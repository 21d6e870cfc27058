"""ReXNet v1 widths that timm does not register (0.9x and 2.2x, from the paper's detection tables).

They reuse timm's own ``RexNet`` class; timm's ``rexnet_100`` ... ``rexnet_300`` entries are left
untouched. Any other width is ``timm.create_model('rexnet_100', width_mult=w)``.
"""
from __future__ import annotations

from typing import Any, Dict

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.rexnet import RexNet

from ._checks import check_create_kwargs

__all__ = ['rexnet_090', 'rexnet_220']


def _filter_fn(state_dict: Dict[str, torch.Tensor], model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    from ..convert import to_timm_state_dict
    return to_timm_state_dict(state_dict, model)


def _create(variant: str, pretrained: bool, **kwargs: Any) -> RexNet:
    check_create_kwargs(variant, pretrained, kwargs)
    return build_model_with_cfg(
        RexNet, variant, pretrained,
        pretrained_filter_fn=_filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return {
        'url': '', 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'head.fc', 'license': 'mit',
        'paper_ids': 'arXiv:2007.00992', **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'rexnet_090.untrained': _cfg(),
    'rexnet_220.untrained': _cfg(),
})


@register_model
def rexnet_090(pretrained: bool = False, **kwargs: Any) -> RexNet:
    """ReXNet V1 0.9x (no released weights)"""
    return _create('rexnet_090', pretrained, width_mult=0.9, **kwargs)


@register_model
def rexnet_220(pretrained: bool = False, **kwargs: Any) -> RexNet:
    """ReXNet V1 2.2x (no released weights; the paper's Faster R-CNN 41.5 AP backbone)"""
    return _create('rexnet_220', pretrained, width_mult=2.2, **kwargs)
