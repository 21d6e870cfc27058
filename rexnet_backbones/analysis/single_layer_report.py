"""The single-layer study's claims table, markdown and figure (records of
:func:`.single_layer.single_layer_study`).

The paper's two findings, checked per estimator x centring x weight scale by paired comparisons over
the random layers (:func:`rexnet_backbones.stats.paired_difference`: a comparison holds or reverses
only when the Student's t 95% interval of the mean difference excludes 0 (the paired t test rejects;
the percentile bootstrap interval is shown beside it), else it is flat):

1. **rank expansion**: the rank ratio rises with ``d_in / d_out`` (a layer with fewer inputs than
   outputs loses rank): per nonlinearity other than the identity, the ratio at the largest
   ``d_in / d_out <= 1`` minus the ratio at the smallest (independent draws, paired by index).
2. **nonlinearity**: SiLU and ELU keep more rank than ReLU and ReLU6 where ``d_in < d_out``: each of
   SiLU, ELU minus each of ReLU, ReLU6, at every ratio below 1 (the same draws: truly paired).

A finding **holds** when every comparison holds, **reverses** when every one reverses, is **flat**
when none is called, and **mixed** otherwise; its margin is the weakest comparison's (the smallest
mean difference) with that comparison's bootstrap interval.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

from ..stats import paired_difference
from .estimators import CENTRINGS, ESTIMATORS

__all__ = ['FINDINGS', 'FOCUS', 'paper_claims', 'claims_markdown', 'study_markdown', 'plot_study']

#: the paper's findings, as the claims table names them
FINDINGS = ('1: rank rises with d_in/d_out', '2: SiLU & ELU > ReLU & ReLU6 at d_in < d_out')
_STATUS = {'better': 'holds', 'worse': 'reverses'}
_Key = Tuple[str, str, str, str, float]  # scale, nonlinearity, centring, estimator, dim_ratio


def _index(records: Sequence[dict]) -> Dict[_Key, dict]:
    return {(r['weight_scale'], r['nonlinearity'], r['centring'], r['estimator'], r['dim_ratio']): r
            for r in records}


def _comparisons(idx: Dict[_Key, dict], sc: str, c: str, e: str, finding: int) -> List[Tuple[str, list, list]]:
    """``(label, a values, b values)`` of one finding's comparisons (a - b > 0 supports it)."""
    nonlins = sorted({k[1] for k in idx})
    ratios = sorted({k[4] for k in idx})
    if finding == 1:
        low = [r for r in ratios if r <= 1.0 + 1e-9]
        if len(low) < 2:
            return []
        lo, hi = low[0], low[-1]
        return [(f'{f}: {hi:.2g} minus {lo:.2g}', idx[(sc, f, c, e, hi)]['values'], idx[(sc, f, c, e, lo)]['values'])
                for f in nonlins if f != 'identity']
    if not {'silu', 'elu', 'relu', 'relu6'} <= set(nonlins):
        return []
    return [(f'{a} minus {b} at {r:.2g}', idx[(sc, a, c, e, r)]['values'], idx[(sc, b, c, e, r)]['values'])
            for r in ratios if r < 1.0 - 1e-9 for a in ('silu', 'elu') for b in ('relu', 'relu6')]


