"""Config handling shared by :func:`~rexnet_backbones.engine.train` and ``test``.

Loading (with ``--cfg-options`` and the work dir), registering the modules of the config's
``default_scope``, and the edits the tools make, each mirroring mmdet's ``tools/train.py`` /
``tools/test.py``: ``--amp``, ``--auto-scale-lr``, ``--resume``, ``--show-dir``, ``--tta``.
"""
from __future__ import annotations

import glob
import importlib
import inspect
import logging
import os
import os.path as osp
import re
import warnings
from copy import deepcopy
from typing import Any, Dict, Optional

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..checkpoint import (TORCH_NO_WEIGHTS_ONLY_ENV, TRUST_ENV, enable_trusted_loading,
                          remove_stale_temp_files, safe_load, torch_unsafe_loading_forced,
                          trusted_loading_requested)
from ..config_files import resolve_config
from ..data.checks import check_annotation_files, check_dataset_paths
from ..errors import ConfigNotFoundError, ToolError

__all__ = ['load_config', 'apply_train_options', 'resolve_resume',
           'check_checkpoint_file', 'check_datasets', 'set_up_trust', 'use_atomic_checkpoints',
           'enable_visualization', 'apply_tta']


def load_config(config: str, cfg_options: Optional[Dict[str, Any]] = None, launcher: str = 'none',
                work_dir: Optional[str] = None) -> Config:
    """The config with ``cfg_options`` merged; work dir: argument > config > ``work_dirs/<stem>``.

    ``config`` is a file, ``mmdet::``/``mmseg::path`` or one of ours by short name
    (:func:`rexnet_backbones.config_files.resolve_config`).
    """
    try:
        config = resolve_config(config)
    except ConfigNotFoundError as e:
        raise ToolError(str(e)) from None
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def set_up_trust(trust_checkpoint: bool) -> None:
    """Apply ``--trust-checkpoint``; refuse an implicit opt-out of torch's weights-only loading.

    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (a common torch 2.6 workaround) would make every
    ``torch.load`` of mmengine execute pickled code. Our tools only do that when asked to.
    """
    if trust_checkpoint or trusted_loading_requested():
        enable_trusted_loading()
        print_log('trusted checkpoint loading: checkpoints are loaded with full unpickling, which '
                  'executes code stored in them', logger='current', level=logging.WARNING)
        return
    if torch_unsafe_loading_forced():
        raise ToolError(
            f'{TORCH_NO_WEIGHTS_ONLY_ENV}={os.environ[TORCH_NO_WEIGHTS_ONLY_ENV]} is set: torch would load '
            'checkpoints with full unpickling, which runs any code stored in the file. This tool does '
            f'not trust files implicitly: unset {TORCH_NO_WEIGHTS_ONLY_ENV} (mmengine checkpoints load '
            'safely without it), or pass --trust-checkpoint (or set '
            f'{TRUST_ENV}=1) if you trust every checkpoint this run loads.')


def accelerator_available() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                                 is_npu_available)
    return is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()


