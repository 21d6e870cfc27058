"""Measuring one model: build it, count params and FLOPs, then either time it per device and batch
size (latency) or prepare its backend paths, which :func:`time_backends` times round-robin over all
models (run ``i`` of every path before run ``i + 1``)."""
from __future__ import annotations

import functools
import gc
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..deploy.runtime import flatten_outputs, max_abs_diff
from .backends import BackendRun, build_runs, error_line, module_factory
from .costs import measure_costs
from .models import BuiltModel, describe_backbone
from .plan import PlannedModel
from .report import fmt_g, fmt_m
from .results import ModelResult, PathResult, Timing
from .settings import Settings, log

__all__ = ['PendingPaths', 'time_forward', 'measure_model', 'time_latency', 'prepare_paths', 'calibration_inputs',
           'time_backends']


@dataclass
class PendingPaths:
    """The backend paths of one model, built and waiting for the round-robin timing."""
    result: ModelResult
    runs: List[BackendRun]
    #: the eager fp32 output of the model as built on the paths' input (the parity reference)
    reference_out: Any


def time_forward(forward: nn.Module, inputs: torch.Tensor, runs: int, warmup: int, device: str) -> Timing:
    """``warmup`` untimed calls, then ``runs`` timed ones (on CUDA between synchronisations)."""
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            forward(inputs)
        sync()
        for _ in range(runs):
            start = time.perf_counter()
            forward(inputs)
            sync()
            times.append((time.perf_counter() - start) * 1000.0)
    return Timing.of(times, inputs.shape[0], runs, warmup)


def _describe(planned: PlannedModel, built: BuiltModel, settings: Settings,
              padded: Sequence[int]) -> ModelResult:
    """The result of ``planned`` before anything is measured: what the model is."""
    if built.is_timm:
        ident: Dict[str, Any] = dict(config=None, config_path=None, timm_model=planned.spec,
                                     out_indices=list(settings.out_indices), scope=None,
                                     model_type='timm features_only', backbone=planned.spec)
    else:
        ident = dict(config=planned.spec, config_path=planned.path, timm_model=None, out_indices=None,
                     scope=built.scope, model_type=str(built.cfg.model.get('type')),
                     backbone=describe_backbone(built.cfg.model.get('backbone', {})))
    return ModelResult(label=planned.label, kind=planned.kind, baseline=planned.baseline is not None,
                       disabled_pretrained_init=built.disabled, reference=planned.reference,
                       input_shape=list(settings.input_size), padded_input_shape=list(padded), **ident)


def measure_model(planned: PlannedModel, settings: Settings, devices: Sequence[str], index: int, total: int,
                  tmp_dir: str) -> Tuple[ModelResult, Optional[PendingPaths]]:
    """Params, FLOPs and (without backends) latency of one model; with backends also its paths."""
    height, width = settings.input_size
    prefix = f'[{index}/{total}] {planned.label}'
    t0 = time.time()
    log(f'{prefix}: building {planned.spec}')
    built = BuiltModel.build(planned.spec, settings.out_indices, settings.backbone_only)
    one = built.batch(1, height, width)
    result = _describe(planned, built, settings, one.inputs.shape[-2:])
    log(f'{prefix}: counting FLOPs at {height}x{width} (padded '
        f'{one.inputs.shape[-2]}x{one.inputs.shape[-1]})')
    costs = result.costs = measure_costs(built, one)
    log(f'{prefix}: params {fmt_m(costs.params)}M (backbone {fmt_m(costs.backbone_params)}M)'
        f', GFLOPs {fmt_g(costs.flops)} (backbone {fmt_g(costs.backbone_flops)})')
    pending = None
    if settings.backends:
        pending = prepare_paths(built, result, settings, tmp_dir)
    elif settings.runs > 0:
        result.latency = time_latency(built, settings, devices, prefix)
    result.measure_seconds = round(time.time() - t0, 1)
    del built, one
    gc.collect()
    return result, pending


def time_latency(built: BuiltModel, settings: Settings, devices: Sequence[str],
                 prefix: str) -> Dict[str, Dict[str, Timing]]:
    """Timing per device and batch size (str) of the timed call."""
    height, width = settings.input_size
    latency: Dict[str, Dict[str, Timing]] = {}
    for device in devices:
        built.model.to(device)
        per_bs: Dict[str, Timing] = {}
        for bs in settings.batch_sizes:
            batch = built.batch(bs, height, width)
            log(f'{prefix}: timing {device} batch {bs} ({settings.warmup} warm-up + '
                f'{settings.runs} runs)')
            timing = per_bs[str(bs)] = time_forward(batch.forward, batch.inputs, settings.runs,
                                                    settings.warmup, device)
            log(f'{prefix}: {device} batch {bs}: {timing.median_ms:.1f} ms, '
                f'{timing.images_per_s:.2f} img/s')
            del batch
        latency[device] = per_bs
        built.model.to('cpu')
        if device == 'cuda':
            torch.cuda.empty_cache()
    return latency


