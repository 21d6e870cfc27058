"""The statistics of a trained design-space study, all from its records (one per model):

* :func:`partial_rank_table` -- per space, Spearman's rho between a rank statistic and the error, raw
  and partial (holding the architecture parameters fixed: depth alone, or depth, w0, wa and wm), and
  rho(rank, parameter count), each with its bootstrap 95% interval. When rank mostly tracks width (rho
  with the parameter count far from 0), only the partial over every parameter says whether rank adds
  anything to the architecture.
* :func:`space_differences` -- for pairs of spaces, the difference in error: of medians (bootstrap
  interval), of means (t interval), adjusted for depth in a linear model (t interval), stratified by
  depth (one level per depth, only depths present in both spaces), and adjusted for depth and
  log FLOPs; with each space's depth range and mean MFLOPs (the regimes differ). Pairs whose
  networks are matched (same parameters per index, see :data:`.spaces.MATCHED`) also get the
  paired mean difference.
* :func:`paired_rank_table` -- for paired spaces (same networks, another activation): the paired rank
  difference and whether it predicts the paired error difference.
* :func:`layer_mix` -- layers measured per block, per space (a mean over block outputs and expand
  layers mixes them differently per space).
* Around a study: :func:`seconds_per_model_epoch` and :func:`plan_markdown` (its budget),
  :func:`sweep_markdown` (a learning-rate sweep), :func:`noise_table` and :func:`noise_pairs` (training-seed noise),
  :func:`budget_table` (the same networks under two training budgets, e.g. 1 epoch against 3).

Estimators, centring and n are in every row; nothing here decides: a row whose interval includes 0
is reported as such.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch.nn as nn

from .. import stats
from ..errors import InvalidInputError

__all__ = ['ARCH_PARAMS', 'CONTROL_SETS', 'DEFAULT_SPACE_PAIRS', 'rank_value', 'partial_rank_table',
           'space_differences', 'paired_rank_table', 'layer_mix', 'analysis', 'seconds_per_model_epoch',
           'plan_markdown', 'sweep_markdown', 'noise_table', 'noise_pairs', 'noise_markdown', 'budget_table',
           'budget_markdown']

ARCH_PARAMS = ('depth', 'w0', 'wa', 'wm')
#: name -> the architecture parameters held fixed
CONTROL_SETS = {'none': (), 'depth': ('depth',), 'depth, w0, wa, wm': ARCH_PARAMS}
#: (space A, space B): A - B; the questions the study asks
DEFAULT_SPACE_PAIRS = (('ir_stage', 'regnetx'), ('regnetx_noquant', 'regnetx'), ('ir_linear', 'ir_stage'),
                       ('ir_linear_silu', 'ir_linear'), ('ir_stage_silu', 'ir_stage'),
                       ('ir_linear_silu', 'ir_stage_silu'), ('ir_linear_silu', 'ir_stage'),
                       ('ir_linear_silu', 'regnetx'))


def _ok(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in records if r.get('error') is not None]


def _by_space(records: Sequence[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    out: Dict[str, List[Dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r['space'], []).append(r)
    return out


def rank_value(record: Dict[str, Any], phase: str, centring: str, estimator: str, statistic: str = 'mean',
               layers: str = 'all', norm: str = 'ratio') -> float:
    """One model's rank statistic. ``layers``: ``'all'`` (the mean over every block output and expand
    layer at the older capped sample, the only one older records have), ``'block'`` or ``'expand'``
    (at ``rows_per_channel`` rows per channel); ``norm``: ``'ratio'`` (rank / min(rows, C)) or
    ``'null'`` (rank / the rank of white noise of the same shape), the per-kind ones only in records of
    :func:`.trained_study.rank_stats` with ``by_kind``; a model without that kind of layer gives nan."""
    r = record['rank'][phase]
    if layers == 'all' and norm == 'ratio':
        return float(r[centring][estimator][statistic])
    kinds = r.get('by_kind')
    if kinds is None:
        raise KeyError(f'these records have no per-kind rank ({layers}, {norm}); they predate it')
    if layers not in kinds:
        return math.nan
    return float(kinds[layers][centring][norm][estimator][statistic])


def _arch(rs: Sequence[Dict[str, Any]], params: Sequence[str]) -> np.ndarray:
    return np.array([[float(r['arch'][p]) for p in params] for r in rs]).reshape(len(rs), len(params))


def partial_rank_table(records: Sequence[Dict[str, Any]], estimator: str = 'nuclear', phases=('init', 'trained'),
                       centrings=('centred', 'uncentred'), layers: str = 'all', norm: str = 'ratio',
                       n_boot: int = 2000, seed: int = 0) -> List[Dict[str, Any]]:
    """Per phase x centring x space: n, rho(rank, error) and the partial rho holding each of
    :data:`CONTROL_SETS` fixed (bootstrap 95% CIs), and rho(rank, parameter count)."""
    rows = []
    for phase in phases:
        for centring in centrings:
            for space, rs in _by_space(_ok(records)).items():
                rs = [r for r in rs if math.isfinite(rank_value(r, phase, centring, estimator, layers=layers,
                                                                norm=norm))]
                if len(rs) < 8:
                    continue
                x = [rank_value(r, phase, centring, estimator, layers=layers, norm=norm) for r in rs]
                y = [r['error'] for r in rs]
                row: Dict[str, Any] = dict(phase=phase, centring=centring, space=space, n=len(rs), layers=layers,
                                           norm=norm, estimator=estimator,
                                           rho_params=stats.spearman(x, [r['num_params'] for r in rs]))
                for name, params in CONTROL_SETS.items():
                    c = _arch(rs, params)
                    row[name] = dict(rho=stats.partial_spearman(x, y, c),
                                     ci=stats.partial_spearman_ci(x, y, c, n_boot=n_boot, seed=seed))
                rows.append(row)
    return rows


def _depth_range(rs: Sequence[Dict[str, Any]]) -> Tuple[int, int]:
    d = [r['arch']['depth'] for r in rs]
    return min(d), max(d)


def space_differences(records: Sequence[Dict[str, Any]], pairs: Sequence[Tuple[str, str]] = DEFAULT_SPACE_PAIRS,
                      n_boot: int = 10000, seed: int = 0) -> List[Dict[str, Any]]:
    """Error differences A - B (points) for each pair of spaces present (see the module docstring)."""
    from .spaces import MATCHED
    groups = _by_space(_ok(records))
    rows = []
    for a, b in pairs:
        if a not in groups or b not in groups:
            continue
        ra, rb = groups[a], groups[b]
        ea, eb = [r['error'] for r in ra], [r['error'] for r in rb]
        both = ra + rb
        y = np.array(ea + eb)
        g = np.r_[np.ones(len(ra)), np.zeros(len(rb))].astype(bool)
        depth = np.array([r['arch']['depth'] for r in both], dtype=float)
        logf = np.log([r['flops'] for r in both])
        med, med_ci = stats.median_difference(ea, eb, n_boot=n_boot, seed=seed)
        row: Dict[str, Any] = dict(
            a=a, b=b, n_a=len(ra), n_b=len(rb), depth_a=_depth_range(ra), depth_b=_depth_range(rb),
            mflops_a=float(np.mean([r['flops'] for r in ra])) / 1e6,
            mflops_b=float(np.mean([r['flops'] for r in rb])) / 1e6,
            median_diff=med, median_ci=med_ci, mean_diff=stats.adjusted_difference(y, g).to_json(),
            depth_linear=stats.adjusted_difference(y, g, depth[:, None]).to_json(),
            depth_flops_linear=stats.adjusted_difference(y, g, np.column_stack([depth, logf])).to_json())
        common = sorted(set(depth[g]) & set(depth[~g]))
        keep = np.isin(depth, common)
        if len(common) >= 2 and keep[g].sum() > 1 and keep[~g].sum() > 1:
            strata = (depth[keep][:, None] == np.array(common[1:])[None]).astype(float)
            row['depth_strata'] = dict(stats.adjusted_difference(y[keep], g[keep], strata).to_json(),
                                       depths=[int(d) for d in common], n_a=int(keep[g].sum()),
                                       n_b=int(keep[~g].sum()))
        if MATCHED.get(a) == MATCHED.get(b) is not None or a in _paired_with(b) or b in _paired_with(a):
            da = {r['index']: r['error'] for r in ra}
            db = {r['index']: r['error'] for r in rb}
            same = [i for i in set(da) & set(db) if _same_arch(groups, a, b, i)]
            if len(same) > 1:
                d = stats.paired_difference({i: da[i] for i in same}, {i: db[i] for i in same},
                                            higher_is_better=False, seed=seed)
                row['paired'] = dict(n=d.n_pairs, mean=d.mean_diff, t_ci=list(d.t_ci), ci=list(d.ci),
                                     p=d.p_value)
        rows.append(row)
    return rows


def _paired_with(space: str) -> Tuple[str, ...]:
    from .spaces import PAIRED
    return tuple(k for k, v in PAIRED.items() if v == space) + ((PAIRED[space],) if space in PAIRED else ())


def _same_arch(groups: Dict[str, List[Dict[str, Any]]], a: str, b: str, index: int) -> bool:
    pa = next(r['arch'] for r in groups[a] if r['index'] == index)
    pb = next(r['arch'] for r in groups[b] if r['index'] == index)
    return all(pa.get(k) == pb.get(k) for k in ARCH_PARAMS)


def paired_rank_table(records: Sequence[Dict[str, Any]], estimator: str = 'nuclear', phase: str = 'trained',
                      seed: int = 0) -> List[Dict[str, Any]]:
    """For each paired space with its base (same networks and weights): the paired rank difference
    (mean, t CI) per centring, and rho between the rank difference and the error difference."""
    from .spaces import PAIRED
    groups = _by_space(_ok(records))
    rows = []
    for space, base in PAIRED.items():
        if space not in groups or base not in groups:
            continue
        a = {r['index']: r for r in groups[space]}
        b = {r['index']: r for r in groups[base]}
        idx = sorted(set(a) & set(b))
        for centring in ('centred', 'uncentred'):
            dr = [rank_value(a[i], phase, centring, estimator) - rank_value(b[i], phase, centring, estimator)
                  for i in idx]
            de = [a[i]['error'] - b[i]['error'] for i in idx]
            mean, _ = stats.mean_std(dr)
            rows.append(dict(space=space, base=base, centring=centring, phase=phase, n=len(idx), rank_diff=mean,
                             rank_diff_t_ci=stats.t_interval(dr), rho=stats.spearman(dr, de),
                             rho_ci=stats.spearman_ci(dr, de, seed=seed)))
    return rows


def _projection_share(space: str, arch: Dict[str, Any], design: str) -> Optional[float]:
    """Share of a RegNet-space network's blocks whose shortcut is a 1x1 projection (None for others)."""
    if not space.startswith('regnetx'):
        return None
    from .spaces import build_space_model
    model = build_space_model(space, arch, 10, 1, design=design)
    blocks = [m for m in model.modules() if hasattr(m, 'downsample') and hasattr(m, 'conv3')]
    proj = [b for b in blocks if b.downsample is not None
            and any(isinstance(c, nn.Conv2d) for c in b.downsample.modules())]
    return len(proj) / len(blocks)


