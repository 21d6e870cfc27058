"""The one model-source seam: a timm name or a config (file, ``mmdet::``/``mmseg::``, ours) -> a built model.

Every tool that takes a model argument calls :func:`build_source` (export, rank analysis, the benchmark), so
they all accept the same sources:

* a timm model name (``rexnet_100``, ``rexnet_lite_100``, ``resnet18``, ...), built by ``timm.create_model``
  (``features_only`` gives the feature pyramid at ``out_indices``);
* a config, resolved by :func:`rexnet_backbones.config_files.resolve_config`: a local file,
  ``mmdet::retinanet/retinanet_r18_fpn_1x_coco.py``, ``mmseg::...`` or one of ours; its ``model`` (or,
  with ``backbone_only``, its ``model.backbone``) is built with the registry of its ``default_scope``.

``pretrained=False`` (the default) removes every ``Pretrained`` init (:func:`strip_pretrained`), so nothing
is downloaded; weights come from ``checkpoint`` instead, in any format :mod:`rexnet_backbones.weights`
loads (an mmengine detector/segmentor checkpoint, a timm-format or official file, a timm hub tag). Models
are built in eval mode with a seeded initialisation.
"""
from __future__ import annotations

import contextlib
import logging
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .config_files import is_config_spec, resolve_config
from .errors import InvalidInputError, ToolError
from .weights import (LoadedWeights, check_weights_readable, load_weights, read_checkpoint, select_prefix,
                      to_model_layout)

__all__ = ['Source', 'build_source', 'pretrained_entries', 'strip_pretrained', 'is_config_spec', 'resolve_config',
           'default_input_size', 'quiet_init_logs', 'register_scope_modules']


@dataclass
class Source:
    """A built model and what the tools need to know about it."""
    model: nn.Module
    #: default ``(H, W)``: the timm cfg's input size, or the config's test ``Resize`` scale (padded to 32)
    input_size: Tuple[int, int]
    #: ``'timm'`` or ``'config'``
    kind: str
    #: short name: the timm name, or the config's file stem (plus ``(<type> backbone)`` with ``backbone_only``)
    label: str
    #: the mmengine ``Config`` (configs only) and its ``default_scope``
    cfg: Any = None
    scope: Optional[str] = None
    #: the config file the spec resolved to (configs only)
    path: Optional[str] = None
    #: the ``Pretrained`` inits removed (``model.backbone.init_cfg``, ...)
    disabled_init: List[str] = field(default_factory=list)
    #: what the checkpoint loaded (None without one)
    weights: Optional[LoadedWeights] = None


# ------------------------------------------------------------------------------------------ configs
def _is_pretrained(init_cfg: Any) -> bool:
    return isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'


def pretrained_entries(node: Any, key: str = 'model') -> Iterator[Tuple[str, str]]:
    """``(dotted config key, checkpoint)`` of every ``Pretrained`` init_cfg in a model config."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        items = list(init) if isinstance(init, (list, tuple)) else [init]
        for i, item in enumerate(items):
            if _is_pretrained(item) and item.get('checkpoint'):
                yield f'{key}.init_cfg' + (f'.{i}' if isinstance(init, (list, tuple)) else ''), str(item['checkpoint'])
        for k, v in node.items():
            if k != 'init_cfg':
                yield from pretrained_entries(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from pretrained_entries(v, f'{key}.{i}')


def strip_pretrained(node: Any, path: str = 'model') -> List[str]:
    """Remove every ``Pretrained`` init (``init_cfg`` entries, ``pretrained=``) of a config's model, in
    place; returns where (``'model.backbone.init_cfg'``, ...)."""
    changed: List[str] = []
    if isinstance(node, dict):
        for key in list(node.keys()):
            value, where = node[key], f'{path}.{key}'
            if key == 'init_cfg' and _is_pretrained(value):
                node[key] = None
                changed.append(where)
            elif key == 'init_cfg' and isinstance(value, (list, tuple)) and any(_is_pretrained(v) for v in value):
                node[key] = [v for v in value if not _is_pretrained(v)] or None
                changed.append(where)
            elif key == 'pretrained' and isinstance(value, str):
                node[key] = None
                changed.append(where)
            else:
                changed += strip_pretrained(value, where)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            changed += strip_pretrained(value, f'{path}.{i}')
    return changed


@contextlib.contextmanager
def quiet_init_logs() -> Iterator[None]:
    """Hide the INFO lines of ``init_weights()`` (mmengine logs every parameter, to stdout)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def default_input_size(cfg: Any, divisor: int = 32) -> Tuple[int, int]:
    """``(H, W)`` of the config's test ``Resize`` scale (mmcv's ``(w, h)``), rounded up to ``divisor``
    (the data preprocessor's padding); 224 x 224 when the pipeline has none."""
    pipeline: Sequence[Any] = []
    try:
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        pipeline = dataset.get('pipeline', [])
    except (AttributeError, KeyError):
        pass
    for t in pipeline:
        scale = t.get('scale') if isinstance(t, dict) and t.get('type') == 'Resize' else None
        if isinstance(scale, (tuple, list)) and len(scale) == 2:
            w, h = int(scale[0]), int(scale[1])
            return (-(-h // divisor) * divisor, -(-w // divisor) * divisor)
    return (224, 224)


def _type_name(cfg: Any) -> str:
    kind = cfg.get('type', '?') if isinstance(cfg, dict) else '?'
    return kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))


