"""What the benchmark measures: a timm name or an mmdet/mmseg config turned into a built model, its
input batches and the one call that is timed (and FLOP-counted) on them.

The one place where the benchmark builds models; config models are built with every ``Pretrained``
init removed (nothing is downloaded) and initialised by ``init_weights()`` after
``torch.manual_seed(0)``.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .settings import BenchmarkError

__all__ = ['resolve_config', 'is_config_spec', 'config_label', 'check_timm_name', 'disable_pretrained',
           'build_model', 'build_timm_model', 'describe_backbone', 'make_batch', 'timm_inputs',
           'TensorForward', 'Batch', 'BuiltModel']


# ---------------------------------------------------------------------------------------------- sources
def resolve_config(spec: str) -> str:
    """Path of a config file or of ``package::relative/path.py`` (mmengine's notation)."""
    if '::' in spec:
        package, rel = spec.split('::', 1)
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise BenchmarkError(f'config {spec!r}: package {package!r} is not installed')
        for root in found.submodule_search_locations:
            for sub in (osp.join('.mim', 'configs'), osp.join('..', 'configs')):
                path = osp.normpath(osp.join(root, sub, rel))
                if osp.isfile(path):
                    return path
        raise BenchmarkError(f'config file not found: {spec} (no {rel} in the configs of the '
                             f'installed {package})')
    if not osp.isfile(spec):
        raise BenchmarkError(f'config file not found: {spec}')
    return osp.abspath(spec)


def is_config_spec(spec: str) -> bool:
    """A config (file or ``package::path``) rather than a timm model name."""
    return '::' in spec or spec.endswith('.py') or os.sep in spec or '/' in spec or osp.isfile(spec)


def config_label(spec: str) -> str:
    """The config's file name without ``.py``."""
    return osp.splitext(osp.basename(spec.split('::')[-1]))[0]


def check_timm_name(spec: str) -> None:
    """Raise :class:`BenchmarkError` unless ``spec`` is a timm model name (ReXNet-lite included)."""
    import timm
    if spec not in timm.list_models():
        raise BenchmarkError(f'unknown model {spec!r}: not a config file (.py, package::path) nor a '
                             'timm model name (e.g. rexnet_100, rexnet_lite_100, regnetx_008)')


# ---------------------------------------------------------------------------------------------- building
def _is_pretrained(init_cfg: Any) -> bool:
    return isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'


def disable_pretrained(node: Any, path: str = 'model', changed: Optional[List[str]] = None) -> List[str]:
    """Remove every Pretrained init (``init_cfg`` / ``pretrained``) in place; returns the keys."""
    changed = [] if changed is None else changed
    if isinstance(node, dict):
        for key in list(node.keys()):
            value = node[key]
            where = f'{path}.{key}'
            if key == 'init_cfg' and _is_pretrained(value):
                node[key] = None
                changed.append(where)
            elif key == 'init_cfg' and isinstance(value, (list, tuple)) and \
                    any(_is_pretrained(v) for v in value):
                kept = [v for v in value if not _is_pretrained(v)]
                node[key] = kept or None
                changed.append(where)
            elif key == 'pretrained' and isinstance(value, str):
                node[key] = None
                changed.append(where)
            else:
                disable_pretrained(value, where, changed)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            disable_pretrained(value, f'{path}.{i}', changed)
    return changed


@contextlib.contextmanager
def quiet_mmengine_logs() -> Iterator[None]:
    """Hide the INFO lines of init_weights() (mmengine's logger writes to stdout)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def build_model(path: str) -> Tuple[Any, str, nn.Module, List[str]]:
    """``(cfg, scope, model, disabled)``: the config's model in eval mode, without Pretrained init."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    cfg = Config.fromfile(path)  # also imports custom_imports (rexnet_backbones)
    disabled = disable_pretrained(cfg.model)
    scope = cfg.get('default_scope', None) or 'mmengine'
    if scope != 'mmengine':
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        torch.manual_seed(0)
        model = registry.build(cfg.model)
        with quiet_mmengine_logs():
            model.init_weights()
    model.eval()
    return cfg, scope, model, disabled


def build_timm_model(name: str, out_indices: Sequence[int] = (1, 2, 3, 4)) -> nn.Module:
    """A timm model as a feature extractor (``features_only``) in eval mode, seeded init."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, features_only=True,
                              out_indices=tuple(out_indices))
    return model.eval()


def describe_backbone(backbone_cfg: Any) -> str:
    """A short name of a config's backbone: ``ReXNet rexnet_100``, ``ResNet-18``, ``RegNet ...``."""
    kind = backbone_cfg.get('type', '?')
    kind = kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))
    if kind == 'ReXNet':
        arch = backbone_cfg.get('arch', 'rexnet_100')
        wf = backbone_cfg.get('widen_factor', None)
        return f'ReXNet {arch}' + (f' x{wf}' if wf else '')
    if kind in ('ResNet', 'ResNetV1d', 'ResNeXt') and 'depth' in backbone_cfg:
        return f'{kind}-{backbone_cfg["depth"]}'
    if kind == 'RegNet' and isinstance(backbone_cfg.get('arch'), str):
        return f'RegNet {backbone_cfg["arch"]}'
    return kind


