"""Inference ("deploy") form of ReXNet models: BatchNorm folded into the convolutions, cheaper blocks.

``fold_batchnorm(model)`` folds every BatchNorm that directly follows a convolution into that
convolution's weight and bias, keeping the activation:

* timm's ``ConvNormAct`` (``conv`` + ``BatchNormAct2d``) becomes a :class:`ConvAct` (conv with bias + act);
* the SE block's ``fc1`` + ``bn`` (timm ``SEModule``, also the mm backbone's ``_BatchOneSafeBN``);
* the ReXNet-lite head (``conv_head`` + ``norm_head``);
* ``nn.Sequential`` runs of ``Conv2d`` then ``BatchNorm2d`` (e.g. a ResNet downsample), mmcv's
  ``ConvModule`` (norm after conv) and mmdet's ResNet/RegNet blocks (``convN`` + ``normN``), so that a
  reference model can be folded the same way.

``pad_channels(model, multiple)`` zero-pads every channel count of a folded ReXNet feature extractor
to a multiple of ``multiple`` (ReXNet v1 has widths such as 27, 38, 50, ... that blocked CPU
layouts handle poorly) and slices the real channels off its outputs; the extra channels stay exactly
zero, so the outputs do not change.

``deploy_model(model)`` folds and also replaces every ReXNet bottleneck (timm's ``LinearBottleneck``,
our ``LiteBottleneck``) by a :class:`DeployBottleneck` with the same weights whose partial residual
does not copy the whole output (see ``residual``); optionally it converts to channels_last. The outputs
are those of the eval-mode model up to float rounding (tests: within 1e-5).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['ConvAct', 'DeployBottleneck', 'DeploySE', 'SliceChannels', 'fuse_conv_bn', 'fold_batchnorm', 'fuse_bn',
           'pad_channels', 'deploy_model', 'count_batchnorm', 'RESIDUAL_MODES']

#: how :class:`DeployBottleneck` adds its shortcut onto the first ``in_channels`` output channels
RESIDUAL_MODES = ('inplace', 'pad', 'cat')


def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
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
    its blocked NCHWc layout) instead of timm's ``mean`` (``ReduceMean``, which it does not).
    """

    def __init__(self, fc1: nn.Conv2d, act: nn.Module, fc2: nn.Conv2d, gate: nn.Module):
        super().__init__()
        self.fc1 = fc1
        self.bn = nn.Identity()
        self.act = act
        self.fc2 = fc2
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * self.gate(s)


class DeployBottleneck(nn.Module):
    """ReXNet bottleneck (v1 or lite) for inference: [1x1 expand] -> depthwise -> [SE] -> act -> 1x1.

    The partial residual (input added onto the first ``in_channels`` output channels) is computed by
    ``residual``:

    * ``'inplace'``: ``x[:, :in] += shortcut`` on the fresh projection output (eager torch: touches only
      ``in_channels`` channels instead of copying the whole tensor into a ``cat``);
    * ``'pad'``: ``x + pad(shortcut)``, the shortcut zero-padded to full width: an ``Add`` that graph
      runtimes (ONNX Runtime, OpenVINO) can fuse into the projection convolution;
    * ``'cat'``: the original slice + add + ``cat``.
    """

    def __init__(self, conv_exp: Optional[nn.Module], conv_dw: nn.Module, se: Optional[nn.Module],
                 act_dw: nn.Module, conv_pwl: nn.Module, in_channels: int, out_channels: int,
                 use_shortcut: bool, residual: str = 'inplace'):
        super().__init__()
        if residual not in RESIDUAL_MODES:
            raise ValueError(f'residual must be one of {RESIDUAL_MODES}, got {residual!r}')
        self.conv_exp = conv_exp
        self.conv_dw = conv_dw
        self.se = se
        self.act_dw = act_dw
        self.conv_pwl = conv_pwl
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.use_shortcut = use_shortcut
        self.residual = residual

    def feat_channels(self, exp: bool = False) -> int:
        return self.conv_dw.out_channels if exp else self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.conv_exp is not None:
            x = self.conv_exp(x)
        x = self.conv_dw(x)
        if self.se is not None:
            x = self.se(x)
        x = self.conv_pwl(self.act_dw(x))
        if not self.use_shortcut:
            return x
        extra = self.out_channels - self.in_channels
        if self.residual == 'pad' or extra == 0:
            return x + (F.pad(shortcut, (0, 0, 0, 0, 0, extra)) if extra else shortcut)
        if self.residual == 'inplace':
            x[:, :self.in_channels] += shortcut
            return x
        return torch.cat([x[:, :self.in_channels] + shortcut, x[:, self.in_channels:]], dim=1)


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
                module._modules[a] = fuse_conv_bn(conv, bn)
                module._modules[b] = getattr(bn, 'act', None) or nn.Identity()


