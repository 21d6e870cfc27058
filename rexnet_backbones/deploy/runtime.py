"""ONNX runtimes: the optional packages, one session over ONNX Runtime or OpenVINO, and the
output arrays they exchange with PyTorch (flattening in torch.onnx's order, max |difference|).

Used by the export check (:func:`rexnet_backbones.deploy.onnx.verify_onnx`), the ONNX models of
``tools/test.py`` (:mod:`rexnet_backbones.deploy.ort_model`) and the benchmark's graph backends.
``onnx``, ``onnxruntime`` and ``openvino`` are optional: ``pip install -e '.[deploy]'``.
"""
from __future__ import annotations

import importlib
import math
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import DeployDependencyError

__all__ = ['INSTALL_HINT', 'BACKENDS', 'require', 'OnnxSession', 'make_session',
           'flatten_outputs', 'unflatten_outputs', 'max_abs_diff']

INSTALL_HINT = "pip install -e '.[deploy]'"
BACKENDS = ('onnxruntime', 'openvino')

PathLike = Union[str, 'os.PathLike[str]']
#: nesting of a model's outputs (JSON in the ONNX metadata): 0 = one array, a list = a tuple
Structure = Union[int, List[Any]]


def require(module: str) -> Any:
    """Import ``module`` or raise :class:`DeployDependencyError` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise DeployDependencyError(
            f'{module} is not installed (needed for ONNX export and inference): {INSTALL_HINT} '
            f'installs onnx, onnxruntime and openvino. Original error: {e}') from e


# ---------------------------------------------------------------------------------------------- outputs
def flatten_outputs(out: Any) -> Tuple[List[Any], Structure]:
    """Flat list of output arrays (torch tensors or numpy arrays, in torch.onnx's order) and the
    nesting to rebuild them."""
    import numpy as np
    if isinstance(out, (torch.Tensor, np.ndarray)):
        return [out], 0
    if isinstance(out, (tuple, list)):
        flat: List[Any] = []
        structure = []
        for o in out:
            f, s = flatten_outputs(o)
            flat.extend(f)
            structure.append(s)
        return flat, structure
    raise TypeError(f'cannot export an output of type {type(out).__name__}: only tensors and '
                    'tuples/lists of tensors')


def _float64(x: Any) -> Any:
    import numpy as np
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _abs_diff(a: Any, b: Any) -> float:
    """Max |a - b| of two arrays of the same shape (tensors or numpy; 0 when empty)."""
    a, b = _float64(a), _float64(b)
    return float(abs(a - b).max()) if a.size else 0.0


def max_abs_diff(a: Any, b: Any) -> float:
    """Max |a - b| over two (nested) outputs, e.g. a PyTorch forward and a session's list;
    ``inf`` when their number of arrays or shapes differ."""
    fa, fb = flatten_outputs(a)[0], flatten_outputs(b)[0]
    if len(fa) != len(fb) or any(tuple(x.shape) != tuple(y.shape) for x, y in zip(fa, fb)):
        return math.inf
    return max((_abs_diff(x, y) for x, y in zip(fa, fb)), default=0.0)


def unflatten_outputs(flat: Sequence[Any], structure: Structure) -> Any:
    """Inverse of :func:`flatten_outputs` (tuples for the nested levels)."""
    it = iter(flat)

    def build(s: Structure) -> Any:
        return next(it) if s == 0 else tuple(build(c) for c in s)

    out = build(structure)
    if next(it, None) is not None:
        raise ValueError('more outputs than the structure describes')
    return out


# ---------------------------------------------------------------------------------------------- sessions
#: OpenVINO's INFERENCE_PRECISION_HINT per precision name
_OV_PRECISION = {'fp32': 'f32', 'bf16': 'bf16'}


class OnnxSession:
    """One compiled ONNX model: ``run(x) -> list of numpy outputs`` (in the file's output order);
    ``info`` records how it was compiled (runtime version, providers or the compiled properties)."""

    def __init__(self, onnx_file: PathLike, backend: str = 'onnxruntime', num_threads: Optional[int] = None,
                 *, precision: str = 'fp32', latency_hint: bool = False, spinning: bool = True):
        if backend not in BACKENDS:
            raise ValueError(f'unknown backend {backend!r}; choose one of {BACKENDS}')
        if precision not in _OV_PRECISION or (backend == 'onnxruntime' and precision != 'fp32'):
            raise ValueError(f'precision {precision!r} is not available on {backend}')
        if not osp.isfile(str(onnx_file)):
            raise FileNotFoundError(f'ONNX file not found: {onnx_file}')
        self.backend = backend
        if backend == 'onnxruntime':
            dims = self._open_ort(str(onnx_file), num_threads, spinning)
        else:
            dims = self._open_openvino(str(onnx_file), num_threads, precision, latency_hint)
        #: (H, W) when the file has a fixed spatial input size, else None
        self.fixed_hw = tuple(dims[2:]) if len(dims) == 4 and all(isinstance(d, int) for d in dims[2:]) else None

    def _open_ort(self, onnx_file: str, num_threads: Optional[int], spinning: bool) -> List[Any]:
        ort = require('onnxruntime')
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
            opts.inter_op_num_threads = 1
        if not spinning:  # idle worker threads would spin and slow down other work between calls
            opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
        self._session = ort.InferenceSession(onnx_file, opts, providers=['CPUExecutionProvider'])
        self._input = self._session.get_inputs()[0].name
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.info: Dict[str, Any] = dict(providers=self._session.get_providers(), onnxruntime=ort.__version__,
                                         graph_optimization_level=str(opts.graph_optimization_level))
        return list(self._session.get_inputs()[0].shape)

    def _open_openvino(self, onnx_file: str, num_threads: Optional[int], precision: str,
                       latency_hint: bool) -> List[Any]:
        ov = require('openvino')
        config: Dict[str, Any] = {'PERFORMANCE_HINT': 'LATENCY'} if latency_hint else {}
        # an explicit inference precision: OpenVINO may otherwise pick bf16/f16 on capable CPUs
        config['INFERENCE_PRECISION_HINT'] = _OV_PRECISION[precision]
        if num_threads:
            config['INFERENCE_NUM_THREADS'] = num_threads
        self._compiled = ov.Core().compile_model(onnx_file, 'CPU', config)
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        prop = self._compiled.get_property
        self.info = dict(openvino=ov.__version__, requested=config,
                         inference_precision=_ov_str(prop('INFERENCE_PRECISION_HINT')),
                         execution_devices=[str(d) for d in prop('EXECUTION_DEVICES')],
                         performance_hint=str(prop('PERFORMANCE_HINT')),
                         num_threads=int(prop('INFERENCE_NUM_THREADS')))
        return [d.get_length() if d.is_static else None for d in self._compiled.inputs[0].get_partial_shape()]

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


def _ov_str(value: Any) -> str:
    to_string = getattr(value, 'to_string', None)
    return to_string() if callable(to_string) else str(value)


def make_session(onnx_file: PathLike, backend: str = 'onnxruntime', num_threads: Optional[int] = None, *,
                 precision: str = 'fp32', latency_hint: bool = False, spinning: bool = True) -> OnnxSession:
    """Load ``onnx_file`` into ONNX Runtime (CPU) or OpenVINO (CPU, ``precision`` f32 or bf16).

    ``latency_hint``: OpenVINO's ``PERFORMANCE_HINT=LATENCY``. ``spinning=False``: idle ONNX Runtime
    threads sleep (for timing other work between calls, as the benchmark's round-robin does).
    """
    return OnnxSession(onnx_file, backend, num_threads, precision=precision, latency_hint=latency_hint,
                    spinning=spinning)