def register_scope_modules(cfg) -> str:
    """Register all modules of the config's ``default_scope`` package (mmdet, mmseg, ...)."""
    import importlib

    from mmengine.logging import print_log
    scope = cfg.get('default_scope', None)
    if scope is None:
        print_log('the config has no default_scope; only mmengine modules (and those imported '
                  'via custom_imports) are registered', logger='current', level=logging.WARNING)
        return ''
    try:
        utils = importlib.import_module(f'{scope}.utils')
    except ImportError as e:
        raise ToolError(f'default_scope={scope!r} but the package cannot be imported: {e}') from None
    register = getattr(utils, 'register_all_modules', None)
    if register is None:
        raise ToolError(f'default_scope={scope!r}: {scope}.utils has no register_all_modules()')
    register(init_default_scope=False)  # the Runner sets the scope from cfg.default_scope
    if scope == 'mmdet':
        utils.setup_cache_size_limit_of_dynamo()  # as mmdet's tools
    return scope


def _build_config(spec: str, pretrained: bool, backbone_only: bool) -> Source:
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    path = resolve_config(spec)
    cfg = Config.fromfile(path)  # also imports cfg.custom_imports (rexnet_backbones)
    if 'model' not in cfg:
        raise InvalidInputError(f'config {spec} has no model')
    disabled = [] if pretrained else strip_pretrained(cfg.model)
    scope = register_scope_modules(cfg) or 'mmengine'
    if scope != 'mmengine':
        init_default_scope(scope)  # as the Runner does: later registry look-ups (e.g. in forward) find it
    model_cfg = cfg.model.backbone if backbone_only else cfg.model
    if backbone_only and not isinstance(model_cfg, dict):
        raise InvalidInputError(f'config {spec}: model has no backbone')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
        if hasattr(model, 'init_weights'):
            with quiet_init_logs():
                model.init_weights()
    label = osp.splitext(osp.basename(spec.split('::')[-1]))[0]
    if backbone_only:
        label = f'{label} ({_type_name(model_cfg)} backbone)'
    return Source(model, default_input_size(cfg), 'config', label, cfg, scope, path, disabled)


# ------------------------------------------------------------------------------------------ timm
def _check_timm_name(name: str) -> None:
    import timm  # our entrypoints are registered: importing any module of the package ran its __init__
    if name not in timm.list_models() and not timm.is_model(name):
        rexnets = ', '.join(sorted(m for m in timm.list_models() if m.startswith('rexnet')))
        raise InvalidInputError(f'unknown model {name!r}: not a config (file, mmdet::path.py, mmseg::path.py) nor '
                                f'a timm model name. ReXNet models: {rexnets}')


def _build_timm(name: str, checkpoint: Optional[str], prefix: Optional[str], pretrained: bool,
                features_only: bool, out_indices: Sequence[int], trusted: Optional[bool]) -> Source:
    import timm
    _check_timm_name(name)
    loaded = None
    kwargs: dict = dict(features_only=True, out_indices=tuple(out_indices)) if features_only else {}
    if checkpoint is not None:
        # load into the plain model (one diff, official files converted); timm wraps features_only after
        base = timm.create_model(name, pretrained=False)
        part, layout = _timm_part(base, checkpoint, prefix, trusted, features_only)
        loaded = load_weights(base, part, strict=True, name=str(checkpoint))
        loaded.prefix, loaded.layout = prefix, layout
        if not features_only:
            return Source(base.eval(), _timm_size(base), 'timm', name, weights=loaded)
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(state_dict=base.state_dict(), source=''))
    else:
        kwargs['pretrained'] = pretrained
    model = timm.create_model(name, **kwargs)
    if isinstance(getattr(model, 'pretrained_cfg', None), dict):
        model.pretrained_cfg.pop('state_dict', None)  # loaded; no second copy of the weights
    return Source(model.eval(), _timm_size(model), 'timm', name, weights=loaded)


