"""``run_suite``: train and test every (model, seed) job of a suite (or of one ``--jobs I/N`` shard).

Launchers (existing engines only): ``none`` runs the jobs in this process one after another;
``pytorch`` runs each stage of a job with ``torchrun --nproc_per_node N`` (as ``tools/dist_train.sh``);
``slurm`` runs each stage as an ``srun`` step (as mmdet's ``tools/slurm_train.sh``: ``PARTITION``,
``JOB_NAME``, ``GPUS_PER_NODE``, ``CPUS_PER_TASK``, ``SRUN_ARGS``). Finished jobs are skipped, killed
ones resume from their last checkpoint; a failed job gets ``status: failed`` and the others go on.
"""
from __future__ import annotations

import datetime
import json
import os
import os.path as osp
import shlex
import socket
import subprocess
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

from ..checkpoint import atomic_write
from ..errors import InvalidInputError, ToolError
from .definition import Suite, check_recipes, load_suite
from .hooks import read_train_stats
from .job import ERROR_FILE, one_line, test_stage, train_stage
from .jobs import Job, job_status, make_jobs, parse_shard, read_result, shard, write_json_atomic

__all__ = ['run_suite', 'default_work_dir', 'claim_work_dir', 'prepare_data', 'stage_command', 'LAUNCHERS']

LAUNCHERS = ('none', 'pytorch', 'slurm')


def default_work_dir(suite: Suite) -> str:
    return osp.join('work_dirs', 'suites', suite.name)


def _log(message: str) -> None:
    print(f'[suite] {message}', flush=True)


def claim_work_dir(work_dir: str, suite: Suite) -> None:
    """Write ``suite.json`` and the models' configs; refuse a work dir of another suite definition."""
    path = osp.join(work_dir, 'suite.json')
    if osp.isfile(path):
        with open(path, encoding='utf-8') as f:
            existing = json.load(f)
        if existing.get('hash') != suite.hash:
            raise ToolError(
                f'{work_dir} holds the results of another definition of suite {existing.get("name")!r} '
                f'(hash {existing.get("hash")}, this one {suite.hash}): shards of different definitions '
                'must not mix; use another --work-dir, or remove the old one')
    else:
        write_json_atomic(path, suite.to_json())
    for key, model in suite.models.items():
        config = _config_file(work_dir, key)
        if not osp.isfile(config):
            atomic_write(config, model.cfg.pretty_text)  # what Config.dump writes for a .py file


def _config_file(work_dir: str, model: str) -> str:
    return osp.join(work_dir, 'configs', f'{model}.py')


