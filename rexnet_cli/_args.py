"""Flags the commands share; argparse only (nothing here imports torch or the library).

``--debug``, ``--threads N`` and the runner flags of ``rexnet-train``/``rexnet-test`` (mmdet's names). The
values that the library also knows (``REXNET_DEBUG``, the launchers, the ONNX backends) are checked against
it by tests/test_commands.py.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

__all__ = ['DEBUG_ENV', 'LAUNCHERS', 'ONNX_BACKENDS', 'add_debug_arg', 'add_threads_arg', 'parse_runner_args']

#: = rexnet_backbones.cli.DEBUG_ENV
DEBUG_ENV = 'REXNET_DEBUG'
#: launchers of rexnet-train / rexnet-test (mmdet's)
LAUNCHERS = ['none', 'pytorch', 'slurm', 'mpi']
#: = rexnet_backbones.engine.runner.ONNX_BACKENDS
ONNX_BACKENDS = ('onnxruntime', 'openvino')


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    """``--debug``: print the traceback of a known error too."""
    parser.add_argument('--debug', action='store_true',
                        help=f'show the traceback of errors (or set {DEBUG_ENV}=1)')


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number of threads, got {value!r}') from None
    if number < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {number}')
    return number


def add_threads_arg(parser: argparse.ArgumentParser, default: Optional[int] = None,
                    help: str = 'CPU threads of torch (default: what the machine has, as torch chooses)') -> None:
    """``--threads N`` (N >= 1; ``default`` None keeps the libraries' own choice)."""
    parser.add_argument('--threads', type=_positive_int, default=default, metavar='N', help=help)


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher``, ``--trust-checkpoint``, ``--allow-partial``, ``--threads``, ``--debug``,
    ``--local-rank``."""
    from mmengine.config import DictAction  # mmengine's config parser: no torch
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
                    'rexnet-test --backend onnxruntime|openvino; default: what the machine has)')
    add_debug_arg(parser)
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Add the shared flags, parse, and export ``LOCAL_RANK`` as mmdet's tools do."""
    add_runner_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args
