"""Inference ("deploy") form of ReXNet models: BatchNorm folded into the convolutions, cheaper blocks.

Two public transforms, each returning an eval-mode copy (or the model itself with ``inplace=True``):

``fuse_bn(model)`` folds every BatchNorm that directly follows a convolution into that
convolution's weight and bias, keeping the activation:

* timm's ``ConvNormAct`` (``conv`` + ``BatchNormAct2d``, or our ``ConvBnAct``) becomes a :class:`ConvAct` (conv with bias + act);
* the SE block's ``fc1`` + ``bn`` (timm ``SEModule``, also with the mm backbone's ``_BatchOneSafeBN``);
* the ReXNet-lite head (``LiteHead``: ``conv_head`` + ``norm_head``);
* ``nn.Sequential`` runs of ``Conv2d`` then ``BatchNorm2d`` (e.g. a ResNet downsample), mmcv's
  ``ConvModule`` (norm after conv) and mmdet's ResNet/RegNet blocks (``convN`` + ``normN``), so that a
  reference model can be folded the same way.

``deploy_model(model)`` folds and also wraps every ReXNet block (timm's ``LinearBottleneck``, our
``LiteBottleneck``) in a :class:`DeployBottleneck` whose partial residual does not copy the whole
output (see ``residual``), with the SE gate (:class:`DeploySE`) and the ReLU6 after it in place;
optionally it zero-pads the ReXNet widths (:func:`.pad.pad_channels`)
and converts to channels_last. The outputs are those of the eval-mode model up to float rounding
(tests: within 1e-5 in float32).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ConvNormAct, SEModule
from timm.models.rexnet import LinearBottleneck
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.conv_bn_act import ConvBnAct
from ..models.rexnet_lite import LiteBottleneck, LiteHead

__all__ = ['ConvAct', 'DeployBottleneck', 'DeploySE', 'fuse_bn', 'deploy_model', 'count_batchnorm',
           'RESIDUAL_MODES', 'REXNET_BLOCKS']

#: how :class:`DeployBottleneck` adds its shortcut onto the first ``in_channels`` output channels
RESIDUAL_MODES = ('inplace', 'pad', 'cat')
#: the block classes :func:`deploy_model` wraps in a :class:`DeployBottleneck`
REXNET_BLOCKS = (LinearBottleneck, LiteBottleneck)


def _fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """A copy of ``conv`` whose weight and bias include the eval-mode ``bn`` that follows it.

    Computed in float64 and cast back to the conv's dtype.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f'cannot fold {type(bn).__name__} without running statistics '
                         '(track_running_stats=False)')
    if conv.out_channels != bn.num_features:
        raise ValueError(f'conv has {conv.out_channels} output channels, BN {bn.num_features}')
    fused = copy.deepcopy(conv)
    dtype = conv.weight.dtype
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(w[:, 0, 0, 0])
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(w[:, 0, 0, 0])
    scale = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    fused.weight = nn.Parameter((w * scale.reshape(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    fused.bias = nn.Parameter(((b - bn.running_mean.detach().double()) * scale + beta).to(dtype),
                              requires_grad=False)
    return fused


class ConvAct(nn.Module):
    """Convolution (with bias) followed by an activation: the folded form of timm's ``ConvNormAct``."""

    def __init__(self, conv: nn.Conv2d, act: Optional[nn.Module] = None):
        super().__init__()
        self.conv = conv
        self.act = act if act is not None else nn.Identity()

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class DeploySE(nn.Module):
    """Squeeze-excitation after BN folding: global average pool -> fc1 -> act -> fc2 -> gate.

    The squeeze is ``adaptive_avg_pool2d`` (ONNX ``GlobalAveragePool``, which ONNX Runtime runs in
    its blocked NCHWc layout) instead of timm's ``mean`` (``ReduceMean``, which it does not), and the
    gate multiplies ``x`` in place (no new full-size tensor; out of place when ``x`` requires grad):
    the block's depthwise output, which nothing else reads. The values are those of timm's
    ``SEModule.forward``.
    """

    def __init__(self, fc1: nn.Conv2d, act: nn.Module, fc2: nn.Conv2d, gate: nn.Module):
        super().__init__()
        self.fc1 = fc1
        self.bn = nn.Identity()
        self.act = act
        self.fc2 = fc2
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate(self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate if x.requires_grad else x.mul_(gate)


class DeployBottleneck(nn.Module):
    """A ReXNet block (v1 or lite) for inference: the block's own ``forward`` computes the branch
    (``[1x1 expand] -> depthwise -> [SE] -> act -> 1x1``, its shortcut switched off), and this module
    adds the partial residual (the input onto the first ``in_channels`` output channels) by ``residual``:

    * ``'inplace'``: ``x[:, :in] += shortcut`` on the fresh projection output (eager torch: touches only
      ``in_channels`` channels instead of copying the whole tensor into a ``cat``);
    * ``'pad'``: ``x + pad(shortcut)``, the shortcut zero-padded to full width: an ``Add`` that graph
      runtimes (ONNX Runtime, OpenVINO) can fuse into the projection convolution;
    * ``'cat'``: the block's slice + add + ``cat``.

    ``block`` (one of :data:`REXNET_BLOCKS`, eval mode) is taken over: its ``use_shortcut`` is moved
    here and its ``drop_path`` (the identity in eval mode) dropped.
    """

    def __init__(self, block: nn.Module, residual: str = 'inplace'):
        super().__init__()
        if residual not in RESIDUAL_MODES:
            raise ValueError(f'residual must be one of {RESIDUAL_MODES}, got {residual!r}')
        if not isinstance(block, REXNET_BLOCKS):
            raise TypeError(f'DeployBottleneck takes a ReXNet block, got {type(block).__name__}')
        self.use_shortcut = bool(block.use_shortcut)
        block.use_shortcut, block.drop_path = False, None
        self.block = block
        self.residual = residual

    @property
    def in_channels(self) -> int:
        return self.block.in_channels

    @property
    def out_channels(self) -> int:
        return self.block.out_channels

    def feat_channels(self, exp: bool = False) -> int:
        return self.block.feat_channels(exp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_shortcut:
            return out
        extra = self.out_channels - self.in_channels
        if self.residual == 'pad' or extra == 0:
            return out + (F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x)
        if self.residual == 'inplace':
            out[:, :self.in_channels] += x
            return out
        return torch.cat([out[:, :self.in_channels] + x, out[:, self.in_channels:]], dim=1)


def _is_bn(m) -> bool:
    return isinstance(m, _BatchNorm)


def _fold_children(module: nn.Module) -> None:
    """Fold, bottom-up, every conv + BN pattern below ``module`` (in place)."""
    for name, child in list(module.named_children()):
        _fold_children(child)
        folded = _fold_one(child)
        if folded is not child:
            setattr(module, name, folded)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and _is_bn(bn):
                module._modules[a] = _fuse_conv_bn(conv, bn)
                module._modules[b] = getattr(bn, 'act', None) or nn.Identity()


def _fold_one(m: nn.Module) -> nn.Module:
    # timm ConvNormAct (without anti-aliasing)
    if isinstance(m, ConvNormAct) and _is_bn(m.bn) and getattr(m, 'aa', None) is None:
        act = m.act if isinstance(m, ConvBnAct) else getattr(m.bn, 'act', None)
        return ConvAct(_fuse_conv_bn(m.conv, m.bn), act)
    # SE with a BN after its reduction conv (timm SEModule(norm_layer=BN), ReXNet v1)
    if isinstance(m, SEModule) and _is_bn(m.bn):
        m.fc1 = _fuse_conv_bn(m.fc1, m.bn)
        m.bn = getattr(m.bn, 'act', None) or nn.Identity()
        return m
    if isinstance(m, LiteHead) and _is_bn(m.norm_head):
        m.conv_head = _fuse_conv_bn(m.conv_head, m.norm_head)
        m.norm_head = nn.Identity()
        return m
    # mmcv ConvModule with the norm after the conv (mmcv is optional: recognised by its attributes)
    norm_name = getattr(m, 'norm_name', None)
    if isinstance(norm_name, str) and isinstance(getattr(m, 'conv', None), nn.Conv2d) \
            and _is_bn(getattr(m, norm_name, None)):
        order = tuple(getattr(m, 'order', ('conv', 'norm', 'act')))
        if order.index('conv') < order.index('norm'):
            m.conv = _fuse_conv_bn(m.conv, getattr(m, norm_name))
            setattr(m, norm_name, nn.Identity())
        return m
    # mmdet ResNet / RegNet stem and blocks: convN followed by normN (norms named by normN_name)
    for i in (1, 2, 3):
        name = getattr(m, f'norm{i}_name', None)
        conv = getattr(m, f'conv{i}', None)
        if isinstance(name, str) and type(conv) is nn.Conv2d and _is_bn(getattr(m, name, None)):
            setattr(m, f'conv{i}', _fuse_conv_bn(conv, getattr(m, name)))
            setattr(m, name, nn.Identity())
    return m


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm layers left in ``model``."""
    return sum(1 for m in model.modules() if _is_bn(m))


@torch.no_grad()
def fuse_bn(model: nn.Module, *, channels_last: bool = False, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that follows a convolution into it (see the module docstring).

    Returns the folded model in eval mode (a deep copy unless ``inplace``), converted to
    ``torch.channels_last`` with ``channels_last``. BatchNorms that follow no convolution are left
    as they are.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    if _fold_one(model) is not model:
        raise TypeError(f'fuse_bn: give the model that contains the {type(model).__name__}, '
                        'not the conv block itself')
    _fold_children(model)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _to_deploy_se(se: Optional[nn.Module]) -> Optional[nn.Module]:
    plain = isinstance(se, SEModule) and isinstance(se.bn, nn.Identity) and not se.add_maxpool
    return DeploySE(se.fc1, se.act, se.fc2, se.gate) if plain else se


def _inplace_relu6(block: nn.Module) -> None:
    """ReXNet v1's ``act_dw`` (after the depthwise conv and SE gate, on a tensor nothing else reads) in place."""
    act = getattr(block, 'act_dw', None)
    if type(act) is nn.ReLU6 and not act.inplace:
        block.act_dw = nn.ReLU6(inplace=True)


def _wrap_blocks(module: nn.Module, residual: str) -> int:
    n = 0
    for name, child in list(module.named_children()):
        if isinstance(child, DeployBottleneck):  # deployed before
            n += 1
        elif isinstance(child, REXNET_BLOCKS):
            if getattr(child, 'se', None) is not None:
                child.se = _to_deploy_se(child.se)
            _inplace_relu6(child)
            setattr(module, name, DeployBottleneck(child, residual))
            n += 1
        else:
            n += _wrap_blocks(child, residual)
    return n


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
    if _wrap_blocks(model, residual) and channel_multiple:
        from .pad import _paddable, pad_channels
        if _paddable(model):
            model = pad_channels(model, channel_multiple)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()
