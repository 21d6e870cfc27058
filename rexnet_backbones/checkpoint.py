"""Safe checkpoint loading and crash-safe checkpoint saving.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which rejects the objects that
mmengine 0.10.x stores in ``meta``/``message_hub`` (``HistoryBuffer``, numpy arrays, scalars and
dtypes).  Importing this module (done by ``import rexnet_backbones``):

* allowlists exactly those types for torch's weights-only unpickler
  (:func:`register_mmengine_safe_globals`), so ``--resume``/``load_from``/test scripts work while
  every load still refuses arbitrary pickled code;
* makes mmengine write checkpoints atomically (:func:`patch_mmengine_atomic_save`);
* honours the explicit opt-in ``REXNET_TRUST_CHECKPOINTS=1`` (see :func:`enable_trusted_loading`).

Full (unsafe) unpickling is only ever done after an explicit opt-in: ``safe_load(..., trusted=True)``,
the ``--trust-checkpoint`` flag of our tools, or ``REXNET_TRUST_CHECKPOINTS=1``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import re
import struct
import sys
import uuid
import warnings
import zipfile
from typing import Any, Callable, Union

import numpy as np
import torch

__all__ = ['safe_load', 'register_mmengine_safe_globals', 'enable_trusted_loading',
           'patch_mmengine_atomic_save']

logger = logging.getLogger(__name__)

TRUST_ENV = 'REXNET_TRUST_CHECKPOINTS'
TORCH_NO_WEIGHTS_ONLY_ENV = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'
TORCH_WEIGHTS_ONLY_ENV = 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'
_TRUE_VALUES = ('1', 'y', 'yes', 'true', 'on')

PathLike = Union[str, 'os.PathLike[str]']
MapLocation = Union[str, torch.device, Callable[..., Any], dict, None]

# Type codes of the bool/int/float/complex numpy dtypes that HistoryBuffer, metrics and runtime info
# produce (as character codes so the platform's C-type aliases such as LongLongDType are covered).
_NUMPY_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'
# HistoryBuffer pickles its statistics methods as ``getattr(HistoryBuffer, name)``.
_HISTORY_BUFFER_METHODS = frozenset({'min', 'max', 'current', 'mean'})

_registered_names: list[str] | None = None
_ATOMIC_FLAG = '_rexnet_atomic_save'


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE_VALUES


def _numpy_multiarray() -> Any:
    """Return numpy's ``multiarray`` module without touching the deprecated ``numpy.core``."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` that only resolves HistoryBuffer statistics methods."""
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Blocked attribute lookup getattr({obj!r}, {name!r}): only '
        f'HistoryBuffer.{{{",".join(sorted(_HISTORY_BUFFER_METHODS))}}} are allowed')


