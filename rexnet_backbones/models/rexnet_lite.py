"""ReXNet-lite as timm models.

ReXNet-lite (Han et al., "Rethinking Channel Dimensions for Efficient Model Design", CVPR 2021;
official code clovaai/rexnet, MIT) drops SE and SiLU from ReXNet v1: every activation is ReLU6,
channels are rounded to multiples of 8, the depthwise kernel size is set per stage, and the head
adds a 1x1 conv (with bias) to 1024 channels + BN + ReLU6 after global pooling.

Module names follow timm's ``RexNet`` (``stem``, ``features.N``, ``head``) so that the same
``feature_info``/``forward_intermediates`` contract and the same checkpoint conversion apply.

No ``from __future__ import annotations`` here: torch.fx copies the ``forward`` annotations into the
traced code, and TorchScript cannot resolve them when they are strings (timm's fx + script test).
"""
from math import ceil
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from timm.layers import ConvNormAct, DropPath, SelectAdaptivePool2d, create_act_layer, get_device_dtype, make_divisible
from timm.models import checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from ._builder import create, default_cfg

__all__ = ['RexNetLite']

_STAGE_DEPTHS = (1, 2, 2, 3, 3, 5)
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2)


class LiteBottleneck(nn.Module):
    """Inverted bottleneck of ReXNet-lite: [1x1 expand] -> kxk depthwise -> 1x1 linear projection.

    The shortcut adds the input onto the first ``in_chs`` output channels (ReXNet's partial residual).
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            dilation: Tuple[int, int] = (1, 1),
            exp_ratio: float = 6.0,
            kernel_size: int = 3,
            act_layer: str = 'relu6',
            drop_path: Optional[nn.Module] = None,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.in_channels = in_chs
        self.out_channels = out_chs
        self.use_shortcut = stride == 1 and dilation[0] == dilation[1] and in_chs <= out_chs
        if exp_ratio != 1:
            mid_chs = int(round(in_chs * exp_ratio))
            self.conv_exp = ConvNormAct(in_chs, mid_chs, 1, act_layer=act_layer, **dd)
        else:
            mid_chs = in_chs
            self.conv_exp = None
        self.conv_dw = ConvNormAct(
            mid_chs, mid_chs, kernel_size, stride=stride, dilation=dilation[0], groups=mid_chs,
            act_layer=act_layer, **dd)
        self.conv_pwl = ConvNormAct(mid_chs, out_chs, 1, apply_act=False, **dd)
        self.drop_path = drop_path

    def feat_channels(self, exp: bool = False) -> int:
        return self.conv_dw.out_channels if exp else self.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.conv_exp is not None:
            x = self.conv_exp(x)
        x = self.conv_pwl(self.conv_dw(x))
        if self.use_shortcut:
            if self.drop_path is not None:
                x = self.drop_path(x)
            x = torch.cat([x[:, :self.in_channels] + shortcut, x[:, self.in_channels:]], dim=1)
        return x


def _lite_channels(width_mult: float, initial_chs: int, final_chs: int, num_blocks: int,
                   ch_div: int) -> List[int]:
    """Output channels of each block: a linear ramp from ``initial_chs`` to ``initial_chs + final_chs``."""
    base = initial_chs / width_mult if width_mult < 1.0 else initial_chs
    chs = []
    for _ in range(num_blocks):
        chs.append(make_divisible(int(round(base * width_mult)), ch_div))
        base += final_chs / (num_blocks - 1)
    return chs


class LiteHead(nn.Module):
    """Global pool -> 1x1 conv (bias) -> BN -> ReLU6 -> dropout -> linear classifier.

    The 1x1 conv sees the pooled width (``in_chs * feat_mult``: twice ``in_chs`` for ``catavgmax``).
    With ``pool_type=''`` it runs at every position and the output stays ``(N, C, H, W)``.
    ``hidden_chs=None`` leaves the conv out (a pruned model): pool -> dropout -> classifier.
    """

    def __init__(self, in_chs: int, hidden_chs: Optional[int], num_classes: int, pool_type: str = 'avg',
                 drop_rate: float = 0.2, act_layer: str = 'relu6', device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.in_features = in_chs
        self.drop_rate = drop_rate
        self.global_pool = SelectAdaptivePool2d(pool_type=pool_type, flatten=False)
        pooled_chs = in_chs * self.global_pool.feat_mult()
        if hidden_chs:
            self.conv_head = nn.Conv2d(pooled_chs, hidden_chs, 1, bias=True, **dd)
            self.norm_head = nn.BatchNorm2d(hidden_chs, **dd)
            self.act = create_act_layer(act_layer, inplace=True)
            self.num_features = hidden_chs
        else:
            self.conv_head = nn.Identity()
            self.norm_head = nn.Identity()
            self.act = nn.Identity()
            self.num_features = pooled_chs
        self.flatten = nn.Flatten(1) if pool_type else nn.Identity()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int, pool_type: Optional[str] = None, device=None, dtype=None) -> None:
        """New classifier (and pooling); the head conv is kept, so the pooled width can not change."""
        dd = {'device': device, 'dtype': dtype}
        if pool_type is not None:
            global_pool = SelectAdaptivePool2d(pool_type=pool_type, flatten=False)
            pooled_chs = self.in_features * global_pool.feat_mult()
            if isinstance(self.conv_head, nn.Conv2d):
                if self.conv_head.in_channels != pooled_chs:
                    # AssertionError as timm's models with a conv after the pool (MobileNetV3) raise
                    raise AssertionError(
                        f'the head conv is sized for {self.conv_head.in_channels} pooled channels; '
                        f'global_pool={pool_type!r} gives {pooled_chs}. Create the model with '
                        f'global_pool={pool_type!r} instead.')
            else:
                self.num_features = pooled_chs
            self.global_pool = global_pool.train(self.training)
            self.flatten = (nn.Flatten(1) if pool_type else nn.Identity()).train(self.training)
        self.fc = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.fc.train(self.training)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.act(self.norm_head(self.conv_head(x)))
        x = self.drop(self.flatten(x))
        return x if pre_logits else self.fc(x)


class RexNetLite(nn.Module):
    """ReXNet-lite: a ReXNet without SE, with ReLU6 only and channels divisible by 8."""

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            output_stride: int = 32,
            initial_chs: int = 16,
            final_chs: int = 164,
            width_mult: float = 1.0,
            depth_mult: float = 1.0,
            kernel_sizes: Union[int, Sequence[int], str] = 3,
            ch_div: int = 8,
            head_chs: int = 1024,
            fix_head_stem: bool = False,
            act_layer: str = 'relu6',
            drop_rate: float = 0.2,
            drop_path_rate: float = 0.0,
            device=None,
            dtype=None,
    ):
        """
        Args:
            width_mult: channel width multiplier (released: 1.0, 1.3, 1.5, 2.0).
            kernel_sizes: depthwise kernel size, one int or one per stage (6 stages); the official
                ``kernel_conf`` string such as ``'335577'`` is accepted too.
            fix_head_stem: keep stem (32) and penultimate (1280) channels independent of the width.
            output_stride: 32, 16 or 8; smaller strides dilate the last stages (segmentation).
            global_pool: any timm pool type; ``''`` keeps the map unpooled (the head conv runs per position).
            device, dtype: where and in which dtype the parameters are created (timm's factory kwargs).
        """
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride!r}')
        if isinstance(kernel_sizes, str):
            kernel_sizes = [int(k) for k in kernel_sizes]
        if isinstance(kernel_sizes, int):
            kernel_sizes = [kernel_sizes] * len(_STAGE_DEPTHS)
        kernel_sizes = list(kernel_sizes)
        if len(kernel_sizes) != len(_STAGE_DEPTHS) or any(k % 2 == 0 or k < 1 for k in kernel_sizes):
            raise ValueError(f'kernel_sizes must be one odd int or {len(_STAGE_DEPTHS)} odd ints, got {kernel_sizes}')
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        depths = [ceil(d * depth_mult) for d in _STAGE_DEPTHS]
        block_strides, block_kernels, block_exp = [], [], []
        for i, (d, s, k) in enumerate(zip(depths, _STAGE_STRIDES, kernel_sizes)):
            block_strides += [s] + [1] * (d - 1)
            block_kernels += [k] * d
            block_exp += [1 if i == 0 else 6] * d
        num_blocks = len(block_strides)
        out_chs = _lite_channels(width_mult, initial_chs, final_chs, num_blocks, ch_div)

        stem_base = 32 / width_mult if (width_mult < 1.0 or fix_head_stem) else 32
        stem_chs = make_divisible(int(round(stem_base * width_mult)), ch_div)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, act_layer=act_layer, **dd)

        feature_info: List[Dict[str, Any]] = []
        features: List[nn.Module] = []
        prev_chs, curr_stride, dilation = stem_chs, 2, 1
        for idx, (chs, stride, k, exp) in enumerate(zip(out_chs, block_strides, block_kernels, block_exp)):
            next_dilation = dilation
            if stride > 1:
                module = 'stem' if idx == 0 else f'features.{idx - 1}'
                feature_info.append(dict(num_chs=prev_chs, reduction=curr_stride, module=module))
                if curr_stride >= output_stride:
                    next_dilation, stride = dilation * stride, 1
            dpr = drop_path_rate * idx / max(num_blocks - 1, 1)
            features.append(LiteBottleneck(
                prev_chs, chs, stride=stride, dilation=(dilation, next_dilation), exp_ratio=exp,
                kernel_size=k, act_layer=act_layer, drop_path=DropPath(dpr) if dpr > 0 else None, **dd))
            curr_stride *= stride
            dilation = next_dilation
            prev_chs = chs
        feature_info.append(dict(num_chs=prev_chs, reduction=curr_stride, module=f'features.{num_blocks - 1}'))
        self.feature_info = feature_info
        pen_chs = int(1280 * width_mult) if (width_mult > 1.0 and not fix_head_stem) else 1280
        features.append(ConvNormAct(prev_chs, pen_chs, 1, act_layer=act_layer, **dd))
        self.features = nn.Sequential(*features)
        self.stage_ends = [int(f['module'].split('.')[-1]) for f in self.feature_info]
        self.num_features = pen_chs

        self.head = LiteHead(pen_chs, head_chs, num_classes, global_pool, drop_rate, act_layer, **dd)
        self.head_hidden_size = self.head.num_features
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^stem', blocks=r'^features\.(\d+)')

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None, device=None, dtype=None) -> None:
        """New classifier for ``num_classes`` (0: none); ``global_pool`` None keeps the pooling, ``''`` removes it."""
        dd = get_device_dtype(self, device=device, dtype=dtype)
        self.head.reset(num_classes, global_pool, **dd)
        self.num_classes = num_classes
        self.head_hidden_size = self.head.num_features

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Return the feature maps at ``indices`` of ``feature_info`` (strides 2, 4, 8, 16, 32)."""
        if output_fmt != 'NCHW':
            raise ValueError("output_fmt must be 'NCHW', got " + output_fmt)  # no f-string: TorchScript
        take, max_index = feature_take_indices(len(self.stage_ends), indices)
        take = [self.stage_ends[i] for i in take]
        max_index = self.stage_ends[max_index]
        x = self.stem(x)
        intermediates = []
        if torch.jit.is_scripting() or not stop_early or max_index == self.stage_ends[-1]:  # no slicing in script
            blocks = self.features
        else:
            blocks = self.features[:max_index + 1]
        for idx, block in enumerate(blocks):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if idx in take:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the blocks after the last requested intermediate (and the head)."""
        take, max_index = feature_take_indices(len(self.stage_ends), indices)
        num_chs = self.feature_info[max_index]['num_chs']
        last = self.stage_ends[max_index]
        if not (prune_norm or prune_head or last < self.stage_ends[-1]):
            return take
        dd = get_device_dtype(self)
        self.features = self.features[:last + 1]
        # the head conv is sized for the final features, so it goes with them; as timm's RexNet, the
        # pruned model returns the unpooled features (reset_classifier(n, 'avg') adds a classifier)
        self.num_features = num_chs
        self.head = LiteHead(num_chs, None, 0, '', self.drop_rate, **dd).train(self.training)
        self.head_hidden_size = self.head.num_features
        self.num_classes = 0
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.features, x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# The official ImageNet weights are plain state_dicts in the clovaai layout, published with the
# official repository; there is no hub copy. Load them with ``pretrained_cfg_overlay=dict(file=...)``
# (converted on the fly) or convert once with ``tools/convert_checkpoint.py``.
default_cfgs = generate_default_cfgs({
    'rexnet_lite_100.clova_in1k': default_cfg(notes=('official file rexnet_lite_1.0.pth; top-1 76.2',)),
    'rexnet_lite_130.clova_in1k': default_cfg(notes=('official file rexnet_lite_1.3.pth; top-1 77.8',)),
    'rexnet_lite_150.clova_in1k': default_cfg(notes=('official file rexnet_lite_1.5.pth; top-1 78.6',)),
    'rexnet_lite_200.clova_in1k': default_cfg(notes=('official file rexnet_lite_2.0.pth; top-1 80.2',)),
})


@register_model
def rexnet_lite_100(pretrained: bool = False, **kwargs: Any) -> RexNetLite:
    """ReXNet-lite 1.0x"""
    return create(RexNetLite, 'rexnet_lite_100', pretrained, width_mult=1.0, **kwargs)


@register_model
def rexnet_lite_130(pretrained: bool = False, **kwargs: Any) -> RexNetLite:
    """ReXNet-lite 1.3x"""
    return create(RexNetLite, 'rexnet_lite_130', pretrained, width_mult=1.3, **kwargs)


@register_model
def rexnet_lite_150(pretrained: bool = False, **kwargs: Any) -> RexNetLite:
    """ReXNet-lite 1.5x"""
    return create(RexNetLite, 'rexnet_lite_150', pretrained, width_mult=1.5, **kwargs)


@register_model
def rexnet_lite_200(pretrained: bool = False, **kwargs: Any) -> RexNetLite:
    """ReXNet-lite 2.0x"""
    return create(RexNetLite, 'rexnet_lite_200', pretrained, width_mult=2.0, **kwargs)
