"""Post-training static int8 quantization of an exported ONNX model with ONNX Runtime.

:func:`quantize_onnx` takes the fp32 file of :func:`rexnet_backbones.deploy.export_onnx` and a few
calibration inputs (already preprocessed: :mod:`rexnet_backbones.deploy.calibration` makes them from an
image folder) and writes an int8 model with ONNX Runtime's ``quantize_static``: QDQ format (``QuantizeLinear``
/ ``DequantizeLinear`` pairs that ONNX Runtime fuses into int8 kernels, and that OpenVINO reads as well),
int8 weights per output channel, uint8 activations with ranges from the calibration inputs (``reduce_range``
off: the CPUs with AVX512-VNNI / AVX-VNNI accumulate 8-bit products without saturation). The output nesting
stored by the exporter is kept, so the file is tested like the fp32 one (``tools/test.py --backend
onnxruntime``). The file is written atomically (:func:`rexnet_backbones.checkpoint.atomic_write`).
"""
from __future__ import annotations

import os.path as osp
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch.nn as nn

from ..checkpoint import atomic_write
from ..errors import InvalidInputError
from .onnx import ExportResult, export_onnx
from .runtime import PathLike, make_session, max_abs_diff, require

__all__ = ['CALIBRATION_METHODS', 'QuantizeResult', 'Int8Export', 'InputsReader', 'quantize_onnx', 'count_qdq_nodes',
           'int8_deviation', 'export_int8']

#: calibration methods of ``quantize_static`` by the names the tools take
CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')


@dataclass
class QuantizeResult:
    """What :func:`quantize_onnx` wrote."""
    path: str
    calibration_inputs: int
    method: str
    #: number of QuantizeLinear / DequantizeLinear nodes in the written graph
    quantize_nodes: int
    dequantize_nodes: int


class InputsReader:
    """ONNX Runtime's ``CalibrationDataReader`` over a list of input arrays (``N x C x H x W`` float32) of one
    input (its abstract base recognises the class by ``get_next``; nothing here imports onnxruntime)."""

    def __init__(self, input_name: str, inputs: Sequence[Any]):
        import numpy as np
        self.input_name = input_name
        self.inputs = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
        self._iter: Iterator[Any] = iter(self.inputs)

    def get_next(self) -> Optional[Dict[str, Any]]:
        x = next(self._iter, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._iter = iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)


