"""The report of a suite: per model, mean ± std over seeds with the t interval of the mean; per pair,
the paired difference against a reference with its t 95% interval, the paired t test's p, its Holm
adjustment across all the report's comparisons, the minimal detectable difference at 80% power and a
verdict; written as ``results.json``, ``results.md`` and ``results.png``.

* Statistics come from :mod:`rexnet_backbones.stats`: a verdict says 'better'/'worse' only when the
  Holm-adjusted paired t test rejects at 5%, else 'inconclusive' (never "no difference"). The
  percentile bootstrap appears only from :data:`~rexnet_backbones.stats.MIN_BOOTSTRAP_N` seeds on.
* The reference of a model is the suite's ``reference``; without one, the RegNet-family model whose
  FLOPs are closest in ratio (``|log(flops / flops_ref)|``; ties go to the smaller model).
* Nothing is averaged silently over fewer seeds than asked: every row shows ``done/asked`` and flags
  failed, missing, incomplete and unreadable jobs. A pair is compared on the seeds both models finished.
* A report over shards merges whatever the work dir holds; results of another suite definition stop it.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .. import stats
from ..checkpoint import atomic_write
from ..errors import InvalidInputError
from .report_gather import JobRecord, SuiteInfo, read_jobs, read_suite

__all__ = ['MetricStats', 'ModelSummary', 'RecipeDifference', 'Report', 'write_report', 'build_report',
           'choose_references', 'recipe_summary', 'REFERENCE_FAMILY']

#: the family a model is compared with when the suite names no reference
REFERENCE_FAMILY = 'RegNet'
#: what the plot's x axis can show
X_AXES = ('flops', 'activations')
LEVEL = 0.95
N_BOOT = 10000
#: (label, flattened config key) of the recipe shown once in the report, when present
RECIPE_SUMMARY = (
    ('model', 'model.type'), ('head', 'model.bbox_head.type'), ('decode head', 'model.decode_head.type'),
    ('neck', 'model.neck.type'), ('train loop', 'train_cfg.type'), ('iterations', 'train_cfg.max_iters'),
    ('epochs', 'train_cfg.max_epochs'), ('optimizer', 'optim_wrapper.optimizer.type'),
    ('lr', 'optim_wrapper.optimizer.lr'), ('momentum', 'optim_wrapper.optimizer.momentum'),
    ('weight decay', 'optim_wrapper.optimizer.weight_decay'), ('grad clip', 'optim_wrapper.clip_grad.max_norm'),
    ('batch size', 'train_dataloader.batch_size'), ('data', 'train_dataloader.dataset.type'),
    ('data root', 'train_dataloader.dataset.data_root'), ('init', 'model.init_cfg'), ('init', 'load_from'))


def _clean(obj: Any) -> Any:
    """JSON form: non-finite floats become null, tuples lists, dict keys strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


@dataclass
class MetricStats:
    """One metric of one model over its done seeds: ``mean ± std`` and the t 95% interval of the mean."""
    values: Dict[int, float]
    n: int
    mean: float = math.nan
    std: float = math.nan
    ci: Tuple[float, float] = (math.nan, math.nan)

    @classmethod
    def of(cls, values: Dict[int, Optional[float]]) -> 'MetricStats':
        finite = {s: v for s, v in values.items() if v is not None and math.isfinite(v)}
        if not finite:
            return cls(finite, 0)
        mean, std = stats.mean_std(list(finite.values()))
        ci = stats.t_interval(list(finite.values()), level=LEVEL)
        return cls(finite, len(finite), mean, std, ci)


