"""The ReXNet paper's random single-layer study: the rank of ``f(W X)`` against ``d_in / d_out``.

``W`` (``d_out x d_in``) and ``X`` (``d_in x n``, ``n >= d_out``) are Gaussian. The weight scale sets
the pre-activations' standard deviation: ``'fan_in'`` (entries of variance ``1 / d_in``: unit-variance
pre-activations, what a He/LeCun-style initialisation gives, where ReLU6 never clips), ``'unit'``
(variance 1: pre-activation std ``sqrt(d_in)``, which grows with ``d_in``), or a number ``s`` (entries
of variance ``s^2 / d_in``: pre-activation std ``s`` at every ``d_in``; ``s = 8`` puts 23% of them
above ReLU6's clip at 6). The same draws of ``W`` and ``X`` serve every nonlinearity, scale and
centring, so all comparisons at one ``d_in`` are paired, network by network.

The rank estimators (:mod:`.estimators`) are applied to the ``n x d_out`` matrix ``f(W X)^T`` (rows:
samples, columns: output channels), centred and uncentred, and divided by ``min(n, d_out) = d_out``.
Per point the study also records the **flat fraction** of each nonlinearity (pre-activations where
``|f'| < 0.01``: clipped or saturated; for ReLU6 the negative ones plus those above 6) and the
**clip-6 fraction** (pre-activations above 6). Tables, claims and figures: :mod:`.single_layer_report`.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from .estimators import CENTRINGS, DEFAULT_RTOL, ESTIMATORS, batched_estimates

__all__ = ['NONLINEARITIES', 'DEFAULT_DIM_RATIOS', 'DEFAULT_WEIGHT_SCALES', 'SWEEP_WEIGHT_SCALES',
           'parse_weight_scale', 'single_layer_study']

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
#: the weight scale of a plain run, and of the sweep docs/rank.md reports
DEFAULT_WEIGHT_SCALES = ('fan_in',)
SWEEP_WEIGHT_SCALES = ('fan_in', 'unit', '8')
#: a pre-activation where ``|f'|`` is below this is in a flat (clipped or saturated) part of ``f``
FLAT_SLOPE = 0.01


def parse_weight_scale(scale: Union[str, float]) -> str:
    """Canonical label of a weight scale: ``'fan_in'``, ``'unit'`` or a positive number as text."""
    if scale in ('fan_in', 'unit'):
        return str(scale)
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise InvalidInputError(f"weight scale {scale!r} is not 'fan_in', 'unit' or a positive number (the "
                                'pre-activation std, e.g. 8)')
    return f'{value:g}'


def _weight_std(scale: str, d_in: int) -> float:
    """Std of W's entries for ``scale`` (a label of :func:`parse_weight_scale`)."""
    if scale == 'unit':
        return 1.0
    return (1.0 if scale == 'fan_in' else float(scale)) / math.sqrt(d_in)


def _flat_fraction(f: Callable[[torch.Tensor], torch.Tensor], pre: torch.Tensor) -> float:
    x = pre.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    return float((g.abs() < FLAT_SLOPE).double().mean())


def _check(nonlinearities: Sequence[str], d_out: int, n: int, num_networks: int) -> None:
    if n < d_out:
        raise InvalidInputError(f'--n ({n}) must be >= --d-out ({d_out}): a layer of d_out channels needs at '
                                'least that many samples for its rank')
    if num_networks < 2:
        raise InvalidInputError(f'--num-networks ({num_networks}) must be >= 2: bands and intervals need a spread')
    unknown = [f for f in nonlinearities if f not in NONLINEARITIES]
    if unknown:
        raise KeyError(f'unknown nonlinearities {unknown}; choose from {list(NONLINEARITIES)}')


