"""The paths a model is timed on with ``backends``: eager torch, ``channels_last``, ``torch.compile``,
ONNX Runtime and OpenVINO (sessions of :mod:`rexnet_backbones.deploy.runtime`), each for the model as
built and/or its deploy form (:func:`rexnet_backbones.deploy.deploy_model`), in fp32, bf16 and (the ONNX
runtimes, on a post-training int8 file of :func:`rexnet_backbones.deploy.quantize.quantize_onnx`) int8."""
from __future__ import annotations

import functools
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..deploy import deploy_model, export_onnx, make_session
from .models import Batch, BuiltModel, TensorForward
from .settings import BF16_BACKENDS, INT8_BACKENDS, TORCH_BACKENDS, Settings, log

__all__ = ['BackendRun', 'MakeModule', 'Calibration', 'module_factory', 'build_runs', 'error_line']

#: ``make(deploy, residual)``: the module to run, as built or a deploy copy (``residual`` of deploy_model)
MakeModule = Callable[[bool, str], nn.Module]
#: ``calibration()``: the int8 calibration inputs (arrays of the timed input's shape) and what they are
Calibration = Callable[[], Tuple[List[Any], str]]


@dataclass
class BackendRun:
    """One (model, backend, deploy form, precision) path: ``call()`` is what is timed."""
    key: str
    backend: str
    deploy: bool
    precision: str
    call: Callable[[], Any]
    info: Dict[str, Any] = field(default_factory=dict)


