"""Memory-efficient training of ReXNet v1: the same outputs and gradients, fewer tensors kept for backward.

In a training step autograd keeps, per ReXNet v1 block (timm's ``LinearBottleneck``): the 1x1 expand conv's
output ``y1`` (for its BN), the BN output ``z1`` (for the SiLU), the SiLU output ``a1`` (for the depthwise
conv), the depthwise output ``y2`` (for its BN), the BN output ``z2`` (for the SE multiply), ``m = z2 * gate``
(for the ReLU6) and ``r = relu6(m)`` (for the 1x1 projection): seven tensors of the expanded width. Here a
block keeps two of them, ``y1`` and ``y2`` (which the BNs keep anyway), plus the SE gate (one value per channel):

* :func:`bn_act_conv` is ``conv(act(z))`` of ``z = bn(y)`` with ``act`` SiLU (before the depthwise conv) or
  ``relu6(z * gate)`` (before the 1x1 projection). It keeps ``y``, recomputes ``z = bn(y)`` (the same BN call,
  bit for bit) and ``act(z)`` in backward, and takes the conv's gradients from ``convolution_backward`` on
  them: elementwise ops are recomputed, the convolution is not (this is not gradient checkpointing).
* :func:`silu_after_bn` (the stem and the final 1x1 conv, :class:`MemEfficientConvBnAct`) is SiLU of
  ``z = bn(y)`` keeping ``y`` only.

Gradients come from torch's own backward kernels (``silu_backward``, ``hardtanh_backward``,
``convolution_backward``) on the recomputed tensors, so they equal the standard modules' gradients.

Mixed precision: both functions follow ``torch.autocast`` as torch's own ops do. The convolution gets the
autocast dtype for its input and weight (float16 or bfloat16; float64 is left alone, as autocast leaves
it), the weight *as cast* is what backward keeps, and backward recomputes ``bn(y)`` and the activation under
the autocast state of the forward. So ``convolution_backward`` receives one dtype for its gradient, input
and weight (what CUDA's kernels require), and the gradients reach the parameters in their own dtype.

Only a forward with autograd recording and a BatchNorm that normalises with this process's batch
(``nn.BatchNorm2d``, mmengine's ``_BatchNormXd``) takes this path; under ``no_grad``, in TorchScript,
tracing, ``torch.compile`` and ONNX export, and with ``SyncBatchNorm`` (whose statistics span processes) the
modules run their standard forward. :func:`convert_mem_efficient` switches a built model's modules to these
subclasses (same parameters, buffers and ``state_dict`` keys), as ``torch.nn.utils.parametrize`` switches a
module's class.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SEModule, register_notrace_module
from timm.models.rexnet import LinearBottleneck

from .conv_bn_act import ConvBnAct, split_norm_act

__all__ = ['silu_after_bn', 'bn_act_conv', 'MemEfficientConvBnAct', 'MemEfficientLinearBottleneck',
           'convert_mem_efficient']

try:  # the class mmengine's revert_sync_batchnorm puts in place of a SyncBatchNorm (plain BN semantics)
    from mmengine.model.utils import _BatchNormXd as _MMENGINE_BN_XD
    _LOCAL_BN_TYPES: Tuple[type, ...] = (nn.BatchNorm2d, _MMENGINE_BN_XD)
except ImportError:  # mmengine is optional for the timm models
    _LOCAL_BN_TYPES = (nn.BatchNorm2d,)


def _local_bn(bn: nn.Module) -> bool:
    """A BatchNorm whose batch statistics are this process's batch (what ``_bn_again`` recomputes)."""
    return type(bn) in _LOCAL_BN_TYPES


def _bn_again(y: torch.Tensor, bn: nn.BatchNorm2d, batch_stats: bool) -> torch.Tensor:
    """``bn(y)`` as the forward computed it (batch statistics or running ones), without updating buffers."""
    if batch_stats:
        return F.batch_norm(y, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _uses_batch_stats(bn: nn.BatchNorm2d) -> bool:
    return bn.training or (bn.running_mean is None and bn.running_var is None)


class _Autocast:
    """The autocast state of a forward (device type, enabled, dtype), to re-enter in its backward."""

    def __init__(self, t: torch.Tensor):
        self.device_type = t.device.type
        try:
            self.enabled = torch.is_autocast_enabled(self.device_type)
            self.dtype = torch.get_autocast_dtype(self.device_type)
        except RuntimeError:  # a device type autocast does not know (e.g. 'meta'): no autocast there
            self.enabled, self.dtype = False, t.dtype

    def cast_dtype(self, t: torch.Tensor) -> torch.dtype:
        """The dtype autocast gives ``t`` as an input of a convolution (float64 and non-floats unchanged)."""
        if self.enabled and t.is_floating_point() and t.dtype != torch.float64:
            return self.dtype
        return t.dtype

    def again(self) -> ContextManager:
        if not self.enabled:
            return self.off()
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=True)

    def off(self) -> ContextManager:
        if not self.enabled and not torch.amp.is_autocast_available(self.device_type):
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, enabled=False)


