"""The two stages of one suite job, run in this process or by a launcher (``torchrun``/``srun``)::

    python -m rexnet_backbones.suite.job train CONFIG JOB_DIR --seed K [--launcher pytorch] [--threads N]
    python -m rexnet_backbones.suite.job test CONFIG JOB_DIR [--launcher pytorch] [--threads N]

``train`` trains with :func:`rexnet_backbones.engine.train` in ``JOB_DIR/train``, resuming from the
latest checkpoint there (mmengine's resume); ``test`` tests its last checkpoint with
:func:`rexnet_backbones.engine.test` and (rank 0) writes ``JOB_DIR/metrics.json``. A stage that fails
writes its one-line reason to ``JOB_DIR/error.txt`` before it exits non-zero.
"""
from __future__ import annotations

import argparse
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, Optional, Sequence

from .jobs import write_json_atomic

__all__ = ['train_stage', 'test_stage', 'final_checkpoint', 'one_line', 'ERROR_FILE', 'main']

ERROR_FILE = 'error.txt'


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else error  # KeyError's str is a repr
    text = str(message).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'.strip()[:300]


def _rank() -> int:
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')))


def train_stage(config: str, job_dir: str, seed: int, launcher: str = 'none', threads: Optional[int] = None) -> None:
    """Train (or resume) the job in ``job_dir/train``."""
    from ..engine import train
    name = f'{osp.basename(osp.dirname(job_dir))}_{osp.basename(job_dir)}_train_{time.strftime("%Y%m%d_%H%M%S")}'
    train(config, work_dir=osp.join(job_dir, 'train'), resume='auto', launcher=launcher, threads=threads,
          cfg_options={'randomness.seed': seed, 'experiment_name': name})


def final_checkpoint(train_dir: str) -> str:
    """The checkpoint named by ``train_dir/last_checkpoint``."""
    marker = osp.join(train_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise FileNotFoundError(f'training left no checkpoint in {train_dir}')
    with open(marker, encoding='utf-8') as f:
        path = f.read().strip()
    return path if osp.isabs(path) else osp.join(train_dir, osp.basename(path))


def test_stage(config: str, job_dir: str, launcher: str = 'none', threads: Optional[int] = None) -> Dict[str, float]:
    """Test the last checkpoint; rank 0 writes ``metrics.json``. Returns the numeric metrics."""
    from ..engine import test
    name = f'{osp.basename(osp.dirname(job_dir))}_{osp.basename(job_dir)}_test_{time.strftime("%Y%m%d_%H%M%S")}'
    raw = test(config, final_checkpoint(osp.join(job_dir, 'train')), work_dir=osp.join(job_dir, 'test'),
               launcher=launcher, threads=threads, cfg_options={'experiment_name': name})
    metrics = {}
    for key, value in (raw or {}).items():  # mmseg's are numpy scalars
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            metrics[key] = number
    if _rank() == 0:
        write_json_atomic(osp.join(job_dir, 'metrics.json'), metrics)
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='one stage of a suite job (see rexnet_backbones.suite)')
    parser.add_argument('stage', choices=('train', 'test'))
    parser.add_argument('config')
    parser.add_argument('job_dir')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--launcher', default='none', choices=('none', 'pytorch', 'slurm'))
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.stage == 'train':
            train_stage(args.config, args.job_dir, args.seed, args.launcher, args.threads)
        else:
            test_stage(args.config, args.job_dir, args.launcher, args.threads)
    except Exception as e:
        if _rank() == 0:
            with open(osp.join(args.job_dir, ERROR_FILE), 'w', encoding='utf-8') as f:
                f.write(one_line(e) + '\n')
        raise
    return 0


if __name__ == '__main__':
    sys.exit(main())
