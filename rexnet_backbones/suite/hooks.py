"""``SuiteTrainHook``: what a suite job needs from its training run, as an mmengine hook.

* A non-finite loss stops training with ``FloatingPointError`` (the job is then marked failed);
* ``train_stats.json`` in the Runner's work dir: iterations, the last loss, training time (wall and this
  process' CPU time) summed over resumed sessions, and the peak training memory: the largest resident memory
  (RSS, psutil) of the process, sampled after every iteration (rank 0). It includes the libraries (torch, mmdet:
  a few hundred MB) and, with ``--launcher none``, memory the allocator kept from earlier jobs of the same
  process; the growth over the start of training would miss memory reused from those jobs.
"""
from __future__ import annotations

import json
import math
import os.path as osp
import time
from typing import Any, Optional

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..checkpoint import atomic_write

__all__ = ['SuiteTrainHook', 'STATS_FILE', 'read_train_stats']

STATS_FILE = 'train_stats.json'


def _rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2 ** 20


def read_train_stats(work_dir: str) -> Optional[dict]:
    path = osp.join(work_dir, STATS_FILE)
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


@HOOKS.register_module()
class SuiteTrainHook(Hook):
    """Stop on a non-finite loss; record iterations, last loss, time and peak RSS."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._start = 0.0
        self._cpu_start = 0.0
        self._peak = 0.0
        self._previous: dict = {}
        self._loss: Optional[float] = None

    def before_train(self, runner) -> None:
        self._previous = read_train_stats(runner.work_dir) or {}
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        self._peak = _rss_mb()

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        loss = (outputs or {}).get('loss') if isinstance(outputs, dict) else None
        if loss is not None:
            value = float(loss)
            if not math.isfinite(value):
                raise FloatingPointError(f'loss is {value} at iteration {runner.iter + 1}: training diverged')
            self._loss = value
        self._peak = max(self._peak, _rss_mb())

    def after_train_epoch(self, runner) -> None:
        self._write(runner)

    def after_train(self, runner) -> None:
        self._write(runner)

    def _write(self, runner) -> None:
        if runner.rank != 0:
            return
        stats = dict(
            iterations=int(runner.iter),
            final_loss=self._loss,
            time_s=float(self._previous.get('time_s', 0.0)) + time.perf_counter() - self._start,
            cpu_time_s=float(self._previous.get('cpu_time_s', 0.0)) + time.process_time() - self._cpu_start,
            peak_memory_mb=max(float(self._previous.get('peak_memory_mb', 0.0)), self._peak),
            sessions=int(self._previous.get('sessions', 0)) + 1)
        path = osp.join(runner.work_dir, STATS_FILE)
        atomic_write(path, json.dumps(stats))
