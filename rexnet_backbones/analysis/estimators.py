"""Rank estimators of feature matrices (rows: samples or positions, columns: channels).

All estimators work on the singular values ``s`` of the matrix, computed in float64 (float32 round-off
alone makes a rank-deficient matrix look full rank at torch's default tolerance):

* ``numerical``: number of singular values above ``rtol * s_max`` with torch's default
  ``rtol = max(rows, cols) * eps(float64)`` (what ``torch.linalg.matrix_rank`` does).
* ``numerical_rtol``: the same with a user-set relative tolerance (default ``1e-3``; ``0.0`` counts
  every non-zero singular value).
* ``nuclear``: normalized nuclear norm ``||A||_* / ||A||_2 = sum(s) / s_max``.
* ``effective``: ``exp(H(p))`` with ``p = s / sum(s)`` (Roy & Vetterli, 2007).
* ``stable``: ``||A||_F^2 / ||A||_2^2 = sum(s^2) / s_max^2``.

Features computed in float32 (a network's) carry float32 round-off (~1e-7 relative), which the
float64 default tolerance counts as rank: for them ``numerical`` is (nearly) always full and
``numerical_rtol`` with ``rtol`` well above 1e-6 is the meaningful numerical rank.

All are between 0 and ``min(rows, cols)``, and for every spectrum
``(number of non-zero s) >= effective >= nuclear >= stable``: with ``p = s / sum(s)``,
``exp(H(p)) >= exp(-log max(p)) = sum(s) / s_max`` (Shannon entropy >= min-entropy), and
``sum(s) / s_max >= sum(s^2) / s_max^2`` since ``s / s_max <= 1``. ``numerical`` counts only the
singular values above a tolerance, so it can fall below ``effective`` when many are tiny.
A **ratio** divides by ``min(rows, cols)``, the largest rank the matrix can have: dividing by the
channel count alone (the ReXNet paper's choice, where rows >> channels) makes a layer with fewer rows
than channels look rank-deficient whatever its features. A matrix with ``rows < 4 * cols`` is
**row-capped** (:func:`is_row_capped`): its estimates are limited by the sample count, not only by the
features, and tools flag it. The zero matrix has rank 0 under every estimator.

Width: a ratio to ``min(rows, C)`` of a fixed number of rows falls with C even for white noise (at
1,024 rows the centred nuclear ratio of i.i.d. Gaussian features is 0.81 at C = 64 and 0.43 at
C = 1024), so across layers or networks of different widths it measures width as much as features.
Two statistics that do not move with width alone: (1) a sample of a fixed number of rows per
channel, with no cap (:func:`sample_rows`, ``rows = rows_per_channel * C``): a Gaussian matrix of a
fixed aspect ratio has a ratio that is nearly constant in C (Marchenko-Pastur); (2) the ratio to a
white-noise null of the very same shape and centring (:func:`null_estimates`,
:func:`null_ratios`): 1 for i.i.d. Gaussian features at any rows and C, below 1 for features whose
spectrum is less flat than noise. Both are measured by :func:`measure_fixed`.

Centring: ``center=False`` (the default here) is the rank of the features themselves, as in the paper;
a non-zero channel mean then adds a large rank-one component, which lowers ``nuclear``, ``effective``
and ``stable``. ``center=True`` subtracts each channel's mean over the rows first (the rank of the
features' covariance). The studies report both (:func:`measure`); which one a claim rests on changes
its answer.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

import torch

__all__ = [
    'ESTIMATORS', 'DEFAULT_RTOL', 'ROWS_PER_CHANNEL', 'CENTRINGS', 'feature_matrix', 'singular_values',
    'estimates_from_singular_values', 'batched_estimates', 'rank_estimates', 'rank_ratios', 'is_row_capped',
    'measure', 'numerical_rank', 'nuclear_rank', 'effective_rank', 'stable_rank', 'sample_rows', 'null_estimates',
    'null_ratios', 'measure_fixed', 'NULL_REPEATS', 'white_noise_widths',
]

#: estimator names, in the order tools report them
ESTIMATORS = ('nuclear', 'effective', 'stable', 'numerical', 'numerical_rtol')
#: relative tolerance of ``numerical_rtol`` unless one is given
DEFAULT_RTOL = 1e-3
#: a matrix with fewer than this many rows per column is row-capped
ROWS_PER_CHANNEL = 4
#: the two centrings every study reports, keyed as in :func:`measure`
CENTRINGS = ('centred', 'uncentred')
#: Gaussian matrices averaged per shape for the white-noise null (one above NULL_LARGE elements, where
#: the estimators of noise vary by well under 1% between draws)
NULL_REPEATS = 3
NULL_LARGE = 100_000


def feature_matrix(x: torch.Tensor, max_rows: Optional[int] = 4096,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Features as a (rows, channels) float64 matrix.

    ``(N, C, H, W)`` becomes ``(N*H*W, C)``; ``(N, L, C)`` (tokens) becomes ``(N*L, C)``; ``(N, C)``
    stays. If there are more than ``max_rows`` rows, ``max_rows`` of them are drawn uniformly
    without replacement (with ``generator``, for reproducibility). Always returns a new tensor.
    """
    if x.dim() == 4:
        x = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    elif x.dim() == 3:
        x = x.reshape(-1, x.shape[-1])
    elif x.dim() != 2:
        raise ValueError(f'expected a (N, C), (N, L, C) or (N, C, H, W) tensor, got shape {tuple(x.shape)}')
    x = x.detach()
    if max_rows is not None and x.shape[0] > max_rows:
        idx = torch.randperm(x.shape[0], generator=generator)[:max_rows]
        x = x[idx.to(x.device)]
    return x.to(device='cpu', dtype=torch.float64, copy=True)