def _fold_one(m: nn.Module) -> nn.Module:
    # timm ConvNormAct / ConvBnAct (without anti-aliasing)
    if isinstance(getattr(m, 'conv', None), nn.Conv2d) and _is_bn(getattr(m, 'bn', None)) \
            and getattr(m, 'aa', None) is None and not hasattr(m, 'norm_name'):
        bn = m.bn
        return ConvAct(fuse_conv_bn(m.conv, bn), getattr(bn, 'act', None))
    # SE with a BN after its reduction conv (timm SEModule(norm_layer=BN), ReXNet v1)
    if isinstance(getattr(m, 'fc1', None), nn.Conv2d) and _is_bn(getattr(m, 'bn', None)):
        m.fc1 = fuse_conv_bn(m.fc1, m.bn)
        m.bn = getattr(m.bn, 'act', None) or nn.Identity()
        return m
    # ReXNet-lite head
    if isinstance(getattr(m, 'conv_head', None), nn.Conv2d) and _is_bn(getattr(m, 'norm_head', None)):
        m.conv_head = fuse_conv_bn(m.conv_head, m.norm_head)
        m.norm_head = nn.Identity()
        return m
    # mmcv ConvModule with the norm after the conv
    norm_name = getattr(m, 'norm_name', None)
    if isinstance(norm_name, str) and isinstance(getattr(m, 'conv', None), nn.Conv2d) \
            and _is_bn(getattr(m, norm_name, None)):
        order = tuple(getattr(m, 'order', ('conv', 'norm', 'act')))
        if order.index('conv') < order.index('norm'):
            m.conv = fuse_conv_bn(m.conv, getattr(m, norm_name))
            setattr(m, norm_name, nn.Identity())
        return m
    # mmdet ResNet / RegNet stem and blocks: convN followed by normN (norms named by normN_name)
    for i in (1, 2, 3):
        name = getattr(m, f'norm{i}_name', None)
        conv = getattr(m, f'conv{i}', None)
        if isinstance(name, str) and type(conv) is nn.Conv2d and _is_bn(getattr(m, name, None)):
            setattr(m, f'conv{i}', fuse_conv_bn(conv, getattr(m, name)))
            setattr(m, name, nn.Identity())
    return m


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm layers left in ``model``."""
    return sum(1 for m in model.modules() if _is_bn(m))


@torch.no_grad()
def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that follows a convolution into it (see the module docstring).

    Returns the folded model in eval mode (a deep copy unless ``inplace``). BatchNorms that follow no
    convolution are left as they are.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    folded = _fold_one(model)
    _fold_children(folded)
    if folded is not model:
        raise TypeError(f'fold_batchnorm: give the model that contains the {type(model).__name__}, '
                        'not the conv block itself')
    return model


def fuse_bn(model: nn.Module, *, channels_last: bool = False, inplace: bool = False) -> nn.Module:
    """:func:`fold_batchnorm`, optionally converted to ``torch.channels_last`` (eval mode)."""
    model = fold_batchnorm(model, inplace=inplace)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _is_rexnet_block(m: nn.Module) -> bool:
    return type(m).__name__ in ('LinearBottleneck', 'LiteBottleneck') and hasattr(m, 'conv_pwl') \
        and hasattr(m, 'use_shortcut')


def _to_deploy_se(se: Optional[nn.Module]) -> Optional[nn.Module]:
    if se is None:
        return None
    plain = isinstance(getattr(se, 'bn', None), nn.Identity) and not getattr(se, 'add_maxpool', False) \
        and all(isinstance(getattr(se, k, None), nn.Module) for k in ('fc1', 'act', 'fc2', 'gate'))
    return DeploySE(se.fc1, se.act, se.fc2, se.gate) if plain else se


def _to_deploy_block(m: nn.Module, residual: str) -> DeployBottleneck:
    # drop_path is not carried over: DropPath is the identity in eval mode
    return DeployBottleneck(
        m.conv_exp, m.conv_dw, _to_deploy_se(getattr(m, 'se', None)),
        getattr(m, 'act_dw', None) or nn.Identity(), m.conv_pwl, m.in_channels, m.out_channels,
        m.use_shortcut, residual)


def _replace_blocks(module: nn.Module, residual: str) -> int:
    n = 0
    for name, child in list(module.named_children()):
        if _is_rexnet_block(child):
            setattr(module, name, _to_deploy_block(child, residual))
            n += 1
        else:
            n += _replace_blocks(child, residual)
    return n


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
    chs = in_chs
    if b.conv_exp is not None:
        chs = _pad_convact(b.conv_exp, chs, multiple)
    chs = _pad_convact(b.conv_dw, chs, multiple)
    se = b.se
    if se is not None:
        if not (isinstance(getattr(se, 'fc1', None), nn.Conv2d) and isinstance(se.fc2, nn.Conv2d)
                and isinstance(se.bn, nn.Identity) and not getattr(se, 'add_maxpool', False)):
            raise ValueError('pad_channels: fold the SE block first (fold_batchnorm)')
        se.fc1 = _pad_conv(se.fc1, chs, se.fc1.out_channels)
        se.fc2 = _pad_conv(se.fc2, se.fc2.in_channels, chs)  # gate 0.5 on zero channels: still zero
    _check_zero_preserving(b.act_dw)
    out_chs = _pad_convact(b.conv_pwl, chs, multiple)
    b.in_channels, b.out_channels = in_chs, out_chs
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

    ``model`` is a timm ``features_only`` ReXNet, the mm ``ReXNet`` backbone, or a model with such a
    ``backbone``, after :func:`deploy_model`. Returns the model whose (backbone) outputs are sliced
    back to their real widths by a :class:`SliceChannels` wrapper; the outputs are unchanged.
    """
    if multiple < 1:
        raise ValueError(f'multiple must be >= 1, got {multiple}')
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module) and not isinstance(model, SliceChannels):
        model.backbone = pad_channels(backbone, multiple)
        return model
    info = getattr(model, 'feature_info', None)
    if hasattr(model, 'out_channels') and isinstance(model.out_channels, (list, tuple)):
        channels = list(model.out_channels)
    elif hasattr(info, 'channels'):
        channels = list(info.channels())
    else:
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


