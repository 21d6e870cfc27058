"""The project's statistics over seeds and over sampled models (numpy only, every resampling seeded).

* :func:`mean_std` -- mean and sample standard deviation (``ddof=1``) over seeds.
* :func:`bootstrap_ci`, :func:`median_ci` -- percentile bootstrap intervals of a statistic.
* :func:`t_interval`, :func:`t_test_p` -- Student's t interval of a mean and the two-sided p of a mean 0.
* :func:`paired_difference` -- model A against a reference B on the seeds both ran, with a verdict.
* :func:`holm` -- Holm's step-down adjustment of a family of p-values; :func:`adjust_verdicts` applies it.
* :func:`t_power`, :func:`min_detectable_difference` -- power of the two-sided one-sample (paired) t
  test (exact: the noncentral t by quadrature) and the smallest true difference it finds with 80%.
* :func:`edf`, :func:`edf_band` -- empirical distribution function and its bootstrap band (RegNet's
  figures: Radosavovic et al., "Designing Network Design Spaces", compare spaces by the EDF of the
  errors of sampled, trained models).
* :func:`spearman`, :func:`spearman_ci` -- rank correlation (ties get average ranks) and its bootstrap.
* :func:`partial_spearman`, :func:`partial_spearman_ci` -- Spearman's rho of x and y after removing
  (least squares on the ranks) the ranks of any number of controls, and its bootstrap.
* :func:`median_difference` -- median(A) - median(B) of two independent groups with its bootstrap.
* :func:`adjusted_difference` -- the difference between two groups in a linear model with covariates
  (e.g. depth), with its t interval (ordinary least squares).

What a bootstrap over a few seeds can say: the percentile bootstrap resamples the n observed values, so
it knows nothing beyond them. With 3 seeds there are only 10 distinct resamples and each extreme one
(all three draws the same value) has probability 1/27 = 3.7% > 2.5%, so the 95% interval of the mean is
exactly ``[min, max]`` of the values: "better" then means "better on every seed", nothing finer. It
also ignores that 3 values under-represent the spread (the bootstrap std is sqrt((n-1)/n) of the sample
one); its nominal 95% covers the mean about 75% of the time at n = 3. Student's t interval accounts for
that (exact coverage for normal differences) and with 2 degrees of freedom it is wide (t = 4.30).
:func:`paired_difference` therefore gives the percentile bootstrap only from :data:`MIN_BOOTSTRAP_N`
pairs on, and decides on the t test alone: 'better'/'worse' when its p (Holm-adjusted across a
report's comparisons by :func:`adjust_verdicts`) is below ``1 - level``, else 'inconclusive' -- never
"no difference": a t test that does not reject says nothing about equality, and at 3 seeds its power
against a one-sigma difference is 18% (:func:`t_power`). ``mdd`` is the true difference the test would
find with 80% power at the observed spread (:func:`min_detectable_difference`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Hashable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ['mean_std', 'bootstrap_ci', 'median_ci', 't_quantile', 't_interval', 't_test_p', 'PairedDifference',
           'paired_difference', 'VERDICTS', 'MIN_BOOTSTRAP_N', 'POWER', 'holm', 'adjust_verdicts', 't_power',
           'min_detectable_difference', 'edf', 'edf_at', 'EdfBand', 'edf_band', 'rankdata', 'spearman',
           'spearman_ci', 'partial_spearman', 'partial_spearman_ci', 'median_difference', 'adjusted_difference',
           'AdjustedDifference']

#: the three verdicts of :func:`paired_difference`, in plain words
VERDICTS = ('better', 'worse', 'inconclusive')
#: fewer pairs than this get no percentile bootstrap interval (its coverage is far below nominal)
MIN_BOOTSTRAP_N = 10
#: the power at which :func:`min_detectable_difference` is quoted
POWER = 0.8
Interval = Tuple[float, float]
Stat = Callable[..., Any]


def _as_array(values: Sequence[float], what: str = 'values') -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f'{what} is empty: a statistic needs at least one value')
    return arr


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``); one value gives std ``nan``."""
    arr = _as_array(values)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return float(np.mean(arr)), std


