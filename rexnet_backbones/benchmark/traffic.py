"""The memory-traffic model of the roofline: bytes a forward pass moves, counted per traced op by a
``mmengine.analysis.JitModelAnalysis`` (the base of ``FlopAnalyzer`` and ``ActivationAnalyzer``), so
that it splits per module like their counts.

The model (:data:`TRAFFIC_MODEL`): each conv or matmul reads its input, weights and bias and writes its
output once; a BatchNorm is folded into the conv before it and an activation is fused into the op that
produces its input (both move nothing); every other element-wise op (add, mul, ...), pooling/mean,
upsampling and concatenation reads each of its tensor inputs and writes its output once; views,
slices and copies that are only a layout change move nothing. Bytes are the element size of the
traced dtype (4 for fp32). Ops outside the model are listed as unsupported.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
import torch.nn as nn
from mmengine.analysis.jit_analysis import JitModelAnalysis
from mmengine.analysis.jit_handles import get_shape

__all__ = ['TRAFFIC_MODEL', 'TrafficAnalyzer', 'value_bytes']

TRAFFIC_MODEL = ('each conv/matmul reads its input, weights and bias and writes its output once; BN folded '
                 'into the conv before it, activations fused into the op before them (0 bytes); other '
                 'element-wise ops, pooling/mean, upsampling and concatenation read each tensor input and '
                 'write the output once; views and slices are free; bytes of the traced dtype (fp32: 4)')

_ELEMENT_BYTES = {'Float': 4, 'Double': 8, 'Half': 2, 'BFloat16': 2, 'Long': 8, 'Int': 4, 'Short': 2,
                  'Char': 1, 'Byte': 1, 'Bool': 1}

#: BatchNorm (folded) and activations (fused): no traffic of their own
_FREE_OPS = ('aten::batch_norm', 'aten::relu', 'aten::relu_', 'aten::relu6', 'aten::relu6_', 'aten::hardtanh',
             'aten::hardtanh_', 'aten::silu', 'aten::silu_', 'aten::sigmoid', 'aten::sigmoid_',
             'aten::hardswish', 'aten::hardswish_', 'aten::hardsigmoid', 'aten::hardsigmoid_', 'aten::gelu',
             'aten::leaky_relu', 'aten::leaky_relu_', 'aten::tanh', 'aten::tanh_', 'aten::clamp',
             'aten::clamp_', 'aten::clamp_min', 'aten::clamp_min_', 'aten::dropout')
#: ops that read their tensor inputs and write their output once
_READ_WRITE_OPS = ('aten::_convolution', 'aten::addmm', 'aten::linear', 'aten::matmul', 'aten::mm', 'aten::bmm',
                   'aten::einsum', 'aten::add', 'aten::add_', 'aten::sub', 'aten::sub_', 'aten::mul',
                   'aten::mul_', 'aten::div', 'aten::div_', 'aten::mean', 'aten::sum', 'aten::adaptive_avg_pool2d',
                   'aten::avg_pool2d', 'aten::max_pool2d', 'aten::max_pool2d_with_indices',
                   'aten::upsample_nearest2d', 'aten::upsample_bilinear2d', 'aten::cat', 'aten::softmax',
                   'aten::group_norm', 'aten::layer_norm', 'aten::constant_pad_nd')


def value_bytes(val: Any) -> int:
    """Bytes of a traced tensor value (a tensor list: the sum of its tensors); 0 for anything else."""
    kind = val.type().kind()
    if kind == 'ListType':
        return sum(value_bytes(v) for v in val.node().inputs())
    if kind != 'TensorType' or not val.isCompleteTensor():
        return 0
    numel = 1
    for size in get_shape(val):
        numel *= size
    return numel * _ELEMENT_BYTES.get(val.type().scalarType(), 4)


def _read_write(inputs: List[Any], outputs: List[Any]) -> int:
    return sum(value_bytes(v) for v in inputs) + value_bytes(outputs[0])


def _free(inputs: List[Any], outputs: List[Any]) -> int:
    return 0


class TrafficAnalyzer(JitModelAnalysis):
    """Bytes moved per module under :data:`TRAFFIC_MODEL` (``total()``, ``by_module()``, ...)."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor) -> None:
        super().__init__(model=model, inputs=inputs)
        handles: Dict[str, Any] = {op: _read_write for op in _READ_WRITE_OPS}
        handles.update({op: _free for op in _FREE_OPS})
        self.set_op_handle(**handles)
