"""Rank estimators of feature matrices (rows: samples or positions, columns: channels).

All estimators work on the singular values of the matrix, computed in float64 (float32 round-off
alone makes a rank-deficient matrix look full rank at torch's default tolerance):

* ``numerical``: number of singular values above ``rtol * s_max`` with torch's default
  ``rtol = max(rows, cols) * eps(float64)`` (what ``torch.linalg.matrix_rank`` does).
* ``numerical_rtol``: the same with a user-set relative tolerance (default ``1e-3``).
* ``nuclear``: normalized nuclear norm ``||A||_* / ||A||_2 = sum(s) / s_max``.
* ``effective``: ``exp(H(p))`` with ``p = s / sum(s)`` (Roy & Vetterli, 2007).
* ``stable``: ``||A||_F^2 / ||A||_2^2 = sum(s^2) / s_max^2``.

Features computed in float32 (a network's) carry float32 round-off (~1e-7 relative), which the
float64 default tolerance counts as rank: for them ``numerical`` is (nearly) always full and
``numerical_rtol`` with ``rtol`` well above 1e-6 is the meaningful numerical rank.

All are between 0 and ``min(rows, cols)``; ``numerical`` >= ``nuclear`` >= ``effective``-ish >=
``stable`` for typical spectra. A ratio divides by the channel count (``cols``), as the ReXNet paper
does, so a layer with fewer rows than channels cannot reach 1. The zero matrix has rank 0 under every
estimator.

Centring: by default the features are NOT centred (the rank of the features themselves, as in the
paper; a non-zero channel mean adds a large rank-one component, which lowers ``nuclear``,
``effective`` and ``stable``). ``center=True`` subtracts each channel's mean over the rows first.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Optional, Sequence

import torch

__all__ = [
    'ESTIMATORS', 'DEFAULT_RTOL', 'feature_matrix', 'singular_values', 'estimates_from_singular_values',
    'rank_estimates', 'rank_ratios', 'numerical_rank', 'nuclear_rank', 'effective_rank', 'stable_rank',
]

#: estimator names, in the order tools report them
ESTIMATORS = ('nuclear', 'effective', 'stable', 'numerical', 'numerical_rtol')
#: relative tolerance of ``numerical_rtol`` unless one is given
DEFAULT_RTOL = 1e-3


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
    """Singular values (descending) of ``matrix`` in float64, optionally after centring each column."""
    if matrix.dim() != 2:
        raise ValueError(f'expected a 2-D matrix, got shape {tuple(matrix.shape)}')
    a = matrix.to(torch.float64)
    if center:
        a = a - a.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(a)


def estimates_from_singular_values(s: torch.Tensor, shape: Sequence[int],
                                   estimators: Iterable[str] = ESTIMATORS,
                                   rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """Every estimator in ``estimators`` from the singular values ``s`` of a matrix of ``shape``."""
    s = s.to(torch.float64)
    s_max = float(s.max()) if s.numel() else 0.0
    out: Dict[str, float] = {}
    for name in estimators:
        if name not in ESTIMATORS:
            raise KeyError(f'unknown rank estimator {name!r}; choose from {ESTIMATORS}')
        if s_max == 0.0:
            out[name] = 0.0
        elif name == 'numerical':
            tol = max(shape) * torch.finfo(torch.float64).eps * s_max
            out[name] = float((s > tol).sum())
        elif name == 'numerical_rtol':
            out[name] = float((s > rtol * s_max).sum())
        elif name == 'nuclear':
            out[name] = float(s.sum()) / s_max
        elif name == 'effective':
            p = s / s.sum()
            p = p[p > 0]
            out[name] = math.exp(float(-(p * p.log()).sum()))
        else:  # stable
            out[name] = float((s * s).sum()) / s_max ** 2
    return out


def rank_estimates(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, center: bool = False,
                   rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """Every estimator of a (rows, channels) matrix from one SVD."""
    return estimates_from_singular_values(singular_values(matrix, center), matrix.shape, estimators, rtol)


def rank_ratios(matrix: torch.Tensor, estimators: Iterable[str] = ESTIMATORS, center: bool = False,
                rtol: float = DEFAULT_RTOL) -> Dict[str, float]:
    """:func:`rank_estimates` divided by the channel count (the number of columns)."""
    est = rank_estimates(matrix, estimators, center, rtol)
    return {k: v / matrix.shape[1] for k, v in est.items()}


def numerical_rank(matrix: torch.Tensor, rtol: Optional[float] = None, center: bool = False) -> int:
    """Singular values above ``rtol * s_max``; ``rtol=None``: torch's default ``max(shape) * eps``."""
    name = 'numerical' if rtol is None else 'numerical_rtol'
    return int(rank_estimates(matrix, (name,), center, rtol or DEFAULT_RTOL)[name])


def nuclear_rank(matrix: torch.Tensor, center: bool = False) -> float:
    """Normalized nuclear norm ``||A||_* / ||A||_2``."""
    return rank_estimates(matrix, ('nuclear',), center)['nuclear']


def effective_rank(matrix: torch.Tensor, center: bool = False) -> float:
    """Effective rank ``exp(entropy(s / sum(s)))`` (Roy & Vetterli, 2007)."""
    return rank_estimates(matrix, ('effective',), center)['effective']


def stable_rank(matrix: torch.Tensor, center: bool = False) -> float:
    """Stable rank ``||A||_F^2 / ||A||_2^2``."""
    return rank_estimates(matrix, ('stable',), center)['stable']