def prepare_paths(built: BuiltModel, result: ModelResult, settings: Settings, tmp_dir: str) -> PendingPaths:
    """The backend paths of ``built`` on one batch of ``batch_sizes[0]``, and their reference output;
    a path that cannot be built is recorded as an error in ``result.backends``."""
    height, width = settings.input_size
    batch = built.batch(settings.batch_sizes[0], height, width)
    make = module_factory(built, batch, settings.channel_multiple)
    with torch.no_grad():
        reference_out = batch.forward(batch.inputs)
    calibration = functools.partial(calibration_inputs, built, settings, batch.inputs.shape)
    runs, errors = build_runs(make, batch.inputs, settings, tmp_dir, result.label, calibration)
    result.backends = {key: PathResult(error=message) for key, message in errors.items()}
    result.output_max_abs = max(float(o.detach().abs().max()) for o in flatten_outputs(reference_out)[0])
    return PendingPaths(result, runs, reference_out)


def calibration_inputs(built: BuiltModel, settings: Settings, shape: Sequence[int]) -> Tuple[List[Any], str]:
    """The int8 calibration inputs of ``built``, each of the timed input's ``shape``, and what they are: the
    images of ``settings.calib`` resized to the input size and normalised as the model expects (in batches of
    the timed batch size), or inputs made as the timed one with other seeds."""
    import numpy as np
    height, width = settings.input_size
    n, batch_size = settings.calib_images, int(shape[0])
    if settings.calib is None:
        inputs = [built.batch(batch_size, height, width, seed=1000 + i).inputs.cpu().numpy() for i in range(n)]
        return inputs, 'random (as the timed input, other seeds)'
    from ..deploy.calibration import find_images, resized_inputs
    images = resized_inputs(built.model, find_images(settings.calib, n * batch_size), (height, width))
    images = [images[i % len(images)] for i in range(n * batch_size)]
    inputs = [np.concatenate(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    if tuple(inputs[0].shape) != tuple(shape):
        raise ValueError(f'calibration inputs of shape {inputs[0].shape}, the timed input is {tuple(shape)}')
    return inputs, f'images from {settings.calib}'


def _warm_up(paths: List[Tuple[PendingPaths, BackendRun]], warmup: int) -> Dict[int, Any]:
    """First output of each path that runs (by position); a failing path becomes an error entry."""
    outputs = {}
    for i, (pending, run) in enumerate(paths):
        t0 = time.time()
        try:
            with torch.no_grad():
                out = run.call()
                for _ in range(max(warmup - 1, 0)):
                    run.call()
            outputs[i] = out
        except Exception as e:  # noqa: B902  (one failing path must not stop the others)
            pending.result.backends[run.key] = PathResult(error=error_line(e))
            log(f'{pending.result.label}: {run.key} failed: {error_line(e)}')
        else:
            log(f'{pending.result.label}: {run.key} warm ({time.time() - t0:.1f} s)')
    return outputs


def _round_robin(runs: List[BackendRun], rounds: int) -> Tuple[List[List[float]], List[List[float]]]:
    """Wall and process CPU ms of each call, run ``i`` of every path before run ``i + 1``."""
    wall: List[List[float]] = [[] for _ in runs]
    cpu: List[List[float]] = [[] for _ in runs]
    for i in range(rounds):
        for j, run in enumerate(runs):
            start, cpu_start = time.perf_counter(), time.process_time()
            run.call()
            wall[j].append((time.perf_counter() - start) * 1000.0)
            cpu[j].append((time.process_time() - cpu_start) * 1000.0)
        log(f'backends: round {i + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})')
    return wall, cpu


def time_backends(pending: List[PendingPaths], settings: Settings) -> None:
    """Warm every path up, then time them round-robin; fills each ``result.backends``."""
    paths = [(p, run) for p in pending for run in p.runs]
    log(f'backends: {len(paths)} paths, {settings.warmup} warm-up runs each, then '
        f'{settings.runs} timed runs round-robin')
    outputs = _warm_up(paths, settings.warmup)
    live = [(i, p, run) for i, (p, run) in enumerate(paths) if i in outputs]
    wall, cpu = _round_robin([run for _, _, run in live], settings.runs)
    for (i, p, run), times, cpu_times in zip(live, wall, cpu):
        timing = Timing.of(times, settings.batch_sizes[0], settings.runs, settings.warmup) if times else None
        p.result.backends[run.key] = PathResult(
            backend=run.backend, deploy=run.deploy, precision=run.precision, info=run.info,
            parity_max_abs=max_abs_diff(outputs[i], p.reference_out), timing=timing, cpu_times_ms=cpu_times)
