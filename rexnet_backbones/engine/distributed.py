"""Multi-process runs without CUDA (gloo) for torchrun, and a clean shutdown of torch.distributed."""
from __future__ import annotations

import contextlib
import datetime
import logging
from typing import Iterator

import torch
import torch.distributed as dist
from mmengine.config import ConfigDict
from mmengine.logging import print_log

from ..errors import ToolError

__all__ = ['setup_cpu_distributed', 'shutdown_distributed', 'distributed_run']


def _replace_sync_bn(obj, path: str, changed: list) -> None:
    if isinstance(obj, dict):
        if obj.get('type') in ('SyncBN', 'MMSyncBN'):
            changed.append(f'{path}.type')
            obj['type'] = 'BN'
        for key, value in obj.items():
            _replace_sync_bn(value, f'{path}.{key}', changed)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _replace_sync_bn(value, f'{path}.{i}', changed)


def setup_cpu_distributed(cfg) -> bool:
    """Prepare ``cfg`` for a multi-process run without CUDA; returns True if it did.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, so on CPU the process group (gloo)
    is initialised here and the Runner uses it. DDP gets no ``device_ids`` and ``SyncBN`` in
    ``norm_cfg`` becomes ``BN`` (SyncBatchNorm has no CPU kernel). ``sync_bn='torch'`` is kept: the
    Runner converts the model as on GPUs, and the wrapper ``GlooSyncBNDistributedDataParallel``
    (:mod:`.sync_bn`) synchronizes those layers over gloo; ``sync_bn='mmcv'`` (CUDA kernels only) is
    dropped. Every change is logged.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return False
    from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
    if is_npu_available() or is_mlu_available() or is_musa_available():
        return False  # mmengine handles these devices itself
    if cfg.launcher != 'pytorch':
        raise ToolError(f'--launcher {cfg.launcher} needs GPUs: on a CPU-only machine multi-process runs '
                        'are supported with --launcher pytorch (tools/dist_train.sh, tools/dist_test.sh)')
    if cfg.get('env_cfg', None) is None:
        cfg.env_cfg = ConfigDict()
    if cfg.env_cfg.get('dist_cfg', None) is None:
        cfg.env_cfg.dist_cfg = ConfigDict()
    dist_cfg = cfg.env_cfg.dist_cfg
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(f"no CUDA device: torch.distributed backend {dist_cfg.get('backend', 'nccl')!r} "
                  "-> 'gloo' (env_cfg.dist_cfg.backend)", logger='current', level=logging.WARNING)
        dist_cfg.backend = 'gloo'
    if not dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if kwargs.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
        dist.init_process_group(backend='gloo', **kwargs)

    from mmengine.registry import MODEL_WRAPPERS, DefaultScope
    from torch.nn.parallel import DistributedDataParallel
    wrapper = cfg.get('model_wrapper_cfg', None)
    gloo_sync_bn = cfg.get('sync_bn', None) == 'torch' and wrapper is None
    if wrapper is None:
        from . import sync_bn  # noqa: F401  (registers GlooSyncBNDistributedDataParallel)
        wrapper = ConfigDict(type='GlooSyncBNDistributedDataParallel' if gloo_sync_bn else 'MMDistributedDataParallel',
                             broadcast_buffers=False,
                             find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = wrapper.get('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope', None)):
            wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper

    changed: list = []
    _replace_sync_bn(cfg.get('model', None), 'model', changed)
    if changed:
        print_log(f'no CUDA device: SyncBN -> BN in {", ".join(changed)} (SyncBatchNorm needs GPUs)',
                  logger='current', level=logging.WARNING)
    if gloo_sync_bn:
        print_log("no CUDA device: sync_bn='torch' synchronizes BatchNorm over gloo "
                  '(GlooSyncBNDistributedDataParallel)', logger='current')
    elif cfg.get('sync_bn', None):
        why = 'a custom model_wrapper_cfg' if cfg.get('sync_bn') == 'torch' else "mmcv's SyncBN has CUDA kernels only"
        print_log(f'no CUDA device: ignoring sync_bn={cfg.sync_bn!r} ({why})', logger='current',
                  level=logging.WARNING)
        cfg.sync_bn = None
    print_log(f'CPU distributed run: rank {dist.get_rank()} of {dist.get_world_size()}, backend gloo',
              logger='current')
    return True


def shutdown_distributed(failed: bool = False) -> None:
    """Destroy the default process group, if any (at the end of a run and on error).

    Without it a gloo rank can abort at interpreter exit ("terminate called without an active
    exception"). After a successful run the ranks first meet at a barrier, so none tears the group
    down while another still talks to it; after a failure they do not wait for each other.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if not failed:
            dist.barrier()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_run(cfg) -> Iterator[None]:
    """Set up (CPU: gloo) before the block and shut torch.distributed down after it, also on error."""
    failed = True
    try:
        setup_cpu_distributed(cfg)
        yield
        failed = False
    finally:
        shutdown_distributed(failed)
