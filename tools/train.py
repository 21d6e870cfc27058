#!/usr/bin/env python
"""Train a detector (mmdet) or segmentor (mmseg) from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                          [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]
                          [--trust-checkpoint]

Same options and semantics as mmdet 3.3.0's ``tools/train.py``, for mmdet and mmseg configs
alike: the package whose modules are registered is taken from the config's ``default_scope``.

* ``--work-dir``: default ``work_dirs/<config stem>`` (unless the config sets ``work_dir``).
* ``--resume``: without a value resume from the latest checkpoint in the work dir; with a value
  resume from that checkpoint (``cfg.resume=True`` and ``cfg.load_from=CKPT``).
* ``--amp``: use ``AmpOptimWrapper`` (dynamic loss scale). It needs a GPU (CUDA, or NPU/MLU/MUSA):
  on a CPU-only machine the tool stops with an error instead of silently training in fp32.
* ``--auto-scale-lr``: set ``auto_scale_lr.enable=True``; an error if the config has no
  ``auto_scale_lr`` with ``enable`` and ``base_batch_size``.
* ``--trust-checkpoint``: load checkpoints (``--resume``, ``load_from``) with full unpickling
  (``rexnet_backbones.checkpoint.enable_trusted_loading``). This EXECUTES CODE pickled into the
  file: use it only for checkpoints you trust. Without it checkpoints are loaded with torch's
  ``weights_only=True`` plus the allowlist registered by ``import rexnet_backbones``.

Before anything is built, the dataset paths of the train (and val) dataloaders and evaluators are
checked; a missing dataset stops the tool with a message naming the paths and the ways to fix it.

Distributed runs (``tools/dist_train.sh``) use NCCL on GPUs. Without CUDA the tool switches
``env_cfg.dist_cfg.backend`` to ``gloo``, initialises the process group itself (mmengine's
``init_dist`` calls ``torch.cuda.set_device``), wraps the model in DDP without ``device_ids``
and turns ``SyncBN`` into ``BN`` (SyncBatchNorm has no CPU kernel); each change is logged.
"""
import argparse
import datetime
import importlib
import logging
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # run from a clone without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)

try:
    # registers the ReXNet backbone and the weights-only allowlist for mmengine checkpoints
    import rexnet_backbones  # noqa: F401,E402
except ImportError as _e:  # pragma: no cover - environment problem
    sys.exit(f'error: cannot import rexnet_backbones ({_e}); install it with '
             "`pip install -e '.[mm]'` or run the tool from the repository root")

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

from rexnet_backbones.data.checks import (DatasetNotFoundError,  # noqa: E402
                                          check_dataset_paths, splits_for_training)

LAUNCHERS = ['none', 'pytorch', 'slurm', 'mpi']


# ---------------------------------------------------------------------------------------------
# helpers shared with tools/test.py
# ---------------------------------------------------------------------------------------------
def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs (e.g. '
        'train_dataloader.dataset.data_root=/data/coco/ train_cfg.max_epochs=2); a list is '
        'written key="[a,b]" or key=a,b, without white space')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load checkpoints with full unpickling. WARNING: this executes code pickled into '
        'the checkpoint; only use it for files you trust')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(args) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def fail(message: str, code: int = 1):
    """Stop with ``message`` on stderr (no traceback)."""
    print(f'error: {message}', file=sys.stderr, flush=True)
    raise SystemExit(code)


def load_config(config: str, cfg_options, launcher: str, work_dir) -> Config:
    if not osp.isfile(config):
        fail(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    # work_dir: CLI > config > work_dirs/<config stem>
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def enable_trusted_checkpoints() -> None:
    from rexnet_backbones.checkpoint import enable_trusted_loading
    enable_trusted_loading()
    print_log('--trust-checkpoint: checkpoints are loaded with full unpickling, which executes '
              'code stored in them', logger='current', level=logging.WARNING)


def register_scope_modules(cfg) -> str:
    """Register all modules of the config's ``default_scope`` package (mmdet, mmseg, ...)."""
    scope = cfg.get('default_scope', None)
    if scope is None:
        print_log('the config has no default_scope; only mmengine modules (and those imported '
                  'via custom_imports) are registered', logger='current', level=logging.WARNING)
        return ''
    try:
        utils = importlib.import_module(f'{scope}.utils')
    except ImportError as e:
        fail(f'default_scope={scope!r} but the package cannot be imported: {e}')
    register = getattr(utils, 'register_all_modules', None)
    if register is None:
        fail(f'default_scope={scope!r}: {scope}.utils has no register_all_modules()')
    register(init_default_scope=False)  # the Runner sets the scope from cfg.default_scope
    if scope == 'mmdet':
        # as mmdet's tools: limit torch.compile recompilations (DYNAMO_CACHE_SIZE_LIMIT)
        utils.setup_cache_size_limit_of_dynamo()
    return scope


def accelerator_available() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                                 is_npu_available)
    return is_cuda_available() or is_npu_available() or is_mlu_available() or \
        is_musa_available()


