"""``backend='atomic_local'``: mmengine's local file backend with crash-safe writes.

Registered with :func:`mmengine.fileio.register_backend`, and selected through ``backend_args``
(``AtomicCheckpointHook`` selects it by default), so checkpoints written by mmengine's Runner,
including under mmdet's and mmseg's own ``tools/train.py``, are never left half-written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend

from ..checkpoint import atomic_write

__all__ = ['AtomicLocalBackend', 'BACKEND_NAME']

BACKEND_NAME = 'atomic_local'


class AtomicLocalBackend(LocalBackend):
    """Local disk; ``put``/``put_text`` write a temporary file, fsync it and rename it."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(filepath, bytes(obj))

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj, encoding=encoding)


register_backend(BACKEND_NAME, AtomicLocalBackend, force=True)