def prepare_data(suite: Suite) -> None:
    """Generate the suite's synthetic data set (``data=dict(root=..., num_train=..., ...)``) if missing."""
    if not suite.data:
        return
    from ..data.synthetic import make_coco_detection, make_segmentation
    data = dict(suite.data)
    make = make_coco_detection if suite.task == 'det' else make_segmentation
    make(data.pop('root'), **{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def stage_command(stage: str, config: str, job: Job, launcher: str, gpus: int,
                  threads: Optional[int], env: Optional[Dict[str, str]] = None) -> List[str]:
    """The command that runs one stage of ``job`` with ``launcher`` ('pytorch' or 'slurm')."""
    env = dict(os.environ if env is None else env)
    module = ['-m', 'rexnet_backbones.suite.job', stage, config, job.dir, '--seed', str(job.seed),
              '--launcher', launcher] + (['--threads', str(threads)] if threads else [])
    if launcher == 'pytorch':
        port = env.get('PORT') or str(_free_port())
        return [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
                f'--master_port={port}'] + module
    if launcher == 'slurm':
        partition = env.get('PARTITION')
        if not partition:
            raise ToolError('--launcher slurm needs the slurm partition in PARTITION (as mmdet\'s '
                            'tools/slurm_train.sh), e.g. PARTITION=gpu python tools/suite.py run ...')
        per_node = min(gpus, int(env.get('GPUS_PER_NODE', 8)))
        name = env.get('JOB_NAME') or f'{job.model}-seed{job.seed}-{stage}'
        return (['srun', '-p', partition, f'--job-name={name}', f'--gres=gpu:{per_node}', f'--ntasks={gpus}',
                 f'--ntasks-per-node={per_node}', f'--cpus-per-task={env.get("CPUS_PER_TASK", 5)}',
                 '--kill-on-bad-exit=1'] + shlex.split(env.get('SRUN_ARGS', '')) + [sys.executable, '-u'] + module)
    raise InvalidInputError(f'--launcher must be one of {LAUNCHERS}, got {launcher!r}')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run_stages(config: str, job: Job, launcher: str, gpus: int, threads: Optional[int]) -> None:
    """Train then test ``job``; raises with the reason on failure."""
    if launcher == 'none':
        train_stage(config, job.dir, job.seed, threads=threads)
        test_stage(config, job.dir, threads=threads)
        return
    for stage in ('train', 'test'):
        command = stage_command(stage, config, job, launcher, gpus, threads)
        with open(osp.join(job.dir, 'job.log'), 'a', encoding='utf-8') as log:
            log.write(f'$ {shlex.join(command)}\n')
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            error = osp.join(job.dir, ERROR_FILE)
            reason = open(error, encoding='utf-8').read().strip() if osp.isfile(error) else ''
            raise RuntimeError(reason or f'{stage} exited with code {code} (see {osp.join(job.dir, "job.log")})')


def _versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for package in ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'timm', 'rexnet_backbones'):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def _result(suite: Suite, job: Job, error: Optional[str], costs: Dict[str, Any], threads: Optional[int]) -> Dict:
    import torch
    metrics: Dict[str, float] = {}
    if error is None and osp.isfile(job.metrics_file):
        with open(job.metrics_file, encoding='utf-8') as f:
            metrics = json.load(f)
    stats = read_train_stats(job.train_dir) or {}
    return dict(
        suite=suite.name, suite_hash=suite.hash, model=job.model, seed=job.seed,
        status='done' if error is None else 'failed', error=error, metrics=metrics, costs=costs,
        train=dict(time_s=float(stats.get('time_s', 0.0)), peak_memory_mb=float(stats.get('peak_memory_mb', 0.0)),
                   iterations=int(stats.get('iterations', 0)), final_loss=stats.get('final_loss'),
                   cpu_time_s=float(stats.get('cpu_time_s', 0.0))),
        recipe=suite.models[job.model].recipe, versions=_versions(), host=socket.gethostname(),
        threads=int(threads or torch.get_num_threads()),
        finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))


def run_job(suite: Suite, work_dir: str, job: Job, launcher: str = 'none', gpus: int = 1,
            threads: Optional[int] = None) -> Dict[str, Any]:
    """Train, test and measure one job; writes and returns its ``result.json``."""
    from .costs import cached_costs
    os.makedirs(job.dir, exist_ok=True)
    if osp.isfile(osp.join(job.dir, ERROR_FILE)):
        os.remove(osp.join(job.dir, ERROR_FILE))
    config = _config_file(work_dir, job.model)
    error = None
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        _run_stages(config, job, launcher, gpus, threads)
    except Exception as e:  # a crashed or diverged job is recorded; the suite goes on
        error = one_line(e)
        with open(osp.join(job.dir, 'error.log'), 'a', encoding='utf-8') as f:
            f.write(traceback.format_exc())
    try:
        costs = cached_costs(work_dir, job.model, config, suite.input_size)
    except Exception as e:
        costs = {}
        error = error or f'costs: {one_line(e)}'
    result = _result(suite, job, error, costs, threads)
    if error is None and suite.primary_metric not in result['metrics']:
        result.update(status='failed', error=f'the test gave no {suite.primary_metric} (it gave '
                      f'{sorted(result["metrics"]) or "nothing"}); see {job.test_dir}')
    # this process' share (with --launcher none: the whole job, test and costs included)
    result['job_time_s'] = time.perf_counter() - wall
    result['job_cpu_time_s'] = time.process_time() - cpu
    write_json_atomic(job.result_file, result)
    return result


