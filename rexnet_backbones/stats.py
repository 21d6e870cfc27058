"""The project's statistics over seeds and over sampled models (numpy only, every resampling seeded).

* :func:`mean_std` -- mean and sample standard deviation (``ddof=1``) over seeds.
* :func:`bootstrap_ci`, :func:`median_ci` -- percentile bootstrap intervals of a statistic.
* :func:`t_interval` -- Student's t interval of a mean (for the paired differences).
* :func:`paired_difference` -- model A against a reference B on the seeds both ran, with a verdict.
* :func:`edf`, :func:`edf_band` -- empirical distribution function and its bootstrap band (RegNet's
  figures: Radosavovic et al., "Designing Network Design Spaces", compare spaces by the EDF of the
  errors of sampled, trained models).
* :func:`spearman`, :func:`spearman_ci` -- rank correlation (ties get average ranks) and its bootstrap.

What a bootstrap over a few seeds can say: the percentile bootstrap resamples the n observed values, so
it knows nothing beyond them. With 3 seeds there are only 10 distinct resamples and each extreme one
(all three draws the same value) has probability 1/27 = 3.7% > 2.5%, so the 95% interval of the mean is
exactly ``[min, max]`` of the values: "better" then means "better on every seed", nothing finer. It
also ignores that 3 values under-represent the spread (the bootstrap std is sqrt((n-1)/n) of the sample
one). Student's t interval accounts for that but assumes roughly normal differences, and with 2 degrees
of freedom it is wide (t = 4.30). :func:`paired_difference` reports both and calls a difference only
when BOTH exclude zero on the same side.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Hashable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ['mean_std', 'bootstrap_ci', 'median_ci', 't_quantile', 't_interval', 'PairedDifference',
           'paired_difference', 'VERDICTS', 'edf', 'edf_at', 'EdfBand', 'edf_band', 'rankdata', 'spearman',
           'spearman_ci']

#: the three verdicts of :func:`paired_difference`, in plain words
VERDICTS = ('better', 'worse', 'no difference at this budget')
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


# ---------------------------------------------------------------------------------------------- paired difference
@dataclass
class PairedDifference:
    """A against B on the seeds both have: ``mean_diff`` = mean of ``a[s] - b[s]``."""
    mean_diff: float
    std_diff: float
    ci: Interval  # percentile bootstrap of the mean difference
    t_ci: Interval  # Student's t interval of the mean difference
    level: float
    n_pairs: int
    seeds: List[Hashable]
    higher_is_better: bool
    verdict: str
    note: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        out = asdict(self)
        out['ci'], out['t_ci'] = list(self.ci), list(self.t_ci)
        return out


def _verdict(ci: Interval, t_ci: Interval, higher_is_better: bool) -> str:
    """'better' / 'worse' when the bootstrap AND the t interval both exclude 0 on the same side."""
    lows, highs = (ci[0], t_ci[0]), (ci[1], t_ci[1])
    if any(math.isnan(v) for v in lows + highs):
        return VERDICTS[2]
    if min(lows) > 0:
        return VERDICTS[0] if higher_is_better else VERDICTS[1]
    if max(highs) < 0:
        return VERDICTS[1] if higher_is_better else VERDICTS[0]
    return VERDICTS[2]


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

    The verdict is 'better' (or 'worse') only when the percentile bootstrap interval AND the t
    interval of the mean difference both lie above (below) zero, with the sign flipped when lower is
    better; otherwise 'no difference at this budget'. Fewer than 2 pairs always give no difference.
    ``note`` says when seeds do not match, values were dropped or fewer than 3 pairs remain.
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
    ci = bootstrap_ci(diffs, n_boot=n_boot, level=level, seed=seed) if diffs.size > 1 else (math.nan, math.nan)
    t_ci = t_interval(diffs, level)
    return PairedDifference(mean, std, ci, t_ci, level, int(diffs.size), seeds, higher_is_better,
                            _verdict(ci, t_ci, higher_is_better), note)


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
