"""Pretrain, then fine-tune: the suite protocol that mirrors an ImageNet-pretrained backbone.

A suite with ``pretrain=dict(dir=..., ...)`` first trains every model's backbone, under ONE recipe
(:data:`PRETRAIN_DEFAULTS`, overridable in the suite file), as a classifier on the generated
classification set (:func:`rexnet_backbones.data.classification.make_shape_classification`: ten
shape x texture classes), and saves it as ``<dir>/<model>.pth`` (``{'state_dict': backbone tensors,
'meta': ...}``) with ``<dir>/<model>.json`` (validation error, time, recipe). Every model's det/seg
config then loads it the way a user loads ImageNet weights: ``model.backbone.init_cfg =
dict(type='Pretrained', checkpoint='<dir>/<model>.pth')`` (set by :func:`pretrained_init_cfg` when
the suite is loaded), and fine-tunes every stage on the downstream task for each seed.

The classifier is the backbone's last output, global average pooling and one linear layer; the
images are normalised with the model's own ``data_preprocessor`` mean and std (RGB), as the
downstream task sees them. The training loop is the trained design-space study's
(:func:`rexnet_backbones.analysis.trained_study.train_model`: AdamW, warm-up then cosine, flips).
One checkpoint per backbone, not per seed: the seeds vary the fine-tuning only. Two shards of a run
share the checkpoints: a lock file (``<model>.lock`` with the owner's pid) makes one of them train
each backbone while the other waits; a lock whose process is gone is taken over.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import time
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ..checkpoint import atomic_write, pid_alive
from ..errors import InvalidInputError

__all__ = ['PRETRAIN_DEFAULTS', 'check_pretrain', 'pretrain_checkpoint', 'pretrained_init_cfg', 'pretrain_model',
           'ensure_pretrained', 'BackboneClassifier']

#: the one pretraining recipe (a suite's ``pretrain`` dict overrides keys of it; ``dir`` is required)
PRETRAIN_DEFAULTS: Dict[str, Any] = dict(num_train=4000, num_val=1000, img_size=64, epochs=6, batch_size=32,
                                         optimizer='adamw', lr=2e-3, weight_decay=0.05, seed=0)
_POLL_S = 5.0


def check_pretrain(path: str, pretrain: Any) -> Dict[str, Any]:
    """The suite's ``pretrain`` dict with the defaults filled in; an ``InvalidInputError`` naming the
    bad key otherwise."""
    if not isinstance(pretrain, dict) or not pretrain.get('dir'):
        raise InvalidInputError(f"{path}: pretrain must be a dict with at least dir='...' (where the checkpoints "
                                f'go), got {pretrain!r}')
    unknown = set(pretrain) - set(PRETRAIN_DEFAULTS) - {'dir'}
    if unknown:
        raise InvalidInputError(f'{path}: pretrain has unknown keys {sorted(unknown)}; allowed: dir, '
                                f'{", ".join(PRETRAIN_DEFAULTS)}')
    out = dict(PRETRAIN_DEFAULTS, **pretrain)
    for key in ('num_train', 'num_val', 'img_size', 'epochs', 'batch_size'):
        if not isinstance(out[key], int) or out[key] < 1:
            raise InvalidInputError(f'{path}: pretrain {key} must be an integer >= 1, got {out[key]!r}')
    if out['optimizer'] not in ('adamw', 'sgd') or not (isinstance(out['lr'], (int, float)) and out['lr'] > 0):
        raise InvalidInputError(f"{path}: pretrain needs optimizer 'adamw' or 'sgd' and lr > 0, got "
                                f"{out['optimizer']!r}, {out['lr']!r}")
    return out


def pretrain_checkpoint(pretrain: Dict[str, Any], model: str) -> str:
    return osp.join(pretrain['dir'], f'{model}.pth')


def pretrained_init_cfg(pretrain: Dict[str, Any], model: str) -> Dict[str, Any]:
    """``model.backbone.init_cfg`` of a pretrained suite model."""
    return dict(type='Pretrained', checkpoint=pretrain_checkpoint(pretrain, model))


class BackboneClassifier(nn.Module):
    """A det/seg backbone with global average pooling of its last output and a linear classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, img_size: int):
        super().__init__()
        self.backbone = backbone
        was = backbone.training
        backbone.eval()
        with torch.no_grad():
            channels = self._last(backbone(torch.zeros(1, 3, img_size, img_size))).shape[1]
        backbone.train(was)
        self.fc = nn.Linear(channels, num_classes)

    @staticmethod
    def _last(out: Any) -> torch.Tensor:
        return out[-1] if isinstance(out, (tuple, list)) else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self._last(self.backbone(x)).mean(dim=(2, 3)))


