"""Read a suite's work dir for the report: ``suite.json`` and every ``jobs/<model>/seed<k>/result.json``.

A job is ``done`` or ``failed`` (its result says so), ``unreadable`` (a result.json that does not parse
or lacks keys of the contract), ``incomplete`` (its folder exists, no result: killed or still running)
or ``missing`` (never started). Results of another suite definition (``suite_hash`` differs from
suite.json's ``hash``: shards of different suites in one work dir) stop the report with one line.
"""
from __future__ import annotations

import glob
import json
import math
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import InputNotFoundError, InvalidInputError

__all__ = ['SuiteInfo', 'SuiteModelInfo', 'JobCosts', 'JobTrain', 'JobRecord', 'JOB_STATUSES', 'read_suite',
           'read_jobs']

JOB_STATUSES = ('done', 'failed', 'unreadable', 'incomplete', 'missing')
RUN_HINT = 'run `python tools/suite.py run SUITE --work-dir DIR` first'
_SEED_DIR = re.compile(r'^seed(-?\d+)$')
_RESULT_KEYS = ('suite_hash', 'model', 'seed', 'status', 'metrics')


@dataclass
class SuiteModelInfo:
    key: str
    config: str
    label: str
    family: str
    backbone_type: str


@dataclass
class SuiteInfo:
    """``suite.json``: what was asked."""
    name: str
    file: str
    hash: str
    task: str
    primary_metric: str
    metrics: List[str]
    seeds: List[int]
    models: Dict[str, SuiteModelInfo]
    reference: Optional[str]
    allow_recipe_differences: bool
    recipe: Dict[str, Any]
    input_size: Optional[List[int]] = None
    pretrain: Optional[Dict[str, Any]] = None  # the pretraining recipe of a pretrain-then-fine-tune suite


@dataclass
class JobCosts:
    params: Optional[int] = None
    flops: Optional[int] = None
    activations: Optional[int] = None
    latency_ms: Optional[float] = None
    input_size: Optional[List[int]] = None


@dataclass
class JobTrain:
    time_s: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    iterations: Optional[int] = None
    final_loss: Optional[float] = None


@dataclass
class JobRecord:
    """One (model, seed) job as its files show it."""
    model: str
    seed: int
    status: str  # one of JOB_STATUSES
    error: Optional[str] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    costs: JobCosts = field(default_factory=JobCosts)
    train: JobTrain = field(default_factory=JobTrain)
    recipe: Optional[Dict[str, Any]] = None
    host: Optional[str] = None
    threads: Optional[int] = None


def _load_json(path: str) -> Any:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def read_suite(work_dir: str) -> SuiteInfo:
    """``<work_dir>/suite.json``; ``InputNotFoundError`` when the dir or the file is not there."""
    path = osp.join(work_dir, 'suite.json')
    if not osp.isdir(work_dir):
        raise InputNotFoundError(f'work dir {work_dir} does not exist: {RUN_HINT}')
    if not osp.isfile(path):
        raise InputNotFoundError(f'no suite.json in {work_dir}, so no suite ran there: {RUN_HINT}')
    try:
        raw = _load_json(path)
        models = {k: SuiteModelInfo(k, str(m.get('config', '')), str(m.get('label') or k),
                                    str(m.get('family') or 'other'), str(m.get('backbone_type', '')))
                  for k, m in raw['models'].items()}
        return SuiteInfo(
            name=str(raw['name']), file=str(raw.get('file', '')), hash=str(raw['hash']), task=str(raw['task']),
            primary_metric=str(raw['primary_metric']), metrics=[str(m) for m in raw['metrics']],
            seeds=[int(s) for s in raw['seeds']], models=models, reference=raw.get('reference'),
            allow_recipe_differences=bool(raw.get('allow_recipe_differences', False)),
            recipe=dict(raw.get('recipe') or {}), input_size=raw.get('input_size'), pretrain=raw.get('pretrain'))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidInputError(f'{path} is not a readable suite.json ({type(e).__name__}: {e}): '
                                f'rerun `python tools/suite.py run SUITE --work-dir {work_dir}`') from None