def count_qdq_nodes(onnx_file: PathLike) -> Dict[str, int]:
    """Number of nodes per op type of ``onnx_file`` (e.g. ``['QuantizeLinear']``)."""
    onnx = require('onnx')
    counts: Dict[str, int] = {}
    for node in onnx.load(str(onnx_file), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _copy_metadata(src: Any, dst: Any) -> None:
    have = {p.key for p in dst.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            entry = dst.metadata_props.add()
            entry.key, entry.value = p.key, p.value


def _output_nodes(model: Any) -> List[str]:
    """Names of the nodes that compute the graph's outputs."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if outputs.intersection(n.output)]


def quantize_onnx(fp32_file: PathLike, out_file: PathLike, inputs: Sequence[Any], *, method: str = 'minmax',
                  per_channel: bool = True, op_types: Optional[List[str]] = None,
                  fp32_outputs: bool = True) -> QuantizeResult:
    """Quantize ``fp32_file`` to int8 (QDQ, int8 per-channel weights, uint8 activations) into ``out_file``.

    Args:
        inputs: calibration inputs, each an ``N x C x H x W`` array as the model takes it (preprocessed).
        method: calibration of the activation ranges: ``'minmax'``, ``'entropy'`` or ``'percentile'``
            (99.999%) of ONNX Runtime.
        per_channel: one weight scale per output channel (else one per tensor).
        op_types: the operator types to quantize (default: all ONNX Runtime can).
        fp32_outputs: keep the layers that compute the model's outputs (a detector's class and box convs) in fp32.
    """
    if method not in CALIBRATION_METHODS:
        raise InvalidInputError(f'unknown calibration method {method!r}; choose one of {list(CALIBRATION_METHODS)}')
    if not inputs:
        raise InvalidInputError('int8 quantization needs at least one calibration input')
    onnx = require('onnx')
    q = require('onnxruntime.quantization')
    fp32 = onnx.load(str(fp32_file))
    ort = require('onnxruntime')
    # the calibration sessions warn about every initializer the optimiser drops: errors only, then ORT's default
    ort.set_default_logger_severity(3)
    try:
        _quantize(onnx, q, fp32, str(fp32_file), out_file, inputs, method, per_channel, op_types, fp32_outputs)
    finally:
        ort.set_default_logger_severity(2)
    counts = count_qdq_nodes(out_file)
    return QuantizeResult(str(out_file), len(inputs), method, counts.get('QuantizeLinear', 0),
                          counts.get('DequantizeLinear', 0))


def _quantize(onnx: Any, q: Any, fp32: Any, fp32_file: str, out_file: PathLike, inputs: Sequence[Any], method: str,
              per_channel: bool, op_types: Optional[List[str]], fp32_outputs: bool) -> None:
    input_name = fp32.graph.input[0].name
    calibrate = {'minmax': q.CalibrationMethod.MinMax, 'entropy': q.CalibrationMethod.Entropy,
                 'percentile': q.CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix='rexnet_int8_') as tmp:
        prepared, quantized = osp.join(tmp, 'prepared.onnx'), osp.join(tmp, 'int8.onnx')
        # shape inference + ORT's graph optimisations (BN folding, ...), as ONNX Runtime recommends first
        q.quant_pre_process(fp32_file, prepared, skip_symbolic_shape=True)
        exclude = _output_nodes(onnx.load(prepared)) if fp32_outputs else None
        q.quantize_static(prepared, quantized, InputsReader(input_name, inputs), quant_format=q.QuantFormat.QDQ,
                          per_channel=per_channel, reduce_range=False, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=calibrate,
                          op_types_to_quantize=op_types, nodes_to_exclude=exclude,
                          extra_options=dict(CalibTensorRangeSymmetric=False, CalibMovingAverage=False))
        model = onnx.load(quantized)
        _copy_metadata(fp32, model)
        atomic_write(out_file, model.SerializeToString())


def int8_deviation(fp32_file: PathLike, int8_file: PathLike, inputs: Sequence[Any],
                   num_threads: Optional[int] = None) -> Tuple[float, float]:
    """``(max |int8 - fp32|, max |fp32|)`` over all outputs of the two files in ONNX Runtime on ``inputs``."""
    import numpy as np
    fp32, int8 = make_session(fp32_file, num_threads=num_threads), make_session(int8_file, num_threads=num_threads)
    diff = scale = 0.0
    for x in inputs:
        ref = fp32.run(x)
        diff = max(diff, max_abs_diff(int8.run(x), ref))
        scale = max(scale, max(float(np.abs(r).max()) for r in ref))
    return diff, scale


@dataclass
class Int8Export:
    """What :func:`export_int8` wrote: the fp32 export it quantized, the quantization, and the deviation of
    the int8 file from the fp32 one on (up to 4 of) the calibration inputs."""
    export: ExportResult
    quantize: QuantizeResult
    images: List[str]
    max_abs_diff: float
    fp32_max_abs: float
    compared: int


def export_int8(model: nn.Module, out_file: PathLike, input_shape: Sequence[int], images: Sequence[str], *,
                cfg: Any = None, scope: Optional[str] = None, preprocess_model: Optional[nn.Module] = None,
                method: str = 'minmax', per_channel: bool = True, num_threads: Optional[int] = None,
                **export_kwargs: Any) -> Int8Export:
    """Export ``model`` (as :func:`~rexnet_backbones.deploy.export_onnx`, with ``export_kwargs``: ``verify``
    checks the fp32 graph) and quantize it to int8 into ``out_file``, calibrated on ``images`` preprocessed as
    the test data of ``preprocess_model`` (default ``model``; ``cfg``/``scope`` for mm models: see
    :func:`~rexnet_backbones.deploy.calibration.calibration_inputs`)."""
    from .calibration import calibration_inputs
    input_shape = tuple(int(s) for s in input_shape)
    with tempfile.TemporaryDirectory(prefix='rexnet_int8_export_') as tmp:
        fp32_file = osp.join(tmp, 'fp32.onnx')
        exported = export_onnx(model, fp32_file, input_shape, num_threads=num_threads, **export_kwargs)
        fixed = None if exported.dynamic_spatial else input_shape[2:]
        inputs = calibration_inputs(preprocess_model or model, images, input_shape[2:], cfg, scope, fixed)
        result = quantize_onnx(fp32_file, out_file, inputs, method=method, per_channel=per_channel)
        compared = inputs[:4]
        diff, scale = int8_deviation(fp32_file, out_file, compared, num_threads)
    exported.path = str(out_file)
    return Int8Export(exported, result, list(images), diff, scale, len(compared))
