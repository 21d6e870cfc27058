"""The jobs of a suite: one per (model, seed), their folders, shards and status.

Job ``j`` (models in suite order, seeds inside) belongs to shard ``j % N + 1`` of ``--jobs I/N``:
deterministic, disjoint, and every model's seeds spread over the shards. A job's folder is
``<work_dir>/jobs/<model>/seed<k>/`` with ``train/`` (the Runner's work dir), ``test/``, ``metrics.json``
(what the test stage measured) and, once finished, ``result.json`` (written atomically).
"""
from __future__ import annotations

import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..checkpoint import atomic_write
from ..cli import parse_shard, take_shard

__all__ = ['Job', 'make_jobs', 'parse_shard', 'shard', 'job_status', 'read_result', 'write_json_atomic',
           'STATUSES']

STATUSES = ('done', 'failed', 'partial', 'missing')


@dataclass(frozen=True)
class Job:
    model: str
    seed: int
    index: int  # position in the whole suite (0-based)
    dir: str

    @property
    def train_dir(self) -> str:
        return osp.join(self.dir, 'train')

    @property
    def test_dir(self) -> str:
        return osp.join(self.dir, 'test')

    @property
    def result_file(self) -> str:
        return osp.join(self.dir, 'result.json')

    @property
    def metrics_file(self) -> str:
        return osp.join(self.dir, 'metrics.json')

    @property
    def name(self) -> str:
        return f'{self.model} seed {self.seed}'


def make_jobs(work_dir: str, models: List[str], seeds: List[int]) -> List[Job]:
    """All jobs of a suite, models in suite order, seeds inside."""
    pairs = [(m, s) for m in models for s in seeds]
    return [Job(m, s, i, osp.join(work_dir, 'jobs', m, f'seed{s}')) for i, (m, s) in enumerate(pairs)]


def shard(jobs: List[Job], index: int, count: int) -> List[Job]:
    """The jobs of shard ``index`` of ``count`` (1-based): every ``count``-th job from ``index - 1``."""
    return take_shard(sorted(jobs, key=lambda j: j.index), index, count)


def read_result(job: Job) -> Optional[Dict[str, Any]]:
    if not osp.isfile(job.result_file):
        return None
    with open(job.result_file, encoding='utf-8') as f:
        return json.load(f)


def job_status(job: Job) -> str:
    """``done`` / ``failed`` (result.json says so), ``partial`` (a checkpoint, no result), ``missing``."""
    result = read_result(job)
    if result is not None:
        return 'done' if result.get('status') == 'done' else 'failed'
    if osp.isdir(job.train_dir) and any(f.endswith('.pth') for f in os.listdir(job.train_dir)):
        return 'partial'
    return 'missing'


def write_json_atomic(path: str, data: Dict[str, Any]) -> None:
    """Write ``data`` as JSON with the project's one atomic writer (:func:`~rexnet_backbones.checkpoint.atomic_write`)."""
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True))
