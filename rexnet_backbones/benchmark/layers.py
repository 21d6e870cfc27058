"""Where a model's time goes: each module's own measured time on one path (eager or channels_last,
fp32, the model as built or its deploy form) beside its FLOPs, bytes and roofline time, the top
layers by time and a summary per kind of layer (depthwise conv, pointwise conv, SE, BN, SiLU, ...).

Timing: forward pre/post hooks on every module read a clock around each call (eager PyTorch runs the
ops of a call synchronously on the CPU, so the clock brackets the work): with one torch thread the
process CPU time (``time.process_time``: the time the process ran, so other jobs on a busy machine do
not inflate it), with more threads the wall time (``time.perf_counter``; the CPU time would add up the
threads and their spin-waits). A module's
own time is its call's time minus the time of the module calls nested in it (a container's own time
is its functional ops: residual adds, concatenations, the SE block's mean and product, Python glue).
After the warm-up calls, each module's median over the timed calls is reported; the total is the sum
of these medians. The hooks cost a few microseconds per module call.
"""
from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from .backends import module_factory
from .costs import layer_costs
from .models import BuiltModel
from .results import ModelResult
from .roofline import LayerCost, MachinePeak, achieved_fraction, machine_peak
from .settings import Settings, log

__all__ = ['LAYER_TIMING', 'CLOCKS', 'LayerRow', 'KindRow', 'LayerReport', 'module_times', 'layer_report',
           'profile_layers', 'layers_path', 'markdown_layers']

LAYER_TIMING = ('per-module forward hooks ({clock} around each module call, minus the module calls nested in '
                'it); median per module over the timed calls; total = sum of the medians')
#: the clock of the per-layer times: process CPU time with one thread, else wall time
CLOCKS = {'process CPU time': time.process_time, 'wall time': time.perf_counter}


@dataclass
class LayerRow:
    """One module: its own measured time and costs for one image."""
    name: str
    kind: str
    ms: float
    #: of the total measured time
    share: float
    flops: int
    bytes: int
    roofline_ms: float
    #: roofline_ms / ms (None without time)
    fraction: Optional[float]


@dataclass
class KindRow:
    """All modules of one kind, summed."""
    kind: str
    modules: int
    ms: float
    share: float
    flops: int
    bytes: int
    roofline_ms: float
    fraction: Optional[float]


@dataclass
class LayerReport:
    """The per-layer table of one model on one path."""
    model: str
    path: str
    input_shape: List[int]
    runs: int
    warmup: int
    total_ms: float
    roofline_ms: float
    top: int
    timing: str = LAYER_TIMING.format(clock='time.perf_counter')
    kinds: List[KindRow] = field(default_factory=list)
    #: every module with time or costs, slowest first
    rows: List[LayerRow] = field(default_factory=list)

    @property
    def fraction(self) -> Optional[float]:
        return achieved_fraction(self.roofline_ms, self.total_ms)

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out['fraction'] = self.fraction
        return out


def module_times(module: nn.Module, call: Callable[[], Any], runs: int, warmup: int,
                 clock: Callable[[], float] = time.perf_counter) -> Dict[str, List[float]]:
    """Each module's own time (ms of ``clock``) in each of ``runs`` timed calls of ``call`` (after
    ``warmup``)."""
    names = {m: name for name, m in module.named_modules()}
    stack: List[List[Any]] = []  # [name, start, time of nested module calls]
    own: Dict[str, float] = defaultdict(float)

    def pre(m: nn.Module, args: Any) -> None:
        stack.append([names[m], clock(), 0.0])

    def post(m: nn.Module, args: Any, output: Any) -> None:
        name, start, nested = stack.pop()
        took = clock() - start
        own[name] += took - nested
        if stack:
            stack[-1][2] += took

    handles = [m.register_forward_pre_hook(pre) for m in names] + [m.register_forward_hook(post) for m in names]
    per_run: Dict[str, List[float]] = defaultdict(list)
    try:
        with torch.no_grad():
            for i in range(warmup + runs):
                own.clear()
                call()
                if i >= warmup:
                    for name in names.values():
                        per_run[name].append(own.get(name, 0.0) * 1000.0)
    finally:
        for h in handles:
            h.remove()
    return dict(per_run)


