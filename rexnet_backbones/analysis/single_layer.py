"""The ReXNet paper's random single-layer study: the rank of ``f(W X)`` against ``d_in / d_out``.

``W`` (``d_out x d_in``) and ``X`` (``d_in x n``, ``n >= d_out``) are Gaussian; ``W`` has entries of
variance ``1 / d_in`` (``weight_std='fan_in'``, pre-activations of unit variance, what a He/LeCun-style
initialisation gives) or 1 (``weight_std='unit'``, pre-activations of variance ``d_in``). The rank
estimators (:mod:`.estimators`) are applied to the ``n x d_out`` matrix ``f(W X)^T`` (rows: samples,
columns: output channels), not centred unless asked, and divided by ``d_out``.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..cli import InvalidInputError
from .estimators import DEFAULT_RTOL, ESTIMATORS, estimates_from_singular_values

__all__ = ['NONLINEARITIES', 'DEFAULT_DIM_RATIOS', 'single_layer_study', 'paper_claims', 'plot_study',
           'study_markdown']

#: the nonlinearities of the study (torch's defaults for their parameters)
NONLINEARITIES: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    'identity': lambda x: x,
    'relu': F.relu,
    'relu6': F.relu6,
    'leaky_relu': F.leaky_relu,
    'elu': F.elu,
    'silu': F.silu,
    'gelu': F.gelu,
    'softplus': F.softplus,
    'sigmoid': torch.sigmoid,
    'tanh': torch.tanh,
    'hardswish': F.hardswish,
}

#: d_in / d_out ratios (the d_in actually used is ``round(ratio * d_out)``, at least 1)
DEFAULT_DIM_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)


def single_layer_study(nonlinearities: Sequence[str] = tuple(NONLINEARITIES),
                       dim_ratios: Sequence[float] = DEFAULT_DIM_RATIOS, d_out: int = 64, n: int = 256,
                       num_networks: int = 150, estimators: Sequence[str] = ESTIMATORS, center: bool = False,
                       rtol: float = DEFAULT_RTOL, weight_std: str = 'fan_in', seed: int = 0,
                       chunk: int = 256, progress: bool = False) -> List[dict]:
    """Mean and std of each rank ratio over ``num_networks`` random layers, per nonlinearity and ratio.

    Returns one record per (nonlinearity, ratio, estimator) with the keys ``nonlinearity``,
    ``dim_ratio`` (= ``d_in / d_out`` as used), ``d_in``, ``d_out``, ``n``, ``estimator``,
    ``rank_ratio_mean``, ``rank_ratio_std``, ``num_networks``, ``center``. The same ``W`` and ``X``
    (drawn from ``seed``) are used for every nonlinearity, so their curves are paired.
    """
    if n < d_out:
        raise InvalidInputError(f'--n ({n}) must be >= --d-out ({d_out}): a layer of d_out channels needs at '
                                'least that many samples for its rank')
    unknown = [f for f in nonlinearities if f not in NONLINEARITIES]
    if unknown:
        raise KeyError(f'unknown nonlinearities {unknown}; choose from {list(NONLINEARITIES)}')
    if weight_std not in ('fan_in', 'unit'):
        raise ValueError(f"weight_std must be 'fan_in' or 'unit', got {weight_std!r}")
    records = []
    start = time.time()
    for i, ratio in enumerate(dim_ratios):
        d_in = max(1, int(round(ratio * d_out)))
        gen = torch.Generator().manual_seed(seed * 100003 + d_in)
        values = {f: {e: [] for e in estimators} for f in nonlinearities}
        for lo in range(0, num_networks, chunk):
            b = min(chunk, num_networks - lo)
            w = torch.randn(b, d_out, d_in, generator=gen, dtype=torch.float64)
            if weight_std == 'fan_in':
                w /= math.sqrt(d_in)
            x = torch.randn(b, d_in, n, generator=gen, dtype=torch.float64)
            pre = torch.bmm(w, x).transpose(1, 2)  # (b, n, d_out): rows are samples
            for f in nonlinearities:
                a = NONLINEARITIES[f](pre)
                if center:
                    a = a - a.mean(dim=1, keepdim=True)
                svals = torch.linalg.svdvals(a)
                for s in svals:
                    for e, v in estimates_from_singular_values(s, (n, d_out), estimators, rtol).items():
                        values[f][e].append(v / d_out)
        for f in nonlinearities:
            for e in estimators:
                v = torch.tensor(values[f][e], dtype=torch.float64)
                records.append(dict(
                    nonlinearity=f, dim_ratio=d_in / d_out, d_in=d_in, d_out=d_out, n=n, estimator=e,
                    rank_ratio_mean=float(v.mean()), rank_ratio_std=float(v.std(unbiased=False)),
                    num_networks=num_networks, center=center))
        if progress:
            print(f'[single-layer] ratio {i + 1}/{len(dim_ratios)} (d_in={d_in}, d_out={d_out}) '
                  f'{time.time() - start:.1f}s', file=sys.stderr, flush=True)
    return records


def _curve(records: Iterable[dict], f: str, e: str) -> List[tuple]:
    return sorted((r['dim_ratio'], r['rank_ratio_mean']) for r in records
                  if r['nonlinearity'] == f and r['estimator'] == e)


def paper_claims(records: Sequence[dict], tol: float = 1e-9) -> Dict[str, Dict[str, object]]:
    """Which estimators support the paper's two findings, per estimator:

    * ``grows``: the mean rank ratio never decreases with ``d_in / d_out`` for any nonlinearity
      (within ``tol``) and increases overall from the smallest to the largest ratio for the
      non-identity ones; ``flat`` lists the nonlinearities whose curve does not rise at all.
    * ``silu_elu_over_relu``: at every ratio < 1, both SiLU and ELU are above both ReLU and ReLU6
      (only checked when the four were run); ``margin`` is the smallest such difference.
    """
    out: Dict[str, Dict[str, object]] = {}
    estimators = sorted({r['estimator'] for r in records})
    nonlins = sorted({r['nonlinearity'] for r in records})
    for e in estimators:
        res: Dict[str, object] = {}
        grows, flat = True, []
        for f in nonlins:
            c = [v for _, v in _curve(records, f, e)]
            if any(b < a - tol for a, b in zip(c, c[1:])):
                grows = False
            if c[-1] - c[0] <= tol:
                flat.append(f)
        res['grows'] = grows and not flat
        res['flat'] = flat
        if {'silu', 'elu', 'relu', 'relu6'} <= set(nonlins):
            curves = {f: dict(_curve(records, f, e)) for f in ('silu', 'elu', 'relu', 'relu6')}
            ratios = [r for r in curves['silu'] if r < 1]
            margins = [min(curves[a][r] for a in ('silu', 'elu')) - max(curves[b][r] for b in ('relu', 'relu6'))
                       for r in ratios]
            res['silu_elu_over_relu'] = bool(margins) and min(margins) > tol
            res['margin'] = min(margins) if margins else None
        out[e] = res
    return out


def study_markdown(records: Sequence[dict], ratios_shown: Sequence[float] = (0.25, 0.5, 1.0, 2.0)) -> str:
    """Tables of the mean rank ratio per estimator at a few ratios, and the claims check."""
    estimators = [e for e in ESTIMATORS if any(r['estimator'] == e for r in records)]
    nonlins = list(dict.fromkeys(r['nonlinearity'] for r in records))
    all_ratios = sorted({r['dim_ratio'] for r in records})
    shown = sorted({min(all_ratios, key=lambda a: abs(a - t)) for t in ratios_shown})
    r0 = records[0]
    lines = [f"Single random layers f(WX): d_out={r0['d_out']}, n={r0['n']}, {r0['num_networks']} layers per point, "
             f"features {'centred' if r0.get('center') else 'not centred'}. Mean rank ratio (rank / d_out).", '']
    claims = paper_claims(records)
    for e in estimators:
        lines += [f'**{e}**', '', '| nonlinearity | ' + ' | '.join(f'd_in/d_out={a:.3g}' for a in shown) + ' |',
                  '|---|' + '---:|' * len(shown)]
        for f in nonlins:
            c = dict(_curve(records, f, e))
            lines.append(f'| {f} | ' + ' | '.join(f'{c[a]:.3f}' for a in shown) + ' |')
        lines.append('')
    lines += ['| estimator | rank grows with d_in/d_out | flat curves | SiLU & ELU > ReLU & ReLU6 at d_in<d_out '
              '| smallest margin |', '|---|---|---|---|---:|']
    for e in estimators:
        c = claims[e]
        margin = c.get('margin')
        lines.append(f"| {e} | {'yes' if c['grows'] else 'no'} | {', '.join(c['flat']) or '-'} | "
                     f"{'yes' if c.get('silu_elu_over_relu') else 'no'} | "
                     f"{'-' if margin is None else f'{margin:+.3f}'} |")
    return '\n'.join(lines) + '\n'


def plot_study(records: Sequence[dict], path: str) -> None:
    """One panel per estimator: mean rank ratio vs d_in/d_out, one curve per nonlinearity."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    estimators = [e for e in ESTIMATORS if any(r['estimator'] == e for r in records)]
    nonlins = list(dict.fromkeys(r['nonlinearity'] for r in records))
    cols = min(3, len(estimators))
    rows = math.ceil(len(estimators) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    cmap = plt.get_cmap('tab20')
    for ax, e in zip(axes.flat, estimators):
        for k, f in enumerate(nonlins):
            xs, ys = zip(*_curve(records, f, e))
            ax.plot(xs, ys, marker='.', ms=3, lw=1.2, color=cmap(k), ls='--' if f == 'identity' else '-', label=f)
        ax.set_title(e)
        ax.set_xlabel('d_in / d_out')
        ax.set_ylabel('rank / d_out')
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(estimators):]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=7, ncol=2)
    r0 = records[0]
    fig.suptitle(f"random single layers f(WX): d_out={r0['d_out']}, n={r0['n']}, "
                 f"{r0['num_networks']} layers per point")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