def register_mmengine_safe_globals() -> list[str]:
    """Allowlist the types in mmengine Runner checkpoints for ``torch.load(weights_only=True)``.

    Idempotent. Returns the allowlisted global names (as they appear in pickles).
    """
    global _registered_names
    if _registered_names is not None:
        return list(_registered_names)

    multiarray = _numpy_multiarray()
    entries: list[tuple[Any, str]] = []
    # numpy >= 2 pickles reference ``numpy._core``; checkpoints written with numpy 1.x use ``numpy.core``.
    for pkg in ('numpy._core', 'numpy.core'):
        entries.append((multiarray._reconstruct, f'{pkg}.multiarray._reconstruct'))
        entries.append((multiarray.scalar, f'{pkg}.multiarray.scalar'))
    entries.append((np.ndarray, 'numpy.ndarray'))
    entries.append((np.dtype, 'numpy.dtype'))
    dtype_classes = dict.fromkeys(type(np.dtype(code)) for code in _NUMPY_DTYPE_CODES)
    for dtype_cls in dtype_classes:  # e.g. numpy.dtypes.Float64DType (only BUILD-checked by identity)
        entries.append((dtype_cls, f'{dtype_cls.__module__}.{dtype_cls.__qualname__}'))
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:
        pass
    else:
        entries.append((HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'))
        entries.append((_history_buffer_getattr, 'builtins.getattr'))

    torch.serialization.add_safe_globals(list(entries))
    _registered_names = [name for _, name in entries]
    return list(_registered_names)


def enable_trusted_loading() -> None:
    """Opt in to full unpickling for every ``torch.load`` in this process (and its children).

    Sets ``REXNET_TRUST_CHECKPOINTS=1`` and torch's ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, so that
    mmengine's own loads (``Runner.resume``, ``load_checkpoint``) also use ``weights_only=False``.
    This executes pickled code from the checkpoint: use it only for files you trust.
    """
    if _is_true(os.environ.get(TORCH_WEIGHTS_ONLY_ENV)):
        raise RuntimeError(f'Cannot enable trusted checkpoint loading while {TORCH_WEIGHTS_ONLY_ENV}='
                           f'{os.environ[TORCH_WEIGHTS_ONLY_ENV]} forces weights-only loading.')
    os.environ[TRUST_ENV] = '1'
    os.environ[TORCH_NO_WEIGHTS_ONLY_ENV] = '1'
    logger.warning('Trusted checkpoint loading enabled: torch.load will execute pickled code.')


_BLOCKED_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
    re.compile(r'reduce for unrecognized function (.+?)(?: which belongs|$)', re.MULTILINE),
    re.compile(r'(getattr\(.+?\)): only HistoryBuffer'),
    re.compile(r'(\S+) must be imported to load'),
)
_CORRUPT_RUNTIME_MARKERS = ('PytorchStreamReader', 'zip archive', 'central directory',
                            'unexpected EOF', 'file read failed')


def _blocked_globals(message: str, path: str) -> list[str]:
    names: list[str] = []
    for pattern in _BLOCKED_PATTERNS:
        names += [m.strip().rstrip('.') for m in pattern.findall(message)]
    if names:
        with contextlib.suppress(Exception):  # static scan adds the other offenders, if any
            names += torch.serialization.get_unsafe_globals_in_checkpoint(path)
    return sorted(set(names))


def _blocked_error(path: str, blocked: list[str]) -> RuntimeError:
    return RuntimeError(
        f"Refusing to load checkpoint '{path}' with the safe (weights_only) loader: it contains "
        f"non-allowlisted pickled object(s): {', '.join(blocked)}. Loading it fully executes pickled "
        'code from the file, so only do this for checkpoints you trust: pass --trust-checkpoint to '
        f'our tools, set {TRUST_ENV}=1 in the environment, or call safe_load(..., trusted=True).')


def _corrupt_error(path: str, exc: BaseException) -> RuntimeError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else 'empty input'
    return RuntimeError(f"Could not read checkpoint '{path}': the file is truncated, corrupt or not "
                        f'a PyTorch checkpoint ({type(exc).__name__}: {detail}).')


def safe_load(path: PathLike, map_location: MapLocation = 'cpu', trusted: bool | None = None) -> Any:
    """Load a checkpoint with ``weights_only=True`` unless the caller explicitly trusts it.

    ``trusted=None`` follows the ``REXNET_TRUST_CHECKPOINTS`` environment variable.
    Raises ``FileNotFoundError`` for a missing file, and ``RuntimeError`` naming the file when it is
    corrupt/truncated or holds pickled objects outside the allowlist.
    """
    register_mmengine_safe_globals()
    fspath = os.fspath(path)
    if not os.path.exists(fspath):
        raise FileNotFoundError(2, f"Checkpoint file not found: '{fspath}'", fspath)
    if trusted is None:
        trusted = _is_true(os.environ.get(TRUST_ENV))
    try:
        return torch.load(fspath, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if not trusted:
            blocked = _blocked_globals(str(exc), fspath)
            if blocked:
                raise _blocked_error(fspath, blocked) from exc
        raise _corrupt_error(fspath, exc) from exc
    except (EOFError, zipfile.BadZipFile, struct.error, UnicodeDecodeError) as exc:
        raise _corrupt_error(fspath, exc) from exc
    except RuntimeError as exc:
        if any(marker in str(exc) for marker in _CORRUPT_RUNTIME_MARKERS):
            raise _corrupt_error(fspath, exc) from exc
        raise
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise _corrupt_error(fspath, exc) from exc  # e.g. EINVAL when the zip tail is cut off


def _fsync_dir(directory: str) -> None:
    """Persist a rename in ``directory`` (best effort; not possible on every OS/filesystem)."""
    if not hasattr(os, 'O_DIRECTORY'):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_torch_save(obj: Any, filename: PathLike) -> None:
    """``torch.save`` to a temp file next to ``filename``, fsync it, then ``os.replace`` it into place."""
    target = os.fspath(filename)
    if os.path.islink(target):  # keep writing through symlinks like open(target, 'wb') does
        target = os.path.realpath(target)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory,
                       f'.{os.path.basename(target)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    # O_EXCL: never clobber anything; 0o666 & ~umask: same permissions as a plain open(..., 'wb').
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _is_local_target(filename: Any, file_client_args: dict | None, backend_args: dict | None) -> bool:
    """Whether mmengine would write ``filename`` with its local-disk backend."""
    if file_client_args is not None or not isinstance(filename, (str, os.PathLike)):
        return False  # deprecated FileClient path / unusual input: leave mmengine's behaviour alone
    if os.fspath(filename).startswith('pavi://'):
        return False
    try:
        from mmengine.fileio import get_file_backend
        from mmengine.fileio.backends import LocalBackend

        return isinstance(get_file_backend(filename, backend_args=backend_args), LocalBackend)
    except Exception:  # unknown prefix etc.: let the original raise its own error
        return False


def _make_atomic(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def save_checkpoint(checkpoint: dict, filename: Any, file_client_args: dict | None = None,
                        backend_args: dict | None = None) -> None:
        if not _is_local_target(filename, file_client_args, backend_args):
            return original(checkpoint, filename, file_client_args=file_client_args,
                            backend_args=backend_args)
        _atomic_torch_save(checkpoint, filename)

    setattr(save_checkpoint, _ATOMIC_FLAG, True)
    return save_checkpoint


# Modules that bind ``save_checkpoint`` by name at import time (others import it lazily).
_SAVE_CHECKPOINT_MODULES = ('mmengine.runner.checkpoint', 'mmengine.runner', 'mmengine.runner.runner',
                            'mmengine._strategy.deepspeed', 'mmengine._strategy.colossalai')


def patch_mmengine_atomic_save() -> bool:
    """Make ``mmengine.runner.checkpoint.save_checkpoint`` atomic for local files.

    The checkpoint is written to a temporary file in the target directory, flushed and fsync'ed,
    then ``os.replace``'d onto the final name, so a crash never leaves a half-written checkpoint
    (and the CheckpointHook writes ``last_checkpoint`` only after the replace). Other backends are
    untouched. Idempotent; returns False when mmengine is not installed.
    """
    try:
        import mmengine.runner.checkpoint as ckpt_module
    except ImportError:
        return False
    current = ckpt_module.save_checkpoint
    if getattr(current, _ATOMIC_FLAG, False):
        original, patched = current.__wrapped__, current
    else:
        original, patched = current, _make_atomic(current)
    for name in _SAVE_CHECKPOINT_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, 'save_checkpoint', None) is original:
            module.save_checkpoint = patched
    return True


def _activate() -> None:
    """Import-time setup: allowlist, atomic saving, and the env-var opt-in."""
    register_mmengine_safe_globals()
    try:
        patch_mmengine_atomic_save()
    except Exception as exc:  # never make the package unimportable because of this
        warnings.warn(f'Could not patch mmengine for atomic checkpoint saving: {exc}', stacklevel=2)
    if _is_true(os.environ.get(TRUST_ENV)):
        try:
            enable_trusted_loading()
        except RuntimeError as exc:
            warnings.warn(str(exc), stacklevel=2)


_activate()
