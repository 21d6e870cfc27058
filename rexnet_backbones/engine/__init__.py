"""Training and testing with mmengine's Runner: what ``tools/train.py`` and ``tools/test.py`` run.

* :func:`train` and :func:`test` -- the whole job of the two tools, callable from Python.
* :mod:`.config` -- config loading, scope registration, the tools' config edits.
* :mod:`.distributed` -- CPU (gloo) set-up for torchrun, and a clean shutdown.
* :mod:`.hooks` -- ``AtomicCheckpointHook`` and ``CheckpointCheckHook`` (registered in mmengine's
  ``HOOKS``), :mod:`.fileio` -- the ``'atomic_local'`` file backend (``register_backend``).
* :mod:`.amp` -- ``CpuAmpOptimWrapper`` (``OPTIM_WRAPPERS``): ``--amp`` on the CPU, bfloat16 autocast.
* :mod:`.sync_bn` -- ``GlooSyncBNDistributedDataParallel`` (``MODEL_WRAPPERS``): ``sync_bn='torch'`` in
  CPU multi-process runs.

Importing this package registers the hook, backend and wrapper types; it changes no function of mmengine.
:func:`train` and :func:`test` (:mod:`.runner`) load on first use, so that ``import rexnet_backbones``
(every config's ``custom_imports``) registers without importing the job code.
"""
from .fileio import AtomicLocalBackend
from .amp import CpuAmpOptimWrapper
from .hooks import AtomicCheckpointHook, CheckpointCheckHook
from .sync_bn import GlooSyncBatchNorm, GlooSyncBNDistributedDataParallel

__all__ = ['train', 'test', 'AtomicLocalBackend', 'AtomicCheckpointHook', 'CheckpointCheckHook',
           'CpuAmpOptimWrapper', 'GlooSyncBatchNorm', 'GlooSyncBNDistributedDataParallel']


def __getattr__(name: str):
    if name in ('train', 'test'):  # the job code, imported when a tool (or user) runs a job
        from . import runner
        return getattr(runner, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
