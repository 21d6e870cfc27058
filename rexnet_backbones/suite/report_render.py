"""The human forms of a suite report: the markdown (table, verdicts, recipe, problems) and the plot."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, List, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .report import MetricStats, ModelSummary, Report

__all__ = ['markdown', 'plot', 'verdict_line', 'fmt_value', 'FAMILY_COLOURS']

#: plot colour of each family (others take the next free colour of matplotlib's tab10)
FAMILY_COLOURS = {'ReXNet': 'tab:red', 'RegNet': 'tab:blue', 'ResNet': 'tab:green', 'MobileNetV2': 'tab:orange',
                  'MobileNetV3': 'tab:purple'}


# ---------------------------------------------------------------------------------------------- formats
def _decimals(report: 'Report', metric: str) -> int:
    """3 decimals for metrics in [0, 1] (COCO mAP), 2 for percentages (mIoU)."""
    values = [abs(v) for m in report.models for v in m.metrics[metric].values.values()]
    return 3 if not values or max(values) <= 1.5 else 2


def fmt_value(v: Optional[float], decimals: int, sign: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return '-'
    return f'{v:+.{decimals}f}' if sign else f'{v:.{decimals}f}'


def _mean_std(s: Optional['MetricStats'], decimals: int, scale: float = 1.0, n_done: Optional[int] = None) -> str:
    """``mean ± std``; ``(n=k)`` after it when fewer values than done seeds went in."""
    if s is None or s.n == 0:
        return '-' if not n_done else '- (n=0)'
    mean = fmt_value(s.mean / scale, decimals)
    text = mean if s.n < 2 else f'{mean} ± {fmt_value(s.std / scale, decimals)}'
    return text + (f' (n={s.n})' if n_done is not None and s.n < n_done else '')


def _count(n: Optional[float], unit: float, decimals: int = 2) -> str:
    return '-' if n is None else f'{n / unit:.{decimals}f}'


def _interval(ci, decimals: int) -> str:
    return f'[{fmt_value(ci[0], decimals, True)}, {fmt_value(ci[1], decimals, True)}]'


# ---------------------------------------------------------------------------------------------- verdicts
def _vs_cell(report: 'Report', m: 'ModelSummary', decimals: int) -> str:
    if m.comparison is None:
        return 'reference' if m.is_reference else '-'
    c = m.comparison
    if c.n_pairs == 0:
        return f'vs {report.model(m.reference).label}: no paired seed'
    n = '' if c.n_pairs == len(m.seeds_asked) else f' ({c.n_pairs} seed{"s" if c.n_pairs > 1 else ""})'
    return (f'{fmt_value(c.mean_diff, decimals, True)} {_interval(c.t_ci, decimals)} vs '
            f'{report.model(m.reference).label}{n}: {c.verdict} (Holm p {_p(c.p_adjusted)}, '
            f'MDD {fmt_value(c.mdd, decimals)})')


def _p(p: Optional[float]) -> str:
    if p is None or not math.isfinite(p):
        return '-'
    return f'{p:.3f}' if p >= 0.001 else '<0.001'


def verdict_line(report: 'Report', m: 'ModelSummary') -> str:
    """``ReXNet-1.0 is better than RegNetX-800MF: coco/bbox_mAP +0.031 over 8 paired seeds (95% t interval
    ..., paired t p ..., Holm p ... over k comparisons, minimal detectable difference ...)``."""
    c, ref = m.comparison, report.model(m.reference)
    metric = report.suite.primary_metric
    if c is None or c.n_pairs == 0:
        return f'{m.label} vs {ref.label} ({m.reference_reason}): not compared, no seed finished for both.'
    d = _decimals(report, metric)
    head = {'better': f'{m.label} is better than {ref.label}', 'worse': f'{m.label} is worse than {ref.label}'}.get(
        c.verdict, f'{m.label} vs {ref.label}: inconclusive')
    pct = f'{round(100 * c.level)}%'
    boot = '' if not math.isfinite(c.ci[0]) else f', {pct} percentile bootstrap {_interval(c.ci, d)}'
    holm = '' if c.p_adjusted is None else f', Holm p {_p(c.p_adjusted)} over {c.family_size} comparisons'
    detail = (f'{metric} {fmt_value(c.mean_diff, d, True)} over {c.n_pairs} paired seeds '
              f'({pct} t interval {_interval(c.t_ci, d)}{boot}; paired t p {_p(c.p_value)}{holm}; '
              f'difference detectable with 80% power at this n and spread: {fmt_value(c.mdd, d)}; '
              f'reference: {m.reference_reason})')
    return f'{head}: {detail}' + (f'. Note: {c.note}.' if c.note else '.')


# ---------------------------------------------------------------------------------------------- markdown
def _table(report: 'Report') -> List[str]:
    suite = report.suite
    metrics = [suite.primary_metric] + [m for m in suite.metrics if m != suite.primary_metric]
    decimals = {m: _decimals(report, m) for m in metrics}
    headers = (['model', 'family', 'seeds done'] + [f'{m} (mean ± std)' for m in metrics]
               + ['params (M)', 'GFLOPs', 'activations (M)', 'CPU latency (ms)', 'peak train memory (MB)',
                  'train time (min)', f'{suite.primary_metric} vs reference (95% t interval)', 'flags'])
    rows = []
    for m in report.models:
        seeds = f'{len(m.seeds_done)}/{len(m.seeds_asked)}' + ('' if m.complete else ' ⚠')
        row = [m.label, m.family, seeds] + [_mean_std(m.metrics[k], decimals[k], n_done=len(m.seeds_done))
                                            for k in metrics]
        row += [_count(m.params, 1e6), _count(m.flops, 1e9), _count(m.activations, 1e6),
                '-' if m.latency_ms is None else f'{m.latency_ms:.1f}', _mean_std(m.peak_memory_mb, 0),
                _mean_std(m.train_time_s, 1, scale=60.0), _vs_cell(report, m, decimals[suite.primary_metric]),
                '; '.join(f.split(':')[0] for f in m.flags) or '-']
        rows.append(row)
    return (['| ' + ' | '.join(headers) + ' |', '|' + '|'.join(['---'] * 3 + ['---:'] * (len(headers) - 5)
                                                              + ['---', '---']) + '|']
            + ['| ' + ' | '.join(r) + ' |' for r in rows])


def _recipe_lines(report: 'Report') -> List[str]:
    lines = ['Recipe (the same for every model): ' + ('; '.join(f'{k} {v}' for k, v in report.recipe.items())
                                                     or 'not recorded') + '.']
    if report.recipe_differences:
        allowed = report.suite.allow_recipe_differences
        lines += ['', f'**Recipe keys that differ between models** ({"allowed" if allowed else "NOT allowed"} '
                      'by the suite):', '']
        for d in report.recipe_differences:
            values = ', '.join(f'{k}={v if len(v) <= 60 else v[:57] + "..."}' for k, v in d.values.items())
            lines.append(f'- `{d.key}`: {values}')
    return lines


def _pretrain_lines(report: 'Report') -> List[str]:
    """The pretraining recipe and each backbone's pretraining validation error (its ``<model>.json``)."""
    import json
    import os.path as osp
    p = report.suite.pretrain
    if not p:
        return []
    recipe = ', '.join(f'{k} {v}' for k, v in p.items() if k != 'dir')
    errors = []
    for m in report.models:
        path = osp.join(p['dir'], f'{m.key}.json')
        if osp.isfile(path):
            with open(path, encoding='utf-8') as f:
                errors.append(f"{m.label} {json.load(f)['val_error']:.1f}%")
    return ['', f'Every backbone was first pretrained as a classifier of the generated shape x texture set under '
                f'one recipe ({recipe}) and loaded by model.backbone.init_cfg=dict(type=\'Pretrained\', ...); '
                'pretraining top-1 validation error: ' + ('; '.join(errors) if errors else 'not found') + '.']