def paper_claims(records: Sequence[dict], n_boot: int = 2000, seed: int = 0) -> List[dict]:
    """One row per finding x estimator x centring x weight scale: ``finding``, ``estimator``,
    ``centring``, ``weight_scale``, ``status`` (holds / reverses / flat / mixed), ``margin`` and ``ci``
    (the weakest comparison's mean difference and 95% bootstrap interval), ``weakest`` (its label),
    ``best_margin``, ``best_ci``, ``best`` (the same for the strongest comparison),
    ``counts`` (comparisons that hold / reverse / are flat) and ``num_networks``."""
    idx = _index(records)
    scales = list(dict.fromkeys(r['weight_scale'] for r in records))
    estimators = [e for e in ESTIMATORS if any(k[3] == e for k in idx)]
    centrings = [c for c in CENTRINGS if any(k[2] == c for k in idx)]
    rows = []
    for finding in (1, 2):
        for sc in scales:
            for e in estimators:
                for c in centrings:
                    comps = _comparisons(idx, sc, c, e, finding)
                    if not comps:
                        continue
                    diffs = [(label, paired_difference(dict(enumerate(a)), dict(enumerate(b)), n_boot=n_boot,
                                                       seed=seed)) for label, a, b in comps]
                    status = [_STATUS.get(d.verdict, 'flat') for _, d in diffs]
                    counts = {s: status.count(s) for s in ('holds', 'reverses', 'flat')}
                    overall = next((s for s, k in counts.items() if k == len(status)), 'mixed')
                    label, weakest = min(diffs, key=lambda t: t[1].mean_diff)
                    best_label, best = max(diffs, key=lambda t: t[1].mean_diff)
                    rows.append(dict(finding=FINDINGS[finding - 1], estimator=e, centring=c, weight_scale=sc,
                                     status=overall, margin=weakest.mean_diff, ci=list(weakest.ci), weakest=label,
                                     best_margin=best.mean_diff, best_ci=list(best.ci), best=best_label,
                                     counts=counts, num_networks=weakest.n_pairs))
    return rows


def _scale_text(sc: str) -> str:
    if sc == 'fan_in':
        return 'fan_in (W ~ N(0, 1/d_in): pre-activation std 1)'
    if sc == 'unit':
        return 'unit (W ~ N(0, 1): pre-activation std sqrt(d_in))'
    return f'{sc} (W ~ N(0, {sc}^2/d_in): pre-activation std {sc})'


def _margin(value: float, ci: Sequence[float]) -> str:
    return f'{value:+.3g}' + ('' if any(math.isnan(v) for v in ci) else f' [{ci[0]:+.3g}, {ci[1]:+.3g}]')


def claims_markdown(claims: Sequence[dict]) -> str:
    """The claims table: finding x weight scale x estimator x centring."""
    lines = ['| finding | weight scale | estimator | centring | status | weakest: margin [95% CI] '
             '| strongest: margin [95% CI] | holds / reverses / flat |', '|---|---|---|---|---|---|---|---|']
    for c in claims:
        n = c['counts']
        lines.append(f"| {c['finding']} | {c['weight_scale']} | {c['estimator']} | {c['centring']} | "
                     f"**{c['status']}** | {c['weakest']}: {_margin(c['margin'], c['ci'])} | "
                     f"{c['best']}: {_margin(c['best_margin'], c['best_ci'])} | "
                     f"{n['holds']} / {n['reverses']} / {n['flat']} |")
    return '\n'.join(lines) + '\n'


def _nearest(values: Sequence[float], targets: Sequence[float]) -> List[float]:
    return sorted({min(values, key=lambda a: abs(a - t)) for t in targets})