def _build_backbone(cfg: Any, task: str) -> nn.Module:
    """The model's backbone from its resolved config, randomly initialised (its init_cfg dropped)."""
    from copy import deepcopy

    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    imports = cfg.get('custom_imports', None)
    if imports:
        import_modules_from_strings(**imports)
    scope = 'mmdet' if task == 'det' else 'mmseg'
    init_default_scope(scope)
    if task == 'det':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    backbone_cfg = deepcopy(cfg.model.backbone)
    backbone_cfg['init_cfg'] = None
    backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    return backbone


def _normalise(cfg: Any):
    pre = cfg.model.get('data_preprocessor', None) or {}
    mean = torch.tensor(pre.get('mean', (123.675, 116.28, 103.53)), dtype=torch.float32)
    std = torch.tensor(pre.get('std', (58.395, 57.12, 57.375)), dtype=torch.float32)
    return lambda t: (t.float() - mean[:, None, None]) / std[:, None, None]


def pretrain_model(cfg: Any, task: str, pretrain: Dict[str, Any], model: str) -> Dict[str, Any]:
    """Train ``model``'s backbone as a classifier under the pretraining recipe; save its checkpoint and
    summary; return the summary."""
    from ..analysis.trained_study import evaluate, train_model
    from ..data.classification import CLS_CLASSES, make_shape_classification
    p = pretrain
    start, cpu = time.time(), time.process_time()
    torch.manual_seed(p['seed'])
    backbone = _build_backbone(cfg, task)
    classifier = BackboneClassifier(backbone, len(CLS_CLASSES), p['img_size'])
    norm = _normalise(cfg)
    train = make_shape_classification(p['num_train'], 'train', p['img_size'], p['seed'])
    val = make_shape_classification(p['num_val'], 'val', p['img_size'], p['seed'])
    data = dict(train=(norm(train[0]), train[1]), val=(norm(val[0]), val[1]))
    result = train_model(classifier, data, p['epochs'], p['batch_size'], p['lr'], p['weight_decay'], p['seed'],
                         p['optimizer'])
    if result['status'] != 'ok':
        raise RuntimeError(f'pretraining {model} diverged at step {result.get("diverged_at_step")}; lower the '
                           "suite's pretrain lr")
    error = evaluate(classifier, *data['val'])
    classifier.to(memory_format=torch.contiguous_format)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    summary = dict(model=model, val_error=error, train_loss=result['train_loss'], recipe=p,
                   seconds=round(time.time() - start, 1), cpu_seconds=round(time.process_time() - cpu, 1),
                   backbone_type=str(cfg.model.backbone.get('type')))
    path = pretrain_checkpoint(p, model)
    # a reader never sees half a checkpoint
    atomic_write(path, lambda f: torch.save(dict(state_dict=state, meta=summary), f))
    atomic_write(osp.splitext(path)[0] + '.json', json.dumps(summary, indent=1, sort_keys=True) + '\n')
    return summary


def _take_lock(lock: str) -> bool:
    """True if this process now owns ``lock`` (created, or taken over from a process that is gone)."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            owner = int(open(lock, encoding='utf-8').read().strip() or 0)
        except (OSError, ValueError):
            owner = 0
        if owner and pid_alive(owner):
            return False
        os.remove(lock)  # stale: its process is gone
        return _take_lock(lock)
    with os.fdopen(fd, 'w') as f:
        f.write(str(os.getpid()))
    return True


def ensure_pretrained(suite: Any, models: Optional[Any] = None, log=print) -> Dict[str, str]:
    """Pretrain the backbones of ``models`` (default: all of ``suite``) whose checkpoint is missing;
    wait for those another process is pretraining. Returns model -> checkpoint."""
    p = suite.pretrain
    keys = list(models) if models is not None else list(suite.models)
    os.makedirs(p['dir'], exist_ok=True)
    waiting = []
    for key in keys:
        path = pretrain_checkpoint(p, key)
        if osp.isfile(path):
            continue
        lock = path + '.lock'
        if not _take_lock(lock):
            waiting.append(key)
            continue
        try:
            if not osp.isfile(path):
                log(f'pretraining {key} ({p["epochs"]} epochs of {p["num_train"]} images at {p["img_size"]} px)')
                summary = pretrain_model(suite.models[key].cfg, suite.task, p, key)
                log(f'pretrained {key}: validation error {summary["val_error"]:.1f}% ({summary["seconds"]:.0f} s)')
        finally:
            os.remove(lock)
    for key in waiting:
        path = pretrain_checkpoint(p, key)
        while not osp.isfile(path):
            lock = path + '.lock'
            if not osp.isfile(lock) or _take_lock(lock):  # its owner finished or is gone
                if osp.isfile(lock):
                    os.remove(lock)
                return ensure_pretrained(suite, [key] + [k for k in waiting if k != key], log)
            time.sleep(_POLL_S)
    return {k: pretrain_checkpoint(p, k) for k in keys}