def _problem_lines(report: 'Report') -> List[str]:
    lines = []
    for m in report.models:
        for seed, what in sorted(m.problems.items()):
            lines.append(f'- {m.label} seed {seed}: {what}')
    if not lines:
        return []
    return ['', 'Jobs not counted (every mean above is over the seeds done only, the n shown):', ''] + lines


def markdown(report: 'Report') -> str:
    """``results.md``: the table, the verdicts, the recipe and the jobs not counted."""
    s = report.suite
    lines = [f'Suite `{s.name}` ({s.file}), {len(s.models)} models x {len(s.seeds)} seeds '
             f'({", ".join(map(str, s.seeds))}); task {s.task}, primary metric {s.primary_metric}.', '']
    lines += _table(report)
    lines += ['', 'Means ± sample std over the seeds done; a difference is the mean of the paired per-seed '
                  'differences with its Student t 95% interval (exact coverage for normal differences). A verdict '
                  'says better/worse only when the paired t test, Holm-adjusted across all comparisons of this '
                  'report, rejects at 5%; otherwise it is inconclusive, which is not "no difference": MDD is the '
                  'true difference the test would detect with 80% power at this number of seeds and this spread. '
                  'Below 10 seeds no percentile bootstrap is shown (with 3 seeds its "95%" is the [min, max] of '
                  'the differences, 75% coverage).', '']
    lines += [f'- {v}' for v in report.verdicts] or ['- no pair compared (no reference model with results)']
    lines += [''] + _recipe_lines(report) + _pretrain_lines(report) + _problem_lines(report)
    if report.hosts:
        lines += ['', f'Ran on: {", ".join(report.hosts)}.']
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------- plot
def _colours(report: 'Report') -> Dict[str, str]:
    spare = [f'tab:{n}' for n in ('brown', 'pink', 'gray', 'olive', 'cyan')]
    out = {}
    for m in report.models:
        if m.family not in out:
            out[m.family] = FAMILY_COLOURS.get(m.family) or (spare.pop(0) if spare else 'black')
    return out