def layer_report(costs: List[LayerCost], times: Dict[str, List[float]], machine: MachinePeak,
                 model: str, path: str, input_shape: List[int], top: int, warmup: int = 0) -> LayerReport:
    """The table of ``costs`` (per module, one image) against the median of ``times`` (per module)."""
    ms = {name: statistics.median(t) for name, t in times.items() if t}
    total = sum(ms.values())
    rows = []
    for c in costs:
        t = ms.get(c.name, 0.0)
        if t <= 0 and not (c.flops or c.bytes):
            continue
        roof = c.roofline_ms(machine)
        rows.append(LayerRow(name=c.name or '(model)', kind=c.kind, ms=t, share=t / total if total else 0.0,
                             flops=c.flops, bytes=c.bytes, roofline_ms=roof,
                             fraction=achieved_fraction(roof, t) if t > 0 else None))
    rows.sort(key=lambda r: -r.ms)
    groups: Dict[str, List[LayerRow]] = defaultdict(list)
    for row in rows:
        groups[row.kind].append(row)
    kinds = []
    for kind, members in groups.items():
        t, roof = sum(r.ms for r in members), sum(r.roofline_ms for r in members)
        kinds.append(KindRow(kind=kind, modules=len(members), ms=t, share=t / total if total else 0.0,
                             flops=sum(r.flops for r in members), bytes=sum(r.bytes for r in members),
                             roofline_ms=roof, fraction=achieved_fraction(roof, t) if t > 0 else None))
    kinds.sort(key=lambda k: -k.ms)
    runs = len(next(iter(times.values()), []))
    return LayerReport(model=model, path=path, input_shape=list(input_shape), runs=runs, warmup=warmup,
                       total_ms=total, roofline_ms=sum(c.roofline_ms(machine) for c in costs), top=top,
                       kinds=kinds, rows=rows)


def layers_path(settings: Settings) -> Tuple[str, bool]:
    """The path of the per-layer table: ``channels_last`` when it is the first of ``backends`` (else
    ``eager``), the deploy form with ``deploy='on'``; always fp32."""
    backend = 'channels_last' if settings.backends[:1] == ('channels_last',) else 'eager'
    return backend, settings.deploy == 'on'


def profile_layers(spec: str, result: ModelResult, settings: Settings) -> LayerReport:
    """The per-layer table of model ``spec`` (measured as ``result``) on :func:`layers_path`, batch 1."""
    backend, deploy = layers_path(settings)
    height, width = settings.input_size
    built = BuiltModel.build(spec, settings.out_indices, settings.backbone_only)
    batch = built.batch(1, height, width)
    module = module_factory(built, batch, settings.channel_multiple)(deploy, 'inplace')
    x = batch.inputs
    if backend == 'channels_last':
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    path = backend + ('+deploy' if deploy else '') + ' fp32'
    costs = result.costs.layers if result.costs is not None and not deploy else []
    if not costs:
        log(f'{result.label}: counting the costs of each layer of {path}')
        costs = layer_costs(module, x)[0]
    clock = 'process CPU time' if torch.get_num_threads() == 1 else 'wall time'
    log(f'{result.label}: timing each layer on {path} ({settings.warmup} warm-up + {settings.runs} runs, {clock})')
    times = module_times(module, lambda: module(x), settings.runs, settings.warmup, CLOCKS[clock])
    report = layer_report(costs, times, machine_peak(), result.label, path, list(x.shape[-2:]), settings.layers or 0,
                          settings.warmup)
    report.timing = LAYER_TIMING.format(clock=f'{clock}, {torch.get_num_threads()} thread(s)')
    return report


def _cells(ms: float, share: float, flops: int, traffic: int, roofline_ms: float,
           fraction: Optional[float]) -> List[str]:
    return [f'{ms:.2f}', f'{100 * share:.1f}', f'{flops / 1e6:.1f}', f'{traffic / 1e6:.2f}', f'{roofline_ms:.2f}',
            '-' if fraction is None else f'{fraction:.2f}']


def _md_table(headers: List[str], rows: List[List[str]], left: int) -> List[str]:
    align = '|'.join('---' if i < left else '---:' for i in range(len(headers)))
    return ['| ' + ' | '.join(headers) + ' |', f'|{align}|'] + ['| ' + ' | '.join(row) + ' |' for row in rows]


def markdown_layers(report: LayerReport) -> str:
    """The per-kind summary and the top layers by measured time."""
    h, w = report.input_shape
    cost_headers = ['ms', '% of time', 'MFLOPs', 'MB', 'roofline ms', 'fraction']
    lines = [f'Per layer: {report.model}, {report.path}, batch 1, input {h}x{w}; {report.timing}; '
             f'{report.warmup} warm-up + {report.runs} timed calls. Total {report.total_ms:.1f} ms against a '
             f'roofline of {report.roofline_ms:.1f} ms (fraction {report.fraction or 0:.2f}). BN and activations '
             'move no bytes in the traffic model (folded / fused): their time is all overhead of the eager path.',
             '']
    kinds = [[k.kind, str(k.modules)] + _cells(k.ms, k.share, k.flops, k.bytes, k.roofline_ms, k.fraction)
             for k in report.kinds]
    total = sum(k.roofline_ms for k in report.kinds)
    kinds.append(['**all**', str(sum(k.modules for k in report.kinds))] + _cells(
        report.total_ms, 1.0, sum(k.flops for k in report.kinds), sum(k.bytes for k in report.kinds), total,
        achieved_fraction(total, report.total_ms)))
    lines += _md_table(['kind', 'modules'] + cost_headers, kinds, left=2)
    top = [[r.name, r.kind] + _cells(r.ms, r.share, r.flops, r.bytes, r.roofline_ms, r.fraction)
           for r in report.rows[:report.top]]
    lines += ['', f'Top {len(top)} layers by measured time:', '']
    lines += _md_table(['layer', 'kind'] + cost_headers, top, left=2)
    return '\n'.join(lines) + '\n'
