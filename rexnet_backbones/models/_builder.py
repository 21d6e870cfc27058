"""What the ReXNet entrypoints share: pretrained cfg defaults, argument checks, the timm builder call."""
from __future__ import annotations

from typing import Any, Dict, Type

import timm
import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg


def require_pretrained_source(variant: str, kwargs: Dict[str, Any]) -> None:
    """Raise if ``pretrained=True`` has nowhere to load from.

    timm only warns and keeps the random init when a tag has no weights; for a backbone that is a
    silent no-op, so we refuse instead and say how to give a local file.
    """
    overlay = kwargs.get('pretrained_cfg_overlay') or {}
    cfg = kwargs.get('pretrained_cfg')
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else (cfg if isinstance(cfg, dict) else {})
    if isinstance(kwargs.get('pretrained_cfg'), str):  # a tag name
        tag = kwargs['pretrained_cfg']
        cfg = timm.models.get_pretrained_cfg(f'{variant}.{tag}', allow_unregistered=False)
        cfg = cfg.to_dict() if cfg is not None else {}
    if not cfg:
        default = timm.models.get_pretrained_cfg(variant)
        cfg = default.to_dict() if default is not None else {}
    merged = {**cfg, **overlay}
    if any(merged.get(k) for k in ('file', 'url', 'hf_hub_id', 'state_dict')):
        return
    raise RuntimeError(
        f'{variant} has no downloadable weights: the official ImageNet weights are files from '
        'https://github.com/clovaai/rexnet. Download one and pass it with '
        f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='path/to/file.pth')) "
        '(official files are converted on the fly), or convert it once with '
        'python tools/convert_checkpoint.py SRC DST.')


NUM_FEATURE_LEVELS = 5  # strides 2, 4, 8, 16, 32


def check_create_kwargs(variant: str, pretrained: bool, kwargs: Dict[str, Any]) -> None:
    """Clear errors for bad ``out_indices`` and for ``pretrained=True`` without a weight source."""
    if kwargs.get('features_only') and 'out_indices' in kwargs:
        idx = kwargs['out_indices']
        idx = [idx] if isinstance(idx, int) else list(idx)
        if not idx or any(not isinstance(i, int) or not -NUM_FEATURE_LEVELS <= i < NUM_FEATURE_LEVELS for i in idx):
            raise ValueError(f'{variant}: out_indices must index the {NUM_FEATURE_LEVELS} feature levels '
                             f'(0-4: strides 2, 4, 8, 16, 32), got {kwargs["out_indices"]!r}')
    if pretrained:
        require_pretrained_source(variant, kwargs)


def filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: timm-format weights pass, official clovaai files are converted."""
    from ..convert import to_timm_state_dict
    return to_timm_state_dict(state_dict, model)


def create(model_cls: Type[nn.Module], variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``build_model_with_cfg`` with our checks, official-file conversion and timm's feature wrapper."""
    check_create_kwargs(variant, pretrained, kwargs)
    return build_model_with_cfg(
        model_cls, variant, pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )


def default_cfg(**kwargs: Any) -> Dict[str, Any]:
    """Pretrained cfg of an ImageNet-1k ReXNet at 224x224 (timm's conventions)."""
    return {
        'url': '', 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv', 'classifier': 'head.fc', 'license': 'mit',
        'paper_ids': 'arXiv:2007.00992', 'origin_url': 'https://github.com/clovaai/rexnet',
        **kwargs,
    }
