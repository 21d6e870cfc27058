"""A suite file: load it, validate it, resolve each model's config, check that the recipes match.

See :mod:`rexnet_backbones.suite` for the format. :func:`load_suite` returns a :class:`Suite` whose
models hold their resolved mmengine ``Config`` (model config + the model's backbone/neck overrides +
the suite's ``common`` overrides + the suite-run settings), their flattened recipe and the suite's hash.
"""
from __future__ import annotations

import hashlib
import json
import os.path as osp
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..config_files import resolve_config
from ..errors import ConfigNotFoundError, InputNotFoundError, InvalidInputError

__all__ = ['SuiteModel', 'Suite', 'load_suite', 'flatten', 'recipe_of', 'recipe_differences', 'TASKS',
           'DEFAULT_METRICS', 'FAMILIES', 'family_of', 'check_recipes']

TASKS = ('det', 'seg')
DEFAULT_METRICS = {'det': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'],
                   'seg': ['mIoU', 'mAcc', 'aAcc']}
#: backbone type (scope prefix removed) -> family name of the report
FAMILIES = {'ReXNet': 'ReXNet', 'RegNet': 'RegNet', 'ResNet': 'ResNet', 'ResNetV1c': 'ResNet',
            'ResNetV1d': 'ResNet', 'MobileNetV2': 'MobileNetV2', 'MobileNetV3': 'MobileNetV3'}
_MODEL_KEYS = {'config', 'label', 'family', 'backbone', 'neck_in_channels', 'options'}
_SUITE_KEYS = {'name', 'task', 'seeds', 'models', 'common', 'primary_metric', 'metrics', 'reference',
               'allow_recipe_differences', 'data', 'input_size', 'pretrain'}
#: config keys that are no part of a recipe (where a run writes, how it is launched)
_NOT_RECIPE = ('work_dir', 'launcher', 'custom_imports', 'experiment_name', 'resume', 'load_from')
#: what a suite run changes in every model's config: no validation during training (the test
#: after it measures), checkpoints every epoch for resuming, our hook for NaN and training stats
_SUITE_HOOK = dict(type='SuiteTrainHook')


def family_of(backbone_type: str) -> str:
    """Family of a backbone type (``mmdet.RegNet`` -> ``RegNet``); the type itself when unknown."""
    return FAMILIES.get(backbone_type.split('.')[-1], backbone_type.split('.')[-1])


@dataclass
class SuiteModel:
    """One model of a suite, resolved."""
    key: str
    config: str  # as the suite names it
    label: str
    family: str
    backbone_type: str
    cfg: Any  # mmengine Config, as every job of this model trains it (seed aside)
    recipe: Dict[str, Any]  # flattened, backbone and neck in_channels removed


