"""The report of a run: the environment it measured on, the markdown tables (per-device latency;
backends side by side) and the JSON / markdown files."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
from importlib import metadata
from typing import Dict, List, Optional, Sequence

import torch

from .layers import markdown_layers
from .results import Environment, ModelResult, PathResult, Report
from .roofline import achieved_fraction
from .settings import BACKENDS, GRAPH_BACKENDS, PRECISIONS, log

__all__ = ['environment', 'markdown', 'markdown_backends', 'markdown_costs', 'write_outputs', 'check_finite',
           'fmt_m', 'fmt_g', 'fmt_ms', 'fmt_ips', 'fmt_fraction']

VERSIONED = ('torch', 'torchvision', 'timm', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'rexnet_backbones')
METRIC_COLUMNS = [('bbox_mAP', 'bbox mAP'), ('segm_mAP', 'mask mAP'), ('mIoU', 'mIoU')]


# ---------------------------------------------------------------------------------------------- environment
def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform`` elsewhere)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> Optional[List[float]]:
    return list(os.getloadavg()) if hasattr(os, 'getloadavg') else None


def backend_versions(backends: Sequence[str]) -> Dict[str, Optional[str]]:
    """Versions of onnx and of the graph runtimes among ``backends``."""
    graph = [b for b in backends if b in GRAPH_BACKENDS]
    wanted = (['onnx'] if graph else []) + graph
    return {dist: _version(dist) for dist in ('onnx', 'onnxruntime', 'openvino') if dist in wanted}


#: ``collect_env`` entries a result does not keep: torch's build configuration describes the wheel's build
#: host (its compiler paths), not the machine that measured; ``PyTorch`` (the version) names the wheel
NOT_RECORDED = ('PyTorch compiling details',)


def environment(devices: List[str], backends: Sequence[str] = ()) -> Environment:
    """The machine, the versions and the load at the start (mmengine's ``collect_env`` for the
    toolchain: compiler, CUDA home, torch version)."""
    from mmengine.utils.dl_utils import collect_env
    cuda = 'cuda' in devices
    return Environment(
        date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        python=platform.python_version(), platform=platform.platform(),
        versions={dist: _version(dist) for dist in VERSIONED}, cpu_model=cpu_model(),
        logical_cpus=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        torch_threads=torch.get_num_threads(), torch_interop_threads=torch.get_num_interop_threads(),
        load_average_start=load_average(), devices=list(devices), cuda_available=torch.cuda.is_available(),
        cuda_version=torch.version.cuda, cuda_device=torch.cuda.get_device_name(0) if cuda else None,
        cudnn_version=torch.backends.cudnn.version() if cuda else None,
        cudnn_benchmark=torch.backends.cudnn.benchmark if cuda else None,
        backend_versions=backend_versions(backends),
        collect_env={k: v for k, v in collect_env().items() if k not in NOT_RECORDED})


# ---------------------------------------------------------------------------------------------- formats
def fmt_m(n: Optional[float]) -> str:
    return '-' if n is None else f'{n / 1e6:.2f}'


def fmt_g(n: Optional[float]) -> str:
    if n is None:
        return '-'
    g = n / 1e9
    return f'{g:.1f}' if g >= 10 else f'{g:.2f}'


def fmt_ms(v: Optional[float]) -> str:
    return '-' if v is None else (f'{v:.1f}' if v >= 10 else f'{v:.2f}')


def fmt_ips(v: Optional[float]) -> str:
    return '-' if v is None else (f'{v:.1f}' if v >= 100 else f'{v:.2f}')


def fmt_fraction(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.2f}'


def _fmt_ratio(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.2f}'


def _fmt_dev(v: Optional[float]) -> str:
    if v is None:
        return '-'
    return 'inf' if not math.isfinite(v) else f'{v:.1e}'


def _table(headers: List[str], rows: List[List[str]], left: int) -> List[str]:
    """Markdown table lines; the first ``left`` columns left-aligned, the others right-aligned."""
    return (['| ' + ' | '.join(headers) + ' |',
             '|' + '|'.join('---' if i < left else '---:' for i in range(len(headers))) + '|']
            + ['| ' + ' | '.join(row) + ' |' for row in rows])


def machine_line(env: Environment) -> str:
    """``CPU: ..., N usable logical CPUs, torch X with T threads (load ...); GPU: ...``."""
    threads = env.torch_threads
    cpu = (f'CPU: {env.cpu_model}, {env.usable_cpus or env.logical_cpus} usable logical '
           f'CPUs, torch {env.versions["torch"]} with {threads} thread{"s" if threads > 1 else ""}')
    if env.load_average_start:
        cpu += f' (load average {env.load_average_start[0]:.1f} at start)'
    parts = [cpu]
    if env.cuda_device:
        parts.append(f'GPU: {env.cuda_device} (CUDA {env.cuda_version})')
    return '; '.join(parts)


# ---------------------------------------------------------------------------------------------- main table
def _metrics_present(models: List[ModelResult]) -> List[tuple]:
    return [(key, title) for key, title in METRIC_COLUMNS
            if any(any(k.endswith(key) for k in (m.metrics or {})) for m in models)]


def _main_headers(report: Report, devices: List[str], metrics: List[tuple]) -> List[str]:
    s = report.settings
    headers = ['model', 'detector', 'backbone']
    headers += [] if s.backbone_only else ['params (M)']
    headers += ['backbone params (M)']
    headers += [] if s.backbone_only else ['GFLOPs']
    headers += ['backbone GFLOPs']
    for dev in devices:
        headers += [f'{dev.upper()} latency bs{b} (ms)' for b in s.batch_sizes]
        headers += [f'{dev.upper()} img/s bs{b}' for b in s.batch_sizes]
    return headers + [title for _, title in metrics]


def _main_row(m: ModelResult, report: Report, devices: List[str], metrics: List[tuple]) -> List[str]:
    s, c = report.settings, m.costs
    row = [m.label + (' (mmdet)' if m.baseline else ''), m.model_type, m.backbone]
    row += [] if s.backbone_only else [fmt_m(c.params)]
    row += [fmt_m(c.backbone_params)]
    row += [] if s.backbone_only else [fmt_g(c.flops)]
    row += [fmt_g(c.backbone_flops)]
    for dev in devices:
        lat = m.latency.get(dev, {})
        row += [fmt_ms(lat[str(b)].median_ms if str(b) in lat else None) for b in s.batch_sizes]
        row += [fmt_ips(lat[str(b)].images_per_s if str(b) in lat else None) for b in s.batch_sizes]
    for key, _ in metrics:
        vals = [v for k, v in (m.metrics or {}).items() if k.endswith(key)]
        row.append('error' if m.metrics_error else (f'{vals[0]:.3f}' if vals else '-'))
    return row


def markdown(report: Report) -> str:
    """The main table: params, GFLOPs, latency per device and batch size, metrics; headed by the
    machine and the settings."""
    s = report.settings
    devices = s.devices if s.runs > 0 and not s.backends else []
    metrics = _metrics_present(report.models)
    rows = [_main_row(m, report, devices, metrics) for m in report.models]
    h, w = s.input_size
    padded = {tuple(m.padded_input_shape) for m in report.models}
    padded_txt = ', '.join(f'{a}x{b}' for a, b in sorted(padded))
    lines = [
        f'Measured on {machine_line(report.environment)}; {report.environment.date[:10]}.',
        '',
        f'Input {h}x{w} (padded to {padded_txt}); GFLOPs for one image '
        f'({s.flops_convention}); latency = median of {s.runs} runs after {s.warmup} '
        f'warm-up runs, per batch; img/s = batch size / latency. Timed: {s.timed}.',
        '',
    ]
    lines += _table(_main_headers(report, devices, metrics), rows, left=3)
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- backends table
def _column_keys(models: List[ModelResult]) -> List[str]:
    keys: List[str] = []
    for m in models:
        keys += [key for key in (m.backends or {}) if key not in keys]
    order = {b: i for i, b in enumerate(BACKENDS)}

    def rank(key: str) -> tuple:
        base, _, precision = key.partition(' ')
        return (PRECISIONS.index(precision or 'fp32'), '+deploy' in base, order.get(base.split('+')[0], 99))
    return sorted(keys, key=rank)


def _path_cells(p: Optional[PathResult], tolerance: float) -> List[str]:
    if p is None:
        return ['-', '-']
    if p.error is not None:
        return ['error', '-']
    flag = '' if p.precision != 'fp32' or p.parity_max_abs <= tolerance else ' !'
    return [fmt_ms(p.median_ms), _fmt_dev(p.parity_max_abs) + flag]


def _backend_rows(report: Report) -> List[List[str]]:
    models, ref = report.models, report.reference
    others = [m for m in models if m is not ref]
    rows = []
    for key in _column_keys(models):
        paths = [(m.backends or {}).get(key) for m in models]
        precision = next((p.info.get('inference_precision') or p.precision
                          for p in paths if p is not None and p.error is None), '-')
        row = [key, precision]
        for p in paths:
            row += _path_cells(p, report.settings.tolerance)
        if ref is not None:
            row += [_fmt_ratio(getattr((m.backends or {}).get(key), 'ratio', None)) for m in others]
        rows.append(row)
    best = ['**best fp32**', 'fp32']
    for m in models:
        best += [fmt_ms(m.best_fp32.median_ms), m.best_fp32.key] if m.best_fp32 else ['-', '-']
    if ref is not None:
        best += [_fmt_ratio(m.best_ratio) for m in others]
    return rows + [best]


def _backend_notes(report: Report) -> List[str]:
    s, env, ref = report.settings, report.environment, report.reference
    h, w = s.input_size
    end = (env.load_average_end or [float('nan')])[0]
    lines = [
        f'Backends: batch {s.batch_sizes[0]}, input {h}x{w}, {s.threads} threads; every path '
        f'{s.warmup} warm-up run(s), then {s.runs} timed runs round-robin over all paths '
        f'(ms = median). Load average {env.load_average_start[0]:.1f} at start, {end:.1f} at the end.',
        '',
        f'parity = max |output - eager fp32 output| on the same input ("!": above {s.tolerance:g}, '
        'not eligible as best fp32); for bf16 and int8 rows it is the deviation from fp32. '
        f'ratio = model / reference ({ref.label if ref else "none"}) on the same path; the last row '
        'compares the best fp32 path of each model. "+deploy" = BN folded, ReXNet widths zero-padded '
        f'to multiples of {s.channel_multiple}, partial residual without cat '
        '(rexnet_backbones.deploy.deploy_model). OpenVINO: PERFORMANCE_HINT=LATENCY, the '
        "precision column is the compiled model's INFERENCE_PRECISION_HINT.",
    ]
    if 'int8' in s.precisions:
        calib = f'{s.calib_images} images of {s.calib}' if s.calib else \
            f'{s.calib_images} seeded random inputs made as the timed one'
        lines += ['', 'int8 = post-training int8 ONNX file (ONNX Runtime quantize_static: QDQ, int8 per-channel '
                  f'weights, uint8 activations, minmax) calibrated on {calib}, run by each ONNX runtime '
                  '(OpenVINO: its other layers in the precision shown).']
    ratios = [f'{m.label}: ' + ', '.join(f'{b} {v:.2f}' for b, v in m.backend_ratios.items())
              for m in report.models if m is not ref and m.backend_ratios]
    if ratios:
        lines += ['', 'Best fp32 path of each runtime vs the reference on that runtime: '
                  + '; '.join(ratios) + '.']
    return lines


def markdown_backends(report: Report) -> str:
    """The side-by-side backend table: one row per path, per model its ms and parity, then the
    ratio of each model to the reference (empty string when no backends were measured)."""
    if not report.settings.backends:
        return ''
    ref = report.reference
    headers = ['path', 'precision']
    for m in report.models:
        name = m.label + (' (ref)' if m is ref else '')
        headers += [f'{name} ms', f'{name} parity']
    if ref is not None:
        headers += [f'{m.label} / ref' for m in report.models if m is not ref]
    lines = _backend_notes(report) + [''] + _table(headers, _backend_rows(report), left=2)
    errors = [f'{m.label} {k}: {p.error}' for m in report.models
              for k, p in (m.backends or {}).items() if p.error is not None]
    if errors:
        lines += [''] + [f'- error: {e}' for e in errors]
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- costs table
def _measured(m: ModelResult, report: Report) -> tuple:
    """(ms, path, fraction, process CPU ms) of the path the costs table shows: the best fp32 backend path,
    or eager CPU at the first batch size (no CPU time)."""
    if report.settings.backends:
        if m.best_fp32 is None:
            return None, '-', None, None
        path = (m.backends or {})[m.best_fp32.key]
        cpu = statistics.median(path.cpu_times_ms) if path.cpu_times_ms else None
        return m.best_fp32.median_ms, m.best_fp32.key, m.roofline_fractions.get(m.best_fp32.key), cpu
    bs = str(report.settings.batch_sizes[0])
    timing = m.latency.get('cpu', {}).get(bs)
    if timing is None:
        return None, '-', None, None
    return timing.median_ms, f'eager CPU bs{bs}', m.roofline_fractions.get(f'cpu bs{bs}'), None


def _costs_rows(report: Report) -> List[List[str]]:
    rows = []
    batch = report.settings.batch_sizes[0]
    for m in report.models:
        c = m.costs
        roof = c.roofline
        ms, path, fraction, cpu = _measured(m, report)
        row = [m.label, path, fmt_m(c.params if c.params is not None else c.backbone_params),
               fmt_g(c.flops if c.flops is not None else c.backbone_flops), fmt_m(c.activations),
               f'{c.bytes_moved / 1e6:.0f}', fmt_ms(roof.compute_ms), fmt_ms(roof.memory_ms),
               fmt_ms(roof.roofline_ms), fmt_ms(ms), fmt_fraction(fraction)]
        if report.settings.backends:
            row += [fmt_ms(cpu), fmt_fraction(achieved_fraction(roof.roofline_ms * report.settings.threads, cpu,
                                                                batch))]
        rows.append(row)
    return rows


def _fractions_table(report: Report) -> List[str]:
    """Backends: the achieved fraction of every path (rows) of every model (columns)."""
    keys = _column_keys(report.models)
    rows = [[key] + [fmt_fraction(m.roofline_fractions.get(key)) for m in report.models] for key in keys]
    return ['', 'Achieved fraction of the roofline per path (bf16 and int8 paths against the fp32 roofline):', ''] + \
        _table(['path'] + [m.label for m in report.models], rows, left=1)


def markdown_costs(report: Report) -> str:
    """The cost-model table: params, FLOPs, activations, bytes, roofline and the achieved fraction of the
    measured path (empty string without a roofline)."""
    machine = report.machine
    if machine is None or any(m.costs is None or m.costs.roofline is None for m in report.models):
        return ''
    h, w = report.settings.input_size
    lines = [
        f'Cost model, one image {h}x{w}: machine {machine.describe()} ({machine.method}). Activations = '
        'conv and matmul output elements (mmengine ActivationAnalyzer, RegNet\'s metric); MB = bytes moved '
        f'per image ({report.settings.traffic_model}); compute / memory ms = all FLOPs at the peak / all bytes '
        'at the bandwidth; roofline ms = sum over modules of max(own FLOPs / peak, own bytes / bandwidth), BN '
        'FLOPs left out (folded); fraction = roofline ms x batch / measured ms.',
        '',
    ]
    headers = ['model', 'measured path', 'params (M)', 'GFLOPs', 'activations (M)', 'MB/img', 'compute ms',
               'memory ms', 'roofline ms', 'measured ms', 'fraction']
    if report.settings.backends:
        headers += ['CPU ms', 'CPU fraction']
        lines[0] += (' CPU ms = median process CPU time per call (all threads; on a busy machine closer to the '
                     'work than the wall time); CPU fraction = roofline ms x threads x batch / CPU ms.')
    lines += _table(headers, _costs_rows(report), left=2)
    if report.settings.backends:
        lines += _fractions_table(report)
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- files
def check_finite(report: Report) -> None:
    """Log a warning for a non-positive or non-finite param or FLOP count."""
    for m in report.models:
        for key in ('params', 'backbone_params', 'flops', 'backbone_flops'):
            v = getattr(m.costs, key, None)
            if v is not None and (not math.isfinite(v) or v <= 0):
                log(f'warning: {m.label}: {key} = {v}')


def write_text(path: str, text: str) -> None:
    """Write an output file with the project's one atomic writer, and say so."""
    from ..checkpoint import atomic_write
    atomic_write(path, text)
    log(f'wrote {path}')


def write_outputs(report: Report, out_json: Optional[str] = None, out_md: Optional[str] = None) -> str:
    """Write the JSON / markdown files; returns the markdown (both tables)."""
    table = markdown(report)
    for extra in (markdown_backends(report), markdown_costs(report),
                  markdown_layers(report.layers) if report.layers is not None else ''):
        if extra:
            table += '\n' + extra
    if out_json:
        write_text(out_json, json.dumps(report.to_json(), indent=2) + '\n')
    if out_md:
        write_text(out_md, table)
    return table