def apply_train_options(cfg, amp: bool = False, auto_scale_lr: bool = False) -> None:
    """``--amp`` and ``--auto-scale-lr`` as in mmdet's tools/train.py.

    ``--amp`` with a GPU: mmengine's ``AmpOptimWrapper`` (float16 autocast, dynamic loss scaling), as mmdet;
    without one (mmengine's ``AmpOptimWrapper`` refuses the CPU): ``CpuAmpOptimWrapper`` (:mod:`.amp`),
    bfloat16 autocast on the CPU, no loss scaling; not for two-stage detectors (an error: mmcv's CPU ``nms``
    and ``roi_align`` in their training step have no bfloat16 kernels). A config that names
    ``AmpOptimWrapper`` itself still needs a GPU."""
    if amp and not accelerator_available():
        optim_wrapper = cfg.get('optim_wrapper', None)
        if optim_wrapper is None:
            raise ToolError('--amp: the config has no optim_wrapper')
        wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type not in ('OptimWrapper', 'CpuAmpOptimWrapper'):
            raise ToolError(f'--amp needs optim_wrapper.type == "OptimWrapper", got {wrapper_type!r}')
        model = cfg.get('model', None) or {}
        if model.get('rpn_head') is not None or model.get('roi_head') is not None:
            raise ToolError("--amp on the CPU: this two-stage detector's training step runs mmcv's nms and "
                            'roi_align, whose CPU kernels have no bfloat16 version (they fail under bfloat16 '
                            'autocast). Train it without --amp on the CPU; on a GPU --amp is float16 '
                            "(mmengine's AmpOptimWrapper)")
        from . import amp as _amp  # noqa: F401  (registers CpuAmpOptimWrapper)
        optim_wrapper.type = 'CpuAmpOptimWrapper'
        optim_wrapper.dtype = 'bfloat16'
        print_log('--amp without a GPU: bfloat16 autocast on the CPU (CpuAmpOptimWrapper); on a GPU --amp is '
                  "mmengine's AmpOptimWrapper (float16)", logger='current', level=logging.WARNING)
        amp = False
    if amp:
        optim_wrapper = cfg.get('optim_wrapper', None)
        if optim_wrapper is None:
            raise ToolError('--amp: the config has no optim_wrapper')
        wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        elif wrapper_type != 'OptimWrapper':
            raise ToolError(f'--amp needs optim_wrapper.type == "OptimWrapper", got {wrapper_type!r}')
        else:
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.loss_scale = 'dynamic'
    if (cfg.get('optim_wrapper', None) or {}).get('type') == 'AmpOptimWrapper' and \
            not accelerator_available():
        raise ToolError('optim_wrapper.type=AmpOptimWrapper needs a GPU, but none is available: '
                        "mmengine's AmpOptimWrapper supports CUDA, NPU, MLU and MUSA devices only. On the CPU "
                        'use --amp with optim_wrapper.type=OptimWrapper (bfloat16 autocast, CpuAmpOptimWrapper), '
                        'or train without mixed precision.')
    if auto_scale_lr:
        asl = cfg.get('auto_scale_lr', None)
        if isinstance(asl, dict) and 'enable' in asl and 'base_batch_size' in asl:
            asl.enable = True
        else:
            raise ToolError('--auto-scale-lr: the config has no auto_scale_lr with "enable" and '
                            '"base_batch_size" (add e.g. auto_scale_lr = dict(enable=False, '
                            'base_batch_size=16), the total batch size the learning rate was tuned for)')


_CKPT_NUM = re.compile(r'(?:epoch|iter)_(\d+)\.pth$')


def _newest_checkpoint(work_dir: str) -> Optional[str]:
    found = [(int(m.group(1)), p) for p in glob.glob(osp.join(work_dir, '*.pth'))
             if (m := _CKPT_NUM.search(osp.basename(p)))]
    return max(found)[1] if found else None


def resolve_resume(cfg, resume: Optional[str]) -> None:
    """Set ``cfg.resume``/``cfg.load_from`` for ``--resume`` (``'auto'``: latest in the work dir).

    Auto-resume reads ``<work_dir>/last_checkpoint``; when it is missing or empty the newest
    ``epoch_N.pth``/``iter_N.pth`` is used, and when there is none training starts from scratch
    with a warning. A named checkpoint that does not exist is an error.
    """
    if resume is None:
        return
    work_dir = cfg.work_dir
    if osp.isdir(work_dir):
        remove_stale_temp_files(work_dir)
    if resume != 'auto':
        if '://' not in resume and not osp.isfile(resume):
            raise ToolError(f'--resume {resume}: checkpoint not found. Give an existing checkpoint, or '
                            '--resume without a value to continue from the latest one in the work dir.')
        cfg.resume, cfg.load_from = True, resume
        return
    marker = osp.join(work_dir, 'last_checkpoint')
    latest = None
    if osp.isfile(marker):
        with open(marker, encoding='utf-8') as f:
            latest = f.read().strip() or None
        if latest is None:
            print_log(f'--resume: {marker} is empty; looking for the newest checkpoint in {work_dir}',
                      logger='current', level=logging.WARNING)
        elif not osp.isfile(latest) and '://' not in latest:
            raise ToolError(f'--resume: {marker} names {latest}, which does not exist. Resume from a '
                            'given file with --resume CKPT, or remove the marker to start afresh.')
    if latest is None:
        latest = _newest_checkpoint(work_dir)
    if latest is None:
        print_log(f'--resume: no checkpoint found in {work_dir} (no last_checkpoint, no epoch_N.pth '
                  'or iter_N.pth); training starts from scratch', logger='current', level=logging.WARNING)
        cfg.resume, cfg.load_from = False, None
        return
    print_log(f'--resume: continuing from {latest}', logger='current')
    cfg.resume, cfg.load_from = True, latest


