"""Errors a user can fix, and how the command-line tools report them (no traceback)."""
from __future__ import annotations

import os
import sys
import traceback
import warnings
from typing import Callable, Optional, Sequence

from ..convert import CheckpointMismatchError
from ..data.checks import AnnotationFileError, DatasetNotFoundError

__all__ = ['ToolError', 'USER_ERRORS', 'run_cli', 'DEBUG_ENV', 'quiet_known_warnings']

DEBUG_ENV = 'REXNET_DEBUG'


class ToolError(RuntimeError):
    """A problem with the command line, the config or an input file, explained in the message."""


#: errors that come with a message meant for the user; the tools print it without a traceback
USER_ERRORS = (ToolError, CheckpointMismatchError, DatasetNotFoundError, AnnotationFileError)


def quiet_known_warnings() -> None:
    """Hide warnings about other libraries that a user of our tools cannot act on.

    mmengine 0.10.7 imports ``pkg_resources`` (``mmengine.utils.is_installed``, on every config
    load), and setuptools 80.9 to 81 warn about that with a ``UserWarning``, up to three times per
    start. Only that message is filtered; the constraints file pins a setuptools that does not warn.
    """
    warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API', category=UserWarning)


def run_cli(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None,
            debug: bool = False) -> int:
    """Run a tool's ``main``; a user error prints ``error: ...`` and exits 2.

    Known warnings of other libraries are hidden first (:func:`quiet_known_warnings`).

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