def _timm_part(model: nn.Module, checkpoint: str, prefix: Optional[str], trusted: Optional[bool],
               features_only: bool) -> Tuple[dict, str]:
    """The checkpoint's tensors under ``prefix`` in ``model``'s layout; for ``features_only`` the classifier
    does not matter: the model's own is used (a backbone-only or other-class-count checkpoint loads)."""
    from .convert import is_official_layout
    sd = select_prefix(read_checkpoint(checkpoint, trusted=trusted), prefix, str(checkpoint),
                       model.state_dict().keys())
    layout = 'official' if is_official_layout(sd) else 'as is'
    if not features_only:
        return sd, layout
    sd = to_model_layout(sd, model)
    heads = _classifier_prefixes(model)
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith(heads)}
    sd.update({k: v for k, v in own.items() if k.startswith(heads)})
    return sd, layout


def _classifier_prefixes(model: nn.Module) -> Tuple[str, ...]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    names = cfg.get('classifier') if isinstance(cfg, dict) else None
    names = [names] if isinstance(names, str) else list(names or [])
    return tuple(f'{n}.' for n in names)  # empty: str.startswith(()) is False


def _timm_size(model: nn.Module) -> Tuple[int, int]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    size = cfg.get('input_size', (3, 224, 224)) if isinstance(cfg, dict) else (3, 224, 224)
    return int(size[1]), int(size[2])


# ------------------------------------------------------------------------------------------ the seam
def build_source(spec: str, checkpoint: Optional[str] = None, *, checkpoint_prefix: Optional[str] = None,
                 pretrained: bool = False, features_only: bool = False, out_indices: Sequence[int] = (1, 2, 3, 4),
                 backbone_only: bool = False, trusted: Optional[bool] = None, seed: int = 0) -> Source:
    """Build ``spec`` (a timm name or a config; see the module docstring) in eval mode.

    Args:
        checkpoint: weights to load (file or hub tag, any format the weights loader reads); for a config,
            a checkpoint of the whole model, or an ImageNet checkpoint of its backbone (loaded into
            ``model.backbone`` when its keys fit the backbone). Checked before anything is built.
        checkpoint_prefix: the sub-model of the checkpoint to load (``'backbone.'``).
        pretrained: keep the source's own pretrained init (timm ``pretrained=True``, the config's
            ``Pretrained`` init_cfg); off by default, so nothing is downloaded.
        features_only / out_indices: timm names: the feature pyramid instead of the classifier.
        backbone_only: configs: build ``model.backbone`` only.
        trusted: allow full unpickling of the checkpoint (see ``checkpoint.safe_load``).
        seed: seeds the random initialisation.

    Raises ``FileNotFoundError`` (config or checkpoint), ``InvalidInputError`` (a ``ValueError``: unknown
    name, option that does not apply) and :class:`~rexnet_backbones.weights.CheckpointMismatchError` with the keys that do not fit.
    """
    if checkpoint is not None:
        check_weights_readable(checkpoint)
    torch.manual_seed(seed)
    if not is_config_spec(spec):
        if backbone_only:
            raise InvalidInputError(f'{spec}: backbone_only applies to configs; a timm name builds its own model '
                             '(features_only gives its feature pyramid)')
        return _build_timm(spec, checkpoint, checkpoint_prefix, pretrained, features_only, out_indices, trusted)
    if features_only:
        raise InvalidInputError(f'{spec}: features_only applies to timm model names, not to configs')
    source = _build_config(spec, pretrained, backbone_only)
    if checkpoint is not None:
        source.weights = _load_into_config_model(source.model, checkpoint, checkpoint_prefix, trusted)
    source.model.eval()
    return source


def _load_into_config_model(model: nn.Module, checkpoint: str, prefix: Optional[str],
                            trusted: Optional[bool]) -> LoadedWeights:
    """A whole-model checkpoint into ``model``; an ImageNet (timm-format or official) checkpoint into its
    backbone, which then must take every one of its tensors."""
    sd = read_checkpoint(checkpoint, trusted=trusted)
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module) and not prefix:
        own = model.state_dict().keys()
        if not any(k in own for k in sd) and _fits(backbone, sd):
            return load_weights(backbone, sd, strict=True, name=str(checkpoint))
    loaded = load_weights(model, sd, prefix=prefix, strict=True, name=str(checkpoint))
    return loaded


def _fits(module: nn.Module, sd: dict) -> bool:
    from .convert import is_official_layout
    own = module.state_dict().keys()
    return is_official_layout(sd) or sum(k in own for k in sd) >= len(own) // 2
