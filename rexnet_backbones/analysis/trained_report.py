"""Report of a trained design-space study: merge shard files, error EDFs, medians, rank against error.

* :func:`merge_records`: the records of several shard files; files of different study settings (a
  different settings hash in any line) are refused with one error.
* :func:`space_table`: per space, trained and diverged models, the median top-1 error with its
  bootstrap 95% interval (:func:`rexnet_backbones.stats.median_ci`) and the spread of the errors.
* :func:`rank_table`: per space (and all spaces pooled), Spearman's rho between a rank statistic
  (at init or after training, centred or not) and the error, with its bootstrap 95% interval.
* :func:`plot_error_edfs` (RegNet's figure: EDF of the error per space, bootstrap band) and
  :func:`plot_rank_scatter` (rank against error).
* The partial correlations, the median and depth-adjusted differences between spaces and the paired
  rank differences come from :mod:`.trained_stats` (in ``trained.md`` and ``analysis.json``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputNotFoundError, ToolError
from ..stats import edf_band, median_ci, paired_difference, spearman, spearman_ci
from .spaces import PAIRED, describe_spaces
from .trained_study import read_records

__all__ = ['merge_records', 'space_table', 'rank_table', 'paired_table', 'report_markdown', 'plot_error_edfs', 'plot_rank_scatter',
           'write_report']

PHASES = ('init', 'trained')
CENTRINGS = ('centred', 'uncentred')


def merge_records(paths: Sequence[str]) -> List[Dict[str, Any]]:
    """All records of ``paths``, one per ``(space, index)``, sorted; one settings hash or an error."""
    records: Dict[Tuple[str, int], Dict[str, Any]] = {}
    hashes: Dict[str, str] = {}
    for p in paths:
        if not os.path.isfile(p):
            raise InputNotFoundError(f'no study output {p}; give the --out files of the shards')
        for r in read_records(p):
            hashes.setdefault(r['settings_hash'], p)
            records.setdefault((r['space'], r['index']), r)
    if len(hashes) > 1:
        (h1, p1), (h2, p2) = list(hashes.items())[:2]
        raise ToolError(f'the shards come from different study settings: {p1} has {h1}, {p2} has {h2}; merge only '
                        'shards of one study (same spaces, models, FLOPs, data, schedule, seed)')
    if not records:
        raise InputNotFoundError(f'no finished models in {", ".join(paths)}')
    spaces = list(records[min(records, key=lambda k: k[1])]['settings']['spaces'])
    return [records[k] for k in sorted(records, key=lambda k: (spaces.index(k[0]) if k[0] in spaces else 99, k[1]))]


def _by_space(records: Sequence[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r['space'], []).append(r)
    return out


def space_table(records: Sequence[Dict[str, Any]], seed: int = 0) -> List[Dict[str, Any]]:
    """Per space: models, diverged, median error [95% bootstrap CI], mean error, min/10th/90th/max error,
    depth range, mean MFLOPs, median Mparams."""
    rows = []
    for space, rs in _by_space(records).items():
        err = np.array([r['error'] for r in rs if r['error'] is not None], dtype=float)
        depths = [r['arch']['depth'] for r in rs]
        row: Dict[str, Any] = dict(space=space, models=len(rs), diverged=sum(r['error'] is None for r in rs),
                                   mflops=float(np.mean([r['flops'] for r in rs])) / 1e6,
                                   mparams=float(np.median([r['num_params'] for r in rs])) / 1e6,
                                   depth=(min(depths), max(depths)))
        if err.size:
            lo, hi = median_ci(err, seed=seed) if err.size > 1 else (float(err[0]), float(err[0]))
            row.update(median=float(np.median(err)), median_lo=float(lo), median_hi=float(hi), mean=float(err.mean()),
                       min=float(err.min()),
                       p10=float(np.percentile(err, 10)), p90=float(np.percentile(err, 90)), max=float(err.max()))
        rows.append(row)
    return rows


def rank_table(records: Sequence[Dict[str, Any]], estimator: str = 'nuclear', statistic: str = 'mean',
               seed: int = 0) -> List[Dict[str, Any]]:
    """Spearman's rho (and 95% CI) of rank statistic vs error, per phase x centring x space (+ 'all')."""
    ok = [r for r in records if r['error'] is not None]
    groups = dict(_by_space(ok), all=ok)
    rows = []
    for phase in PHASES:
        for centring in CENTRINGS:
            for space, rs in groups.items():
                x = [r['rank'][phase][centring][estimator][statistic] for r in rs]
                y = [r['error'] for r in rs]
                rho = spearman(x, y) if len(rs) > 2 else float('nan')
                lo, hi = spearman_ci(x, y, seed=seed) if len(rs) > 3 else (float('nan'), float('nan'))
                rows.append(dict(phase=phase, centring=centring, space=space, n=len(rs), rho=rho, lo=lo, hi=hi))
    return rows


