"""The tools' error convention, for the engine: see :mod:`rexnet_backbones.cli` (its one home)."""
from __future__ import annotations

from ..cli import DEBUG_ENV, USER_ERRORS, InputNotFoundError, InvalidInputError, ToolError, run_cli

__all__ = ['ToolError', 'InputNotFoundError', 'InvalidInputError', 'USER_ERRORS', 'run_cli', 'DEBUG_ENV']