def study_markdown(records: Sequence[dict], ratios_shown: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
                   claims: Optional[Sequence[dict]] = None) -> str:
    """Per weight scale: the flat (clipped) fractions, then per estimator the mean rank ratio and its
    95% band over the networks, centred and uncentred side by side; then the claims table."""
    idx = _index(records)
    r0 = records[0]
    scales = list(dict.fromkeys(r['weight_scale'] for r in records))
    nonlins = list(dict.fromkeys(r['nonlinearity'] for r in records))
    estimators = [e for e in ESTIMATORS if any(k[3] == e for k in idx)]
    centrings = [c for c in CENTRINGS if any(k[2] == c for k in idx)]
    shown = _nearest(sorted({r['dim_ratio'] for r in records}), ratios_shown)
    lines = [f"Single random layers f(WX): d_out={r0['d_out']}, n={r0['n']}, {r0['num_networks']} layers per point "
             '(the same draws for every nonlinearity, scale and centring). Rank ratio = rank / min(n, d_out); '
             'cells: mean over the layers [2.5th, 97.5th percentile].', '']
    for sc in scales:
        lines += [f'### weight scale {_scale_text(sc)}', '',
                  'Flat fraction (pre-activations where |f\'| < 0.01: clipped or saturated), and the share above 6 '
                  '(where ReLU6 clips):', '',
                  '| nonlinearity | ' + ' | '.join(f'd_in/d_out={a:.3g}' for a in shown) + ' |',
                  '|---|' + '---:|' * len(shown)]
        any_key = (sc, nonlins[0], centrings[0], estimators[0])
        lines.append('| pre-activation > 6 | ' + ' | '.join(f"{idx[any_key + (a,)]['clip6_fraction']:.3f}"
                                                            for a in shown) + ' |')
        for f in nonlins:
            lines.append(f'| {f} | ' + ' | '.join(f"{idx[(sc, f, centrings[0], estimators[0], a)]['flat_fraction']:.3f}"
                                                  for a in shown) + ' |')
        lines.append('')
        for e in estimators:
            cols = [(a, c) for a in shown for c in centrings]
            lines += [f'**{e}** ({sc})', '', '| nonlinearity | ' + ' | '.join(f'{a:.3g} {c}' for a, c in cols) + ' |',
                      '|---|' + '---:|' * len(cols)]
            for f in nonlins:
                cells = [idx[(sc, f, c, e, a)] for a, c in cols]
                lines.append(f'| {f} | ' + ' | '.join(f"{r['rank_ratio_mean']:.3f} [{r['band_lo']:.3f}, "
                                                      f"{r['band_hi']:.3f}]" for r in cells) + ' |')
            lines.append('')
    claims = paper_claims(records) if claims is None else claims
    lines += ['### The paper\'s findings', '', 'Each comparison is a paired difference over the layers; it holds '
              '(reverses) when its t 95% interval lies above (below) 0 (bootstrap interval shown). See '
              '`rexnet_backbones/analysis/single_layer_report.py`.', '', claims_markdown(claims)]
    return '\n'.join(lines)


#: the nonlinearities and estimators of the focused figure (the paper's findings)
FOCUS = (('identity', 'relu', 'relu6', 'elu', 'silu'), ('nuclear', 'effective', 'stable'))


def plot_study(records: Sequence[dict], path: str, nonlinearities: Optional[Sequence[str]] = None,
               estimators: Optional[Sequence[str]] = None) -> None:
    """One row per weight scale x centring, one column per estimator: mean rank ratio vs d_in/d_out per
    nonlinearity, with its 95% band over the networks (only ``nonlinearities`` / ``estimators`` if given)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    idx = _index(records)
    scales = list(dict.fromkeys(r['weight_scale'] for r in records))
    nonlins = [f for f in dict.fromkeys(r['nonlinearity'] for r in records)
               if nonlinearities is None or f in nonlinearities]
    estimators = [e for e in ESTIMATORS if any(k[3] == e for k in idx) and (estimators is None or e in estimators)]
    panels = [(sc, c) for sc in scales for c in CENTRINGS if any(k[0] == sc and k[2] == c for k in idx)]
    ratios = sorted({r['dim_ratio'] for r in records})
    fig, axes = plt.subplots(len(panels), len(estimators), figsize=(3.4 * len(estimators), 2.7 * len(panels)),
                             squeeze=False)
    cmap = plt.get_cmap('tab20' if len(nonlins) > 10 else 'tab10')
    for row, (sc, c) in enumerate(panels):
        for col, e in enumerate(estimators):
            ax = axes[row][col]
            for k, f in enumerate(nonlins):
                pts = [idx[(sc, f, c, e, a)] for a in ratios]
                ax.plot(ratios, [p['rank_ratio_mean'] for p in pts], lw=1.1, color=cmap(k),
                        ls='--' if f == 'identity' else '-', label=f)
                ax.fill_between(ratios, [p['band_lo'] for p in pts], [p['band_hi'] for p in pts], color=cmap(k),
                                alpha=0.15, lw=0)
            ax.set_title(f'{e}, {c}, scale {sc}', fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == len(panels) - 1:
                ax.set_xlabel('d_in / d_out', fontsize=8)
            if col == 0:
                ax.set_ylabel('rank / d_out', fontsize=8)
    axes[0][0].legend(fontsize=6, ncol=2)
    r0 = records[0]
    fig.suptitle(f"random single layers f(WX): d_out={r0['d_out']}, n={r0['n']}, {r0['num_networks']} layers per "
                 'point; bands: 2.5th-97.5th percentile over the layers', fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)
