"""``train`` and ``test``: the jobs of ``tools/train.py`` and ``tools/test.py``, from Python.

    from rexnet_backbones.engine import train, test
    train('configs/det/retinanet_rexnet.py', work_dir='work_dirs/r', cfg_options={'train_cfg.max_epochs': 1})
    metrics = test('configs/det/retinanet_rexnet.py', 'work_dirs/r/epoch_1.pth')

Before anything is built (and before the Runner dumps the config), both check the installed mmcv
(:func:`~.env.check_mmcv`) and the inputs a user can get wrong (config, checkpoint files, pretrained
weights and ONNX files (:mod:`.checks`), dataset paths and annotation files, neck channels) and raise
errors that say what to do; while
running, every checkpoint the Runner loads must fit the model (``CheckpointCheckHook``) unless
``allow_partial=True``. torch.distributed is shut down at the end, also on error.
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Any, Dict, Optional

from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.logging import print_log

from ..cli import set_threads
from ..data.checks import splits_for_training
from . import config as C
from .checks import check_onnx_model, check_pretrained_weights
from .distributed import distributed_run
from .env import check_mmcv
from .errors import InputNotFoundError, ToolError

__all__ = ['train', 'test', 'prepare_train_config', 'prepare_test_config', 'build_runner', 'ONNX_BACKENDS']


class DumpPredictions(DumpResults):
    """mmengine's DumpResults, dropping per-pixel ``seg_logits`` (C x H x W floats per image)."""

    def process(self, data_batch, data_samples) -> None:
        # shallow copies: the other metrics of the evaluator get the same sample dicts
        super().process(data_batch, [{k: v for k, v in s.items() if k != 'seg_logits'}
                                     if isinstance(s, dict) else s for s in data_samples])


#: runtimes ``test(backend=...)`` runs an exported ONNX network in
ONNX_BACKENDS = ('onnxruntime', 'openvino')


def _check_onnx(cfg, onnx_file: str, config: str, backend: str) -> None:
    """The runtime is installed and ``onnx_file`` fits the config's model (before the Runner starts)."""
    from ..deploy.onnx import DeployDependencyError, require
    try:
        require(backend)
        check_onnx_model(cfg, onnx_file, config)
    except DeployDependencyError as e:
        raise ToolError(str(e)) from None


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def _check_neck(cfg) -> None:
    try:
        from ..mm.checks import check_in_channels
    except ImportError:  # pragma: no cover - older backbone module
        return
    try:
        check_in_channels(cfg.model)
    except ValueError as e:
        raise ToolError(str(e)) from None


def _add_check_hooks(cfg, allow_partial: bool) -> None:
    hooks = list(cfg.get('custom_hooks', None) or [])
    hooks.append(dict(type='CheckpointCheckHook', allow_partial=allow_partial))
    hooks.append(dict(type='NormConversionCheckHook'))
    cfg.custom_hooks = hooks


def prepare_train_config(config: str, *, work_dir: Optional[str] = None, resume: Optional[str] = None,
                         amp: bool = False, auto_scale_lr: bool = False,
                         cfg_options: Optional[Dict[str, Any]] = None, launcher: str = 'none') -> Config:
    """The config as the Runner will see it (no process group, no modules registered, no checks)."""
    cfg = C.load_config(config, cfg_options, launcher, work_dir)
    C.apply_train_options(cfg, amp=amp, auto_scale_lr=auto_scale_lr)
    if resume is not None:
        C.resolve_resume(cfg, resume)
    return cfg


def train(config: str, *, work_dir: Optional[str] = None, resume: Optional[str] = None, amp: bool = False,
          auto_scale_lr: bool = False, cfg_options: Optional[Dict[str, Any]] = None, launcher: str = 'none',
          trust_checkpoint: bool = False, allow_partial: bool = False, threads: Optional[int] = None):
    """Train from a config, as mmdet's ``tools/train.py``; returns the trained model.

    Args:
        resume: ``'auto'`` for the latest checkpoint in the work dir, or a checkpoint path.
        trust_checkpoint: load checkpoints with full unpickling (executes code in the file).
        allow_partial: load a ``load_from``/``resume`` checkpoint that does not fit the model,
            logging what did and did not load (by default such a checkpoint is refused).
        threads: torch CPU threads (default: torch's own choice, what the machine has).
    """
    set_threads(threads)
    check_mmcv()  # before mmdet/mmseg are imported: version range, CUDA kernels when a GPU is visible
    C.set_up_trust(trust_checkpoint)
    cfg = prepare_train_config(config, work_dir=work_dir, resume=resume, amp=amp,
                               auto_scale_lr=auto_scale_lr, cfg_options=cfg_options, launcher=launcher)
    what = '--resume' if cfg.get('resume') else 'load_from'
    C.check_checkpoint_file(cfg.get('load_from'), what)
    check_pretrained_weights(cfg.model)
    C.check_datasets(cfg, splits_for_training(cfg))
    C.use_atomic_checkpoints(cfg)
    C.register_scope_modules(cfg)
    _check_neck(cfg)
    _add_check_hooks(cfg, allow_partial)
    with distributed_run(cfg):
        return build_runner(cfg).train()