@dataclass
class ModelSummary:
    """One model over the seeds it finished; its costs; its comparison with its reference."""
    key: str
    label: str
    family: str
    config: str
    seeds_asked: List[int]
    seeds_done: List[int]
    problems: Dict[int, str]  # seed -> 'failed: <error>' / 'missing' / 'incomplete' / 'unreadable: ...'
    metrics: Dict[str, MetricStats]
    params: Optional[int] = None
    flops: Optional[int] = None
    activations: Optional[int] = None
    latency_ms: Optional[float] = None
    peak_memory_mb: Optional[MetricStats] = None
    train_time_s: Optional[MetricStats] = None
    reference: Optional[str] = None  # key of the model this one is compared with
    reference_reason: Optional[str] = None
    is_reference: bool = False
    comparison: Optional[stats.PairedDifference] = None

    @property
    def complete(self) -> bool:
        return len(self.seeds_done) == len(self.seeds_asked)

    @property
    def flags(self) -> List[str]:
        """One short phrase per seed that did not finish."""
        return [f'seed {s} {what}' for s, what in sorted(self.problems.items())]


@dataclass
class RecipeDifference:
    """A recipe key whose value differs between the models' results (JSON text of each value)."""
    key: str
    values: Dict[str, str]


@dataclass
class Report:
    """What a suite's work dir holds, summarised: one row per model of the suite, in suite order."""
    suite: SuiteInfo
    work_dir: str
    models: List[ModelSummary]
    recipe: Dict[str, Any]  # the readable subset, label -> value
    recipe_differences: List[RecipeDifference]
    hosts: List[str]
    files: Dict[str, str] = field(default_factory=dict)

    def model(self, key: str) -> ModelSummary:
        return next(m for m in self.models if m.key == key)

    @property
    def verdicts(self) -> List[str]:
        """One plain-words line per compared pair."""
        from .report_render import verdict_line
        return [verdict_line(self, m) for m in self.models if m.reference is not None]

    def to_json(self) -> Dict[str, Any]:
        return _clean(dict(
            suite=asdict(self.suite), work_dir=self.work_dir, recipe=self.recipe,
            recipe_differences=[asdict(d) for d in self.recipe_differences], hosts=self.hosts,
            models=[_model_json(m) for m in self.models], verdicts=self.verdicts, files=self.files))


def _model_json(m: ModelSummary) -> Dict[str, Any]:
    out = {k: v for k, v in asdict(m).items() if k != 'comparison'}
    out['comparison'] = m.comparison.to_json() if m.comparison else None
    out['complete'], out['flags'] = m.complete, m.flags
    return out


# ---------------------------------------------------------------------------------------------- per model
def _problem(job: JobRecord) -> str:
    if job.status in ('failed', 'unreadable'):
        return f'{job.status}: {job.error or "no error message"}'
    return job.status


def _summarise(suite: SuiteInfo, key: str, jobs: List[JobRecord]) -> ModelSummary:
    info = suite.models[key]
    done = [j for j in jobs if j.status == 'done']
    summary = ModelSummary(
        key=key, label=info.label, family=info.family, config=info.config, seeds_asked=list(suite.seeds),
        seeds_done=[j.seed for j in done], problems={j.seed: _problem(j) for j in jobs if j.status != 'done'},
        metrics={m: MetricStats.of({j.seed: j.metrics.get(m) for j in done}) for m in suite.metrics})
    measured = done + [j for j in jobs if j.status == 'failed']  # costs are measured for failed jobs too
    costs = next((j.costs for j in measured if j.costs.flops is not None), None)
    if costs is not None:
        summary.params, summary.flops, summary.activations = costs.params, costs.flops, costs.activations
        summary.latency_ms = costs.latency_ms
    if done:
        summary.peak_memory_mb = MetricStats.of({j.seed: j.train.peak_memory_mb for j in done})
        summary.train_time_s = MetricStats.of({j.seed: j.train.time_s for j in done})
    return summary


# ---------------------------------------------------------------------------------------------- references
def choose_references(suite: SuiteInfo, models: List[ModelSummary]) -> Dict[str, Tuple[str, str]]:
    """model key -> (reference key, why) for every model compared with another one."""
    if suite.reference:
        if suite.reference not in suite.models:
            raise InvalidInputError(f'suite.json names reference {suite.reference!r}, which is none of its '
                                    f'models ({", ".join(suite.models)}); rerun `tools/suite.py run`')
        return {m.key: (suite.reference, 'the suite\'s reference') for m in models if m.key != suite.reference}
    refs = [m for m in models if m.family == REFERENCE_FAMILY and m.flops]
    out = {}
    for m in models:
        if m.family == REFERENCE_FAMILY or not m.flops or not refs:
            continue
        best = min(refs, key=lambda r: (abs(math.log(m.flops / r.flops)), r.flops, r.key))
        out[m.key] = (best.key, f'the {REFERENCE_FAMILY} model of closest FLOPs')
    return out


