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

import importlib
import json
import os
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..cli import InvalidInputError
from ..sources import build_source, default_input_size  # noqa: F401  (default_input_size: moved there)

__all__ = [
    'DeployDependencyError', 'OnnxVerificationError', 'ExportResult', 'TensorMode', 'STRUCTURE_KEY',
    'require', 'build_source_model', 'default_input_size', 'export_onnx', 'verify_onnx',
    'flatten_outputs', 'unflatten_outputs', 'read_structure', 'make_session',
]

INSTALL_HINT = "pip install -e '.[deploy]'"
#: metadata key holding the nesting of the model's outputs (JSON; 0 = tensor, list = tuple)
STRUCTURE_KEY = 'rexnet_backbones.output_structure'
BACKENDS = ('onnxruntime', 'openvino')
DEFAULT_OPSET = 18

PathLike = Union[str, 'os.PathLike[str]']
Structure = Union[int, List[Any]]


class DeployDependencyError(ImportError):
    """An optional deployment package (onnx, onnxruntime, openvino) is not installed."""


class OnnxVerificationError(AssertionError):
    """The ONNX model does not reproduce the PyTorch outputs within the tolerance."""


def require(module: str) -> Any:
    """Import ``module`` or raise :class:`DeployDependencyError` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DeployDependencyError(
            f'{module} is not installed (needed for ONNX export and inference): {INSTALL_HINT} '
            f'installs onnx, onnxruntime and openvino. Original error: {e}') from e


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
                       trusted: Optional[bool] = None) -> Tuple[nn.Module, Tuple[int, int]]:
    """The eval-mode module to export for ``source`` and its default input size ``(H, W)``.

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
    return model, src.input_size


# ---------------------------------------------------------------------------------------------- outputs
def flatten_outputs(out: Any) -> Tuple[List[torch.Tensor], Structure]:
    """Flat list of output tensors (in torch.onnx's order) and the nesting to rebuild them."""
    if isinstance(out, torch.Tensor):
        return [out], 0
    if isinstance(out, (tuple, list)):
        flat: List[torch.Tensor] = []
        structure = []
        for o in out:
            f, s = flatten_outputs(o)
            flat.extend(f)
            structure.append(s)
        return flat, structure
    raise TypeError(f'cannot export an output of type {type(out).__name__}: only tensors and '
                    'tuples/lists of tensors')


def unflatten_outputs(flat: Sequence[Any], structure: Structure) -> Any:
    """Inverse of :func:`flatten_outputs` (tuples for the nested levels)."""
    it = iter(flat)

    def build(s: Structure) -> Any:
        return next(it) if s == 0 else tuple(build(c) for c in s)

    out = build(structure)
    if next(it, None) is not None:
        raise ValueError('more outputs than the structure describes')
    return out


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
                backend: str = 'onnxruntime', num_threads: Optional[int] = None) -> ExportResult:
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
        result.max_abs_diff = verify_onnx(model, out_file, shapes, atol=atol, backend=backend,
                                          num_threads=num_threads)
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


# ---------------------------------------------------------------------------------------------- inference
class _Session:
    """One compiled ONNX model: ``run(x) -> list of numpy outputs`` (in the file's output order)."""

    def __init__(self, onnx_file: PathLike, backend: str = 'onnxruntime', num_threads: Optional[int] = None):
        if backend not in BACKENDS:
            raise ValueError(f'unknown backend {backend!r}; choose one of {BACKENDS}')
        if not osp.isfile(str(onnx_file)):
            raise FileNotFoundError(f'ONNX file not found: {onnx_file}')
        self.backend = backend
        if backend == 'onnxruntime':
            ort = require('onnxruntime')
            opts = ort.SessionOptions()
            if num_threads:
                opts.intra_op_num_threads = num_threads
            self._session = ort.InferenceSession(str(onnx_file), opts, providers=['CPUExecutionProvider'])
            self._input = self._session.get_inputs()[0].name
            self.output_names = [o.name for o in self._session.get_outputs()]
            dims = list(self._session.get_inputs()[0].shape)
        else:
            ov = require('openvino')
            config = {'INFERENCE_NUM_THREADS': num_threads} if num_threads else {}
            # f32 inference precision: OpenVINO may otherwise pick bf16/f16 on capable CPUs
            config['INFERENCE_PRECISION_HINT'] = 'f32'
            self._compiled = ov.Core().compile_model(str(onnx_file), 'CPU', config)
            self.output_names = [o.get_any_name() for o in self._compiled.outputs]
            dims = [d.get_length() if d.is_static else None for d in self._compiled.inputs[0].get_partial_shape()]
        #: (H, W) when the file has a fixed spatial input size, else None
        self.fixed_hw = tuple(dims[2:]) if len(dims) == 4 and all(isinstance(d, int) for d in dims[2:]) else None

    def run(self, x: Any) -> List[Any]:
        import numpy as np
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().float().numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.fixed_hw is not None and tuple(x.shape[2:]) != self.fixed_hw:
            raise ValueError(f'the ONNX file has a fixed input size {self.fixed_hw[0]} x {self.fixed_hw[1]} (its model '
                             f'does not allow dynamic H and W), got an input of {x.shape[2]} x {x.shape[3]}: '
                             'export it again with --input-size H W of the (padded) test images')
        if self.backend == 'onnxruntime':
            return self._session.run(None, {self._input: x})
        result = self._compiled(x)
        return [result[o] for o in self._compiled.outputs]


def make_session(onnx_file: PathLike, backend: str = 'onnxruntime', num_threads: Optional[int] = None) -> _Session:
    """Load ``onnx_file`` into ONNX Runtime (CPU) or OpenVINO (CPU, f32)."""
    return _Session(onnx_file, backend, num_threads)


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
            r = r.detach().float().numpy()
            if tuple(g.shape) != tuple(r.shape):
                raise OnnxVerificationError(f'output {name!r} for input {shape}: {backend} shape '
                                            f'{tuple(g.shape)} != PyTorch shape {tuple(r.shape)}')
            d = float(abs(g.astype('float64') - r.astype('float64')).max()) if r.size else 0.0
            if not d <= atol:
                raise OnnxVerificationError(f'output {name!r} for input {shape}: max |{backend} - '
                                            f'PyTorch| = {d:.3g} > atol {atol:g}')
            worst = max(worst, d)
        diffs[shape] = worst
    return diffs