def check_checkpoint_file(path: Optional[str], what: str) -> None:
    """Fail early, with the file's name, on a missing, truncated or unsafe checkpoint."""
    if path is None or '://' in str(path):
        return
    if not osp.isfile(path):
        raise ToolError(f'{what}: checkpoint not found: {path}')
    if path.endswith('.onnx'):
        raise ToolError(f'{what}: {path} is an ONNX model; run it with --backend onnxruntime')
    try:
        safe_load(path)
    except RuntimeError as e:
        raise ToolError(f'{what}: {e}') from None


def check_datasets(cfg, splits) -> None:
    """Missing dataset paths, unreadable annotation files and ones of another dataset (none of the
    config's classes, images elsewhere), before anything is built."""
    check_dataset_paths(cfg, splits)
    check_annotation_files(cfg, splits, classes_of=_classes_finder(cfg.get('default_scope', None)))


def _classes_finder(scope: Optional[str]):
    """``dataset cfg -> classes``: its ``metainfo.classes``, else its type's default (mmdet's 80 COCO names)."""
    def classes_of(ds) -> Optional[tuple]:
        classes = (ds.get('metainfo') or {}).get('classes')
        if classes:
            return tuple(classes)
        dtype = ds.get('type')
        if not scope or not isinstance(dtype, str):
            return None
        try:
            module = importlib.import_module(f'{scope}.datasets')
        except ImportError:
            return None
        meta = getattr(getattr(module, dtype.split('.')[-1], None), 'METAINFO', None) or {}
        return tuple(meta.get('classes') or ()) or None
    return classes_of


def use_atomic_checkpoints(cfg) -> None:
    """Select ``AtomicCheckpointHook`` where the config uses mmengine's plain ``CheckpointHook``."""
    hooks = cfg.get('default_hooks', None) or {}
    hook = hooks.get('checkpoint', None)
    if isinstance(hook, dict) and hook.get('type') == 'CheckpointHook':
        hook['type'] = 'AtomicCheckpointHook'
        print_log('default_hooks.checkpoint: CheckpointHook -> AtomicCheckpointHook (crash-safe '
                  'saves)', logger='current', level=logging.DEBUG)


def _hook_accepts(hook_type, scope, argument: str) -> Optional[bool]:
    try:
        from mmengine.registry import HOOKS, DefaultScope
        if isinstance(hook_type, str):
            with DefaultScope.overwrite_default_scope(scope):
                hook_type = HOOKS.get(hook_type)
        if hook_type is None:
            return None
        return argument in inspect.signature(hook_type.__init__).parameters
    except Exception:  # pragma: no cover - registry not populated
        return None


def enable_visualization(cfg, scope: str, show: bool = False, show_dir: Optional[str] = None,
                         wait_time: float = 2) -> None:
    """``--show``/``--show-dir``: turn on ``default_hooks.visualization`` (mmdet and mmseg)."""
    hooks = cfg.get('default_hooks', None) or {}
    if 'visualization' not in hooks:
        raise ToolError('--show/--show-dir need a visualization hook in default_hooks, e.g. '
                        "default_hooks.visualization=dict(type='DetVisualizationHook') (mmdet) or "
                        "dict(type='SegVisualizationHook') (mmseg)")
    hook = hooks['visualization']
    hook['draw'] = True
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
    if show_dir:
        accepts = _hook_accepts(hook.get('type'), scope, 'test_out_dir')
        if accepts is None:
            accepts = scope != 'mmseg'
        if accepts:  # mmdet's DetVisualizationHook
            hook['test_out_dir'] = show_dir
        else:  # mmseg's SegVisualizationHook: images go to the visualizer's save_dir
            if cfg.get('visualizer', None) is None:
                raise ToolError('--show-dir: the config has no visualizer')
            cfg.visualizer['save_dir'] = show_dir
            hook['interval'] = 1


def _innermost_dataset(cfg):
    ds = cfg.test_dataloader.dataset
    while 'dataset' in ds:
        ds = ds['dataset']
    return ds


def apply_tta(cfg, scope: str) -> None:
    """``--tta``: wrap the model in ``tta_model`` and use ``tta_pipeline`` (mmdet defaults)."""
    if ('tta_model' not in cfg or 'tta_pipeline' not in cfg) and scope != 'mmdet':
        raise ToolError('--tta needs tta_model and tta_pipeline in the config')
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, we will set it as default.')
        cfg.tta_model = dict(type='DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, we will set it as default.')
        cfg.tta_pipeline = deepcopy(_innermost_dataset(cfg).pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor', 'flip', 'flip_direction'))]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    _innermost_dataset(cfg).pipeline = cfg.tta_pipeline