@dataclass
class Suite:
    name: str
    file: str
    task: str
    seeds: List[int]
    models: Dict[str, SuiteModel]
    primary_metric: str
    metrics: List[str]
    reference: Optional[str]
    allow_recipe_differences: bool
    data: Optional[Dict[str, Any]]
    input_size: List[int]
    pretrain: Optional[Dict[str, Any]] = None  # pretrain-then-fine-tune (suite/pretrain.py)
    hash: str = ''
    recipe: Dict[str, Any] = field(default_factory=dict)  # the keys equal across all models
    differences: List[str] = field(default_factory=list)  # recipe keys that differ between models

    def to_json(self) -> Dict[str, Any]:
        """``suite.json`` (the file contract of the report)."""
        return dict(
            name=self.name, file=self.file, hash=self.hash, task=self.task,
            primary_metric=self.primary_metric, metrics=list(self.metrics), seeds=list(self.seeds),
            models={k: dict(config=m.config, label=m.label, family=m.family, backbone_type=m.backbone_type)
                    for k, m in self.models.items()},
            reference=self.reference, allow_recipe_differences=self.allow_recipe_differences,
            recipe_differences=list(self.differences), input_size=list(self.input_size), recipe=self.recipe,
            pretrain=_jsonable(self.pretrain))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def flatten(tree: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; lists (pipelines, ...) stay whole JSON values."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + '.'))
        else:
            out[name] = _jsonable(value)
    return out


def recipe_of(cfg) -> Dict[str, Any]:
    """The flattened config without the backbone, the neck's ``in_channels`` and run-only keys."""
    flat = flatten(cfg.to_dict())
    return {k: v for k, v in sorted(flat.items())
            if not (k == 'model.backbone' or k.startswith('model.backbone.') or k == 'model.neck.in_channels'
                    or k.split('.')[0] in _NOT_RECIPE)}


def recipe_differences(recipes: Dict[str, Dict[str, Any]]) -> List[str]:
    """Recipe keys whose value is not the same in every model (a missing key counts as different)."""
    keys = sorted(set().union(*recipes.values())) if recipes else []
    marker = object()
    return [k for k in keys if len({json.dumps(r.get(k, marker), sort_keys=True, default=str)
                                    for r in recipes.values()}) > 1]


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidInputError(message)


def _check_model_entry(path: str, key: str, entry: Any) -> None:
    _require(isinstance(entry, dict) and 'config' in entry,
             f"{path}: models[{key!r}] must be a dict with at least config='...'")
    unknown = set(entry) - _MODEL_KEYS
    _require(not unknown, f'{path}: models[{key!r}] has unknown keys {sorted(unknown)}; allowed: '
             f'{sorted(_MODEL_KEYS)} (everything else goes into common, the same for every model)')
    _require(key.replace('-', '_').replace('.', '_').isidentifier(),
             f'{path}: model key {key!r} must be a plain name (letters, digits, _ - .): it names a folder')


def _resolve_model(path: str, key: str, entry: Dict[str, Any], common: Dict[str, Any],
                   pretrain: Optional[Dict[str, Any]] = None):
    from mmengine.config import Config
    try:
        cfg = Config.fromfile(resolve_config(entry['config']))
    except ConfigNotFoundError as e:
        raise InputNotFoundError(f'{path}: model {key!r}: {e}') from None
    if entry.get('backbone') is not None:
        cfg.merge_from_dict({'model.backbone': deepcopy(dict(entry['backbone']))})
    if entry.get('neck_in_channels') is not None:
        cfg.merge_from_dict({'model.neck.in_channels': list(entry['neck_in_channels'])})
    cfg.merge_from_dict(deepcopy(dict(common)))
    if entry.get('options'):
        cfg.merge_from_dict(deepcopy(dict(entry['options'])))
    if pretrain is not None:  # the real path a user takes: the backbone's Pretrained init
        from .pretrain import pretrained_init_cfg
        cfg.merge_from_dict({'model.backbone.init_cfg': dict(_delete_=True, **pretrained_init_cfg(pretrain, key))})
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    imports = dict(cfg.get('custom_imports', None) or dict(imports=[], allow_failed_imports=False))
    imports['imports'] = list(imports.get('imports', [])) + ['rexnet_backbones.suite.hooks']
    cfg.custom_imports = imports
    cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [dict(_SUITE_HOOK)]
    return cfg


def _read(path: str) -> Dict[str, Any]:
    from mmengine.config import Config
    try:
        spec = resolve_config(path)
    except ConfigNotFoundError:
        raise InputNotFoundError(f'suite file not found: {path} (give a file, or a short name such as '
                                 'suites/det_synthetic.py)') from None
    raw = Config.fromfile(spec).to_dict()
    unknown = {k for k in raw if not k.startswith('_')} - _SUITE_KEYS
    _require(not unknown, f'{path}: unknown suite keys {sorted(unknown)}; allowed: {sorted(_SUITE_KEYS)} '
             '(and helper variables whose name starts with _)')
    raw = {k: v for k, v in raw.items() if not k.startswith('_')}
    raw['file'] = str(path)  # as the user named it: a short name stays one, not the installed file's path
    return raw


def load_suite(path: str) -> Suite:
    """Read and validate a suite file and resolve every model (raises ``ToolError`` subclasses)."""
    raw = _read(path)
    for key in ('name', 'task', 'seeds', 'models'):
        _require(key in raw, f'{path}: the suite has no {key!r}')
    name, task = str(raw['name']), raw['task']
    _require(name.replace('-', '_').replace('.', '_').isidentifier(), f'{path}: name {name!r} must be a plain name')
    _require(task in TASKS, f'{path}: task must be one of {TASKS}, got {task!r}')
    seeds = list(raw['seeds'])
    _require(bool(seeds) and all(isinstance(s, int) for s in seeds) and len(set(seeds)) == len(seeds),
             f'{path}: seeds must be a non-empty list of distinct integers, got {seeds!r}')
    models = raw['models']
    _require(isinstance(models, dict) and bool(models), f'{path}: models must be a non-empty dict key -> dict(config=...)')
    metrics = list(raw.get('metrics') or DEFAULT_METRICS[task])
    primary = raw.get('primary_metric') or metrics[0]
    if primary not in metrics:
        metrics.insert(0, primary)
    reference = raw.get('reference')
    _require(reference is None or reference in models,
             f'{path}: reference {reference!r} is not one of the models {sorted(models)}')
    size = list(raw.get('input_size') or (128, 128))
    _require(len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size),
             f'{path}: input_size must be (height, width), got {size!r}')
    pretrain = None
    if raw.get('pretrain') is not None:
        from .pretrain import check_pretrain
        pretrain = check_pretrain(path, raw['pretrain'])
    resolved: Dict[str, SuiteModel] = {}
    for key, entry in models.items():
        _check_model_entry(path, key, entry)
        cfg = _resolve_model(path, key, entry, raw.get('common') or {}, pretrain)
        btype = str(cfg.model.backbone.get('type', '?'))
        resolved[key] = SuiteModel(key, entry['config'], entry.get('label') or key,
                                   entry.get('family') or family_of(btype), btype, cfg, recipe_of(cfg))
    suite = Suite(name, raw['file'], task, seeds, resolved, primary, metrics, reference,
                  bool(raw.get('allow_recipe_differences', False)), raw.get('data'), size, pretrain)
    recipes = {k: m.recipe for k, m in resolved.items()}
    suite.differences = recipe_differences(recipes)
    first = next(iter(recipes.values()))
    suite.recipe = {k: v for k, v in first.items() if k not in suite.differences}
    suite.hash = _hash(suite)
    return suite


def _hash(suite: Suite) -> str:
    content = dict(name=suite.name, task=suite.task, seeds=suite.seeds, primary=suite.primary_metric,
                   metrics=suite.metrics, data=_jsonable(suite.data), input_size=suite.input_size,
                   **({'pretrain': _jsonable(suite.pretrain)} if suite.pretrain else {}),
                   models={k: flatten(m.cfg.to_dict()) for k, m in suite.models.items()})
    for flat in content['models'].values():
        for k in [k for k in flat if k.split('.')[0] in _NOT_RECIPE and k.split('.')[0] != 'custom_imports']:
            del flat[k]
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_recipes(suite: Suite) -> None:
    """Refuse a suite whose models differ in more than backbone and neck in_channels (unless allowed)."""
    if suite.differences and not suite.allow_recipe_differences:
        shown = ', '.join(suite.differences[:8]) + (' ...' if len(suite.differences) > 8 else '')
        raise InvalidInputError(
            f'{osp.basename(suite.file)}: the models do not train on one recipe: {shown} differ(s) '
            f'between models ({len(suite.differences)} key(s)); put those settings in common, or set '
            'allow_recipe_differences=True (the report then flags them)')