def _todo(jobs: List[Job], retry_failed: bool) -> List[Job]:
    keep = ('missing', 'partial', 'failed') if retry_failed else ('missing', 'partial')
    return [j for j in jobs if job_status(j) in keep]


def _summary(suite: Suite, jobs: List[Job], work_dir: str) -> int:
    counts: Dict[str, int] = {}
    for job in jobs:
        counts[job_status(job)] = counts.get(job_status(job), 0) + 1
    failed = [f'{j.name} ({(read_result(j) or {}).get("error")})' for j in jobs if job_status(j) == 'failed']
    text = ', '.join(f'{n} {s}' for s, n in sorted(counts.items()))
    _log(f'{suite.name}: {len(jobs)} jobs in this shard: {text}; results in {work_dir}')
    for line in failed:
        _log(f'failed: {line}')
    return 1 if failed or counts.get('missing') or counts.get('partial') else 0


def run_suite(suite_file: str, work_dir: Optional[str] = None, launcher: str = 'none', gpus_per_job: int = 1,
              jobs: Optional[str] = None, threads: Optional[int] = None, dry_run: bool = False,
              retry_failed: bool = False) -> int:
    """Run the (shard's) jobs of ``suite_file`` not yet finished; 0 if all are done, else 1."""
    if launcher not in LAUNCHERS:
        raise InvalidInputError(f'--launcher must be one of {LAUNCHERS}, got {launcher!r}')
    if gpus_per_job < 1:
        raise InvalidInputError(f'--gpus-per-job must be >= 1, got {gpus_per_job}')
    index, count = parse_shard(jobs)
    suite = load_suite(suite_file)
    check_recipes(suite)
    work_dir = work_dir or default_work_dir(suite)
    mine = shard(make_jobs(work_dir, list(suite.models), suite.seeds), index, count)
    if dry_run:
        return _dry_run(suite, work_dir, mine, launcher, gpus_per_job, threads)
    claim_work_dir(work_dir, suite)
    prepare_data(suite)
    todo = _todo(mine, retry_failed)
    if suite.pretrain and todo:  # pretrain, then fine-tune: the backbones this shard's jobs load
        from .pretrain import ensure_pretrained
        ensure_pretrained(suite, list(dict.fromkeys(j.model for j in todo)), log=_log)
    _log(f'{suite.name} ({suite.hash}): shard {index}/{count}: {len(mine)} jobs, {len(todo)} to run, '
         f'launcher {launcher}, work dir {work_dir}')
    start = time.perf_counter()
    for i, job in enumerate(todo, 1):
        status = job_status(job)
        _log(f'job {i}/{len(todo)}: {job.name}' + (' (resuming)' if status == 'partial' else ''))
        t0 = time.perf_counter()
        result = run_job(suite, work_dir, job, launcher, gpus_per_job, threads)
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(todo) - i)
        value = result['metrics'].get(suite.primary_metric)
        what = f'{suite.primary_metric} {value:.4f}' if value is not None else f'FAILED: {result["error"]}'
        _log(f'job {i}/{len(todo)}: {job.name}: {what} ({time.perf_counter() - t0:.0f} s; eta {eta / 60:.1f} min)')
    return _summary(suite, mine, work_dir)


def _dry_run(suite: Suite, work_dir: str, jobs: List[Job], launcher: str, gpus: int, threads: Optional[int]) -> int:
    """Print the jobs (and each stage's command for pytorch/slurm); change nothing."""
    _log(f'{suite.name} ({suite.hash}): {len(jobs)} jobs, work dir {work_dir} (dry run)')
    if suite.pretrain:
        from .pretrain import pretrain_checkpoint
        for key in dict.fromkeys(j.model for j in jobs):
            path = pretrain_checkpoint(suite.pretrain, key)
            _log(f'pretrained backbone {key}: {path} ({"exists" if osp.isfile(path) else "to train first"})')
    for job in jobs:
        print(f'{job.index + 1:3d} {job.name} [{job_status(job)}]')
        if launcher != 'none':
            for stage in ('train', 'test'):
                print('    ' + shlex.join(stage_command(stage, _config_file(work_dir, job.model), job, launcher,
                                                        gpus, threads)))
    return 0
