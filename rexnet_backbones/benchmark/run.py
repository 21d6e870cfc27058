"""A whole benchmark run: plan, measure every model, time the backend paths round-robin, compare,
evaluate checkpoints, and the :class:`~.results.Report` of it all."""
from __future__ import annotations

import contextlib
import gc
import os.path as osp
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .layers import profile_layers
from .measure import PendingPaths, measure_model, time_backends
from .models import config_label
from .plan import PlannedModel, plan
from .ratios import summarise_backends
from .report import check_finite, environment, load_average
from .results import ModelResult, Report, ReportSettings
from .roofline import machine_peak
from .settings import Settings, log
from ..errors import BenchmarkError

__all__ = ['TIMED', 'TIMED_BACKBONE', 'FLOPS_NOTE', 'run_benchmark', 'evaluate']

TIMED = ("model(inputs, data_samples, mode='tensor') in eval mode under torch.no_grad() on inputs "
         'already through model.data_preprocessor (not timed): backbone + neck + head outputs; '
         'one-stage detectors without box decoding/NMS, two-stage detectors with RPN proposals '
         '(decoding + NMS) and the RoI head on them. Median over the timed runs after the warm-up '
         'runs; throughput = batch size / median latency')
TIMED_BACKBONE = ('model.backbone(inputs) in eval mode under torch.no_grad() on inputs already '
                  'through model.data_preprocessor (not timed); timm models: model(inputs) '
                  '(features_only) on a seeded N(0, 1) batch. Median over the timed runs after '
                  'the warm-up runs; throughput = batch size / median latency')
FLOPS_NOTE = ('mmengine.analysis.FlopAnalyzer (fvcore counting: 1 multiply-add = 1 FLOP), one image, '
              'the same call as timed; element-wise ops and NMS are not counted')


def _devices(settings: Settings) -> List[str]:
    cuda = torch.cuda.is_available()
    if settings.device == 'cuda' and not cuda:
        raise BenchmarkError('--device cuda: CUDA is not available')
    if settings.backends:
        return ['cpu']
    return [settings.device] if settings.device else (['cpu', 'cuda'] if cuda else ['cpu'])


def _report_settings(settings: Settings, devices: List[str]) -> ReportSettings:
    return ReportSettings(
        input_size=list(settings.input_size), batch_sizes=list(settings.batch_sizes), runs=settings.runs,
        warmup=settings.warmup, devices=devices, backbone_only=settings.backbone_only,
        threads=torch.get_num_threads(), timed=TIMED_BACKBONE if settings.backbone_only else TIMED,
        flops_convention=FLOPS_NOTE, backends=list(settings.backends), deploy=settings.deploy,
        precisions=list(settings.precisions), channel_multiple=settings.channel_multiple,
        tolerance=settings.tolerance, out_indices=list(settings.out_indices), reference=settings.reference,
        calib=settings.calib, calib_images=settings.calib_images)


def evaluate(planned: PlannedModel, settings: Settings) -> Dict[str, float]:
    """COCO (or mmseg) metrics of a checkpoint through :func:`rexnet_backbones.engine.test`."""
    from ..engine import test
    work_dir = osp.join(settings.work_dir, config_label(planned.spec))
    # the checkpoint holds the whole model: no ImageNet init (and no download) is needed
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the table
        metrics = test(planned.path, planned.checkpoint, work_dir=work_dir,
                       cfg_options={'model.backbone.init_cfg': None})
    return {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}


def _evaluate_all(planned: List[PlannedModel], results: List[ModelResult], settings: Settings) -> int:
    """Metrics of every model with a checkpoint; 1 when an evaluation failed, else 0."""
    status = 0
    for model, result in zip(planned, results):
        result.checkpoint = model.checkpoint
        if model.checkpoint is None:
            continue
        log(f'{result.label}: evaluating {model.checkpoint}')
        try:
            result.metrics = evaluate(model, settings)
            log(f'{result.label}: {result.metrics}')
        except (Exception, SystemExit) as e:  # noqa: B902  (the test run exits on bad data)
            result.metrics_error = f'{type(e).__name__}: {e}'
            log(f'{result.label}: evaluation failed: {result.metrics_error}')
            status = 1
    return status


def _measure_all(planned: List[PlannedModel], settings: Settings, devices: List[str]) -> List[ModelResult]:
    results: List[ModelResult] = []
    with tempfile.TemporaryDirectory(prefix='rexnet_benchmark_') as tmp_dir:
        pending: List[PendingPaths] = []
        for i, model in enumerate(planned, 1):
            result, paths = measure_model(model, settings, devices, i, len(planned), tmp_dir)
            results.append(result)
            if paths is not None:
                pending.append(paths)
        if settings.backends:
            time_backends(pending, settings)
            del pending
            gc.collect()
            summarise_backends(results, settings.tolerance)
    for result in results:
        result.fill_roofline_fractions(settings.batch_sizes[0])
    return results


def run_benchmark(settings: Settings, argv: Optional[Sequence[str]] = None) -> Tuple[Report, int]:
    """Plan, build, measure (and evaluate) every model; returns the report and an exit status
    (0, or 1 when an evaluation failed). Raises :class:`BenchmarkError` for a bad request."""
    planned = plan(settings)
    devices = _devices(settings)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    report = Report(argv=list(sys.argv[1:] if argv is None else argv),
                    environment=environment(devices, settings.backends),
                    settings=_report_settings(settings, devices))
    what = (f'backends {", ".join(settings.backends)} (deploy {settings.deploy}) at batch '
            f'{settings.batch_sizes[0]}' if settings.backends else
            f'{", ".join(devices)}, batch sizes {list(settings.batch_sizes)}')
    log(f'{len(planned)} model(s) on {what}, input {settings.input_size[0]}x{settings.input_size[1]}, '
        f'{settings.warmup} warm-up + {settings.runs} timed runs, {torch.get_num_threads()} CPU threads')
    start = time.time()
    report.machine = machine_peak()
    log(f'machine: {report.machine.describe()} ({report.machine.seconds:.1f} s)')
    report.models = _measure_all(planned, settings, devices)
    if settings.layers is not None:
        report.layers = profile_layers(planned[0].spec, report.models[0], settings)
    status = _evaluate_all(planned, report.models, settings)
    report.environment.load_average_end = load_average()
    report.total_seconds = round(time.time() - start, 1)
    check_finite(report)
    return report, status