def singular_values(matrix: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Singular values (descending) of ``matrix`` (or a batch ``(..., rows, cols)``) in float64,
    optionally after centring each column over the rows."""
    if matrix.dim() < 2:
        raise ValueError(f'expected a 2-D matrix, got shape {tuple(matrix.shape)}')
    a = matrix.to(torch.float64)
    if center:
        a = a - a.mean(dim=-2, keepdim=True)
    return torch.linalg.svdvals(a)


def batched_estimates(s: torch.Tensor, shape: Sequence[int], estimators: Iterable[str] = ESTIMATORS,
                      rtol: float = DEFAULT_RTOL) -> Dict[str, torch.Tensor]:
    """Every estimator from a batch of singular-value vectors ``s`` (``(b, k)``, each descending or
    not) of matrices of ``shape`` (rows, cols); one ``(b,)`` tensor per estimator."""
    s = s.to(torch.float64).clamp_min(0)
    s_max = s.max(dim=-1).values
    zero = s_max == 0
    safe = torch.where(zero, torch.ones_like(s_max), s_max)
    out: Dict[str, torch.Tensor] = {}
    for name in estimators:
        if name not in ESTIMATORS:
            raise KeyError(f'unknown rank estimator {name!r}; choose from {ESTIMATORS}')
        if name == 'numerical':
            v = (s > (max(shape) * torch.finfo(torch.float64).eps * s_max)[:, None]).sum(-1).double()
        elif name == 'numerical_rtol':
            v = (s > (rtol * s_max)[:, None]).sum(-1).double()
        elif name == 'nuclear':
            v = s.sum(-1) / safe
        elif name == 'effective':
            p = s / torch.where(zero, torch.ones_like(s_max), s.sum(-1))[:, None]
            v = torch.exp(-torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(-1))
        else:  # stable
            v = (s * s).sum(-1) / safe ** 2
        out[name] = torch.where(zero, torch.zeros_like(v), v)
    return out


def estimates_from_singular_values(s: torch.Tensor, shape: Sequence[int],
                                   estimators: Iterable[str] = ESTIMATORS,
                                   rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """Every estimator in ``estimators`` from the singular values ``s`` of a matrix of ``shape``."""
    return {k: float(v[0]) for k, v in batched_estimates(s.reshape(1, -1), shape, estimators, rtol).items()}


def rank_estimates(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, center: bool = False,
                   rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """Every estimator of a (rows, channels) matrix from one SVD."""
    return estimates_from_singular_values(singular_values(matrix, center), matrix.shape, estimators, rtol)


def rank_ratios(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, center: bool = False,
                rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """:func:`rank_estimates` divided by ``min(rows, channels)``, the largest rank the matrix can have."""
    est = rank_estimates(matrix, estimators, center, rtol)
    return {k: v / min(matrix.shape) for k, v in est.items()}


def is_row_capped(rows: int, channels: int, rows_per_channel: int = ROWS_PER_CHANNEL) -> bool:
    """True when ``rows < rows_per_channel * channels``: too few samples for the estimate to be a
    property of the features rather than of the sample count."""
    return rows < rows_per_channel * channels


def measure(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, rtol: float = DEFAULT_RTOL,
            rows_per_channel: int = ROWS_PER_CHANNEL) -> Dict[str, object]:
    """One layer's measurement, both centrings: ``rows``, ``channels``, ``row_capped``, and under
    ``'centred'`` / ``'uncentred'`` the estimates (``rank``) and ratios to ``min(rows, channels)``
    (``rank_ratio``)."""
    estimators = tuple(estimators)
    rows, channels = matrix.shape
    out: Dict[str, object] = dict(rows=rows, channels=channels,
                                  row_capped=is_row_capped(rows, channels, rows_per_channel))
    for key in CENTRINGS:
        est = rank_estimates(matrix, estimators, key == 'centred', rtol)
        out[key] = dict(rank=est, rank_ratio={k: v / min(rows, channels) for k, v in est.items()})
    return out


def numerical_rank(matrix: torch.Tensor, rtol: Optional[float] = None, center: bool = False) -> int:
    """Singular values above ``rtol * s_max``; ``rtol=None``: torch's default ``max(shape) * eps``;
    ``rtol=0.0``: every non-zero singular value."""
    if rtol is None:
        return int(rank_estimates(matrix, ('numerical',), center)['numerical'])
    return int(rank_estimates(matrix, ('numerical_rtol',), center, rtol)['numerical_rtol'])


def nuclear_rank(matrix: torch.Tensor, center: bool = False) -> float:
    """Normalized nuclear norm ``||A||_* / ||A||_2``."""
    return rank_estimates(matrix, ('nuclear',), center)['nuclear']


def effective_rank(matrix: torch.Tensor, center: bool = False) -> float:
    """Effective rank ``exp(entropy(s / sum(s)))`` (Roy & Vetterli, 2007)."""
    return rank_estimates(matrix, ('effective',), center)['effective']


def stable_rank(matrix: torch.Tensor, center: bool = False) -> float:
    """Stable rank ``||A||_F^2 / ||A||_2^2``."""
    return rank_estimates(matrix, ('stable',), center)['stable']


def sample_rows(x: torch.Tensor, rows_per_channel: int = ROWS_PER_CHANNEL,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Features as a (rows, C) float64 matrix of ``rows_per_channel * C`` rows drawn without
    replacement (no cap: a wide layer gets proportionally more rows), or every row when fewer exist
    (then the matrix is short: compare it through :func:`null_ratios`)."""
    if rows_per_channel < 1:
        raise ValueError(f'rows_per_channel must be >= 1, got {rows_per_channel}')
    channels = x.shape[1] if x.dim() == 4 else x.shape[-1]
    return feature_matrix(x, rows_per_channel * channels, generator)


_NULL_CACHE: Dict[tuple, Dict[str, float]] = {}


def null_estimates(rows: int, cols: int, estimators: Iterable[str] = ESTIMATORS, center: bool = False,
                   rtol: float = DEFAULT_RTOL, repeats: Optional[int] = None) -> Dict[str, float]:
    """Each estimator's mean over ``repeats`` i.i.d. standard-normal ``rows x cols`` matrices (fixed
    seeds; cached per shape; default :data:`NULL_REPEATS`, one for matrices above :data:`NULL_LARGE`
    elements): the rank of white noise of that shape and centring. Every estimator is scale-free, so
    the noise's variance does not matter."""
    estimators = tuple(estimators)
    if repeats is None:
        repeats = 1 if rows * cols > NULL_LARGE else NULL_REPEATS
    key = (rows, cols, estimators, center, rtol, repeats)
    if key not in _NULL_CACHE:
        gen = torch.Generator().manual_seed(rows * 1_000_003 + cols)
        runs = [rank_estimates(torch.randn(rows, cols, generator=gen, dtype=torch.float64), estimators, center, rtol)
                for _ in range(repeats)]
        _NULL_CACHE[key] = {e: sum(r[e] for r in runs) / repeats for e in estimators}
    return dict(_NULL_CACHE[key])


def null_ratios(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, center: bool = False,
                rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """:func:`rank_estimates` divided by :func:`null_estimates` of the same shape and centring."""
    estimators = tuple(estimators)
    est = rank_estimates(matrix, estimators, center, rtol)
    null = null_estimates(matrix.shape[0], matrix.shape[1], estimators, center, rtol)
    return {k: (v / null[k] if null[k] > 0 else 0.0) for k, v in est.items()}


def measure_fixed(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, rtol: float = DEFAULT_RTOL,
                  rows_per_channel: int = ROWS_PER_CHANNEL) -> Dict[str, object]:
    """One layer sampled by :func:`sample_rows`, both centrings: ``rows``, ``channels``, ``short``
    (fewer rows than ``rows_per_channel * C`` existed), and per centring ``ratio`` (rank /
    min(rows, C)) and ``null`` (rank / white-noise rank of the same shape) per estimator."""
    estimators = tuple(estimators)
    rows, channels = matrix.shape
    out: Dict[str, object] = dict(rows=rows, channels=channels, short=rows < rows_per_channel * channels)
    for key in CENTRINGS:
        center = key == 'centred'
        est = rank_estimates(matrix, estimators, center, rtol)
        null = null_estimates(rows, channels, estimators, center, rtol)
        out[key] = dict(ratio={k: v / min(rows, channels) for k, v in est.items()},
                        null={k: (v / null[k] if null[k] > 0 else 0.0) for k, v in est.items()})
    return out


def white_noise_widths(widths: Sequence[int] = (64, 128, 256, 512, 1024), max_rows: int = 1024,
                       rows_per_channel: int = ROWS_PER_CHANNEL, estimator: str = 'nuclear',
                       seed: int = 0) -> list:
    """The rank statistics of i.i.d. Gaussian features (no structure: any change is width alone) per
    width C: the older ratio to min(rows, C) at ``max_rows`` rows, the ratio at ``rows_per_channel * C``
    rows, and the ratio to the white-noise null at ``max_rows`` rows; each centred and uncentred."""
    rows = []
    for c in widths:
        g = torch.Generator().manual_seed(seed * 100_003 + c)
        x = torch.randn(max(max_rows, rows_per_channel * c), c, generator=g, dtype=torch.float64)
        capped, fixed = x[:max_rows], x[:rows_per_channel * c]
        row = dict(channels=c, capped_rows=min(max_rows, x.shape[0]), fixed_rows=fixed.shape[0])
        for key in CENTRINGS:
            center = key == 'centred'
            row[key] = dict(capped=rank_ratios(capped, (estimator,), center)[estimator],
                            fixed=rank_ratios(fixed, (estimator,), center)[estimator],
                            null=null_ratios(capped, (estimator,), center)[estimator])
        rows.append(row)
    return rows
