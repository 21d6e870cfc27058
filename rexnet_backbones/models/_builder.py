"""What the ReXNet entrypoints share: pretrained cfg defaults, argument checks, the timm builder call."""
from __future__ import annotations

import errno
import os
from typing import Any, Dict, Type

import timm
import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg

from ..errors import WeightsNotFoundError
from ..hub import hub_offline, resolve_hub_weights
from ..weights import read_checkpoint


def _pretrained_cfg(variant: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The pretrained cfg timm will load from: the given cfg (or tag), else the default, plus the overlay."""
    cfg = kwargs.get('pretrained_cfg')
    if isinstance(cfg, str):  # a tag name
        cfg = timm.models.get_pretrained_cfg(f'{variant}.{cfg}', allow_unregistered=False)
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else (dict(cfg) if isinstance(cfg, dict) else {})
    if not cfg:
        default = timm.models.get_pretrained_cfg(variant)
        cfg = default.to_dict() if default is not None else {}
    return {**cfg, **(kwargs.get('pretrained_cfg_overlay') or {})}


def _with_state_dict(kwargs: Dict[str, Any], path: str) -> Dict[str, Any]:
    """``kwargs`` whose pretrained cfg carries the tensors of ``path``, read by our weights loader."""
    overlay = {**(kwargs.get('pretrained_cfg_overlay') or {}), 'state_dict': read_checkpoint(path), 'source': ''}
    return {**kwargs, 'pretrained_cfg_overlay': overlay}


def require_pretrained_source(variant: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Check that ``pretrained=True`` has something to load; return the kwargs to build with.

    timm only warns and keeps the random init when a tag has no weights, raises a bare
    ``FileNotFoundError()`` for a missing file, and retries the hub for ~50 s when offline is set late;
    for a backbone we refuse at once and say how to give a local file. A local file (and cached hub
    weights when the hub is offline) is read by :func:`rexnet_backbones.weights.read_checkpoint`
    (weights-only, unwrapped) and handed to timm as a state_dict; timm downloads the rest.
    """
    cfg = _pretrained_cfg(variant, kwargs)
    if cfg.get('state_dict'):
        return kwargs
    if cfg.get('file') and cfg.get('source') != 'hf-hub':  # timm: the hub wins when it is the source
        path = os.path.expanduser(str(cfg['file']))
        if cfg.get('source') == 'local-dir':
            if not os.path.isdir(path):
                raise WeightsNotFoundError(errno.ENOENT, f'{variant}: pretrained weights folder not found', path)
            return kwargs
        if not os.path.isfile(path):
            raise WeightsNotFoundError(
                errno.ENOENT,
                f'{variant}: pretrained weights file not found. Give an existing file: a timm-format '
                'checkpoint (.pth/.safetensors) or an official clovaai file (converted on the fly; or convert '
                'it once with rexnet-convert-checkpoint SRC DST, python tools/convert_checkpoint.py in a checkout)',
                str(cfg['file']))
        return _with_state_dict(kwargs, path)
    if cfg.get('hf_hub_id'):
        path = resolve_hub_weights(cfg['hf_hub_id'], filename=cfg.get('hf_hub_filename'))
        if path is not None and hub_offline():
            return _with_state_dict(kwargs, path)
        return kwargs
    if cfg.get('url'):
        return kwargs
    raise RuntimeError(
        f'{variant} has no downloadable weights: the official ImageNet weights are files from '
        'https://github.com/clovaai/rexnet. Download one and pass it with '
        f"timm.create_model('{variant}', pretrained=True, pretrained_cfg_overlay=dict(file='path/to/file.pth')) "
        '(official files are converted on the fly), or convert it once with '
        'rexnet-convert-checkpoint SRC DST.')


NUM_FEATURE_LEVELS = 5  # strides 2, 4, 8, 16, 32


def check_create_kwargs(variant: str, pretrained: bool, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Clear errors for bad ``out_indices`` and for ``pretrained=True`` without a weight source;
    return the kwargs to build with (see ``require_pretrained_source``)."""
    if kwargs.get('features_only') and 'out_indices' in kwargs:
        idx = kwargs['out_indices']
        idx = [idx] if isinstance(idx, int) else list(idx)
        if not idx or any(not isinstance(i, int) or not -NUM_FEATURE_LEVELS <= i < NUM_FEATURE_LEVELS for i in idx):
            raise ValueError(f'{variant}: out_indices must index the {NUM_FEATURE_LEVELS} feature levels '
                             f'(0-4: strides 2, 4, 8, 16, 32), got {kwargs["out_indices"]!r}')
    if pretrained:
        return require_pretrained_source(variant, kwargs)
    return kwargs


def filter_fn(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
    """timm ``pretrained_filter_fn``: timm-format weights pass, official clovaai files are converted, both
    checked against ``model`` (the weights loader's conversion and diff)."""
    from ..convert import to_timm_state_dict
    return to_timm_state_dict(state_dict, model)


def create(model_cls: Type[nn.Module], variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``build_model_with_cfg`` with our checks, official-file conversion and timm's feature wrapper."""
    kwargs = check_create_kwargs(variant, pretrained, kwargs)
    model = build_model_with_cfg(
        model_cls, variant, pretrained,
        pretrained_filter_fn=filter_fn,
        feature_cfg=dict(flatten_sequential=True),
        **kwargs,
    )
    for cfg in (getattr(model, 'pretrained_cfg', None), getattr(model, 'default_cfg', None)):
        if isinstance(cfg, dict):
            cfg.pop('state_dict', None)  # loaded; the model need not keep a second copy of its weights
    return model


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
