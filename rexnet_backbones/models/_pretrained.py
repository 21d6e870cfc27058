"""Checks shared by the model entrypoints before timm loads pretrained weights."""
from __future__ import annotations

from typing import Any, Dict

import timm


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
