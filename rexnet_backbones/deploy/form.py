"""The deploy form of a model: BatchNorm folded (:mod:`.fuse`), ReXNet blocks wrapped, widths padded (:mod:`.pad`)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .fuse import RESIDUAL_MODES, fuse_bn, wrap_blocks
from .pad import paddable, pad_channels

__all__ = ['deploy_model']


@torch.no_grad()
def deploy_model(model: nn.Module, *, residual: str = 'inplace', channels_last: bool = False,
                 channel_multiple: Optional[int] = None, inplace: bool = False) -> nn.Module:
    """Inference form of a model containing ReXNet: BN folded, ReXNet blocks as :class:`DeployBottleneck`.

    Args:
        model: any module (a timm ReXNet, a ``features_only`` wrapper, the mm ``ReXNet`` backbone, a
            whole detector, a module holding one); modules other than ReXNet are only BN-folded.
        residual: ``'inplace'`` (best for eager torch), ``'pad'`` (best for ONNX export) or ``'cat'``;
            see :class:`DeployBottleneck`.
        channels_last: convert parameters to ``torch.channels_last``; feed channels_last inputs.
        channel_multiple: zero-pad the ReXNet widths to multiples of this (see
            :func:`~rexnet_backbones.deploy.pad.pad_channels`) where the model is a ReXNet feature
            extractor or holds one as a ``backbone``; a classifier (its head takes the real width)
            and a model without ReXNet blocks are left unpadded.
        inplace: modify ``model`` instead of a deep copy.

    Returns:
        The model in eval mode, for inference only (no training: BN statistics are gone).
    """
    if residual not in RESIDUAL_MODES:
        raise ValueError(f'residual must be one of {RESIDUAL_MODES}, got {residual!r}')
    model = fuse_bn(model, inplace=inplace)
    if wrap_blocks(model, residual) and channel_multiple:
        if paddable(model):
            model = pad_channels(model, channel_multiple)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()
