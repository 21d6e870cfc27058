"""The main job (`make demo`): train RetinaNet-ReXNet-1.0x on the embedded synthetic COCO data on CPU.

``rexnet-demo`` (``python tools/demo.py`` in a checkout runs the same ``main``).

    rexnet-demo [--data-root DIR] [--work-dir DIR] [--epochs N] [--retrain] [--threads N] [--debug]

Generates the data once, evaluates the untrained model with the COCO metric, trains (a few
minutes), evaluates again and draws predictions; see :mod:`rexnet_backbones.demo`.
"""
from __future__ import annotations

import argparse
import sys

from ._args import add_debug_arg, add_threads_arg
from .make_synthetic_data import DEFAULT_DATA_ROOT

#: = rexnet_backbones.demo.DEFAULT_WORK_DIR (tests/test_commands.py)
DEFAULT_WORK_DIR = 'work_dirs/demo'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data-root', default=DEFAULT_DATA_ROOT, help='synthetic data folder (default: %(default)s, '
                   'relative to the current directory)')
    p.add_argument('--work-dir', default=DEFAULT_WORK_DIR, help='logs, checkpoints, pictures (default: '
                   '%(default)s)')
    p.add_argument('--epochs', type=int, default=None, help='override the number of epochs (default: config, 12)')
    p.add_argument('--num-train', type=int, default=256)
    p.add_argument('--num-val', type=int, default=48)
    add_threads_arg(p, default=2, help='torch CPU threads (default: 2, fixed for reproducible numbers)')
    p.add_argument('--retrain', action='store_true', help='train again even if a finished checkpoint exists')
    add_debug_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rexnet_backbones.cli import run_cli
    from rexnet_backbones.demo import run_demo
    return run_cli(lambda _: run_demo(args.data_root, args.work_dir, args.epochs, args.num_train, args.num_val,
                                      args.retrain, args.threads), debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
