"""ONNX export of ReXNet models (timm, the mm backbone, mmdet detectors, mmseg segmentors) and its
verification with ``onnx.checker`` and ONNX Runtime (or OpenVINO) against PyTorch eager.

Detectors and segmentors are exported in ``mode='tensor'``: backbone + neck + head raw outputs.
Box decoding / NMS (mmdet's ``predict_by_feat``) and the resizing of segmentation logits stay in
Python (see :mod:`rexnet_backbones.deploy.ort_model`). The output nesting of the model (e.g. the
``(cls_scores, bbox_preds)`` lists of a RetinaNet head) is stored in the ONNX file's metadata
(:data:`STRUCTURE_KEY`) so that it can be rebuilt from the flat list of ONNX outputs.

``onnx``, ``onnxruntime`` and ``openvino`` are optional: ``pip install -e '.[deploy]'``.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import InvalidInputError, OnnxVerificationError
from ..sources import build_source
from .runtime import (PathLike, Structure, flatten_outputs, make_session,
                      max_abs_diff, require, unflatten_outputs)

__all__ = [
    'ExportResult', 'TensorMode', 'STRUCTURE_KEY',
    'require', 'build_source_model', 'export_onnx', 'verify_onnx',
    'flatten_outputs', 'unflatten_outputs', 'max_abs_diff', 'read_structure', 'make_session',
]

#: metadata key holding the nesting of the model's outputs (JSON; 0 = tensor, list = tuple)
STRUCTURE_KEY = 'rexnet_backbones.output_structure'
DEFAULT_OPSET = 18


# ---------------------------------------------------------------------------------------------- models
class TensorMode(nn.Module):
    """An mmdet detector / mmseg segmentor (``BaseModel``) as a plain module: ``forward(x)`` is its
    ``mode='tensor'`` forward, the raw outputs of backbone + neck + head."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x, None, mode='tensor')


def build_source_model(source: str, checkpoint: Optional[str] = None, features_only: bool = False,
                      fuse_bn: bool = False, *, checkpoint_prefix: Optional[str] = None,
                      trusted: Optional[bool] = None) -> Tuple[nn.Module, Any]:
    """The eval-mode module to export for ``source`` and the :class:`~rexnet_backbones.sources.Source` it came
    from (its ``input_size``, and for configs its ``cfg`` and ``scope``).

    ``source`` and ``checkpoint`` are what :func:`rexnet_backbones.sources.build_source` takes: a timm
    model name (``features_only`` gives the feature pyramid) or an mmdet/mmseg config (a file,
    ``mmdet::...``/``mmseg::...``), whose model is wrapped in :class:`TensorMode`; a checkpoint in any
    format the weights loader reads. ``fuse_bn`` folds BatchNorm into the convolutions first.
    """
    src = build_source(source, checkpoint, checkpoint_prefix=checkpoint_prefix, features_only=features_only,
                       out_indices=(0, 1, 2, 3, 4), trusted=trusted)
    if src.kind == 'config':  # a two-stage detector: one error naming what can be exported
        from ..mm.checks import check_exportable
        check_exportable(src.cfg.model, source)
    model = TensorMode(src.model).eval() if src.kind == 'config' else src.model
    if fuse_bn:
        from .fuse import fuse_bn as _fuse_bn
        model = _fuse_bn(model).eval()
    return model, src


# ---------------------------------------------------------------------------------------------- outputs
def _output_names(structure: Structure) -> List[str]:
    if structure == 0:
        return ['output']
    names: List[str] = []

    def walk(s: Structure, path: str) -> None:
        if s == 0:
            names.append(path)
        else:
            for i, c in enumerate(s):
                walk(c, f'{path}_{i}')

    walk(structure, 'output')
    return names