def _compare(suite: SuiteInfo, models: List[ModelSummary]) -> None:
    """Each model against its reference, then Holm across every comparison of the report."""
    by_key = {m.key: m for m in models}
    for key, (ref, why) in choose_references(suite, models).items():
        m, r = by_key[key], by_key[ref]
        m.reference, m.reference_reason, r.is_reference = ref, why, True
        primary = suite.primary_metric
        m.comparison = stats.paired_difference(m.metrics[primary].values, r.metrics[primary].values,
                                               higher_is_better=True, n_boot=N_BOOT, level=LEVEL)
    stats.adjust_verdicts([m.comparison for m in models if m.comparison is not None])


# ---------------------------------------------------------------------------------------------- recipe
def recipe_summary(suite: SuiteInfo, jobs: List[JobRecord]) -> Dict[str, Any]:
    """The readable subset of the common recipe: model, schedule, optimizer, batch size, init, data."""
    recipe = suite.recipe
    out: Dict[str, Any] = {}
    for label, key in RECIPE_SUMMARY:
        if key in recipe and label not in out:
            out[label] = recipe[key]
    sizes = [j.costs.input_size for j in jobs if j.costs.input_size]
    size = suite.input_size or (sizes[0] if sizes else None)
    if size:
        out['input size'] = 'x'.join(str(v) for v in size)
    schedulers = recipe.get('param_scheduler')
    if isinstance(schedulers, list):
        out['lr schedule'] = ' + '.join(str(s.get('type')) for s in schedulers if isinstance(s, dict))
    return out


def recipe_differences(jobs: List[JobRecord]) -> List[RecipeDifference]:
    """Keys whose value differs between the models' results (a key one result lacks counts as differing)."""
    per_model: Dict[str, Dict[str, Any]] = {}
    for job in jobs:
        if job.recipe is not None and job.model not in per_model:
            per_model[job.model] = job.recipe
    if len(per_model) < 2:
        return []
    keys = sorted(set().union(*per_model.values()))
    out = []
    for key in keys:
        values = {m: json.dumps(r[key], sort_keys=True, default=str) if key in r else '(not set)'
                  for m, r in per_model.items()}
        if len(set(values.values())) > 1:
            out.append(RecipeDifference(key, values))
    return out


# ---------------------------------------------------------------------------------------------- entry points
def build_report(work_dir: str) -> Report:
    """Read ``work_dir`` and compute the report (nothing is written)."""
    suite = read_suite(work_dir)
    jobs = read_jobs(work_dir, suite)
    models = [_summarise(suite, key, [j for j in jobs if j.model == key]) for key in suite.models]
    _compare(suite, models)
    hosts = sorted({f'{j.host} ({j.threads} threads)' if j.threads else str(j.host)
                    for j in jobs if j.host and j.status in ('done', 'failed')})
    return Report(suite, work_dir, models, recipe_summary(suite, jobs), recipe_differences(jobs),
                  hosts)


def write_report(work_dir: str, out_dir: Optional[str] = None, x_axis: str = 'flops') -> Report:
    """Gather ``work_dir`` into ``results.json``, ``results.md`` and ``results.png`` in ``out_dir``
    (default ``work_dir``) and return the report. The plot's x axis is ``'flops'`` or ``'activations'``.

    Raises ``InputNotFoundError`` for a work dir without ``suite.json`` and ``InvalidInputError`` for
    results of another suite definition; a broken result.json is marked in the report.
    """
    from .report_render import markdown, plot
    if x_axis not in X_AXES:
        raise InvalidInputError(f'x_axis must be one of {", ".join(X_AXES)}, got {x_axis!r}')
    report = build_report(work_dir)
    out_dir = out_dir or work_dir
    os.makedirs(out_dir, exist_ok=True)
    report.files = {name: osp.join(out_dir, f'results.{name}') for name in ('json', 'md', 'png')}
    plot(report, report.files['png'], x_axis=x_axis)
    atomic_write(report.files['md'], markdown(report))  # a reader never sees half a report
    atomic_write(report.files['json'], json.dumps(report.to_json(), indent=2) + '\n')
    return report



