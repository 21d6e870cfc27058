"""Command-line flags that ``tools/train.py`` and ``tools/test.py`` share (mmdet's names)."""
from __future__ import annotations

import argparse
import os

from mmengine.config import DictAction

from ..cli import add_debug_arg, add_threads_arg

__all__ = ['LAUNCHERS', 'add_runner_args', 'parse_runner_args']

LAUNCHERS = ['none', 'pytorch', 'slurm', 'mpi']


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher``, ``--trust-checkpoint``, ``--allow-partial``, ``--threads``, ``--debug``,
    ``--local-rank``."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as key=value pairs (e.g. '
                        'train_cfg.max_epochs=2); a list is written key="[a,b]" or key=a,b')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load checkpoints with full unpickling. WARNING: this executes code '
                        'pickled into the checkpoint; only use it for files you trust')
    parser.add_argument('--allow-partial', action='store_true',
                        help='load a checkpoint that does not fit the model (logs what did and did not load)')
    add_threads_arg(parser, help='CPU threads of torch in each process (and of ONNX Runtime / OpenVINO with '
                    'tools/test.py --backend onnxruntime|openvino; default: what the machine has)')
    add_debug_arg(parser)
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Add the shared flags, parse, and export ``LOCAL_RANK`` as mmdet's tools do."""
    add_runner_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
