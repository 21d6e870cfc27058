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
    report = TrainStepReport(
        argv=list(sys.argv[1:] if argv is None else argv), environment=environment(['cpu']),
        settings=dict(batch_size=batch, input_size=list(settings.input_size), runs=settings.runs,
                      warmup=settings.warmup, threads=torch.get_num_threads(), mem_efficient=settings.mem_efficient,
                      measured=TRAIN_STEP_NOTE))
    log(f'{len(planned)} config(s): training step at batch {batch}, input {settings.input_size[0]}x'
        f'{settings.input_size[1]}, {torch.get_num_threads()} CPU threads')
    start = time.time()
    report.models = measure_train_steps(planned, batch, settings.input_size, settings.runs, settings.warmup,
                                        settings.mem_efficient, settings.threads)
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


def markdown_train_steps(report: TrainStepReport) -> str:
    """One row per model: peak memory above the model, saved tensors (backbone, rest), step time,
    ratios to the reference and the backbone's largest saved tensors by backward op."""
    s, ref = report.settings, report.reference
    rows = []
    for m in report.models:
        backbone = m.saved_by_part_mib.get('backbone', 0.0)
        load = '/'.join(f'{v:.1f}' for v in m.load_average)
        rows.append([m.label + (' (ref)' if m is ref else ''), m.backbone, _gib(m.peak_mib),
                     _ratio(m.peak_mib, ref and ref.peak_mib), _gib(m.saved_mib), _gib(backbone),
                     f'{m.step_ms / 1000:.2f}', _ratio(m.step_ms, ref and ref.step_ms), load, _top_ops(m)])
    headers = ['model', 'backbone', 'peak GiB above model', 'peak / ref', 'saved GiB', 'backbone saved GiB',
               'step s', 'step / ref', 'load (start/end)', 'backbone saved GiB by op']
    h, w = s['input_size']
    padded = sorted({tuple(m.padded_shape) for m in report.models})
    lines = [
        f'Measured on {machine_line(report.environment)}; {report.environment.date[:10]}.', '',
        f'Training step, batch {s["batch_size"]}, input {h}x{w} (padded to '
        f'{", ".join(f"{a}x{b}" for a, b in padded)}); {s["warmup"]} warm-up + {s["runs"]} timed steps '
        f'(step s = median). Measured: {s["measured"]}.', '',
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