def plot(report: 'Report', path: str, x_axis: str = 'flops') -> None:
    """The primary metric per model against GFLOPs (``x_axis='flops'``) or activations
    (``'activations'``): each seed a dot, the mean with its t 95% interval as a bar, coloured by family."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import offset_copy
    metric = report.suite.primary_metric
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left_of_mean = offset_copy(ax.transData, fig=fig, x=-7, y=0, units='points')  # seed dots beside the bar
    colours, seen = _colours(report), set()
    unit, xlabel = (1e9, 'GFLOPs') if x_axis == 'flops' else (1e6, 'activations (M)')
    for m in report.models:
        x = getattr(m, x_axis)
        s = m.metrics[metric]
        if x is None or s.n == 0:
            continue
        x = x / unit
        colour = colours[m.family]
        ax.scatter([x] * s.n, list(s.values.values()), s=14, color=colour, alpha=0.5, linewidths=0,
                   transform=left_of_mean)
        yerr = [[s.mean - s.ci[0]], [s.ci[1] - s.mean]] if s.n > 1 else None
        ax.errorbar([x], [s.mean], yerr=yerr, fmt='o', color=colour, capsize=4, markersize=6,
                    label=m.family if m.family not in seen else None)
        seen.add(m.family)
        ax.annotate(m.label + ('' if m.complete else f' ({s.n}/{len(m.seeds_asked)})'), (x, s.mean),
                    textcoords='offset points', xytext=(6, 4), fontsize=8)
    if not seen:
        ax.text(0.5, 0.5, 'no finished job yet', ha='center', va='center', transform=ax.transAxes)
    ax.set_xlabel(f'{xlabel} (whole model, one image)')
    ax.set_ylabel(metric)
    ax.set_title(f'{report.suite.name}: {metric} against cost\n(small dots: seeds; large dot and bar: mean and '
                 f'95% t interval)', fontsize=9)
    ax.grid(True, alpha=0.3)
    if seen:
        ax.legend(title='family', fontsize=8, title_fontsize=8, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