def _point_values(pre_base: torch.Tensor, d_in: int, d_out: int, n: int, nonlinearities: Sequence[str],
                  scales: Sequence[str], centrings: Sequence[str], estimators: Sequence[str], rtol: float,
                  values: dict, flat: dict, clip6: dict) -> None:
    """Append one chunk of networks' ratios (and its flat and clip-6 fractions) to the accumulators."""
    for sc in scales:
        pre = pre_base * _weight_std(sc, d_in)
        clip6.setdefault(sc, []).append((float((pre > 6).double().mean()), pre.shape[0]))
        for f in nonlinearities:
            a = NONLINEARITIES[f](pre)
            flat.setdefault((sc, f), []).append((_flat_fraction(NONLINEARITIES[f], pre), pre.shape[0]))
            for c in centrings:
                m = a - a.mean(dim=1, keepdim=True) if c == 'centred' else a
                est = batched_estimates(torch.linalg.svdvals(m), (n, d_out), estimators, rtol)
                for e, v in est.items():
                    values.setdefault((sc, f, c, e), []).extend((v / min(n, d_out)).tolist())


def _weighted(parts: List[tuple]) -> float:
    return sum(v * w for v, w in parts) / sum(w for _, w in parts)


def single_layer_study(nonlinearities: Sequence[str] = tuple(NONLINEARITIES),
                       dim_ratios: Sequence[float] = DEFAULT_DIM_RATIOS, d_out: int = 64, n: int = 256,
                       num_networks: int = 150, estimators: Sequence[str] = ESTIMATORS,
                       center: Optional[bool] = None, rtol: float = DEFAULT_RTOL, weight_std: str = 'fan_in',
                       seed: int = 0, chunk: int = 256, progress: bool = False,
                       weight_scales: Optional[Sequence[Union[str, float]]] = None) -> List[dict]:
    """Rank ratios of ``num_networks`` random layers per weight scale, nonlinearity, ratio, centring
    and estimator.

    ``center``: None (the default) measures both centrings; True / False only one. ``weight_scales``
    (labels of :func:`parse_weight_scale`) overrides the single ``weight_std``. One record per point
    with ``weight_scale``, ``nonlinearity``, ``dim_ratio`` (= ``d_in / d_out`` as used), ``d_in``,
    ``d_out``, ``n``, ``estimator``, ``centring`` and ``center``, ``rank_ratio_mean``,
    ``rank_ratio_std``, ``band_lo``/``band_hi`` (2.5th/97.5th percentile over the networks),
    ``flat_fraction``, ``clip6_fraction``, ``num_networks``, and ``values`` (one ratio per network,
    in draw order: index ``i`` is the same ``W``, ``X`` across nonlinearities, scales and centrings).
    """
    _check(nonlinearities, d_out, n, num_networks)
    scales = [parse_weight_scale(s) for s in (weight_scales or (weight_std,))]
    centrings = CENTRINGS if center is None else (CENTRINGS[0] if center else CENTRINGS[1],)
    records = []
    start = time.time()
    for i, ratio in enumerate(dim_ratios):
        d_in = max(1, int(round(ratio * d_out)))
        gen = torch.Generator().manual_seed(seed * 100003 + d_in)
        values: dict = {}
        flat: dict = {}
        clip6: dict = {}
        for lo in range(0, num_networks, chunk):
            b = min(chunk, num_networks - lo)
            w = torch.randn(b, d_out, d_in, generator=gen, dtype=torch.float64)
            x = torch.randn(b, d_in, n, generator=gen, dtype=torch.float64)
            pre_base = torch.bmm(w, x).transpose(1, 2)  # (b, n, d_out): rows are samples; W entries of std 1
            _point_values(pre_base, d_in, d_out, n, nonlinearities, scales, centrings, estimators, rtol,
                          values, flat, clip6)
        for (sc, f, c, e), v in values.items():
            arr = np.asarray(v)
            lo_q, hi_q = np.percentile(arr, [2.5, 97.5])
            records.append(dict(
                weight_scale=sc, nonlinearity=f, dim_ratio=d_in / d_out, d_in=d_in, d_out=d_out, n=n, estimator=e,
                centring=c, center=c == 'centred', rank_ratio_mean=float(arr.mean()), rank_ratio_std=float(arr.std()),
                band_lo=float(lo_q), band_hi=float(hi_q), flat_fraction=_weighted(flat[(sc, f)]),
                clip6_fraction=_weighted(clip6[sc]), num_networks=num_networks, values=v))
        if progress:
            print(f'[single-layer] ratio {i + 1}/{len(dim_ratios)} (d_in={d_in}, d_out={d_out}) '
                  f'{time.time() - start:.1f}s', file=sys.stderr, flush=True)
    return records