def _resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    if n_boot < 1:
        raise ValueError(f'n_boot must be >= 1, got {n_boot}')
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _tails(level: float) -> Tuple[float, float]:
    """The percentiles (0-100) that bound a central interval of ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f'level must be in (0, 1), got {level}')
    return 50 * (1 - level), 50 * (1 + level)


def _percentiles(samples: np.ndarray, level: float) -> Interval:
    tails = _tails(level)
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, tails)
    return float(lo), float(hi)


def _apply_rows(stat: Stat, rows: np.ndarray) -> np.ndarray:
    """``stat`` of each row: vectorised when ``stat`` takes ``axis`` (numpy reductions), else a loop."""
    try:
        out = np.asarray(stat(rows, axis=1), dtype=np.float64)
        if out.shape == (rows.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([stat(row) for row in rows], dtype=np.float64)


def bootstrap_ci(values: Sequence[float], stat: Stat = np.mean, n_boot: int = 10000, level: float = 0.95,
                 seed: int = 0) -> Interval:
    """Percentile bootstrap interval ``(lo, hi)`` of ``stat(values)``.

    Constant data gives a zero-width interval; one value gives ``(v, v)``. See the module docstring for
    what it can say over 3 seeds.
    """
    arr = _as_array(values)
    rows = arr[_resample_indices(arr.size, n_boot, seed)]
    return _percentiles(_apply_rows(stat, rows), level)


def median_ci(values: Sequence[float], n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the median."""
    return bootstrap_ci(values, stat=np.median, n_boot=n_boot, level=level, seed=seed)


# ---------------------------------------------------------------------------------------------- Student's t
def _t_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4, exact)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= (2 * k) / (2 * k + 1) * c2
        return (2 / math.pi) * (theta + s * math.cos(theta) * total) if df > 1 else 2 * theta / math.pi
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= (2 * k - 1) / (2 * k) * c2
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (``p`` in (0.5, 1)) of Student's t with integer ``df >= 1`` (bisection)."""
    if not 0.5 < p < 1.0 or df < 1:
        raise ValueError(f'need 0.5 < p < 1 and df >= 1, got p={p}, df={df}')
    target, lo, hi = 2 * p - 1, 0.0, 1.0
    while _t_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided(mid, df) < target else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Student's t interval of the mean; ``(nan, nan)`` for fewer than 2 values."""
    arr = _as_array(values)
    if arr.size < 2:
        return math.nan, math.nan
    mean, std = mean_std(arr)
    half = t_quantile((1 + level) / 2, arr.size - 1) * std / math.sqrt(arr.size)
    return mean - half, mean + half


def t_test_p(values: Sequence[float]) -> float:
    """Two-sided p of Student's one-sample t test of mean 0 (the paired t test of differences);
    ``nan`` for fewer than 2 values; constant values give 0 (non-zero) or 1 (all zero)."""
    arr = _as_array(values)
    if arr.size < 2:
        return math.nan
    mean, std = mean_std(arr)
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    t = abs(mean) / (std / math.sqrt(arr.size))
    return max(0.0, 1.0 - _t_two_sided(t, arr.size - 1))