def error_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters) for the report."""
    return f'{type(e).__name__}: {e}'.splitlines()[0][:300]


def module_factory(built: BuiltModel, batch: Batch, channel_multiple: int) -> MakeModule:
    """How :func:`build_runs` gets the module of each path: the timed module as built (shared), or
    a deploy copy (of the whole detector, called as in ``batch``, unless only its backbone is timed)."""
    def make(deploy: bool, residual: str) -> nn.Module:
        if built.is_timm or built.backbone_only:
            base = built.backbone
            return deploy_model(base, residual=residual, channel_multiple=channel_multiple) if deploy else base
        if not deploy:
            return batch.forward
        detector = deploy_model(built.model, residual=residual, channel_multiple=channel_multiple)
        return TensorForward(detector, batch.data_samples)
    return make


def _has_precision(backend: str, deploy: bool, precision: str) -> bool:
    # bf16: the models as built only, on the backends that have it; int8: both forms, on the ONNX runtimes
    if precision == 'int8':
        return backend in INT8_BACKENDS
    return precision == 'fp32' or (backend in BF16_BACKENDS and not deploy)


def _column(key: str, precision: str) -> str:
    return key if precision == 'fp32' else f'{key} {precision}'


def _torch_call(module: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], Any]:
    def call() -> Any:
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            return module(x)
    return call


def _torch_runs(module: nn.Module, x: torch.Tensor, backend: str, deploy: bool, key: str,
                precisions: Sequence[str]) -> List[BackendRun]:
    if backend != 'eager':
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if backend == 'compile':
        module = torch.compile(module)
    memory_format = 'channels_last' if backend != 'eager' else 'contiguous'
    return [BackendRun(_column(key, p), backend, deploy, p, _torch_call(module, x, p == 'bf16'),
                       dict(memory_format=memory_format))
            for p in precisions if _has_precision(backend, deploy, p)]


class _GraphFiles:
    """The ONNX files of one form of one model: fp32 (exported once, for both runtimes) and int8 (quantized
    from it once, calibrated on ``calibration()``)."""

    def __init__(self, make_module: MakeModule, deploy: bool, x: torch.Tensor, tmp_dir: str, label: str,
                 calibration: Optional[Calibration]):
        self.make_module, self.deploy, self.x, self.tmp_dir, self.label = make_module, deploy, x, tmp_dir, label
        self.calibration = calibration
        self._fp32: Optional[str] = None
        self._int8: Optional[str] = None
        self.int8_info: Dict[str, Any] = {}
        self._error: Optional[BaseException] = None

    def fp32(self) -> str:
        if self._error is not None:  # a failed export is not tried again for the next column
            raise self._error
        if self._fp32 is None:
            try:
                self._fp32 = _export(self.make_module(self.deploy, 'pad'), self.x, self.tmp_dir, self.label,
                                     self.deploy)
            except Exception as e:  # noqa: B902  (kept for the other columns of this file)
                self._error = e
                raise
        return self._fp32

    def int8(self) -> str:
        if self._int8 is None:
            from ..deploy.quantize import quantize_onnx
            if self.calibration is None:
                raise ValueError('int8 needs calibration inputs')
            fp32 = self.fp32()
            t0 = time.time()
            inputs, source = self.calibration()
            path = fp32[:-len('.onnx')] + '_int8.onnx'
            result = quantize_onnx(fp32, path, inputs)
            self.int8_info = dict(quantization='onnxruntime quantize_static: QDQ, int8 per-channel weights, uint8 '
                                  f'activations, {result.method}', calibration=source,
                                  calibration_inputs=result.calibration_inputs)
            log(f'{self.label}: int8 {osp.basename(path)} calibrated on {len(inputs)} {source} input(s) '
                f'in {time.time() - t0:.0f} s')
            self._int8 = path
        return self._int8


def _graph_run(files: _GraphFiles, x: torch.Tensor, backend: str, column: str, precision: str,
               settings: Settings) -> BackendRun:
    int8 = precision == 'int8'
    # OpenVINO with PERFORMANCE_HINT=LATENCY; idle ONNX Runtime threads must not spin into the
    # next (interleaved) path. int8: the QDQ file, its other layers in fp32
    session = make_session(files.int8() if int8 else files.fp32(), backend, settings.threads,
                           precision='fp32' if int8 else precision, latency_hint=True, spinning=False)
    info = dict(session.info)
    if int8:
        info.update(files.int8_info)
        if 'inference_precision' in info:
            info['inference_precision'] = f'int8 + {info["inference_precision"]}'
    return BackendRun(column, backend, files.deploy, precision, functools.partial(session.run, x.numpy()), info)


def _export(module: nn.Module, x: torch.Tensor, tmp_dir: str, label: str, deploy: bool) -> str:
    t0 = time.time()
    name = f'{label}{"_deploy" if deploy else ""}.onnx'.replace('/', '_')
    path = osp.join(tmp_dir, name)
    export_onnx(module, path, tuple(x.shape), dynamic_batch=False, dynamic_spatial=False)
    log(f'{label}: exported {name} in {time.time() - t0:.0f} s')
    return path


def build_runs(make_module: MakeModule, x: torch.Tensor, settings: Settings, tmp_dir: str,
               label: str, calibration: Optional[Calibration] = None) -> Tuple[List[BackendRun], Dict[str, str]]:
    """The paths of one model for ``settings.backends`` x deploy forms x precisions, on input ``x``
    (``calibration``: the inputs the int8 files are calibrated on).

    Returns the paths and, per column key, the error of a path that could not be built (one
    failing path does not stop the others).
    """
    runs: List[BackendRun] = []
    errors: Dict[str, str] = {}
    for deploy in settings.deploy_variants:
        suffix = '+deploy' if deploy else ''
        files = _GraphFiles(make_module, deploy, x, tmp_dir, label, calibration)
        for backend in settings.backends:
            key = backend + suffix
            if backend in TORCH_BACKENDS:
                try:
                    runs += _torch_runs(make_module(deploy, 'inplace'), x, backend, deploy, key,
                                        settings.precisions)
                except Exception as e:  # noqa: B902  (one failing path must not stop the others)
                    errors[key] = error_line(e)
                    log(f'{label}: {key} failed: {errors[key]}')
                continue
            for p in settings.precisions:
                if not _has_precision(backend, deploy, p):
                    continue
                column = _column(key, p)
                try:
                    runs.append(_graph_run(files, x, backend, column, p, settings))
                except Exception as e:  # noqa: B902  (one failing path must not stop the others)
                    errors[column] = error_line(e)
                    log(f'{label}: {column} failed: {errors[column]}')
    return runs, errors
