"""How the models compare on the backend paths: the ratio to the reference per path, the best fp32
path of each model (fastest whose parity is within the tolerance) and the ratio of the best paths."""
from __future__ import annotations

from typing import List, Optional

from .results import BestPath, ModelResult
from .settings import BACKENDS

__all__ = ['best_path', 'summarise_backends']


def best_path(model: ModelResult, tolerance: float, backend: Optional[str] = None) -> Optional[BestPath]:
    """The fastest eligible fp32 path of ``model`` (on ``backend`` only, when given)."""
    best: Optional[BestPath] = None
    for key, path in (model.backends or {}).items():
        if not path.eligible(tolerance) or (backend is not None and path.backend != backend):
            continue
        if best is None or path.median_ms < best.median_ms:
            best = BestPath(key, path.median_ms)
    return best


def summarise_backends(models: List[ModelResult], tolerance: float) -> None:
    """Fill ``ratio`` of every path, and ``best_fp32``, ``best_ratio`` and ``backend_ratios`` of
    every model (ratios are ``None`` / absent without a reference)."""
    ref = next((m for m in models if m.reference), None)
    for m in models:
        m.best_fp32 = best_path(m, tolerance)
        for key, path in (m.backends or {}).items():
            theirs = (ref.backends or {}).get(key) if ref is not None else None
            mine_ms, ref_ms = path.median_ms, theirs.median_ms if theirs is not None else None
            path.ratio = mine_ms / ref_ms if mine_ms is not None and ref_ms is not None else None
    for m in models:
        b, rb = m.best_fp32, ref.best_fp32 if ref is not None else None
        m.best_ratio = b.median_ms / rb.median_ms if b and rb else None
        # the ratio of each runtime alone, deploy form or not: its best fp32 path vs the reference's
        m.backend_ratios = {}
        for backend in BACKENDS:
            own = best_path(m, tolerance, backend)
            theirs = best_path(ref, tolerance, backend) if ref is not None else None
            if own and theirs:
                m.backend_ratios[backend] = own.median_ms / theirs.median_ms
