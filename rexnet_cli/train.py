"""Train a detector (mmdet) or segmentor (mmseg) from a config.

``rexnet-train`` (``python tools/train.py`` in a checkout runs the same ``main``).

    rexnet-train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
                          [--trust-checkpoint] [--allow-partial] [--threads N] [--debug]

The flags of mmdet 3.3.0's ``tools/train.py``, for mmdet and mmseg configs alike (the package is
the config's ``default_scope``); the job is :func:`rexnet_backbones.engine.train`:

* ``--resume``: without a value, the latest checkpoint in the work dir (a warning and a fresh start
  when there is none); with a value, that checkpoint (which must exist).
* ``--amp``: mixed precision. On a GPU mmengine's ``AmpOptimWrapper`` (float16 autocast, dynamic loss
  scaling), as mmdet; on a CPU-only machine, where mmengine's ``AmpOptimWrapper`` refuses to run, our
  ``CpuAmpOptimWrapper`` (bfloat16 autocast, no loss scaling; two-stage detectors: an error, as mmcv's CPU
  ``nms``/``roi_align`` have no bfloat16 kernels). ``--auto-scale-lr`` needs ``auto_scale_lr`` in the config.
* ``--cfg-options sync_bn=torch`` (mmengine's key): in multi-process runs the Runner converts the BatchNorms to
  ``SyncBatchNorm``; on CPU-only machines they synchronize over gloo (``GlooSyncBNDistributedDataParallel``).
* A ``load_from``/``--resume`` checkpoint must fit the model; ``--allow-partial`` loads what fits.
* ``--trust-checkpoint`` loads checkpoints with full unpickling, which EXECUTES CODE stored in the
  file; without it they load with torch's ``weights_only=True`` and our allowlist.
* Multi-process runs: ``tools/dist_train.sh`` (gloo on CPU-only machines).
* ``--threads N``: torch CPU threads per process (default: what the machine has).

A known error (missing weights or data, a checkpoint of another model, ...) stops it before the
config dump with one ``error: ...`` line and exit code 2 (``--debug``: with the traceback).
"""
from __future__ import annotations

import argparse
import sys

from ._args import parse_runner_args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector (mmdet) or segmentor (mmseg) from a config')
    parser.add_argument('config', help='config: a file, one of ours by short name '
                        '(rexnet_backbones::det/retinanet_rexnet.py), or mmdet::/mmseg::path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true',
                        help="automatic mixed precision: float16 with mmengine's AmpOptimWrapper on a GPU, bfloat16 "
                        'autocast (CpuAmpOptimWrapper) on a CPU-only machine')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by (GPUs x batch size) / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or (without a value) from the latest '
                        'checkpoint in the work directory')
    return parse_runner_args(parser, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.engine import train

    def job(_):
        train(
            args.config, work_dir=args.work_dir, resume=args.resume, amp=args.amp,
            auto_scale_lr=args.auto_scale_lr, cfg_options=args.cfg_options, launcher=args.launcher,
            trust_checkpoint=args.trust_checkpoint, allow_partial=args.allow_partial, threads=args.threads)

    return run_cli(job, debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