def _replace_sync_bn(obj, path: str, changed: list):
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
    """Prepare a multi-process run without CUDA (gloo backend). Returns True if it did."""
    import torch
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return False
    from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
    if is_npu_available() or is_mlu_available() or is_musa_available():
        return False  # mmengine handles these devices itself
    if cfg.launcher != 'pytorch':
        fail(f'--launcher {cfg.launcher} needs GPUs: on a CPU-only machine multi-process runs '
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

    import torch.distributed as dist
    if not dist.is_initialized():
        # mmengine's init_dist() calls torch.cuda.set_device(), so initialise it here; the Runner
        # then finds an initialised process group and uses it.
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if kwargs.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
        dist.init_process_group(backend='gloo', **kwargs)

    # DDP on CPU modules must not get device_ids (the Runner passes [LOCAL_RANK] by default)
    from mmengine.registry import MODEL_WRAPPERS, DefaultScope
    from torch.nn.parallel import DistributedDataParallel
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        wrapper = ConfigDict(
            type='MMDistributedDataParallel',
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
        print_log(f'no CUDA device: SyncBN -> BN in {", ".join(changed)} (SyncBatchNorm needs '
                  'GPUs)', logger='current', level=logging.WARNING)
    if cfg.get('sync_bn', None):
        print_log(f'no CUDA device: ignoring sync_bn={cfg.sync_bn!r}', logger='current',
                  level=logging.WARNING)
        cfg.sync_bn = None
    print_log(f'CPU distributed run: rank {dist.get_rank()} of {dist.get_world_size()}, '
              'backend gloo', logger='current')
    return True


def check_datasets(cfg, splits) -> None:
    try:
        check_dataset_paths(cfg, splits)
    except DatasetNotFoundError as e:
        fail(str(e))


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a detector (mmdet) or segmentor (mmseg) from a config')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by (GPUs x batch size) / auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or (without a value) from the latest checkpoint '
        'in the work directory')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def apply_train_args(cfg, args) -> None:
    """--amp, --auto-scale-lr and --resume, as in mmdet's tools/train.py."""
    if args.amp:
        optim_wrapper = cfg.get('optim_wrapper', None)
        if optim_wrapper is None:
            fail('--amp: the config has no optim_wrapper')
        wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        elif wrapper_type != 'OptimWrapper':
            fail(f'--amp needs optim_wrapper.type == "OptimWrapper", got {wrapper_type!r}')
        else:
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.loss_scale = 'dynamic'
    if (cfg.get('optim_wrapper', None) or {}).get('type') == 'AmpOptimWrapper' and \
            not accelerator_available():
        fail('mixed precision (--amp / AmpOptimWrapper) needs a GPU, but none is available: '
             "mmengine's AmpOptimWrapper supports CUDA, NPU, MLU and MUSA devices only. Train "
             'without --amp on CPU (or set optim_wrapper.type=OptimWrapper).')

    if args.auto_scale_lr:
        asl = cfg.get('auto_scale_lr', None)
        if isinstance(asl, dict) and 'enable' in asl and 'base_batch_size' in asl:
            asl.enable = True
        else:
            fail('--auto-scale-lr: the config has no auto_scale_lr with "enable" and '
                 '"base_batch_size" (add e.g. auto_scale_lr = dict(enable=False, '
                 'base_batch_size=16), the total batch size the learning rate was tuned for)')

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume


def build_train_cfg(args) -> Config:
    """The config as the Runner will see it (no process group, no modules registered)."""
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    apply_train_args(cfg, args)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_train_cfg(args)
    if args.trust_checkpoint:
        enable_trusted_checkpoints()
    check_datasets(cfg, splits_for_training(cfg))
    if cfg.get('resume') and cfg.get('load_from') and '://' not in str(cfg.load_from) and \
            not osp.isfile(cfg.load_from):
        fail(f'--resume: checkpoint not found: {cfg.load_from}')
    register_scope_modules(cfg)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    return runner.train()


if __name__ == '__main__':
    main()