def _opt(value: Any, kind: type) -> Any:
    if value is None:
        return None
    out = kind(value)
    return out if kind is not float or math.isfinite(out) else None


def _record(raw: Dict[str, Any], model: str, seed: int) -> JobRecord:
    """A parsed result.json as a record (raises KeyError/TypeError/ValueError on a broken one)."""
    missing = [k for k in _RESULT_KEYS if k not in raw]
    if missing:
        raise KeyError(f'lacks {", ".join(missing)}')
    if raw['status'] not in ('done', 'failed'):
        raise ValueError(f'status {raw["status"]!r} is neither done nor failed')
    costs, train = raw.get('costs') or {}, raw.get('train') or {}
    return JobRecord(
        model=model, seed=seed, status=raw['status'], error=raw.get('error'),
        metrics={str(k): float(v) for k, v in (raw['metrics'] or {}).items() if isinstance(v, (int, float))},
        costs=JobCosts(_opt(costs.get('params'), int), _opt(costs.get('flops'), int),
                       _opt(costs.get('activations'), int), _opt(costs.get('latency_ms'), float),
                       costs.get('input_size')),
        train=JobTrain(_opt(train.get('time_s'), float), _opt(train.get('peak_memory_mb'), float),
                       _opt(train.get('iterations'), int), _opt(train.get('final_loss'), float)),
        recipe=raw.get('recipe'), host=raw.get('host'), threads=_opt(raw.get('threads'), int))


Found = Dict[Tuple[str, int], Tuple[Optional[dict], Optional[str]]]


def _scan(work_dir: str) -> Found:
    """Every job folder: (model, seed) -> (parsed result.json or None, why it could not be read)."""
    found: Dict[Tuple[str, int], Tuple[Optional[dict], Optional[str]]] = {}
    for job_dir in sorted(glob.glob(osp.join(work_dir, 'jobs', '*', 'seed*'))):
        m = _SEED_DIR.match(osp.basename(job_dir))
        if not m or not osp.isdir(job_dir):
            continue
        key = (osp.basename(osp.dirname(job_dir)), int(m.group(1)))
        path = osp.join(job_dir, 'result.json')
        if not osp.exists(path):
            found[key] = (None, None)
            continue
        try:
            raw = _load_json(path)
            found[key] = (raw, None) if isinstance(raw, dict) else (None, 'result.json is not a JSON object')
        except (OSError, ValueError) as e:
            found[key] = (None, f'result.json does not parse ({type(e).__name__}: {e})')
    return found


def _check_hashes(suite: SuiteInfo, found: Found, work_dir: str) -> None:
    other = sorted(f'{model}/seed{seed}' for (model, seed), (raw, _) in found.items()
                   if raw is not None and 'suite_hash' in raw and raw['suite_hash'] != suite.hash)
    if other:
        shown = ', '.join(other[:8]) + (f' and {len(other) - 8} more' if len(other) > 8 else '')
        raise InvalidInputError(
            f'{len(other)} result(s) in {work_dir} come from another suite definition than its suite.json '
            f'(hash {suite.hash}): {shown}; run shards of one suite into a work dir, or remove those jobs')


def read_jobs(work_dir: str, suite: SuiteInfo) -> List[JobRecord]:
    """One record per (model, seed) the suite asks for, in suite order (models, then seeds)."""
    found = _scan(work_dir)
    _check_hashes(suite, found, work_dir)
    records = []
    for model in suite.models:
        for seed in suite.seeds:
            if (model, seed) not in found:
                records.append(JobRecord(model, seed, 'missing'))
                continue
            raw, error = found[(model, seed)]
            if raw is None:
                records.append(JobRecord(model, seed, 'unreadable' if error else 'incomplete', error))
                continue
            try:
                record = _record(raw, model, seed)
            except (KeyError, TypeError, ValueError) as e:
                records.append(JobRecord(model, seed, 'unreadable', f'result.json {str(e).strip(chr(39))}'))
                continue
            value = record.metrics.get(suite.primary_metric)
            if record.status == 'done' and (value is None or not math.isfinite(value)):
                record.status, record.error = 'failed', f'done, but no finite {suite.primary_metric} in its metrics'
            records.append(record)
    return records
