"""Every exception of the package, in one leaf module that imports nothing of the package.

Any layer may raise these (see ``docs/layers.md``). Each class also derives from the built-in exception a
caller would expect (``FileNotFoundError``, ``ValueError``, ...), so ``except ValueError`` keeps working.

* :class:`ToolError` and its subclasses: a problem with the command line, the config or an input file.
* The errors of one step: configs (:class:`ConfigNotFoundError`), checkpoint files
  (:class:`CheckpointLoadError`, :class:`CheckpointNotFoundError`), weights (:class:`WeightsNotFoundError`,
  :class:`CheckpointMismatchError`), datasets (:class:`DatasetNotFoundError`, :class:`AnnotationFileError`,
  :class:`DatasetMismatchError`), deployment (:class:`DeployDependencyError`, :class:`OnnxVerificationError`).
* :data:`USER_ERRORS`: the ones whose message is meant for the user; the tools print it as one
  ``error: ...`` line (:func:`rexnet_backbones.cli.run_cli`).
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple, Type

__all__ = [
    'ToolError', 'InputNotFoundError', 'InvalidInputError', 'OutputExistsError', 'BenchmarkError',
    'FlopBudgetError', 'ConfigNotFoundError', 'CheckpointLoadError', 'CheckpointNotFoundError',
    'CheckpointMismatchError', 'WeightsNotFoundError', 'DatasetNotFoundError', 'AnnotationFileError',
    'DatasetMismatchError', 'DeployDependencyError', 'OnnxVerificationError', 'BundleError', 'USER_ERRORS',
]


# ------------------------------------------------------------------------------------------ tools
class ToolError(RuntimeError):
    """A problem with the command line, the config or an input file, explained in the message."""


class InputNotFoundError(ToolError, FileNotFoundError):
    """A file, folder or model that the user named does not exist."""


class InvalidInputError(ToolError, ValueError):
    """A value that no run can use (the message lists what is accepted)."""


class OutputExistsError(ToolError, FileExistsError):
    """An output that a tool refuses to overwrite."""


class BenchmarkError(ToolError):
    """A problem with a benchmark request (missing config, missing package, ...): reported without a traceback."""


class FlopBudgetError(ToolError):
    """No sampled model met the FLOP budget within the allowed number of tries."""


# ------------------------------------------------------------------------------------------ configs
class ConfigNotFoundError(FileNotFoundError, ValueError):
    """A config argument that names no file; the message says what was looked for."""


# ------------------------------------------------------------------------------------------ checkpoints
class CheckpointLoadError(RuntimeError):
    """A checkpoint cannot be read safely: missing, truncated/corrupt, or holding non-allowlisted objects."""


class CheckpointNotFoundError(FileNotFoundError, CheckpointLoadError):
    """The checkpoint file does not exist."""

    def __str__(self) -> str:
        return f"checkpoint file not found: '{self.filename}' (check the path)"


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model (or the requested ReXNet architecture).

    Lists the missing, unexpected and shape-mismatched keys, and ``hint``, the likely cause, when one is
    given (:func:`rexnet_backbones.state_dicts.check_state_dict` derives it from the keys' prefix).
    """

    def __init__(self, what: str, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 mismatched: Iterable[Tuple[str, tuple, tuple]] = (), hint: Optional[str] = None):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        self.hint = hint
        lines = [what]
        for title, items in (('missing keys', self.missing), ('unexpected keys', self.unexpected)):
            if items:
                lines.append(f'  {title} ({len(items)}): {", ".join(items[:8])}' + (' ...' if len(items) > 8 else ''))
        if self.mismatched:
            shown = '; '.join(f'{k}: checkpoint {tuple(a)} vs model {tuple(b)}' for k, a, b in self.mismatched[:8])
            more = ' ...' if len(self.mismatched) > 8 else ''
            lines.append(f'  shape mismatches ({len(self.mismatched)}): {shown}{more}')
        if hint:
            lines.append(f'  likely cause: {hint}')
        super().__init__('\n'.join(lines))


class WeightsNotFoundError(FileNotFoundError):
    """The weights a checkpoint names cannot be had: no such file, or a hub tag that is not cached while
    the hub is offline (or that has no weights). The message says what to give instead."""


# ------------------------------------------------------------------------------------------ datasets
class DatasetNotFoundError(FileNotFoundError):
    """A dataset path referenced by the config does not exist."""


class AnnotationFileError(ValueError):
    """An annotation file exists but cannot be read (corrupt or truncated JSON, ...)."""


class DatasetMismatchError(ValueError):
    """The dataset's files exist but hold something else than the config reads (e.g. ``COCO_ROOT``
    pointing at another dataset): no image, none of the config's classes, images elsewhere."""


# ------------------------------------------------------------------------------------------ deployment
class DeployDependencyError(ImportError):
    """An optional deployment package (onnx, onnxruntime, openvino) is not installed."""


class OnnxVerificationError(AssertionError):
    """The ONNX model does not reproduce the PyTorch outputs within the tolerance."""


# ------------------------------------------------------------------------------------------ GPU bundle
class BundleError(RuntimeError):
    """Making or installing the GPU bundle (``make gpu-bundle``, ``gpu_check.py --bundle``) failed; the message
    says what to do."""


#: errors that come with a message meant for the user; the tools print it without a traceback
USER_ERRORS: Tuple[Type[BaseException], ...] = (
    ToolError, ConfigNotFoundError, CheckpointMismatchError, CheckpointLoadError, WeightsNotFoundError,
    DatasetNotFoundError, AnnotationFileError, DatasetMismatchError)