def paired_table(records: Sequence[Dict[str, Any]], seed: int = 0) -> List[Dict[str, Any]]:
    """For each paired space present with its base (SiLU against ReLU6 in the very same networks): the
    mean error difference (paired space - base) over the models both trained, its bootstrap and t 95%
    intervals and the verdict of :func:`rexnet_backbones.stats.paired_difference` (lower error is better)."""
    groups = _by_space(records)
    rows = []
    for space, base in PAIRED.items():
        if space in groups and base in groups:
            a = {r['index']: r['error'] for r in groups[space] if r['error'] is not None}
            b = {r['index']: r['error'] for r in groups[base] if r['error'] is not None}
            d = paired_difference(a, b, higher_is_better=False, seed=seed)
            rows.append(dict(space=space, base=base, n=d.n_pairs, mean_diff=d.mean_diff, ci=d.ci, t_ci=d.t_ci,
                             verdict=d.verdict, note=d.note, p=d.p_value))
    return rows


def _space_lrs(s: Dict[str, Any]) -> str:
    lrs = s.get('space_lrs')
    return ' (per space: ' + ', '.join(f'{k} {v:g}' for k, v in lrs) + ')' if lrs else ''


def _p(p: Optional[float]) -> str:
    """A p-value; below 1e-6 (where the t distribution's tail is computed as 1 - cdf) as '< 1e-6'."""
    return '-' if p is None or not np.isfinite(p) else ('< 1e-6' if p < 1e-6 else f'{p:.2g}')


