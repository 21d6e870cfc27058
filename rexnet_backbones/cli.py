"""The one command-line convention of the tools in ``tools/`` (imports no OpenMMLab package).

* A known error -- one a user can fix -- ends a tool with ONE line on stderr,
  ``error: <what is wrong and what to do>`` (details may follow on indented lines), and exit code
  :data:`EXIT_USER_ERROR` (2, as argparse's own errors). The traceback is printed too only with
  ``--debug`` or ``REXNET_DEBUG=1``. Anything else is a bug and ends in Python's traceback.
* Known errors are the exceptions in :data:`rexnet_backbones.errors.USER_ERRORS` (:class:`ToolError` and
  its subclasses, and the library's own errors with a message for the user).
* Every tool that computes takes ``--threads N`` (:func:`add_threads_arg`, :func:`set_threads`);
  without it torch (and ONNX Runtime / OpenVINO) use what the machine has.

A tool is argparse, then ``run_cli(lambda _: library_call(...), debug=args.debug)``.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable, List, Optional, Sequence, Tuple, Type, TypeVar

from .errors import USER_ERRORS, InvalidInputError
from .quiet import quiet_known_warnings

__all__ = ['EXIT_USER_ERROR', 'DEBUG_ENV', 'run_cli', 'debug_requested', 'add_debug_arg', 'add_threads_arg',
           'set_threads', 'parse_shard', 'take_shard']

DEBUG_ENV = 'REXNET_DEBUG'
#: exit code of a tool that stopped on a known error (argparse uses 2 for a bad command line too)
EXIT_USER_ERROR = 2


def debug_requested(debug: bool = False) -> bool:
    """``--debug`` given, or ``REXNET_DEBUG`` set to anything but ''/0."""
    return debug or os.environ.get(DEBUG_ENV, '').strip() not in ('', '0')


def run_cli(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None,
            debug: bool = False, errors: Tuple[Type[BaseException], ...] = ()) -> int:
    """Run a tool's job ``main(argv)``; a known error prints ``error: ...`` and returns 2.

    Args:
        errors: further exception types of this tool's library call that carry a user message
            (e.g. the benchmark's ``BenchmarkError``), on top of :data:`USER_ERRORS`.

    Known warnings of other libraries that the user cannot act on are hidden first
    (:func:`~rexnet_backbones.quiet.quiet_known_warnings`).

    Returns ``main``'s int result, or 0.
    """
    quiet_known_warnings()
    try:
        result = main(argv)
    except USER_ERRORS + tuple(errors) as e:
        if debug_requested(debug):
            traceback.print_exc()
        message = str(e).strip() or type(e).__name__
        print(f'error: {message}', file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return result if isinstance(result, int) else 0


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


def set_threads(threads: Optional[int]) -> None:
    """Use ``threads`` CPU threads in torch (nothing changes for None)."""
    if threads is None:
        return
    if threads < 1:
        raise InvalidInputError(f'--threads must be >= 1, got {threads}')
    import torch
    torch.set_num_threads(threads)


_T = TypeVar('_T')


def parse_shard(text: Optional[str], flag: str = '--jobs') -> Tuple[int, int]:
    """``'I/N'`` (1 <= I <= N: shard I of N, as ``tools/suite.py run --jobs`` and ``tools/rank_study.py trained
    --shard`` take it) -> ``(I, N)``; None -> ``(1, 1)``."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(v) for v in text.split('/'))
    except ValueError:
        raise InvalidInputError(f'{flag} must be I/N (e.g. 1/2: the first of two shards), got {text!r}') from None
    if not 1 <= i <= n:
        raise InvalidInputError(f'{flag} {text}: need 1 <= I <= N')
    return i, n


def take_shard(items: Sequence[_T], index: int, count: int) -> List[_T]:
    """Shard ``index`` of ``count`` (1-based) of ``items``: every ``count``-th item from item ``index - 1``
    (disjoint shards that cover every item)."""
    if not 1 <= index <= count:
        raise InvalidInputError(f'shard {index}/{count}: need 1 <= I <= N')
    return [item for k, item in enumerate(items) if k % count == index - 1]
