"""Errors a user can fix, and how the command-line tools report them (no traceback)."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, Optional, Sequence

from ..convert import CheckpointMismatchError
from ..data.checks import AnnotationFileError, DatasetNotFoundError
from ..quiet import quiet_known_warnings

__all__ = ['ToolError', 'USER_ERRORS', 'run_cli', 'DEBUG_ENV']

DEBUG_ENV = 'REXNET_DEBUG'


class ToolError(RuntimeError):
    """A problem with the command line, the config or an input file, explained in the message."""


#: errors that come with a message meant for the user; the tools print it without a traceback
USER_ERRORS = (ToolError, CheckpointMismatchError, DatasetNotFoundError, AnnotationFileError)


def run_cli(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None,
            debug: bool = False) -> int:
    """Run a tool's ``main``; a user error prints ``error: ...`` and exits 2.

    Known warnings of other libraries are hidden first (:func:`~rexnet_backbones.quiet.quiet_known_warnings`).

    The traceback is printed too with ``--debug`` or ``REXNET_DEBUG=1``.
    """
    quiet_known_warnings()
    try:
        result = main(argv)
    except USER_ERRORS as e:
        if debug or os.environ.get(DEBUG_ENV, '').strip() not in ('', '0'):
            traceback.print_exc()
        print(f'error: {e}', file=sys.stderr, flush=True)
        print(f'(for the traceback, run again with --debug or {DEBUG_ENV}=1)', file=sys.stderr, flush=True)
        return 2
    return result if isinstance(result, int) else 0