def layer_mix(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per space: mean layers measured per block (block outputs + expand layers), row-capped layers and,
    in the RegNet spaces, the share of blocks with a 1x1 projection shortcut (networks rebuilt)."""
    rows = []
    for space, rs in _by_space(records).items():
        per_block = [r['rank']['init']['num_layers'] / r['arch']['depth'] for r in rs]
        capped = [r['rank']['init']['capped'] for r in rs]
        shares = [_projection_share(space, r['arch'], r['settings'].get('design', 'independent')) for r in rs]
        rows.append(dict(space=space, n=len(rs), layers_per_block=float(np.mean(per_block)),
                         capped_mean=float(np.mean(capped)), capped_max=int(max(capped)),
                         layers_mean=float(np.mean([r['rank']['init']['num_layers'] for r in rs])),
                         projection_share=None if shares[0] is None else float(np.mean(shares))))
    return rows


def _fmt(v: Optional[float], spec: str = '+.2f') -> str:
    return '-' if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _ci(ci: Sequence[float], spec: str = '+.2f') -> str:
    return f'[{_fmt(ci[0], spec)}, {_fmt(ci[1], spec)}]'


def analysis(records: Sequence[Dict[str, Any]], estimator: str = 'nuclear', n_boot: int = 2000,
             seed: int = 0) -> Tuple[str, Dict[str, Any]]:
    """Every table above as markdown, and the same as a JSON-able dict."""
    partial = partial_rank_table(records, estimator, n_boot=n_boot, seed=seed)
    has_kinds = all('by_kind' in r['rank']['init'] for r in records)
    width_free = [row for kind in ('block', 'expand') for norm in ('null', 'ratio')
                  for row in partial_rank_table(records, estimator, layers=kind, norm=norm, n_boot=n_boot, seed=seed)] \
        if has_kinds else []
    diffs = space_differences(records, seed=seed)
    paired = paired_rank_table(records, estimator, seed=seed)
    mix = layer_mix(records)
    lines = ['**Rank against error, raw and partial** (Spearman; estimator '
             f'`{estimator}`, mean over every block output and expand layer of rank / min(rows, channels); '
             'partial: ranks of rank and error each regressed on the ranks of the parameters held fixed; '
             'bootstrap 95% CI over models):', '',
             '| rank measured | centring | space | n | rho(rank, params) | rho | partial, depth | '
             'partial, depth+w0+wa+wm |', '|---|---|---|---:|---:|---|---|---|']
    for r in partial:
        lines.append(f"| {r['phase']} | {r['centring']} | {r['space']} | {r['n']} | {_fmt(r['rho_params'])} | "
                     + ' | '.join(f"{_fmt(r[k]['rho'])} {_ci(r[k]['ci'])}" for k in CONTROL_SETS) + ' |')
    if width_free:
        lines += ['', '**Width-free rank against error** (per kind of layer: block outputs or expand layers, '
                  f'{records[0]["rank"]["init"].get("rows_per_channel", "k")} rows per channel with no cap; '
                  'null: rank / rank of white noise of the same shape and centring; ratio: rank / min(rows, C); '
                  'Spearman raw and partial as above):', '',
                  '| rank measured | layers | norm | centring | space | n | rho(rank, params) | rho | partial, depth | '
                  'partial, depth+w0+wa+wm |', '|---|---|---|---|---|---:|---:|---|---|---|']
        for r in width_free:
            lines.append(f"| {r['phase']} | {r['layers']} | {r['norm']} | {r['centring']} | {r['space']} | {r['n']} | "
                         f"{_fmt(r['rho_params'])} | "
                         + ' | '.join(f"{_fmt(r[k]['rho'])} {_ci(r[k]['ci'])}" for k in CONTROL_SETS) + ' |')
    lines += ['', '**Differences between spaces** (top-1 error points, A - B; negative: A better). Median: '
              'bootstrap 95% CI; mean and the adjusted ones: t 95% CI of the least-squares coefficient '
              '(linear in depth; depth as strata, only depths both spaces have; linear in depth and '
              'log FLOPs); paired: the same networks (same parameters and index) in both:', '',
              '| A - B | n A, B | depth A; B | MFLOPs A; B | median diff | mean diff | depth-adjusted | '
              'depth-stratified (n A, B) | depth+log FLOPs adjusted | paired (n) |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for r in diffs:
        strata = r.get('depth_strata')
        st = '-' if strata is None else (f"{_fmt(strata['estimate'])} {_ci(strata['t_ci'])} "
                                         f"({strata['n_a']}, {strata['n_b']})")
        p = r.get('paired')
        pd = '-' if p is None else f"{_fmt(p['mean'])} {_ci(p['t_ci'])} ({p['n']})"
        lines.append(
            f"| {r['a']} - {r['b']} | {r['n_a']}, {r['n_b']} | {r['depth_a'][0]}-{r['depth_a'][1]}; "
            f"{r['depth_b'][0]}-{r['depth_b'][1]} | {r['mflops_a']:.1f}; {r['mflops_b']:.1f} | "
            f"{_fmt(r['median_diff'])} {_ci(r['median_ci'])} | {_fmt(r['mean_diff']['estimate'])} "
            f"{_ci(r['mean_diff']['t_ci'])} | {_fmt(r['depth_linear']['estimate'])} {_ci(r['depth_linear']['t_ci'])}"
            f" | {st} | {_fmt(r['depth_flops_linear']['estimate'])} {_ci(r['depth_flops_linear']['t_ci'])} | {pd} |")
    if paired:
        lines += ['', '**Paired rank difference** (same networks and initial weights, trained; mean over the '
                  'pairs with t 95% CI) and Spearman rho between the rank difference and the error difference '
                  '(bootstrap 95% CI):', '', '| space - base | centring | n | rank ratio difference | '
                  'rho(d rank, d error) |', '|---|---|---:|---|---|']
        for r in paired:
            lines.append(f"| {r['space']} - {r['base']} | {r['centring']} | {r['n']} | "
                         f"{_fmt(r['rank_diff'], '+.4f')} {_ci(r['rank_diff_t_ci'], '+.4f')} | "
                         f"{_fmt(r['rho'])} {_ci(r['rho_ci'])} |")
    lines += ['', '**Layers in the rank mean** (block outputs + expand layers per block; row-capped: fewer '
              'rows than 4 x channels) and blocks with a 1x1 projection shortcut (RegNet spaces):', '',
              '| space | models | layers per block | row-capped layers, mean (max) | projection shortcuts |',
              '|---|---:|---:|---|---:|']
    for r in mix:
        share = '-' if r['projection_share'] is None else f"{100 * r['projection_share']:.0f}% of blocks"
        lines.append(f"| {r['space']} | {r['n']} | {r['layers_per_block']:.2f} | {r['capped_mean']:.1f} "
                     f"({r['capped_max']}) of {r['layers_mean']:.1f} | {share} |")
    data = dict(estimator=estimator, partial=partial, width_free=width_free, differences=diffs, paired_rank=paired,
                layer_mix=mix)
    return '\n'.join(lines) + '\n', data


# ---------------------------------------------------------------------------------------------- runs around a study
def seconds_per_model_epoch(records: Sequence[Dict[str, Any]]) -> Dict[str, Tuple[float, float]]:
    """Per space, the mean one-thread CPU seconds of a model from an earlier study's records, split into
    ``(training seconds per epoch at that study's num_train, the rest per model)``: the training share is
    ``train_seconds / seconds`` of ``cpu_seconds``; the rest (sampling, the rank passes) does not grow
    with epochs or images."""
    out: Dict[str, List[Tuple[float, float]]] = {}
    for r in records:
        if r.get('cpu_seconds') and r.get('seconds'):
            share = min(1.0, r.get('train_seconds', r['seconds']) / r['seconds'])
            train = r['cpu_seconds'] * share
            out.setdefault(r['space'], []).append((train / max(1, r['settings']['epochs']), r['cpu_seconds'] - train))
    return {k: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for k, v in out.items()}


def plan_markdown(plan: Dict[str, Any], timing: Dict[str, float]) -> str:
    """The runs of :func:`.trained_study.budget` as a table with their estimated hours."""
    lines = ['One-thread CPU seconds per model (from the timing file), training per epoch + the rest: '
             + ', '.join(f'{k} {a:.1f} + {b:.1f}' for k, (a, b) in sorted(timing.items()))
             + ' (a space missing there: as its base, or the costliest).', '',
             '| run | lr | models | epochs | train images | training seed | CPU hours |',
             '|---|---:|---:|---:|---:|---:|---:|']
    for k, r in enumerate(plan['runs']):
        what = 'main' if k == len(plan['runs']) - 1 else ('noise' if r['train_seed'] else 'lr sweep')
        lines.append(f"| {what} | {r['lr']:g} | {r['models']} | {r['epochs']} | {r['num_train']} | "
                     f"{r['train_seed']} | {r['cpu_hours']:.2f} |")
    lines += ['', f"Total: {plan['cpu_hours']:.2f} CPU hours; {plan['wall_hours']:.2f} hours on {plan['cores']} "
              'cores (one shard per core, --threads 1).']
    return '\n'.join(lines) + '\n'


def sweep_markdown(runs: Sequence[Sequence[Dict[str, Any]]]) -> str:
    """Median (and mean) error per space at each learning rate of a sweep (one record list per rate),
    the best rate per space marked."""
    table: Dict[str, Dict[float, Tuple[float, float, int]]] = {}
    for recs in runs:
        lr = float(recs[0]['settings']['lr'])
        for space, rs in _by_space(recs).items():
            err = [100.0 if r['error'] is None else r['error'] for r in rs]
            table.setdefault(space, {})[lr] = (float(np.median(err)), float(np.mean(err)), len(err))
    lrs = sorted({lr for v in table.values() for lr in v})
    lines = ['Median top-1 error % (mean) per space and learning rate (diverged models count as 100%); '
             '**bold**: the lowest median:', '', '| space | ' + ' | '.join(f'lr {v:g}' for v in lrs) + ' |',
             '|---|' + '---:|' * len(lrs)]
    for space, row in table.items():
        best = min(row, key=lambda v: row[v][0])
        cells = [('**{:.1f}** ({:.1f}, n={})' if v == best else '{:.1f} ({:.1f}, n={})').format(*row[v])
                 if v in row else '-' for v in lrs]
        lines.append(f'| {space} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _same_networks(runs: Sequence[Sequence[Dict[str, Any]]]) -> Dict[Tuple[str, int], List[Dict[str, Any]]]:
    """(space, index) -> its record in every run, for the networks trained in all of ``runs`` with the
    same architecture (e.g. the main run, then other training seeds or another budget)."""
    maps = [{(r['space'], r['index']): r for r in _ok(recs)} for recs in runs]
    out = {}
    for key, first in maps[0].items():
        recs = [m.get(key) for m in maps]
        if all(r is not None and all(r['arch'].get(p) == first['arch'].get(p) for p in ARCH_PARAMS) for r in recs):
            out[key] = recs
    return out


def noise_table(runs: Sequence[Sequence[Dict[str, Any]]], n_boot: int = 10000,
                seed: int = 0) -> List[Dict[str, Any]]:
    """Per space: the models trained in every run (main run first, then other training seeds), the
    pooled within-model std of the error over seeds (bootstrap 95% CI over the models), the
    between-model std of the per-model means, their ratio, the seed-to-seed Spearman rho of the error
    (mean over pairs of runs: does another seed order the models the same way?) and the reliability of
    one run's error, the share of its between-model variance that is not seed noise
    (``(between^2 - within^2 / k) / (between^2 - within^2 / k + within^2)``, k seeds, 0 when negative).
    A correlation of one run's error with a fixed property (rank, size) is attenuated by about the
    square root of the reliability."""
    per: Dict[str, List[List[float]]] = {}
    for (space, _), recs in _same_networks(runs).items():
        per.setdefault(space, []).append([r['error'] for r in recs])
    rows = []
    k = len(runs)
    for space, full in per.items():
        if len(full) < 2 or k < 2:
            continue
        arr = np.array(full)
        var = np.var(arr, axis=1, ddof=1)
        within = float(np.sqrt(var.mean()))
        lo, hi = stats.bootstrap_ci(var, n_boot=n_boot, seed=seed)
        between = float(np.std(arr.mean(axis=1), ddof=1))
        true_var = max(between ** 2 - within ** 2 / k, 0.0)
        total = true_var + within ** 2
        rhos = [stats.spearman(arr[:, i], arr[:, j]) for i in range(k) for j in range(i + 1, k)]
        rows.append(dict(space=space, models=len(full), seeds=k, within_std=within,
                         within_ci=[float(np.sqrt(lo)), float(np.sqrt(hi))], between_std=between,
                         ratio=within / between if between > 0 else math.nan,
                         retest_rho=float(np.nanmean(rhos)) if rhos else math.nan,
                         reliability=true_var / total if total > 0 else math.nan))
    return rows


def noise_pairs(runs: Sequence[Sequence[Dict[str, Any]]], n_boot: int = 10000, seed: int = 0) -> List[Dict[str, Any]]:
    """For the matched pairs of :data:`DEFAULT_SPACE_PAIRS` (the same networks in both spaces): the paired
    difference A - B of :func:`space_differences` over the networks trained in every run, in each run (one
    training seed each) and on the mean error over the seeds. Does a difference between spaces depend on
    which seed trained the networks?"""
    models = list(_same_networks(runs).values())

    def paired(records):
        return {(r['a'], r['b']): r['paired'] for r in space_differences(records, n_boot=n_boot, seed=seed)
                if 'paired' in r}
    per_run = [paired([recs[j] for recs in models]) for j in range(len(runs))]
    on_mean = paired([dict(recs[0], error=float(np.mean([r['error'] for r in recs]))) for recs in models])
    return [dict(a=a, b=b, n=d['n'], runs=[p[(a, b)] for p in per_run], seed_mean=d) for (a, b), d in on_mean.items()]


def _train_seed(records: Sequence[Dict[str, Any]]) -> str:
    seeds = sorted({r.get('settings', {}).get('train_seed', 0) for r in records})
    return ', '.join(str(x) for x in seeds)


def noise_markdown(runs: Sequence[Sequence[Dict[str, Any]]]) -> str:
    lines = ['Training-seed noise per space (the same models, several training seeds): pooled within-model '
             'std of the top-1 error (bootstrap 95% CI over the models), between-model std of the per-model '
             'means, seed-to-seed Spearman rho of the error (mean over pairs of seeds) and the reliability '
             "of one run's error (share of its spread between models that is not seed noise):", '',
             '| space | models | seeds | within-model std | between-model std | within / between | '
             'rho(seed, seed) | reliability |',
             '|---|---:|---:|---|---:|---:|---:|---:|']
    for r in noise_table(runs):
        within = f"{r['within_std']:.2f} {_ci(r['within_ci'], '.2f')}"
        lines.append(f"| {r['space']} | {r['models']} | {r['seeds']} | {within} | {r['between_std']:.2f} | "
                     f"{_fmt(r['ratio'], '.2f')} | {_fmt(r['retest_rho'])} | {_fmt(r['reliability'], '.2f')} |")
    pairs = noise_pairs(runs)
    if pairs:
        k = len(runs)
        lines += ['', 'Paired differences between matched spaces over these networks (points, negative: the first '
                  "space better; t 95% CI), in each training seed's run and on the mean error over the seeds:", '',
                  '| A - B | n | ' + ' | '.join(f'training seed {_train_seed(r)}' for r in runs)
                  + ' | mean over seeds |',
                  '|---|---:|' + '---|' * (k + 1)]
        for p in pairs:
            cells = [f"{_fmt(r['mean'])} {_ci(r['t_ci'])}" for r in p['runs'] + [p['seed_mean']]]
            lines.append(f"| {p['a']} - {p['b']} | {p['n']} | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _budget_label(records: Sequence[Dict[str, Any]]) -> str:
    st = records[0]['settings']
    return f"{st['epochs']} epoch{'s' if st['epochs'] != 1 else ''} x {st['num_train']} images"


def budget_table(run_a: Sequence[Dict[str, Any]], run_b: Sequence[Dict[str, Any]], n_boot: int = 10000,
                 seed: int = 0) -> Dict[str, Any]:
    """The networks two runs share (same space, index and architecture; e.g. a 1-epoch and a 3-epoch run
    of one study), trained under two budgets. Per space: the median error of each, the paired mean
    change B - A (t 95% CI) and Spearman rho between the two errors (bootstrap 95% CI: does the short
    run order the models as the long one does?). Per pair of spaces (:data:`DEFAULT_SPACE_PAIRS`): the
    differences of :func:`space_differences` in each run, over the shared networks only, so that the two
    runs answer the same question on the same models."""
    models = _same_networks([run_a, run_b])
    shared = list(models)
    a = {k: recs[0] for k, recs in models.items()}
    b = {k: recs[1] for k, recs in models.items()}
    if not shared:
        raise InvalidInputError('the two runs share no network (same space, index and architecture); give two runs '
                                'of one study (same spaces, FLOPs and seed)')
    spaces = []
    for space in dict.fromkeys(s for s, _ in shared):
        keys = [k for k in shared if k[0] == space]
        ea = [a[k]['error'] for k in keys]
        eb = [b[k]['error'] for k in keys]
        d = np.array(eb) - np.array(ea)
        rho = stats.spearman(ea, eb) if len(keys) > 2 else math.nan
        rho_ci = stats.spearman_ci(ea, eb, n_boot=n_boot, seed=seed) if len(keys) > 2 else (math.nan, math.nan)
        spaces.append(dict(space=space, n=len(keys), median_a=float(np.median(ea)), median_b=float(np.median(eb)),
                           change=float(d.mean()), change_t_ci=list(stats.t_interval(d)), rho=rho,
                           rho_ci=list(rho_ci)))
    diffs_a = space_differences([a[k] for k in shared], n_boot=n_boot, seed=seed)
    diffs_b = space_differences([b[k] for k in shared], n_boot=n_boot, seed=seed)
    pairs = [dict(a=x['a'], b=x['b'], run_a=x, run_b=y) for x, y in zip(diffs_a, diffs_b)]
    return dict(label_a=_budget_label(run_a), label_b=_budget_label(run_b), shared=len(shared), spaces=spaces,
                pairs=pairs)


def budget_markdown(run_a: Sequence[Dict[str, Any]], run_b: Sequence[Dict[str, Any]]) -> str:
    t = budget_table(run_a, run_b)
    la, lb = t['label_a'], t['label_b']
    lines = [f'The same networks under two budgets: A = {la}, B = {lb} ({t["shared"]} networks in both). Per space: '
             'median top-1 error %, the paired mean change B - A (t 95% CI) and Spearman rho between the two '
             'errors (bootstrap 95% CI):', '',
             '| space | n | median A | median B | change B - A | rho(error A, error B) |', '|---|---:|---:|---:|---|---|']
    for r in t['spaces']:
        lines.append(f"| {r['space']} | {r['n']} | {r['median_a']:.1f} | {r['median_b']:.1f} | "
                     f"{_fmt(r['change'])} {_ci(r['change_t_ci'])} | {_fmt(r['rho'])} {_ci(r['rho_ci'])} |")
    lines += ['', 'Differences between spaces in each run, over these networks only (points, negative: the first '
              'space better; depth-adjusted: t 95% CI of the least-squares coefficient; paired: the same networks '
              'in both spaces, t 95% CI):', '',
              '| A - B | n | depth-adjusted, A | depth-adjusted, B | paired, A | paired, B |',
              '|---|---|---|---|---|---|']
    for p in t['pairs']:
        x, y = p['run_a'], p['run_b']

        def paired(r):
            q = r.get('paired')
            return '-' if q is None else f"{_fmt(q['mean'])} {_ci(q['t_ci'])}"
        lines.append(f"| {p['a']} - {p['b']} | {x['n_a']}, {x['n_b']} | {_fmt(x['depth_linear']['estimate'])} "
                     f"{_ci(x['depth_linear']['t_ci'])} | {_fmt(y['depth_linear']['estimate'])} "
                     f"{_ci(y['depth_linear']['t_ci'])} | {paired(x)} | {paired(y)} |")
    return '\n'.join(lines) + '\n'
