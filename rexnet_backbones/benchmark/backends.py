"""The paths a model is timed on with ``backends``: eager torch, ``channels_last``, ``torch.compile``,
ONNX Runtime and OpenVINO (sessions of :mod:`rexnet_backbones.deploy.runtime`), each for the model as
built and/or its deploy form (:func:`rexnet_backbones.deploy.deploy_model`), in fp32 and bf16."""
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
from .settings import BF16_BACKENDS, TORCH_BACKENDS, Settings, log

__all__ = ['BackendRun', 'MakeModule', 'module_factory', 'build_runs', 'error_line']

#: ``make(deploy, residual)``: the module to run, as built or a deploy copy (``residual`` of deploy_model)
MakeModule = Callable[[bool, str], nn.Module]


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
    # bf16: the models as built only, on the backends that have it
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


def _graph_runs(onnx_file: str, x: torch.Tensor, backend: str, deploy: bool, key: str,
                settings: Settings) -> List[BackendRun]:
    inputs = x.numpy()
    runs = []
    for p in settings.precisions:
        if not _has_precision(backend, deploy, p):
            continue
        # OpenVINO with PERFORMANCE_HINT=LATENCY; idle ONNX Runtime threads must not spin into the
        # next (interleaved) path
        session = make_session(onnx_file, backend, settings.threads, precision=p, latency_hint=True,
                               spinning=False)
        runs.append(BackendRun(_column(key, p), backend, deploy, p, functools.partial(session.run, inputs),
                               session.info))
    return runs


def _export(module: nn.Module, x: torch.Tensor, tmp_dir: str, label: str, deploy: bool) -> str:
    t0 = time.time()
    name = f'{label}{"_deploy" if deploy else ""}.onnx'.replace('/', '_')
    path = osp.join(tmp_dir, name)
    export_onnx(module, path, tuple(x.shape), dynamic_batch=False, dynamic_spatial=False)
    log(f'{label}: exported {name} in {time.time() - t0:.0f} s')
    return path


def build_runs(make_module: MakeModule, x: torch.Tensor, settings: Settings, tmp_dir: str,
               label: str) -> Tuple[List[BackendRun], Dict[str, str]]:
    """The paths of one model for ``settings.backends`` x deploy forms x precisions, on input ``x``.

    Returns the paths and, per column key, the error of a path that could not be built (one
    failing path does not stop the others).
    """
    runs: List[BackendRun] = []
    errors: Dict[str, str] = {}
    for deploy in settings.deploy_variants:
        suffix = '+deploy' if deploy else ''
        onnx_file: Optional[str] = None  # exported once per form, for both graph runtimes
        for backend in settings.backends:
            key = backend + suffix
            try:
                if backend in TORCH_BACKENDS:
                    runs += _torch_runs(make_module(deploy, 'inplace'), x, backend, deploy, key,
                                        settings.precisions)
                    continue
                if onnx_file is None:
                    onnx_file = _export(make_module(deploy, 'pad'), x, tmp_dir, label, deploy)
                runs += _graph_runs(onnx_file, x, backend, deploy, key, settings)
            except Exception as e:  # noqa: B902  (one failing path must not stop the others)
                errors[key] = error_line(e)
                log(f'{label}: {key} failed: {errors[key]}')
    return runs, errors