def read_structure(onnx_file: PathLike) -> Structure:
    """The output nesting stored by :func:`export_onnx` (a flat tuple if the file has none)."""
    onnx = require('onnx')
    model = onnx.load(str(onnx_file), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    if STRUCTURE_KEY in props:
        return json.loads(props[STRUCTURE_KEY])
    n = len(model.graph.output)
    return 0 if n == 1 else [0] * n


# ---------------------------------------------------------------------------------------------- export
@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote (and, with ``verify=True``, how close it is to PyTorch)."""
    path: str
    input_shape: Tuple[int, ...]
    output_names: List[str]
    structure: Structure
    dynamic_batch: bool
    dynamic_spatial: bool
    opset: int
    #: max |onnx - torch| over all outputs, per verified input shape (empty unless verified)
    max_abs_diff: Dict[Tuple[int, ...], float] = field(default_factory=dict)


def _example_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def export_onnx(model: nn.Module, out_file: PathLike, input_shape: Sequence[int] = (1, 3, 224, 224), *,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = True, dynamic_spatial: Optional[bool] = None,
                dynamo: bool = False, verify: bool = False, atol: float = 1e-4,
                backend: str = 'onnxruntime', reference: Optional[nn.Module] = None,
                num_threads: Optional[int] = None) -> ExportResult:
    """Export ``model`` (a module taking one ``N x C x H x W`` tensor) to ``out_file``.

    Args:
        input_shape: shape of the example input (also the first shape verified).
        opset: ONNX opset (>= 17).
        dynamic_batch: make the batch axis symbolic.
        dynamic_spatial: make H and W symbolic. ``None`` (default): where the model allows it,
            i.e. the dynamic export is tried on a second spatial size and, when it does not
            reproduce PyTorch there (sizes baked in while tracing, e.g. mmseg's ``Upsample``),
            the model is exported again with a fixed ``H x W`` and a warning says so.
        dynamo: use torch's ``torch.export``-based exporter instead of the TorchScript tracer
            (same graphs for ReXNet; the tracer is ~50x faster to export on CPU).
        verify: run :func:`verify_onnx` on the example input and on a second input with another
            batch size (and spatial size, when dynamic); ``max_abs_diff`` holds the results.
        atol / backend: tolerance and runtime (``'onnxruntime'`` or ``'openvino'``) of the checks.
        reference: the module ``verify`` compares with (default ``model``), e.g. the model before
            ``deploy_model``, so that the check covers the deploy transform too.
        num_threads: CPU threads of that runtime (default: its own, what the machine has).
    """
    if opset < 17:
        raise InvalidInputError(f'opset must be >= 17, got {opset}')
    require('onnx')
    if dynamo:
        require('onnxscript')
    model = model.eval()
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4:
        raise InvalidInputError(f'input_shape must be (N, C, H, W), got {input_shape}')
    out_file = str(out_file)
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)

    spatial = True if dynamic_spatial is None else bool(dynamic_spatial)
    names, structure = _export_once(model, out_file, input_shape, opset, dynamic_batch, spatial, dynamo)
    if dynamic_spatial is None:
        probe = (input_shape[0], input_shape[1], input_shape[2] + 32, input_shape[3] + 64)
        try:
            verify_onnx(model, out_file, [probe], atol=atol, backend=backend, check=False, num_threads=num_threads)
        except OnnxVerificationError as e:
            warnings.warn(f'{type(_unwrap(model)).__name__} does not allow dynamic spatial axes ({e}); '
                          f'exported with a fixed input size {input_shape[2]} x {input_shape[3]}')
            spatial = False
            names, structure = _export_once(model, out_file, input_shape, opset, dynamic_batch, spatial,
                                            dynamo)
    result = ExportResult(out_file, input_shape, names, structure, dynamic_batch, spatial, opset)
    if verify:
        shapes = [input_shape]
        second = list(input_shape)
        if dynamic_batch:
            second[0] += 1
        if spatial:
            second[2] += 32
            second[3] += 64
        if tuple(second) != input_shape:
            shapes.append(tuple(second))
        result.max_abs_diff = verify_onnx(model if reference is None else reference, out_file, shapes,
                                          atol=atol, backend=backend, num_threads=num_threads)
    return result


def _unwrap(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, TensorMode) else model


def _export_once(model: nn.Module, out_file: str, input_shape: Tuple[int, ...], opset: int,
                 dynamic_batch: bool, dynamic_spatial: bool, dynamo: bool) -> Tuple[List[str], Structure]:
    x = _example_input(input_shape)
    with torch.no_grad():
        flat, structure = flatten_outputs(model(x))
    names = _output_names(structure)
    input_axes: Dict[int, str] = {}
    if dynamic_batch:
        input_axes[0] = 'batch'
    if dynamic_spatial:
        input_axes.update({2: 'height', 3: 'width'})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=FutureWarning)
        if dynamo:
            dims = {a: torch.export.Dim.AUTO for a in input_axes}
            program = torch.onnx.export(model, (x,), None, dynamo=True, opset_version=opset,
                                        input_names=['input'], output_names=names,
                                        dynamic_shapes=(dims,) if dims else None, verbose=False,
                                        external_data=False)
            program.save(out_file, external_data=False)
        else:
            axes: Dict[str, Dict[int, str]] = {'input': input_axes} if input_axes else {}
            for name, t in zip(names, flat):
                a = {0: 'batch'} if dynamic_batch else {}
                if dynamic_spatial and t.dim() == 4:
                    a.update({2: f'{name}_height', 3: f'{name}_width'})
                if a:
                    axes[name] = a
            torch.onnx.export(model, (x,), out_file, dynamo=False, opset_version=opset,
                              input_names=['input'], output_names=names, dynamic_axes=axes or None,
                              do_constant_folding=True)
    _write_metadata(out_file, structure)
    return names, structure


def _write_metadata(path: str, structure: Structure) -> None:
    onnx = require('onnx')
    m = onnx.load(path)
    for p in list(m.metadata_props):
        if p.key == STRUCTURE_KEY:
            m.metadata_props.remove(p)
    entry = m.metadata_props.add()
    entry.key, entry.value = STRUCTURE_KEY, json.dumps(structure)
    onnx.save(m, path)


# ---------------------------------------------------------------------------------------------- verification
def verify_onnx(model: nn.Module, onnx_file: PathLike,
                input_shapes: Sequence[Sequence[int]] = ((1, 3, 224, 224),), *, atol: float = 1e-4,
                backend: str = 'onnxruntime', check: bool = True,
                num_threads: Optional[int] = None) -> Dict[Tuple[int, ...], float]:
    """Check ``onnx_file`` with ``onnx.checker`` (``check=True``) and compare every output of ``backend`` with
    PyTorch eager on seeded random inputs of each shape.

    Returns the max absolute difference per input shape; raises :class:`OnnxVerificationError`
    naming the output and shape when one differs by more than ``atol`` (or has another shape).
    """
    if check:
        require('onnx').checker.check_model(str(onnx_file), full_check=True)
    session = make_session(onnx_file, backend, num_threads)
    model = model.eval()
    diffs: Dict[Tuple[int, ...], float] = {}
    for i, shape in enumerate(input_shapes):
        shape = tuple(int(s) for s in shape)
        x = _example_input(shape, seed=i)
        with torch.no_grad():
            ref, _ = flatten_outputs(model(x))
        try:
            got = session.run(x)
        except Exception as e:
            raise OnnxVerificationError(f'{backend} failed on an input of shape {shape}: {e}') from e
        if len(got) != len(ref):
            raise OnnxVerificationError(f'{backend} gives {len(got)} outputs, PyTorch {len(ref)}')
        worst = 0.0
        for name, g, r in zip(session.output_names, got, ref):
            if tuple(g.shape) != tuple(r.shape):
                raise OnnxVerificationError(f'output {name!r} for input {shape}: {backend} shape '
                                            f'{tuple(g.shape)} != PyTorch shape {tuple(r.shape)}')
            d = max_abs_diff(g, r)
            if not d <= atol:
                raise OnnxVerificationError(f'output {name!r} for input {shape}: max |{backend} - '
                                            f'PyTorch| = {d:.3g} > atol {atol:g}')
            worst = max(worst, d)
        diffs[shape] = worst
    return diffs