# ---------------------------------------------------------------------------------------------- batches
def _data_sample_class(scope: str) -> type:
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return SegDataSample
    from mmengine.structures import BaseDataElement
    return BaseDataElement


def make_batch(model: nn.Module, scope: str, batch_size: int, height: int,
               width: int) -> Tuple[torch.Tensor, List[Any]]:
    """Random uint8 images through the model's data_preprocessor (on the model's device)."""
    gen = torch.Generator().manual_seed(batch_size)
    sample_cls = _data_sample_class(scope)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
              for _ in range(batch_size)]
    samples = [sample_cls(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                        pad_shape=(height, width), scale_factor=(1.0, 1.0)))
               for _ in range(batch_size)]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
    return data['inputs'], data['data_samples']


def timm_inputs(batch_size: int, height: int, width: int) -> torch.Tensor:
    """A seeded ``N(0, 1)`` batch (the input of timm models)."""
    gen = torch.Generator().manual_seed(batch_size)
    return torch.randn(batch_size, 3, height, width, generator=gen)


class TensorForward(nn.Module):
    """The timed (and FLOP-counted) call of an mm model as a module taking the batch tensor:
    ``model(inputs, data_samples, mode='tensor')``, or ``model.backbone(inputs)``."""

    def __init__(self, model: nn.Module, data_samples: List[Any], backbone_only: bool = False):
        super().__init__()
        self.model = model
        self.data_samples = data_samples
        self.backbone_only = backbone_only

    def forward(self, inputs: torch.Tensor) -> Any:
        if self.backbone_only:
            return self.model.backbone(inputs)
        return self.model(inputs, self.data_samples, mode='tensor')


@dataclass
class Batch:
    """One input batch and the module whose ``forward(inputs)`` is the timed call on it."""
    inputs: torch.Tensor
    forward: nn.Module
    #: the data samples of an mm model (None for timm models)
    data_samples: Optional[List[Any]] = None


@dataclass
class BuiltModel:
    """A model as the benchmark measures it: timm ``features_only`` or an mm config's model."""
    kind: str  # 'timm' or 'config'
    model: nn.Module
    backbone_only: bool = False
    cfg: Any = None
    scope: Optional[str] = None
    #: the Pretrained init keys removed from the config (nothing is downloaded)
    disabled: List[str] = field(default_factory=list)

    @classmethod
    def build(cls, kind: str, spec: str, path: Optional[str], out_indices: Sequence[int],
              backbone_only: bool) -> 'BuiltModel':
        if kind == 'timm':
            return cls('timm', build_timm_model(spec, out_indices))
        cfg, scope, model, disabled = build_model(path)
        return cls('config', model, backbone_only, cfg, scope, disabled)

    @property
    def is_timm(self) -> bool:
        return self.kind == 'timm'

    @property
    def backbone(self) -> nn.Module:
        """What the backbone columns measure (the whole model for timm)."""
        return self.model if self.is_timm else self.model.backbone

    def batch(self, batch_size: int, height: int, width: int) -> Batch:
        """A seeded batch on the model's device and the call that is timed on it."""
        if self.is_timm:
            device = next(self.model.parameters()).device
            return Batch(timm_inputs(batch_size, height, width).to(device), self.model)
        inputs, samples = make_batch(self.model, self.scope, batch_size, height, width)
        return Batch(inputs, TensorForward(self.model, samples, self.backbone_only), samples)