@torch.no_grad()
def deploy_model(model: nn.Module, *, residual: str = 'inplace', channels_last: bool = False,
                 channel_multiple: Optional[int] = None, inplace: bool = False) -> nn.Module:
    """Inference form of a model containing ReXNet: BN folded, ReXNet blocks as :class:`DeployBottleneck`.

    Args:
        model: any module (a timm ReXNet, a ``features_only`` wrapper, the mm ``ReXNet`` backbone, a
            whole detector); modules other than ReXNet are only BN-folded.
        residual: ``'inplace'`` (best for eager torch), ``'pad'`` (best for ONNX export) or ``'cat'``;
            see :class:`DeployBottleneck`.
        channels_last: convert parameters to ``torch.channels_last``; feed channels_last inputs.
        channel_multiple: zero-pad the ReXNet widths to multiples of this (see :func:`pad_channels`;
            the model must then be a ReXNet feature extractor or have one as ``backbone``; a model
            without ReXNet blocks is left unpadded).
        inplace: modify ``model`` instead of a deep copy.

    Returns:
        The model in eval mode, for inference only (no training: BN statistics are gone).
    """
    if residual not in RESIDUAL_MODES:
        raise ValueError(f'residual must be one of {RESIDUAL_MODES}, got {residual!r}')
    model = fold_batchnorm(model, inplace=inplace)
    _replace_blocks(model, residual)
    if channel_multiple and any(isinstance(m, DeployBottleneck) for m in model.modules()):
        model = pad_channels(model, channel_multiple)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()