# ---------------------------------------------------------------------------------------------- re-analysis
def reanalyse(results_files: List[str], plan_seeds: int = 8) -> Tuple[str, List[Dict[str, Any]]]:
    """The comparisons of finished reports recomputed from the per-seed values their ``results.json``
    holds (for reports written before the t/Holm/MDD statistics): each model against the reference
    the report chose, the t interval, the paired t p, Holm within each report and across all the
    files given, the minimal detectable difference at 80% power. Returns ``(markdown, rows)``."""
    from ..errors import InputNotFoundError
    rows: List[Dict[str, Any]] = []
    diffs: List[stats.PairedDifference] = []
    means = ['| suite | model | n | per-seed values | mean ± std | 95% t interval of the mean |',
             '|---|---|---:|---|---|---|']
    for path in results_files:
        if not osp.isfile(path):
            raise InputNotFoundError(f'no report {path}; give the results.json a suite report wrote')
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        suite = data['suite']
        primary = suite['primary_metric']
        by_key = {m['key']: m for m in data['models']}
        for m in data['models']:
            vals = [v for _, v in sorted(m['metrics'][primary]['values'].items()) if v is not None]
            if vals:
                mean, std = stats.mean_std(vals)
                lo, hi = stats.t_interval(vals, LEVEL)
                values = ', '.join(f'{v:.3f}' for v in vals)
                means.append(f"| {suite['name']} | {m['label']} | {len(vals)} | {values} | "
                             f"{mean:.3f} ± {std:.3f} | [{lo:.3f}, {hi:.3f}] |")
        mine = []
        for m in data['models']:
            if not m.get('reference'):
                continue
            ref = by_key[m['reference']]
            a = {int(k): v for k, v in m['metrics'][primary]['values'].items() if v is not None}
            b = {int(k): v for k, v in ref['metrics'][primary]['values'].items() if v is not None}
            d = stats.paired_difference(a, b, higher_is_better=True, n_boot=N_BOOT, level=LEVEL)
            mine.append(d)
            rows.append(dict(suite=suite['name'], metric=primary, model=m['label'], reference=ref['label'],
                             model_mean=m['metrics'][primary]['mean'], model_std=m['metrics'][primary]['std'],
                             model_t_ci=list(stats.t_interval(list(a.values()), LEVEL)), diff=d))
        stats.adjust_verdicts(mine)
        for r, d in zip(rows[len(rows) - len(mine):], mine):
            r['p_holm_report'], r['verdict_report'], r['family_report'] = d.p_adjusted, d.verdict, d.family_size
        diffs += mine
    across = stats.holm([d.p_value for d in diffs])
    lines = ['| suite | model | vs | n | mean diff | 95% t interval | paired t p | Holm p (report, m) | '
             f'Holm p (all {len(diffs)}) | MDD (80% power) | MDD at {plan_seeds} seeds | '
             'verdict (Holm within report) |',
             '|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|']
    for r, p_all in zip(rows, across):
        d = r['diff']
        r['p_holm_all'] = p_all
        r['mdd_plan'] = stats.min_detectable_difference(d.std_diff, plan_seeds, d.level)
        lines.append(f"| {r['suite']} | {r['model']} | {r['reference']} | {d.n_pairs} | {d.mean_diff:+.3f} | "
                     f"[{d.t_ci[0]:+.3f}, {d.t_ci[1]:+.3f}] | {d.p_value:.3f} | {r['p_holm_report']:.3f} "
                     f"({r['family_report']}) | {p_all:.3f} | {d.mdd:.3f} | {r['mdd_plan']:.3f} | "
                     f"{r['verdict_report']} |")
    return '\n'.join(lines) + '\n\n' + '\n'.join(means) + '\n', rows