class _SiLUAfterBN(torch.autograd.Function):
    """``silu(z)`` for ``z = bn(y)``; keeps ``y`` only and recomputes ``z`` in backward."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
        ctx.bn, ctx.batch_stats, ctx.autocast = bn, _uses_batch_stats(bn), _Autocast(z)
        ctx.save_for_backward(y)
        return F.silu(z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], None, None]:
        y, = ctx.saved_tensors
        with torch.no_grad():
            with ctx.autocast.again():
                z = _bn_again(y, ctx.bn, ctx.batch_stats)
            return torch.ops.aten.silu_backward(grad.to(z.dtype), z), None, None


def silu_after_bn(z: torch.Tensor, y: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """``silu(z)`` for ``z = bn(y)`` (just computed, ``bn`` unchanged until backward); keeps only ``y``."""
    return _SiLUAfterBN.apply(z, y, bn)


def _act(z: torch.Tensor, gate: Optional[torch.Tensor], kind: str) -> torch.Tensor:
    """The block's activation of ``z``: ``silu(z)``, ``relu6(z * gate)`` or ``relu6(z)`` (``gate`` None)."""
    if kind == 'silu':
        return F.silu(z)
    return F.hardtanh(z * gate if gate is not None else z, 0.0, 6.0)


def _act_backward(grad: torch.Tensor, z: torch.Tensor, a: torch.Tensor, gate: Optional[torch.Tensor],
                  kind: str) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Gradients of :func:`_act` w.r.t. ``z`` and ``gate`` (torch's own backward kernels); ``grad`` has the
    dtype of ``a``."""
    if kind == 'silu':
        return torch.ops.aten.silu_backward(grad, z), None
    # relu6's mask from its output: a <= 0 iff its input <= 0, a >= 6 iff its input >= 6
    grad_m = torch.ops.aten.hardtanh_backward(grad, a, 0.0, 6.0)
    if gate is None:
        return grad_m, None
    # as the backward of ``z * gate`` (type promotion included): each gradient in its input's dtype
    return (grad_m * gate).to(z.dtype), (grad_m * z).sum_to_size(gate.shape).to(gate.dtype)


class _BNActConv(torch.autograd.Function):
    """``conv(act(z))`` for ``z = bn(y)``; keeps ``y`` (which the BN keeps anyway), the gate and the conv
    weight as the conv used it, and recomputes ``z`` and ``act(z)`` (elementwise) in backward; the conv is
    not recomputed."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, y: torch.Tensor, gate: Optional[torch.Tensor], bn: nn.BatchNorm2d,
                kind: str, conv: nn.Conv2d, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        autocast = _Autocast(z)
        a = _act(z, gate, kind)
        dtype = autocast.cast_dtype(a)  # what autocast gives F.conv2d's input and weight
        weight_c = weight.to(dtype)
        bias_c = bias.to(dtype) if bias is not None else None
        ctx.bn, ctx.batch_stats, ctx.kind, ctx.conv, ctx.autocast = bn, _uses_batch_stats(bn), kind, conv, autocast
        ctx.has_bias = bias is not None
        ctx.param_dtype = weight.dtype
        ctx.save_for_backward(y, gate, weight_c)
        with autocast.off():
            return F.conv2d(a.to(dtype), weight_c, bias_c, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        y, gate, weight = ctx.saved_tensors
        conv, needs = ctx.conv, ctx.needs_input_grad
        with torch.no_grad():
            with ctx.autocast.again():
                z = _bn_again(y, ctx.bn, ctx.batch_stats)
                a = _act(z, gate, ctx.kind)
            mask = [needs[0] or needs[2], needs[6], ctx.has_bias and needs[7]]
            dtype = weight.dtype  # one dtype for the gradient, input and weight of the conv's backward
            grad_a, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad.to(dtype), a.to(dtype), weight, [weight.shape[0]] if ctx.has_bias else None,
                list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups, mask)
            grad_z = grad_gate = None
            if mask[0]:
                grad_z, grad_gate = _act_backward(grad_a.to(a.dtype), z, a, gate, ctx.kind)
            if grad_w is not None:
                grad_w = grad_w.to(ctx.param_dtype)
            if grad_b is not None:
                grad_b = grad_b.to(ctx.param_dtype)
        return grad_z, None, grad_gate, None, None, None, grad_w, grad_b


def bn_act_conv(z: torch.Tensor, y: torch.Tensor, gate: Optional[torch.Tensor], bn: nn.BatchNorm2d, kind: str,
                conv: nn.Conv2d) -> torch.Tensor:
    """``conv(act(z))`` of ``z = bn(y)`` (just computed; ``bn`` unchanged until backward), ``act`` one of
    ``'silu'`` and ``'relu6'`` (of ``z * gate`` when a gate is given); keeps ``y`` and ``gate`` only."""
    return _BNActConv.apply(z, y, gate, bn, kind, conv, conv.weight, conv.bias)


def _memory_saving_call() -> bool:
    """True in an autograd forward of eager PyTorch (not scripting, tracing, compiling or exporting)."""
    return torch.is_grad_enabled() and not torch.jit.is_scripting() and not torch.jit.is_tracing() \
        and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling()


def _plain_conv(conv: nn.Module) -> bool:
    return type(conv) is nn.Conv2d and conv.padding_mode == 'zeros' and isinstance(conv.padding, tuple)


def _plain_cba(m: nn.Module, act: type) -> bool:
    """A :class:`ConvBnAct`: plain conv, local BN, no dropout or blur, activation ``act`` (nn.Identity: none)."""
    return isinstance(m, ConvBnAct) and getattr(m, 'aa', None) is None and _plain_conv(m.conv) \
        and _local_bn(m.bn) and isinstance(m.drop, nn.Identity) and type(m.act) is act


@register_notrace_module
class MemEfficientConvBnAct(ConvBnAct):
    """:class:`ConvBnAct` with SiLU whose training forward keeps only the BN input (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _memory_saving_call() or not _plain_cba(self, nn.SiLU):
            return super().forward(x)
        return self._forward_saving(x)

    @torch.jit.unused
    def _forward_saving(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return silu_after_bn(self.bn(y), y, self.bn)


def _se_gate(se: SEModule, x: torch.Tensor) -> torch.Tensor:
    """The gate of timm's ``SEModule`` (its forward without the final multiply)."""
    x_se = se.fc1(x.mean((2, 3), keepdim=True))
    return se.gate(se.fc2(se.act(se.bn(x_se))))


@register_notrace_module
class MemEfficientLinearBottleneck(LinearBottleneck):
    """timm's ReXNet v1 block whose training forward keeps, of the expanded width, only the two conv
    outputs before their BN (see the module); any other call runs timm's forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _memory_saving_call() or not self._fusable():
            return super().forward(x)
        return self._forward_saving(x)

    def _fusable(self) -> bool:
        return (self.conv_exp is None or _plain_cba(self.conv_exp, nn.SiLU)) \
            and _plain_cba(self.conv_dw, nn.Identity) and _plain_cba(self.conv_pwl, nn.Identity) \
            and type(self.act_dw) is nn.ReLU6 \
            and (self.se is None or (type(self.se) is SEModule and not self.se.add_maxpool))

    @torch.jit.unused
    def _forward_saving(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.conv_exp is None:
            x = self.conv_dw.conv(x)
        else:  # 1x1 conv -> BN -> [SiLU -> depthwise conv]
            y = self.conv_exp.conv(x)
            x = bn_act_conv(self.conv_exp.bn(y), y, None, self.conv_exp.bn, 'silu', self.conv_dw.conv)
        # BN -> [(* SE gate) -> ReLU6 -> 1x1 conv] -> BN
        z = self.conv_dw.bn(x)
        gate = None if self.se is None else _se_gate(self.se, z)
        x = self.conv_pwl.bn(bn_act_conv(z, x, gate, self.conv_dw.bn, 'relu6', self.conv_pwl.conv))
        if self.use_shortcut:
            if self.drop_path is not None:
                x = self.drop_path(x)
            x = torch.cat([x[:, 0:self.in_channels] + shortcut, x[:, self.in_channels:]], dim=1)
        return x


def convert_mem_efficient(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch, in place, every conv-BN-SiLU (timm ``ConvNormAct``, first split by
    :func:`~rexnet_backbones.models.conv_bn_act.split_norm_act`) to :class:`MemEfficientConvBnAct` and every
    timm ``LinearBottleneck`` to :class:`MemEfficientLinearBottleneck` (``enabled=False``: back to
    :class:`ConvBnAct` and timm's ``LinearBottleneck``; the split stays, it changes no output); returns
    ``model``. Parameters, buffers, ``state_dict`` keys and every output are unchanged; a training step keeps
    fewer tensors. Other modules are left as they are (ReXNet-lite's in-place ReLU6 already keeps one tensor
    per layer)."""
    split_norm_act(model)
    swaps = {ConvBnAct: MemEfficientConvBnAct, LinearBottleneck: MemEfficientLinearBottleneck}
    if not enabled:
        swaps = {new: old for old, new in swaps.items()}
    for module in model.modules():
        new = swaps.get(type(module))
        if new is MemEfficientConvBnAct and type(module.act) is not nn.SiLU:
            continue
        if new is not None:
            module.__class__ = new  # a subclass adding no state (as torch.nn.utils.parametrize does)
    return model
