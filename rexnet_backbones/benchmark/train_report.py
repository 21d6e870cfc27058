"""The training-step run (``Settings.train_step``): plan, measure every config in its own process
(:mod:`.train_step`), and its report: a markdown table headed by the machine, and the JSON."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .plan import plan
from .report import write_text, environment, load_average, machine_line
from .results import Environment, json_safe
from .settings import Settings, log
from .train_step import TRAIN_STEP_NOTE, TrainStepResult, measure_train_steps

__all__ = ['TrainStepReport', 'run_train_step_benchmark', 'markdown_train_steps', 'write_train_step_outputs']

#: backward ops shown per model in the table (the JSON has the top 12)
TOP_OPS = 3


@dataclass
class TrainStepReport:
    """A training-step run: what ``--out-json`` holds with ``--train-step``."""
    argv: List[str]
    environment: Environment
    settings: Dict[str, Any]
    models: List[TrainStepResult] = field(default_factory=list)
    total_seconds: float = 0.0
    tool: str = 'tools/benchmark.py'

    @property
    def reference(self) -> Optional[TrainStepResult]:
        return next((m for m in self.models if m.reference), None)

    def reference_of(self, model: TrainStepResult) -> Optional[TrainStepResult]:
        """The reference measured the same way as ``model`` (eager or compiled), else the first one."""
        refs = [m for m in self.models if m.reference]
        return next((m for m in refs if m.compiled == model.compiled), refs[0] if refs else None)

    def to_json(self) -> Dict[str, Any]:
        return json_safe(dict(tool=self.tool, argv=self.argv, environment=self.environment.to_json(),
                              settings=self.settings, models=[m.to_json() for m in self.models],
                              total_seconds=self.total_seconds, mode='train_step'))


def run_train_step_benchmark(settings: Settings, argv: Optional[Sequence[str]] = None) -> Tuple[TrainStepReport, int]:
    """Plan and measure the training step of every config (see :mod:`.train_step`); returns the report and 0."""
    planned = plan(settings)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    batch = settings.batch_sizes[0]
    device = settings.device or 'cpu'
    compile_modes = {'off': (False,), 'on': (True,), 'both': (False, True)}[settings.compile]
    report = TrainStepReport(
        argv=list(sys.argv[1:] if argv is None else argv), environment=environment(sorted({'cpu', device})),
        settings=dict(batch_size=batch, input_size=list(settings.input_size), runs=settings.runs,
                      warmup=settings.warmup, threads=torch.get_num_threads(), mem_efficient=settings.mem_efficient,
                      device=device, dtype=settings.train_dtype, channels_last=settings.channels_last,
                      compile=settings.compile, measured=TRAIN_STEP_NOTE))
    log(f'{len(planned)} model(s): training step on {device} at batch {batch}, input {settings.input_size[0]}x'
        f'{settings.input_size[1]}, {settings.train_dtype}, {torch.get_num_threads()} CPU threads')
    start = time.time()
    report.models = measure_train_steps(planned, batch, settings.input_size, settings.runs, settings.warmup,
                                        settings.mem_efficient, settings.threads, device=device,
                                        dtype=settings.train_dtype, channels_last=settings.channels_last,
                                        compile_modes=compile_modes)
    report.environment.load_average_end = load_average()
    report.total_seconds = round(time.time() - start, 1)
    return report, 0


def _gib(mib: float) -> str:
    return f'{mib / 1024:.2f}'


def _ratio(value: float, ref: Optional[float]) -> str:
    return '-' if not ref else f'{value / ref:.2f}'


def _top_ops(m: TrainStepResult) -> str:
    ops = [(k.split(' ', 1)[1], v) for k, v in m.saved_by_op_mib.items() if k.startswith('backbone ')][:TOP_OPS]
    return ', '.join(f'{name.replace("Backward0", "").replace("Backward", "")} {v / 1024:.2f}' for name, v in ops)


def _saved(m: TrainStepResult, value: float) -> str:
    return _gib(value) if m.kind == 'config' and not m.compiled else '-'


def markdown_train_steps(report: TrainStepReport) -> str:
    """One row per model: images per second, step time, peak memory above the model, the CPU time a step got,
    ratios to the reference (measured the same way: eager or compiled), the first (warm-up) step, and for eager
    configs the saved tensors (backbone, rest) and the backbone's largest saved tensors by backward op."""
    s = report.settings
    rows = []
    for m in report.models:
        ref = report.reference_of(m)
        backbone = m.saved_by_part_mib.get('backbone', 0.0)
        load = '/'.join(f'{v:.1f}' for v in m.load_average)
        first = f'{m.warmup_ms[0] / 1000:.1f}' if m.warmup_ms else '-'
        rows.append([m.label + (' (ref)' if m.reference else ''), m.backbone, f'{m.img_per_s:.1f}',
                     _ratio(m.img_per_s, ref and ref.img_per_s), f'{m.best_img_per_s:.1f}',
                     _ratio(m.best_img_per_s, ref and ref.best_img_per_s), f'{m.step_ms / 1000:.2f}', first,
                     _gib(m.peak_mib), _ratio(m.peak_mib, ref and ref.peak_mib),
                     f'{m.cpu_per_wall:.2f}', load, _saved(m, m.saved_mib), _saved(m, backbone),
                     _top_ops(m) if m.kind == 'config' and not m.compiled else '-'])
    headers = ['model', 'backbone', 'img/s', 'img/s / ref', 'best img/s', 'best / ref', 'step s', 'first step s',
               'peak GiB above model',
               'peak / ref', 'CPU s per step s', 'load (start/end)', 'saved GiB', 'backbone saved GiB',
               'backbone saved GiB by op']
    h, w = s['input_size']
    padded = sorted({tuple(m.padded_shape) for m in report.models})
    how = (f'{s.get("device", "cpu")}, {s.get("dtype", "fp32")}'
           f'{", channels-last" if s.get("channels_last") else ""}, compile {s.get("compile", "off")}')
    lines = [
        f'Measured on {machine_line(report.environment)}; {report.environment.date[:10]}.', '',
        f'Training step ({how}), batch {s["batch_size"]}, input {h}x{w} (padded to '
        f'{", ".join(f"{a}x{b}" for a, b in padded)}); {s["warmup"]} warm-up + {s["runs"]} timed steps '
        f'(step s = median, img/s from it; best img/s: the fastest timed step; first step s: the first warm-up step, with the compilation). '
        f'Measured: {s["measured"]}.', '',
        '| ' + ' | '.join(headers) + ' |',
        '|' + '|'.join('---' if i < 2 else '---:' for i in range(len(headers) - 1)) + '|---|',
    ]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def write_train_step_outputs(report: TrainStepReport, out_json: Optional[str] = None,
                             out_md: Optional[str] = None) -> str:
    """Write the JSON / markdown files; returns the markdown table."""
    table = markdown_train_steps(report)
    if out_json:
        write_text(out_json, json.dumps(report.to_json(), indent=2) + '\n')
    if out_md:
        write_text(out_md, table)
    return table
