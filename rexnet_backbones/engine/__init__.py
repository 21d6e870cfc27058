"""Training and testing with mmengine's Runner: what ``tools/train.py`` and ``tools/test.py`` run.

* :func:`train` and :func:`test` -- the whole job of the two tools, callable from Python.
* :mod:`.config` -- config loading, scope registration, the tools' config edits.
* :mod:`.distributed` -- CPU (gloo) set-up for torchrun, and a clean shutdown.
* :mod:`.hooks` -- ``AtomicCheckpointHook`` and ``CheckpointCheckHook`` (registered in mmengine's
  ``HOOKS``), :mod:`.fileio` -- the ``'atomic_local'`` file backend (``register_backend``).

Importing this package registers the hook and backend types; it changes no function of mmengine.
:func:`train` and :func:`test` (:mod:`.runner`) load on first use, so that ``import rexnet_backbones``
(every config's ``custom_imports``) registers without importing the job code.
"""
from .fileio import AtomicLocalBackend
from .hooks import AtomicCheckpointHook, CheckpointCheckHook

__all__ = ['train', 'test', 'AtomicLocalBackend',
           'AtomicCheckpointHook', 'CheckpointCheckHook']


def __getattr__(name: str):
    if name in ('train', 'test'):  # the job code, imported when a tool (or user) runs a job
        from . import runner
        return getattr(runner, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
