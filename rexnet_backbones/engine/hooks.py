"""Hooks for mmengine's Runner, registered in mmengine's ``HOOKS`` (found from mmdet/mmseg scopes).

* ``AtomicCheckpointHook`` -- ``CheckpointHook`` whose checkpoints go through the
  ``'atomic_local'`` file backend and whose ``last_checkpoint`` file is replaced atomically.
  Our configs select it with ``default_hooks.checkpoint.type``.
* ``CheckpointCheckHook`` -- refuses a ``load_from``/``--resume`` checkpoint whose weights do not
  fit the model (mmengine loads with ``strict=False`` and only warns), unless partial loading is
  explicitly allowed. Our tools add it.
* ``NormConversionCheckHook`` -- stops a run, before its first iteration, whose model lost modules in a
  BatchNorm conversion (mmengine's ``sync_bn``/``revert_sync_batchnorm``, torch's
  ``convert_sync_batchnorm`` applied to a norm layer with an activation inside). Our tools add it.
"""
from __future__ import annotations

import os.path as osp
import re
from typing import Any, Dict, List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..checkpoint import atomic_write
from ..convert import CheckpointMismatchError
from ..models.conv_bn_act import norm_layers_ignoring_children
from .errors import ToolError
from .fileio import BACKEND_NAME

__all__ = ['AtomicCheckpointHook', 'CheckpointCheckHook', 'NormConversionCheckHook', 'diff_checkpoint']


def _is_local(path: Optional[str]) -> bool:
    return path is None or '://' not in str(path)


@HOOKS.register_module(force=True)
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a half-written checkpoint or ``last_checkpoint``.

    Same arguments as :class:`mmengine.hooks.CheckpointHook`. For a local ``out_dir`` without
    ``backend_args``/``file_client_args`` it uses ``backend_args=dict(backend='atomic_local')``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if kwargs.get('backend_args') is None and kwargs.get('file_client_args') is None and \
                _is_local(kwargs.get('out_dir')):
            kwargs['backend_args'] = dict(backend=BACKEND_NAME)
        super().__init__(*args, **kwargs)

    # mmengine writes ``last_checkpoint`` with a plain ``open()`` inside its private save method, so
    # the public entry points below save through the public Runner API and write it atomically.
    def after_train_epoch(self, runner) -> None:
        """Save every ``interval`` epochs from ``save_begin``, and after the last one (``save_last``)."""
        if self.by_epoch and (self.every_n_epochs(runner, self.interval, self.save_begin)
                              or (self.save_last and self.is_last_train_epoch(runner))):
            runner.logger.info(f'Saving checkpoint at {runner.epoch + 1} epochs')
            self.save(runner, runner.epoch + 1, dict(epoch=runner.epoch + 1, iter=runner.iter))

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        """Save every ``interval`` iterations from ``save_begin``, and after the last one (``save_last``)."""
        if not self.by_epoch and (self.every_n_train_iters(runner, self.interval, self.save_begin)
                                  or (self.save_last and self.is_last_train_iter(runner))):
            runner.logger.info(f'Saving checkpoint at {runner.iter + 1} iterations')
            self.save(runner, runner.iter + 1, dict(epoch=runner.epoch, iter=runner.iter + 1))

    def after_val_epoch(self, runner, metrics: Dict[str, Any]) -> None:
        """Save the best checkpoint (``save_best``); a new best also updates the last checkpoint.

        mmengine saves the last checkpoint again when the best score changed (so that it holds the
        new best path); with ``last_ckpt`` unset it leaves that to :meth:`save`.
        """
        last, self.last_ckpt = self.last_ckpt, None
        before = _best_scores(runner)
        try:
            super().after_val_epoch(runner, metrics)
        finally:
            self.last_ckpt = last
        if last is not None and _best_scores(runner) != before:
            step = runner.epoch if self.by_epoch else runner.iter
            self.save(runner, step, dict(epoch=runner.epoch, iter=runner.iter))

    def save(self, runner, step: int, meta: dict) -> None:
        """Save ``filename_tmpl.format(step)`` (keeping ``max_keep_ckpts``), then ``last_checkpoint``."""
        self._drop_oldest(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args,
            save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if is_main_process():
            atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), str(self.last_ckpt))

    def _drop_oldest(self, runner, step: int) -> None:
        """Keep at most ``max_keep_ckpts`` checkpoints (as CheckpointHook does)."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            old = self.keep_ckpt_ids.popleft()
            if is_main_process():
                path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
                if self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif self.file_backend.isdir(path):
                    self.file_backend.rmtree(path)
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))


def _best_scores(runner) -> Dict[str, Any]:
    """The best scores CheckpointHook keeps in the message hub (``best_score``, ``best_score_<key>``)."""
    return {k: v for k, v in runner.message_hub.runtime_info.items() if k.startswith('best_score')}


def diff_checkpoint(state_dict: Dict[str, Any], model_state: Dict[str, Any],
                    revise_keys: Tuple[Tuple[str, str], ...] = ((r'^module\.', ''),)
                    ) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """(missing, unexpected, mismatched) keys of a checkpoint's state_dict against a model's."""
    for pattern, repl in revise_keys:
        state_dict = {re.sub(pattern, repl, k): v for k, v in state_dict.items()}
    missing = [k for k in model_state if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_state]
    mismatched = [(k, tuple(v.shape), tuple(model_state[k].shape)) for k, v in state_dict.items()
                  if k in model_state and hasattr(v, 'shape') and tuple(v.shape) != tuple(model_state[k].shape)]
    return missing, unexpected, mismatched


def _likely_cause(missing: List[str], unexpected: List[str]) -> str:
    missing_set = set(missing)
    sample = unexpected[:50]
    if sample:
        heads = {k.split('.', 1)[0] for k in sample}
        if len(heads) == 1 and all(k.split('.', 1)[-1] in missing_set for k in sample):
            return (f"its keys carry an extra prefix '{next(iter(heads))}.' (a wrapped model): "
                    'strip it when saving')
        for prefix in ('backbone.',):
            if all(prefix + k in missing_set for k in sample):
                return ('it holds a backbone only (e.g. ImageNet weights): give it to the backbone as '
                        "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=...), not as "
                        'load_from/checkpoint')
    return ('it was written for another model: another config (backbone, neck, head or number of '
            'classes) or another width/arch')


@HOOKS.register_module(force=True)
class CheckpointCheckHook(Hook):
    """Check every checkpoint the Runner loads (``load_from``, ``--resume``) against the model.

    Args:
        allow_partial: only log what did and did not load, instead of raising.
        filename: the checkpoint's name for messages (default: the Runner's ``load_from``).
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_partial: bool = False, filename: Optional[str] = None):
        self.allow_partial = allow_partial
        self.filename = filename

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
        model_state = model.state_dict()
        missing, unexpected, mismatched = diff_checkpoint(dict(state), model_state)
        name = self.filename or getattr(runner, '_load_from', None) or 'the checkpoint'
        if not (missing or mismatched):
            if unexpected:
                print_log(f'{name}: {len(unexpected)} key(s) not used by the model, e.g. '
                          f'{", ".join(unexpected[:5])}', logger='current', level=30)
            return
        loaded = len(model_state) - len(missing) - len(mismatched)
        what = (f'checkpoint {name} does not fit the model of this config: {len(missing)} model '
                f'key(s) missing, {len(unexpected)} unexpected, {len(mismatched)} with another '
                f'shape ({loaded} of {len(model_state)} would load).\n  Likely cause: '
                f'{_likely_cause(missing, unexpected)}.')
        if self.allow_partial:
            print_log(f'--allow-partial: loading what fits. {CheckpointMismatchError(what, missing, unexpected, mismatched)}',
                      logger='current', level=30)
            return
        raise CheckpointMismatchError(
            what + '\n  To load what fits anyway, pass --allow-partial (tools/train.py, tools/test.py).',
            missing, unexpected, mismatched)