def _fmt(v: Optional[float], spec: str = '.1f') -> str:
    return '-' if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def report_markdown(records: Sequence[Dict[str, Any]], estimator: str = 'nuclear',
                    analysis_md: Optional[str] = None) -> str:
    """The study's settings, the per-space error table, the rank-vs-error table and (``analysis_md``,
    from :func:`.trained_stats.analysis`) the partial correlations and space differences."""
    s = records[0]['settings']
    lines = [f"**Trained design-space study** (settings `{records[0]['settings_hash']}`): "
             f"{len(records)} models, FLOPs {s['flops'][0] / 1e6:g}-{s['flops'][1] / 1e6:g} M multiply-adds at "
             f"{s['input_size']}x{s['input_size']} (stem stride {s.get('stem_stride', 2)}), data `{s['data']}` "
             f"({s['num_train']} train / {s['num_val']} val images), {s['epochs']} epochs, batch {s['batch_size']}, "
             f"{s.get('optimizer', 'sgd')} lr {s['lr']}"
             f"{_space_lrs(s)}"
             f", wd {s['weight_decay']}"
             f"{', zero-init last BN' if s.get('zero_init_last') else ''}, seed {s['seed']}"
             f"{', training seed ' + str(s['train_seed']) if s.get('train_seed') else ''}, sampler "
             f"`{s.get('design', 'independent')}`.", '',
             describe_spaces([sp for sp in s['spaces']], s.get('design', 'independent')), '',
             '| space | models | diverged | median top-1 error % [95% bootstrap CI] | mean | min | p10 | p90 | max | '
             'depth | mean MFLOPs | median Mparams |',
             '|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|']
    for r in space_table(records):
        lines.append(f"| {r['space']} | {r['models']} | {r['diverged']} | {_fmt(r.get('median'))} "
                     f"[{_fmt(r.get('median_lo'))}, {_fmt(r.get('median_hi'))}] | {_fmt(r.get('mean'))} | "
                     f"{_fmt(r.get('min'))} | {_fmt(r.get('p10'))} | {_fmt(r.get('p90'))} | {_fmt(r.get('max'))} | "
                     f"{r['depth'][0]}-{r['depth'][1]} | {r['mflops']:.2f} | {r['mparams']:.2f} |")
    pairs = paired_table(records)
    if pairs:
        lines += ['', 'Paired: the same networks and initial weights, only the activation after the expand layers '
                  'differs (error difference in points, mean over the models both trained; 95% intervals):', '',
                  '| space - base | pairs | mean difference | bootstrap CI | t CI | paired t p | '
                  'verdict for the space |',
                  '|---|---:|---:|---|---|---:|---|']
        for r in pairs:
            lines.append(f"| {r['space']} - {r['base']} | {r['n']} | {_fmt(r['mean_diff'], '+.2f')} | "
                         f"[{_fmt(r['ci'][0], '.2f')}, {_fmt(r['ci'][1], '.2f')}] | [{_fmt(r['t_ci'][0], '.2f')}, "
                         f"{_fmt(r['t_ci'][1], '.2f')}] | {_p(r['p'])} | {r['verdict']} |")
    lines += ['', f'Spearman rho between the mean `{estimator}` rank ratio (rank / min(rows, channels), over every '
              'block output and expand layer, on the first validation images) and the top-1 error; 95% bootstrap CI:',
              '', '| rank measured | centring | space | n | rho [95% CI] |', '|---|---|---|---:|---|']
    for r in rank_table(records, estimator):
        lines.append(f"| {r['phase']} | {r['centring']} | {r['space']} | {r['n']} | {_fmt(r['rho'], '.2f')} "
                     f"[{_fmt(r['lo'], '.2f')}, {_fmt(r['hi'], '.2f')}] |")
    if analysis_md:
        lines += ['', analysis_md.rstrip('\n')]
    return '\n'.join(lines) + '\n'


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_error_edfs(records: Sequence[Dict[str, Any]], path: str, seed: int = 0) -> None:
    """Error EDF per space with its pointwise 95% bootstrap band (diverged models count as 100%)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    groups = _by_space(records)
    errs = {sp: [100.0 if r['error'] is None else r['error'] for r in rs] for sp, rs in groups.items()}
    allv = [v for e in errs.values() for v in e]
    grid = np.linspace(min(allv) - 1, max(allv) + 1, 300)
    for k, (sp, e) in enumerate(errs.items()):
        band = edf_band(e, grid, seed=seed)
        c = plt.get_cmap('tab10')(k)
        ax.fill_between(grid, band.lo, band.hi, color=c, alpha=0.2, step='post', lw=0)
        ax.step(grid, band.F, where='post', color=c, label=f'{sp} (n={len(e)}, median {np.median(e):.1f}%)')
    ax.set_xlabel('top-1 error (%)')
    ax.set_ylabel('cumulative prob.')
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc='lower right')
    ax.set_title('error EDFs of trained models (95% bootstrap bands)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rank_scatter(records: Sequence[Dict[str, Any]], path: str, estimator: str = 'nuclear') -> None:
    """Mean rank ratio against error; columns: at init / after training; rows: centred / uncentred."""
    plt = _plt()
    ok = [r for r in records if r['error'] is not None]
    fig, axes = plt.subplots(2, 2, figsize=(9, 7), squeeze=False)
    rho = {(r['phase'], r['centring']): r for r in rank_table(ok, estimator) if r['space'] == 'all'}
    for col, phase in enumerate(PHASES):
        for row, centring in enumerate(CENTRINGS):
            ax = axes[row, col]
            for k, (sp, rs) in enumerate(_by_space(ok).items()):
                ax.scatter([r['rank'][phase][centring][estimator]['mean'] for r in rs], [r['error'] for r in rs],
                           s=10, color=plt.get_cmap('tab10')(k), label=sp, alpha=0.8)
            t = rho[(phase, centring)]
            ax.set_title(f"{phase}, {centring}: rho {_fmt(t['rho'], '.2f')} [{_fmt(t['lo'], '.2f')}, "
                         f"{_fmt(t['hi'], '.2f')}]", fontsize=9)
            ax.set_xlabel(f'mean {estimator} rank ratio')
            ax.set_ylabel('top-1 error (%)')
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(paths: Sequence[str], out_dir: str, estimator: str = 'nuclear') -> Tuple[str, List[str]]:
    """Merge ``paths`` and write ``trained.jsonl`` (merged), ``trained.md``, ``error_edf.png``,
    ``rank_vs_error.png`` and ``analysis.json`` (:func:`.trained_stats.analysis`) into ``out_dir``;
    returns ``(markdown, written paths)``."""
    import json

    from .trained_stats import analysis
    records = merge_records(paths)
    os.makedirs(out_dir, exist_ok=True)
    names = [os.path.join(out_dir, n) for n in ('trained.jsonl', 'trained.md', 'error_edf.png', 'rank_vs_error.png',
                                                'analysis.json')]
    merged = ''.join(json.dumps(r, sort_keys=True) + '\n' for r in records)
    with open(names[0], 'w', encoding='utf-8') as f:
        f.write(merged)
    analysis_md, data = analysis(records, estimator)
    md = report_markdown(records, estimator, analysis_md)
    with open(names[1], 'w', encoding='utf-8') as f:
        f.write(md)
    with open(names[4], 'w', encoding='utf-8') as f:
        json.dump(_jsonable(data), f, indent=1)
        f.write('\n')
    plot_error_edfs(records, names[2])
    plot_rank_scatter(records, names[3], estimator)
    return md, names


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
