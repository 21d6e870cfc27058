"""What the benchmark measures: a timm name or an mmdet/mmseg config turned into a built model, its
input batches and the one call that is timed (and FLOP-counted) on them.

Models are built by the model-source seam (:func:`rexnet_backbones.sources.build_source`, as every
tool does), with every ``Pretrained`` init removed (nothing is downloaded), in eval mode after
``torch.manual_seed(0)``; this module adds the benchmark's view: batches and the timed call.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .. import sources
from ..errors import BenchmarkError
from ..sources import is_config_spec

__all__ = ['resolve_config', 'is_config_spec', 'config_label', 'check_timm_name', 'describe_backbone',
           'make_batch', 'timm_inputs', 'TensorForward', 'Batch', 'BuiltModel']


# ---------------------------------------------------------------------------------------------- sources
def resolve_config(spec: str) -> str:
    """Absolute path of a config argument (:func:`rexnet_backbones.sources.resolve_config`: a file,
    ``package::relative/path.py`` or one of ours by short name); :class:`BenchmarkError` if none."""
    try:
        return osp.abspath(sources.resolve_config(spec))
    except FileNotFoundError as e:
        raise BenchmarkError(str(e)) from None


def check_timm_name(spec: str) -> None:
    """Raise :class:`BenchmarkError` unless ``spec`` is a timm model name (ReXNet-lite included)."""
    import timm
    if not timm.is_model(spec):
        raise BenchmarkError(f'unknown model {spec!r}: not a config file (.py, package::path) nor a '
                             'timm model name (e.g. rexnet_100, rexnet_lite_100, regnetx_008)')


def config_label(spec: str) -> str:
    """The config's file name without ``.py``."""
    return osp.splitext(osp.basename(spec.split('::')[-1]))[0]


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
               width: int, seed: Optional[int] = None) -> Tuple[torch.Tensor, List[Any]]:
    """Random uint8 images through the model's data_preprocessor (on the model's device); ``seed``
    defaults to the batch size."""
    gen = torch.Generator().manual_seed(batch_size if seed is None else seed)
    sample_cls = _data_sample_class(scope)
    images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
              for _ in range(batch_size)]
    samples = [sample_cls(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                        pad_shape=(height, width), scale_factor=(1.0, 1.0)))
               for _ in range(batch_size)]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
    return data['inputs'], data['data_samples']


def timm_inputs(batch_size: int, height: int, width: int, seed: Optional[int] = None) -> torch.Tensor:
    """A seeded ``N(0, 1)`` batch (the input of timm models); ``seed`` defaults to the batch size."""
    gen = torch.Generator().manual_seed(batch_size if seed is None else seed)
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
    def build(cls, spec: str, out_indices: Sequence[int], backbone_only: bool) -> 'BuiltModel':
        """``spec`` through the model-source seam: timm ``features_only`` at ``out_indices``, or the
        config's whole model (``backbone_only`` times its backbone on preprocessed inputs)."""
        timm_name = not sources.is_config_spec(spec)
        source = sources.build_source(spec, features_only=timm_name, out_indices=tuple(out_indices))
        if source.kind == 'timm':
            return cls('timm', source.model)
        return cls('config', source.model, backbone_only, source.cfg, source.scope, source.disabled_init)

    @property
    def is_timm(self) -> bool:
        return self.kind == 'timm'

    @property
    def backbone(self) -> nn.Module:
        """What the backbone columns measure (the whole model for timm)."""
        return self.model if self.is_timm else self.model.backbone

    def batch(self, batch_size: int, height: int, width: int, seed: Optional[int] = None) -> Batch:
        """A seeded batch on the model's device and the call that is timed on it (``seed``: see
        :func:`make_batch`; another seed gives, e.g., int8 calibration inputs)."""
        if self.is_timm:
            device = next(self.model.parameters()).device
            return Batch(timm_inputs(batch_size, height, width, seed).to(device), self.model)
        inputs, samples = make_batch(self.model, self.scope, batch_size, height, width, seed)
        return Batch(inputs, TensorForward(self.model, samples, self.backbone_only), samples)