_ERF = np.frompyfunc(math.erf, 1, 1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise (math.erf)."""
    return 0.5 * (1.0 + _ERF(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64))


def t_power(effect: float, n: int, level: float = 0.95) -> float:
    """Power of the two-sided one-sample t test at ``level`` with ``n`` values when the true mean is
    ``effect`` standard deviations from 0: ``P(|T'| > t_crit)`` for the noncentral t with ``n - 1``
    degrees of freedom and noncentrality ``effect * sqrt(n)``, integrated exactly over the chi
    distribution of the sample std (Simpson's rule on 8,000 intervals; within 1e-6 of scipy's
    noncentral t)."""
    if n < 2:
        return math.nan
    df, lam = n - 1, abs(effect) * math.sqrt(n)
    crit = t_quantile((1 + level) / 2, df)
    w = np.linspace(0.0, math.sqrt(df) + 14.0, 8001)  # chi variable, sqrt(V) with V ~ chi2(df)
    with np.errstate(divide='ignore'):
        log_w = np.where(w > 0, np.log(np.where(w > 0, w, 1.0)), -np.inf)
    log_pdf = (df - 1) * log_w if df > 1 else np.zeros_like(w)
    pdf = np.exp(log_pdf - w * w / 2 - ((df / 2 - 1) * math.log(2) + math.lgamma(df / 2)))
    s = w / math.sqrt(df)
    reject = _normal_cdf(lam - crit * s) + _normal_cdf(-lam - crit * s)
    f = pdf * reject
    total = float((f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()) * (w[1] - w[0]) / 3)  # Simpson
    return min(1.0, max(0.0, total))


def min_detectable_difference(std: float, n: int, level: float = 0.95, power: float = POWER) -> float:
    """The true mean difference that the two-sided t test at ``level`` over ``n`` paired values of
    standard deviation ``std`` detects with probability ``power`` (:func:`t_power` inverted);
    ``nan`` for fewer than 2 values or a non-finite ``std``."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    lo, hi = 0.0, 1.0
    while t_power(hi, n, level) < power:
        hi *= 2
    for _ in range(40):  # to 1e-12 of the bracket
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_power(mid, n, level) < power else (lo, mid)
    return (lo + hi) / 2 * std


def holm(pvalues: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values (same order as given): the family-wise error of rejecting
    every adjusted p below alpha is at most alpha. ``nan`` values stay ``nan`` and do not count in m."""
    p = [float(v) for v in pvalues]
    finite = sorted((v, i) for i, v in enumerate(p) if math.isfinite(v))
    m, out, running = len(finite), [math.nan] * len(p), 0.0
    for k, (v, i) in enumerate(finite):
        running = max(running, min(1.0, (m - k) * v))
        out[i] = running
    return out


# ---------------------------------------------------------------------------------------------- paired difference
@dataclass
class PairedDifference:
    """A against B on the seeds both have: ``mean_diff`` = mean of ``a[s] - b[s]``."""
    mean_diff: float
    std_diff: float
    ci: Interval  # percentile bootstrap of the mean difference; (nan, nan) below MIN_BOOTSTRAP_N pairs
    t_ci: Interval  # Student's t interval of the mean difference
    level: float
    n_pairs: int
    seeds: List[Hashable]
    higher_is_better: bool
    verdict: str
    note: Optional[str] = None
    p_value: float = math.nan  # two-sided paired t test
    p_adjusted: Optional[float] = None  # Holm across the report's comparisons (adjust_verdicts)
    mdd: float = math.nan  # true difference detected with 80% power at this n and spread
    family_size: int = 1  # comparisons in the Holm family

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out['ci'], out['t_ci'] = list(self.ci), list(self.t_ci)
        return out


def _verdict(mean_diff: float, p: float, level: float, higher_is_better: bool) -> str:
    """'better' / 'worse' when the (adjusted) two-sided t test rejects at ``1 - level``, else 'inconclusive'."""
    if not math.isfinite(p) or p >= 1 - level or mean_diff == 0:
        return VERDICTS[2]
    return VERDICTS[0] if (mean_diff > 0) == higher_is_better else VERDICTS[1]


def _pairing_note(a: Mapping[Hashable, float], b: Mapping[Hashable, float], seeds: List[Hashable],
                  dropped: List[Hashable]) -> Optional[str]:
    notes = []
    only = sorted(set(a) ^ set(b), key=str)
    if only:
        notes.append(f'seeds not in both: {", ".join(map(str, only))}')
    if dropped:
        notes.append(f'non-finite values dropped at seeds {", ".join(map(str, dropped))}')
    if len(seeds) < 3:
        notes.append(f'only {len(seeds)} paired seed{"s" if len(seeds) != 1 else ""}: '
                     + ('no interval' if len(seeds) < 2 else 'the intervals are very coarse'))
    return '; '.join(notes) or None


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float], higher_is_better: bool = True,
                      n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> PairedDifference:
    """Paired difference ``a[s] - b[s]`` over the seeds ``s`` in both, with a verdict for A.

    The verdict is 'better' (or 'worse') when the two-sided paired t test rejects at ``1 - level``
    (the t interval excludes 0), with the sign flipped when lower is better; otherwise 'inconclusive'.
    Fewer than 2 pairs are always inconclusive. The percentile bootstrap interval ``ci`` is given from
    :data:`MIN_BOOTSTRAP_N` pairs on (``(nan, nan)`` below). ``mdd``: the difference detectable with 80%
    power at this n and the observed std. ``note`` says when seeds do not match, values were dropped or
    fewer than 3 pairs remain. Over several comparisons, pass them to :func:`adjust_verdicts`.
    """
    common = sorted(set(a) & set(b), key=lambda s: (str(type(s)), s))
    seeds = [s for s in common if math.isfinite(a[s]) and math.isfinite(b[s])]
    dropped = [s for s in common if s not in seeds]
    note = _pairing_note(a, b, seeds, dropped)
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    if diffs.size == 0:
        nan2 = (math.nan, math.nan)
        return PairedDifference(math.nan, math.nan, nan2, nan2, level, 0, [], higher_is_better, VERDICTS[2], note)
    mean, std = mean_std(diffs)
    ci = bootstrap_ci(diffs, n_boot=n_boot, level=level, seed=seed) if diffs.size >= MIN_BOOTSTRAP_N \
        else (math.nan, math.nan)
    p = t_test_p(diffs)
    return PairedDifference(mean, std, ci, t_interval(diffs, level), level, int(diffs.size), seeds, higher_is_better,
                            _verdict(mean, p, level, higher_is_better), note, p_value=p,
                            mdd=min_detectable_difference(std, int(diffs.size), level))


def adjust_verdicts(diffs: Sequence[PairedDifference]) -> None:
    """Holm-adjust the p-values of a family of comparisons (e.g. every pair of one report) in place:
    sets ``p_adjusted`` and ``family_size`` and re-derives each verdict from its adjusted p."""
    adjusted = holm([d.p_value for d in diffs])
    m = sum(math.isfinite(d.p_value) for d in diffs)
    for d, p in zip(diffs, adjusted):
        d.p_adjusted, d.family_size = p, m
        d.verdict = _verdict(d.mean_diff, p, d.level, d.higher_is_better)


# ---------------------------------------------------------------------------------------------- EDF
def edf(values: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Empirical distribution function: sorted values ``x`` and ``F(x) = #(values <= x) / n``."""
    x = np.sort(_as_array(values))
    return x, np.searchsorted(x, x, side='right') / x.size


def edf_at(values: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """The EDF of ``values`` at each point of ``grid``."""
    x = np.sort(_as_array(values))
    return np.searchsorted(x, np.asarray(grid, dtype=np.float64), side='right') / x.size


class EdfBand(NamedTuple):
    """The EDF on ``grid`` and its pointwise bootstrap band ``[lo, hi]``."""
    grid: np.ndarray
    F: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def edf_band(values: Sequence[float], grid: Sequence[float], n_boot: int = 1000, level: float = 0.95,
             seed: int = 0) -> EdfBand:
    """Pointwise percentile bootstrap band of the EDF on ``grid`` (as RegNet's shaded EDFs)."""
    arr, g = _as_array(values), np.asarray(grid, dtype=np.float64)
    rows = np.sort(arr[_resample_indices(arr.size, n_boot, seed)], axis=1)
    curves = np.stack([np.searchsorted(row, g, side='right') for row in rows]) / arr.size
    lo, hi = np.percentile(curves, _tails(level), axis=0)
    return EdfBand(g, edf_at(arr, g), lo, hi)


# ---------------------------------------------------------------------------------------------- Spearman
def rankdata(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n along the last axis, ties sharing the average of their ranks (1-D or 2-D input)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or arr.ndim not in (1, 2):
        raise ValueError(f'rankdata needs a non-empty 1-D or 2-D array, got shape {arr.shape}')
    rows = np.atleast_2d(arr)
    n = rows.shape[1]
    order = np.argsort(rows, axis=1, kind='mergesort')
    srt = np.take_along_axis(rows, order, axis=1)
    pos = np.broadcast_to(np.arange(n), rows.shape)
    change = srt[:, 1:] != srt[:, :-1]
    starts = np.concatenate([np.ones((rows.shape[0], 1), bool), change], axis=1)
    ends = np.concatenate([change, np.ones((rows.shape[0], 1), bool)], axis=1)
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(rows)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=1)
    return ranks.reshape(arr.shape)


def _pearson_rows(rx: np.ndarray, ry: np.ndarray) -> np.ndarray:
    dx, dy = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
    denom = np.sqrt((dx * dx).sum(axis=-1) * (dy * dy).sum(axis=-1))
    num = (dx * dy).sum(axis=-1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's of the average ranks); ``nan`` if either is constant."""
    xa, ya = _as_array(x, 'x'), _as_array(y, 'y')
    if xa.size != ya.size:
        raise ValueError(f'x and y differ in length: {xa.size} and {ya.size}')
    return float(_pearson_rows(rankdata(xa), rankdata(ya)))


def spearman_ci(x: Sequence[float], y: Sequence[float], n_boot: int = 10000, level: float = 0.95,
                seed: int = 0) -> Interval:
    """Percentile bootstrap interval of :func:`spearman`, resampling (x, y) pairs; resamples where
    one side is constant (undefined correlation) are left out."""
    xa, ya = _as_array(x, 'x'), _as_array(y, 'y')
    if xa.size != ya.size:
        raise ValueError(f'x and y differ in length: {xa.size} and {ya.size}')
    idx = _resample_indices(xa.size, n_boot, seed)
    return _percentiles(_pearson_rows(rankdata(xa[idx]), rankdata(ya[idx])), level)


# ---------------------------------------------------------------------------------------------- partial Spearman
def _residualise(r: np.ndarray, design: np.ndarray) -> np.ndarray:
    """Residuals of the rows of ``r`` (``(b, n)``) after least squares on ``design`` (``(b, n, k)``)."""
    gram = np.einsum('bnk,bnl->bkl', design, design)
    rhs = np.einsum('bnk,bn->bk', design, r)
    coef = np.einsum('bkl,bl->bk', np.linalg.pinv(gram), rhs)  # batched; pinv: collinear controls are fine
    return r - np.einsum('bnk,bk->bn', design, coef)


def _partial_rows(x: np.ndarray, y: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """Partial Spearman of each row: ``x``, ``y`` ``(b, n)``, ``controls`` ``(b, n, k)``."""
    rx, ry = rankdata(x), rankdata(y)
    if rx.ndim == 1:
        rx, ry = rx[None], ry[None]
    b, n, k = controls.shape
    rc = rankdata(np.moveaxis(controls, 2, 1).reshape(b * k, n)).reshape(b, k, n) if k else np.zeros((b, 0, n))
    design = np.concatenate([np.ones((b, n, 1)), np.moveaxis(rc, 1, 2)], axis=2)
    return _pearson_rows(_residualise(rx, design), _residualise(ry, design))


def _controls(controls: Sequence[Sequence[float]], n: int) -> np.ndarray:
    c = np.asarray(controls, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.size == 0:
        return np.zeros((n, 0))
    if c.shape[0] != n and c.shape[1] == n:
        c = c.T
    if c.shape[0] != n:
        raise ValueError(f'controls have {c.shape[0]} rows, x has {n}')
    return c


def partial_spearman(x: Sequence[float], y: Sequence[float], controls: Sequence[Sequence[float]]) -> float:
    """Spearman's rho of ``x`` and ``y`` holding ``controls`` (an ``(n, k)`` array, or k rows of n)
    fixed: all variables are ranked, the ranks of x and y are each regressed (least squares, with an
    intercept) on the ranks of the k controls, and the residuals' Pearson correlation is returned.
    With no controls it equals :func:`spearman`; ``nan`` when a residual is constant."""
    xa, ya = _as_array(x, 'x'), _as_array(y, 'y')
    if xa.size != ya.size:
        raise ValueError(f'x and y differ in length: {xa.size} and {ya.size}')
    c = _controls(controls, xa.size)
    return float(_partial_rows(xa[None], ya[None], c[None])[0])


def partial_spearman_ci(x: Sequence[float], y: Sequence[float], controls: Sequence[Sequence[float]],
                        n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of :func:`partial_spearman`, resampling whole rows (x, y, controls)."""
    xa, ya = _as_array(x, 'x'), _as_array(y, 'y')
    c = _controls(controls, xa.size)
    idx = _resample_indices(xa.size, n_boot, seed)
    vals = np.concatenate([_partial_rows(xa[i], ya[i], c[i]) for i in np.array_split(idx, max(1, n_boot // 250))])
    return _percentiles(vals, level)


# ---------------------------------------------------------------------------------------------- group differences
def median_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, level: float = 0.95,
                      seed: int = 0) -> Tuple[float, Interval]:
    """``median(a) - median(b)`` of two independent groups and its percentile bootstrap interval
    (each group resampled on its own)."""
    xa, xb = _as_array(a, 'a'), _as_array(b, 'b')
    rng = np.random.default_rng(seed)
    ma = np.median(xa[rng.integers(0, xa.size, (n_boot, xa.size))], axis=1)
    mb = np.median(xb[rng.integers(0, xb.size, (n_boot, xb.size))], axis=1)
    return float(np.median(xa) - np.median(xb)), _percentiles(ma - mb, level)


@dataclass
class AdjustedDifference:
    """Coefficient of the group indicator in ``y ~ 1 + group + covariates`` (ordinary least squares)."""
    estimate: float
    se: float
    t_ci: Interval
    p_value: float
    n: int
    df: int

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out['t_ci'] = list(self.t_ci)
        return out


def adjusted_difference(y: Sequence[float], group: Sequence[bool], covariates: Sequence[Sequence[float]] = (),
                        level: float = 0.95) -> AdjustedDifference:
    """The mean difference of ``y`` between ``group`` True and False with ``covariates`` (an ``(n, k)``
    array, e.g. depth; or one-hot strata for a stratified difference) held fixed: the least-squares
    coefficient of the group indicator, its classical standard error and Student's t interval with
    ``n - rank(X)`` degrees of freedom (X: intercept, indicator, covariates). Without covariates it is
    the difference of the means with the pooled-variance t interval."""
    ya = _as_array(y, 'y')
    g = np.asarray(group, dtype=np.float64).ravel()
    if g.size != ya.size:
        raise ValueError(f'group has {g.size} values, y has {ya.size}')
    c = _controls(covariates, ya.size)
    x = np.column_stack([np.ones(ya.size), g, c])
    coef, *_ = np.linalg.lstsq(x, ya, rcond=None)
    rank = int(np.linalg.matrix_rank(x))
    df = ya.size - rank
    if df < 1:
        raise ValueError(f'{ya.size} values cannot fit {rank} parameters with a residual')
    resid = ya - x @ coef
    sigma2 = float(resid @ resid) / df
    cov = sigma2 * np.linalg.pinv(x.T @ x)
    se = math.sqrt(max(cov[1, 1], 0.0))
    est = float(coef[1])
    half = t_quantile((1 + level) / 2, df) * se
    p = (1.0 if est == 0 else 0.0) if se == 0 else max(0.0, 1.0 - _t_two_sided(abs(est) / se, df))
    return AdjustedDifference(est, se, (est - half, est + half), p, int(ya.size), df)
