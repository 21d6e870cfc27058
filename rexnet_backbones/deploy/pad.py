"""Zero-padded ReXNet widths: ``pad_channels(model, multiple)`` pads every channel count of a
deployed ReXNet feature extractor (after :func:`~rexnet_backbones.deploy.form.deploy_model`) to a
multiple of ``multiple`` and slices the real channels off its outputs (:class:`SliceChannels`).

ReXNet v1 has widths such as 27, 38, 50, ... that blocked CPU layouts handle poorly. The extra
channels stay exactly zero, so the outputs do not change.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn

from .fuse import ConvAct, DeployBottleneck, count_batchnorm

__all__ = ['SliceChannels', 'pad_channels', 'paddable']


class SliceChannels(nn.Module):
    """Runs ``body`` and keeps the first ``channels[i]`` channels of its ``i``-th output."""

    def __init__(self, body: nn.Module, channels):
        super().__init__()
        self.body = body
        self.channels = [int(c) for c in channels]

    @property
    def out_channels(self):
        return list(self.channels)

    def forward(self, x: torch.Tensor):
        outs = self.body(x)
        sliced = [o[:, :c] for o, c in zip(outs, self.channels)]
        return tuple(sliced) if isinstance(outs, tuple) else sliced


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_conv(conv: nn.Conv2d, in_chs: int, out_chs: int) -> nn.Conv2d:
    """A copy of ``conv`` with zero weights (and zero bias) for the extra input/output channels."""
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if conv.groups > 1 and not depthwise:
        raise ValueError(f'pad_channels: grouped conv with groups={conv.groups} is not supported')
    if depthwise and in_chs != out_chs:
        raise ValueError('pad_channels: a depthwise conv keeps its width')
    new = copy.deepcopy(conv)
    w = conv.weight.detach()
    weight = w.new_zeros((out_chs, 1 if depthwise else in_chs, *w.shape[2:]))
    weight[:w.shape[0], :w.shape[1]] = w
    bias = w.new_zeros(out_chs)
    if conv.bias is not None:
        bias[:conv.out_channels] = conv.bias.detach()
    new.weight = nn.Parameter(weight, requires_grad=False)
    new.bias = nn.Parameter(bias, requires_grad=False)
    new.in_channels, new.out_channels = in_chs, out_chs
    if depthwise:
        new.groups = out_chs
    return new


def _check_zero_preserving(act: Optional[nn.Module]) -> None:
    if act is None or isinstance(act, nn.Identity):
        return
    zero = torch.zeros(1, 1, 1, 1)
    if act(zero).abs().max().item() != 0:
        raise ValueError(f'pad_channels: activation {act} does not map 0 to 0')


def _pad_convact(m: ConvAct, in_chs: int, multiple: int) -> int:
    _check_zero_preserving(m.act)
    depthwise = m.conv.groups > 1
    out_chs = in_chs if depthwise else _round_up(m.conv.out_channels, multiple)
    m.conv = _pad_conv(m.conv, in_chs, out_chs)
    return out_chs


def _pad_block(b: DeployBottleneck, in_chs: int, multiple: int) -> int:
    block = b.block
    chs = in_chs
    if block.conv_exp is not None:
        chs = _pad_convact(block.conv_exp, chs, multiple)
    chs = _pad_convact(block.conv_dw, chs, multiple)
    se = getattr(block, 'se', None)
    if se is not None:
        if not (isinstance(getattr(se, 'fc1', None), nn.Conv2d) and isinstance(se.fc2, nn.Conv2d)
                and isinstance(se.bn, nn.Identity) and not getattr(se, 'add_maxpool', False)):
            raise ValueError('pad_channels: fold the SE block first (fuse_bn)')
        se.fc1 = _pad_conv(se.fc1, chs, se.fc1.out_channels)
        se.fc2 = _pad_conv(se.fc2, se.fc2.in_channels, chs)  # gate 0.5 on zero channels: still zero
    _check_zero_preserving(getattr(block, 'act_dw', None))
    out_chs = _pad_convact(block.conv_pwl, chs, multiple)
    block.in_channels, block.out_channels = in_chs, out_chs
    return out_chs


def _chain(model: nn.Module):
    """The ConvAct / DeployBottleneck modules of ``model`` in registration (= execution) order."""
    found = []

    def visit(module):
        for child in module.children():
            if isinstance(child, (ConvAct, DeployBottleneck)):
                found.append(child)
            else:
                visit(child)
    visit(model)
    return found


@torch.no_grad()
def pad_channels(model: nn.Module, multiple: int = 8) -> nn.Module:
    """Zero-pad the widths of a folded ReXNet feature extractor to multiples of ``multiple`` (in place).

    ``model`` is a timm ``features_only`` ReXNet, the mm ``ReXNet`` backbone, or a model holding
    such a ``backbone`` (a detector, or a module wrapping one), after ``deploy_model``. Returns the
    model whose (backbone) outputs are sliced back to their real widths by a :class:`SliceChannels`
    wrapper; the outputs are unchanged.
    """
    if multiple < 1:
        raise ValueError(f'multiple must be >= 1, got {multiple}')
    channels = _feature_channels(model)
    owner = None if channels is not None else _backbone_owner(model)
    if owner is not None:
        owner.backbone = pad_channels(owner.backbone, multiple)
        return model
    if channels is None:
        raise ValueError(f'pad_channels: {type(model).__name__} is not a ReXNet feature extractor '
                         '(a timm features_only model or the mm ReXNet backbone)')
    chain = _chain(model)
    if not any(isinstance(m, DeployBottleneck) for m in chain) or not isinstance(chain[0], ConvAct) \
            or count_batchnorm(model):
        raise ValueError('pad_channels: give a model after deploy_model() (BN folded, ReXNet blocks)')
    chs = chain[0].in_channels  # the image channels stay as they are
    real = chs
    for m in chain:
        if m.in_channels != real:
            raise ValueError(f'pad_channels: {type(m).__name__} takes {m.in_channels} channels after '
                             f'{real}: not a plain chain')
        real = m.out_channels
        chs = _pad_convact(m, chs, multiple) if isinstance(m, ConvAct) else _pad_block(m, chs, multiple)
    return SliceChannels(model, channels)


def _feature_channels(model: nn.Module) -> Optional[list]:
    """The output widths of a feature extractor (mm ``out_channels`` or timm ``feature_info``)."""
    if isinstance(model, SliceChannels):
        return None
    if isinstance(getattr(model, 'out_channels', None), (list, tuple)):
        return list(model.out_channels)
    info = getattr(model, 'feature_info', None)
    return list(info.channels()) if hasattr(info, 'channels') else None


def _backbone_owner(model: nn.Module) -> Optional[nn.Module]:
    """The first module (``model`` itself first) that holds a ``backbone`` submodule."""
    return next((m for m in model.modules() if isinstance(getattr(m, 'backbone', None), nn.Module)), None)


def paddable(model: nn.Module) -> bool:
    """``model`` is a feature extractor or holds a ``backbone`` (a classifier is not)."""
    return _feature_channels(model) is not None or _backbone_owner(model) is not None
