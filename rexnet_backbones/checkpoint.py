"""Safe checkpoint loading and crash-safe checkpoint saving.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which rejects the objects that
mmengine 0.10.x stores in ``meta``/``message_hub`` (``HistoryBuffer``, numpy arrays, scalars and
dtypes).  Importing this module (done by ``import rexnet_backbones``):

allowlists exactly those types for torch's weights-only unpickler
(:func:`register_mmengine_safe_globals`, a registry entry of torch's, not a patch), so
``--resume``/``load_from``/test scripts work while every load still refuses arbitrary pickled code.

It also holds the project's one atomic writer, :func:`atomic_write` (temp file, fsync, rename),
used by the mmengine file backend ``'atomic_local'`` (``rexnet_backbones.engine``) and by
:func:`save_state_dict`.

Full (unsafe) unpickling is only ever done after an explicit opt-in: ``safe_load(..., trusted=True)``,
the ``--trust-checkpoint`` flag of our tools, or ``REXNET_TRUST_CHECKPOINTS=1``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import struct
import zipfile
from typing import Any, Callable, Union

import numpy as np
import torch

from .errors import CheckpointLoadError, CheckpointNotFoundError

__all__ = ['safe_load', 'register_mmengine_safe_globals',
           'enable_trusted_loading', 'trusted_loading_requested', 'atomic_write', 'save_state_dict', 'remove_stale_temp_files']

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
    return CheckpointLoadError(
        f"Refusing to load checkpoint '{path}' with the safe (weights_only) loader: it contains "
        f"non-allowlisted pickled object(s): {', '.join(blocked)}. Loading it fully executes pickled "
        'code from the file, so only do this for checkpoints you trust: pass --trust-checkpoint to '
        f'our tools, set {TRUST_ENV}=1 in the environment, or call safe_load(..., trusted=True).')


def _corrupt_error(path: str, exc: BaseException) -> RuntimeError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else 'empty input'
    return CheckpointLoadError(f"Could not read checkpoint '{path}': the file is truncated, corrupt or not "
                        f'a PyTorch checkpoint ({type(exc).__name__}: {detail}).')


def safe_load(path: PathLike, map_location: MapLocation = 'cpu', trusted: bool | None = None) -> Any:
    """Load a checkpoint with ``weights_only=True`` unless the caller explicitly trusts it.

    ``trusted=None`` follows the ``REXNET_TRUST_CHECKPOINTS`` environment variable.
    Raises ``CheckpointNotFoundError`` (a ``FileNotFoundError``) for a missing file, and
    ``CheckpointLoadError`` (a ``RuntimeError``) naming the file when it is corrupt/truncated or holds
    pickled objects outside the allowlist.
    """
    register_mmengine_safe_globals()
    fspath = os.fspath(path)
    if not os.path.exists(fspath):
        raise CheckpointNotFoundError(2, f"Checkpoint file not found: '{fspath}'", fspath)
    if trusted is None:
        trusted = _is_true(os.environ.get(TRUST_ENV))
    if os.path.isfile(fspath) and not zipfile.is_zipfile(fspath):
        with open(fspath, 'rb') as f:
            head = f.read(2)
        if head and head[:1] != b'\x80' and head != b'PK':  # neither torch's zip format nor a (legacy) pickle
            raise CheckpointLoadError(
                f"Could not read checkpoint '{fspath}': it is not a PyTorch checkpoint (neither torch's "
                f'zip format nor a pickle; it starts with {head!r}). Check the file name, or download it again.')
    try:
        return torch.load(fspath, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        if not trusted:
            blocked = _blocked_globals(str(exc), fspath)
            if blocked:
                raise _blocked_error(fspath, blocked) from exc
        raise _corrupt_error(fspath, exc) from exc
    except (EOFError, zipfile.BadZipFile, struct.error, UnicodeDecodeError, KeyError, ValueError) as exc:
        raise _corrupt_error(fspath, exc) from exc
    except RuntimeError as exc:
        if any(marker in str(exc) for marker in _CORRUPT_RUNTIME_MARKERS):
            raise _corrupt_error(fspath, exc) from exc
        raise
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise _corrupt_error(fspath, exc) from exc  # e.g. EINVAL when the zip tail is cut off


def trusted_loading_requested() -> bool:
    """Whether the user opted in through ``REXNET_TRUST_CHECKPOINTS`` (our own variable)."""
    return _is_true(os.environ.get(TRUST_ENV))


def torch_unsafe_loading_forced() -> bool:
    """Whether ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` turns off torch's weights-only default."""
    return _is_true(os.environ.get(TORCH_NO_WEIGHTS_ONLY_ENV))


# --------------------------------------------------------------------------------- atomic writes
_TMP_PREFIX = '.rexnet-tmp.'
_TMP_RE = re.compile(r'^\.rexnet-tmp\.(?P<pid>\d+)\.[0-9a-f]{8}\.(?P<name>.+)$')


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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (the owner of a temporary file or a lock)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(directory: PathLike) -> list[str]:
    """Delete temporary files that :func:`atomic_write` left behind in ``directory``.

    Only our own names (``.rexnet-tmp.<pid>.<rand>.<name>``) of processes that no longer run are
    removed: a crash (or SIGKILL) during a save leaves one. Returns the removed paths.
    """
    removed = []
    directory = os.fspath(directory)
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            m = _TMP_RE.match(name)
            if m and not pid_alive(int(m.group('pid'))):
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed.append(path)
    if removed:
        logger.warning('removed %d stale temporary file(s) of an interrupted save: %s',
                       len(removed), ', '.join(removed))
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[Any], None] | bytes | str,
                 encoding: str = 'utf-8') -> None:
    """Write a file so that readers only ever see the old or the complete new content.

    ``write`` is the bytes/str to write, or a function that writes into the given binary file
    object. The data go to a temporary file next to ``path``, are flushed and fsync'ed, then
    ``os.replace``'d onto ``path``. A new file gets the usual ``0o666 & ~umask`` mode; a
    replaced file keeps its mode. Stale temporary files of earlier crashed saves in the same
    folder are removed first. A symlink ``path`` is written through, as ``open(path, 'wb')`` does.
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(21, f"cannot write '{target}': it is a directory; give a file name", target)
    if os.path.islink(target):
        target = os.path.realpath(target)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temp_files(directory)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    tmp = os.path.join(directory, f'{_TMP_PREFIX}{os.getpid()}.{os.urandom(4).hex()}.{os.path.basename(target)}')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o600)
    try:
        with os.fdopen(fd, 'wb') as f:
            if isinstance(write, str):
                f.write(write.encode(encoding))
            elif isinstance(write, (bytes, bytearray, memoryview)):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def save_state_dict(state_dict: dict, path: PathLike) -> None:
    """Save tensors atomically: ``.safetensors`` by extension, else ``torch.save``."""
    if os.fspath(path).endswith('.safetensors'):
        from safetensors.torch import save
        atomic_write(path, save({k: v.contiguous() for k, v in state_dict.items()}))
    else:
        atomic_write(path, lambda f: torch.save(state_dict, f))