def _mmcv_norm_forwards() -> tuple:
    try:  # mmcv's SyncBatchNorm (mmengine's sync_bn='mmcv') is no subclass of torch's _BatchNorm
        from mmcv.ops import SyncBatchNorm
    except ImportError:  # pragma: no cover - mmcv without its ops
        return ()
    return (SyncBatchNorm.forward,)


@HOOKS.register_module(force=True)
class NormConversionCheckHook(Hook):
    """Refuse to run a model in which a BatchNorm layer carries child modules it never calls.

    mmengine's Runner converts BatchNorms when it wraps the model (``sync_bn`` when distributed,
    ``revert_sync_batchnorm`` otherwise). Those converters build a plain (Sync)BatchNorm and re-attach the old
    layer's children, so a norm layer with its activation inside (timm's ``BatchNormAct2d``) silently loses
    the activation. Our ``ReXNet`` backbone keeps its activations outside the BatchNorms, so it passes; this
    hook catches any other module that does not, before the first iteration.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        broken = norm_layers_ignoring_children(model, _mmcv_norm_forwards())
        if broken:
            more = f' (and {len(broken) - 3} more)' if len(broken) > 3 else ''
            raise ToolError(
                f'a BatchNorm conversion changed the network: {len(broken)} norm layer(s) ignore child modules '
                f'that ran before, e.g. {"; ".join(broken[:3])}{more}. Build that module with its activation '
                'outside the BatchNorm (rexnet_backbones.models.conv_bn_act.split_norm_act for timm '
                'ConvNormAct), or unset sync_bn')