def prepare_test_config(config: str, checkpoint: str, *, work_dir: Optional[str] = None,
                        out: Optional[str] = None, cfg_options: Optional[Dict[str, Any]] = None,
                        launcher: str = 'none') -> Config:
    """The test config as the Runner will see it (no process group, no modules registered)."""
    cfg = C.load_config(config, cfg_options, launcher, work_dir)
    cfg.load_from = checkpoint
    scope = cfg.get('default_scope', None) or ''
    if out is not None and not out.endswith(('.pkl', '.pickle')):
        if scope != 'mmseg':
            raise ToolError(f'--out must name a .pkl/.pickle file, got {out!r}')
        # mmseg's meaning: IoUMetric writes the predicted label maps to this directory
        if isinstance(cfg.test_evaluator, dict):
            cfg.test_evaluator['output_dir'] = out
            cfg.test_evaluator['keep_results'] = True
        else:
            raise ToolError('--out DIR needs a single test_evaluator; use --out FILE.pkl')
    return cfg


def test(config: str, checkpoint: str, *, work_dir: Optional[str] = None, out: Optional[str] = None,
         show: bool = False, show_dir: Optional[str] = None, wait_time: float = 2, tta: bool = False,
         cfg_options: Optional[Dict[str, Any]] = None, launcher: str = 'none',
         trust_checkpoint: bool = False, allow_partial: bool = False,
         backend: str = 'pytorch', threads: Optional[int] = None) -> Dict[str, Any]:
    """Evaluate a checkpoint on the config's test set, as mmdet's ``tools/test.py``; returns the metrics.

    Args:
        out: ``*.pkl`` to dump predictions; for mmseg configs another value is the directory
            where ``IoUMetric`` writes the predicted label maps (mmseg's meaning).
        backend: ``'pytorch'``, or ``'onnxruntime'`` / ``'openvino'`` to run the network of an exported
            ``.onnx`` model (``checkpoint``) in that runtime with the config's own post-processing.
        threads: CPU threads of torch and of the ONNX runtime (default: their own choice, what the
            machine has).
    """
    set_threads(threads)
    check_mmcv()
    C.set_up_trust(trust_checkpoint)
    cfg = prepare_test_config(config, checkpoint, work_dir=work_dir, out=out, cfg_options=cfg_options,
                              launcher=launcher)
    if backend == 'pytorch':
        C.check_checkpoint_file(checkpoint, 'checkpoint')
    elif backend in ONNX_BACKENDS:
        if not osp.isfile(checkpoint):
            raise InputNotFoundError(f'ONNX model not found: {checkpoint}. Export one with python tools/export.py '
                                     f'{config} OUT.onnx --checkpoint CKPT.')
        if tta:
            raise ToolError(f'--tta runs the PyTorch model; it cannot be combined with --backend {backend}')
    else:
        raise ToolError(f"--backend must be one of {('pytorch',) + ONNX_BACKENDS}, got {backend!r}")
    C.check_datasets(cfg, ['test'])
    scope = C.register_scope_modules(cfg)
    if backend in ONNX_BACKENDS:
        _check_onnx(cfg, checkpoint, config, backend)
    if show or show_dir:
        C.enable_visualization(cfg, scope, show=show, show_dir=show_dir, wait_time=wait_time)
    if tta:
        C.apply_tta(cfg, scope)
    if backend in ONNX_BACKENDS:
        from ..deploy import DeployDependencyError, use_onnx_backend
        try:
            cfg = use_onnx_backend(cfg, checkpoint, backend=backend, num_threads=threads)
        except (DeployDependencyError, ValueError) as e:
            raise ToolError(str(e)) from None
    else:
        _check_neck(cfg)
        _add_check_hooks(cfg, allow_partial)
    with distributed_run(cfg):
        runner = build_runner(cfg)
        if out is not None and out.endswith(('.pkl', '.pickle')):
            if scope == 'mmdet':
                from mmdet.evaluation import DumpDetResults
                runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
            else:
                runner.test_evaluator.metrics.append(DumpPredictions(out_file_path=out))
        metrics = runner.test()
        if out is not None and runner.rank == 0:
            print_log(f'predictions written to {out}', logger='current', level=logging.INFO)
        return metrics
