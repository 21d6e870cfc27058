"""The one command-line convention of the commands (:mod:`rexnet_cli`; imports no OpenMMLab package).

* A known error -- one a user can fix -- ends a tool with ONE line on stderr,
  ``error: <what is wrong and what to do>`` (details may follow on indented lines), and exit code
  :data:`EXIT_USER_ERROR` (2, as argparse's own errors). The traceback is printed too only with
  ``--debug`` or ``REXNET_DEBUG=1``. Anything else is a bug and ends in Python's traceback.
* Known errors are the exceptions in :data:`rexnet_backbones.errors.USER_ERRORS` (:class:`ToolError` and
  its subclasses, and the library's own errors with a message for the user).
* Every command that computes takes ``--threads N`` (``rexnet_cli._args.add_threads_arg``, :func:`set_threads`);
  without it torch (and ONNX Runtime / OpenVINO) use what the machine has.

A command is argparse (in :mod:`rexnet_cli`, before torch is imported), then
``run_cli(lambda _: library_call(...), debug=args.debug)``.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, List, Optional, Sequence, Tuple, Type, TypeVar

from .errors import USER_ERRORS, InvalidInputError
from .quiet import quiet_known_warnings

__all__ = ['EXIT_USER_ERROR', 'DEBUG_ENV', 'run_cli', 'debug_requested', 'set_threads', 'parse_shard', 'take_shard']

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
