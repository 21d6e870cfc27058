"""ReXNet as an OpenMMLab backbone (``type='ReXNet'`` in mmdet and mmseg configs).

The network, its intermediate outputs, the pruning of unused blocks and gradient checkpointing all
come from the timm model (``RexNet`` or our ``RexNetLite``): this module adds mmdet's backbone options
(``frozen_stages``, ``norm_eval``, ``norm_cfg``) and the verified ``Pretrained`` init.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule, initialize
from mmengine.registry import MODELS

from ..archs import REXNET_ARCHS
from ..convert import to_timm_state_dict
from ..models.conv_bn_act import split_norm_act
from ..models.mem_efficient import convert_mem_efficient
from ..weights import LoadedWeights, load_weights

__all__ = ['ReXNet']


class _BatchOneSafeBN(nn.BatchNorm2d):
    """BatchNorm2d that normalises with its running statistics when a training batch has a single
    value per channel (ReXNet's SE BN on a 1x1 map with one image per GPU). Other batches and eval
    mode behave exactly as ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.numel() == x.shape[1]:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


def _known_archs() -> List[str]:
    return sorted(set(REXNET_ARCHS) | set(timm.list_models('rexnet*')))


def _block_index(module_name: str) -> int:
    """``'features.7'`` -> 7 (a feature_info module name)."""
    return int(module_name.split('.')[-1])


@MODELS.register_module()
class ReXNet(BaseModule):
    """ReXNet v1 / ReXNet-lite backbone built from the timm registry.

    Args:
        arch: timm model name: ``rexnet_{090,100,130,150,200,220,300}``, ``rexnetr_*`` or
            ``rexnet_lite_{100,130,150,200}``.
        widen_factor: override the width multiplier of ``arch`` (e.g. 2.2).
        out_indices: pyramid levels to return, an int or a sequence of distinct ints: 0..4 are
            strides 2, 4, 8, 16, 32 (timm's ``feature_info``) and 5 is the final 1x1 head conv
            (1280 x width channels, stride 32), as mmdet's MobileNetV2 exposes ``conv2``. Outputs come
            in the given order; the blocks after the last one are dropped (DDP needs no unused
            parameters).
        frozen_stages: freeze (no grad, BN in eval mode) the stem and the first ``k`` levels, i.e.
            everything up to stride ``2**k``; -1 freezes nothing, 6 also freezes the head conv.
        norm_cfg: ``dict(type='BN')`` or ``dict(type='SyncBN')``; ``eps``, ``momentum`` and
            ``requires_grad`` are honoured. SyncBN applies under ``torch.distributed`` only. Every
            BatchNorm is a plain ``nn.BatchNorm2d`` with its activation beside it
            (:func:`rexnet_backbones.models.conv_bn_act.split_norm_act`), so mmengine's ``sync_bn`` and
            ``revert_sync_batchnorm`` and torch's ``convert_sync_batchnorm`` keep the network. The SE
            BatchNorm of ReXNet v1 falls back to its running statistics for a training batch of one
            image (timm's model raises there).
        norm_eval: keep all BN layers in eval mode while training (frozen statistics).
        with_cp: gradient checkpointing of each block in training (saves memory, costs compute).
        mem_efficient: ReXNet v1 blocks keep fewer tensors for backward in training, with the same outputs
            and gradients (:func:`rexnet_backbones.models.convert_mem_efficient`: elementwise ops are
            recomputed, convolutions are not; it follows ``torch.autocast``); ``False`` runs timm's
            forwards. Blocks whose BatchNorm was converted to ``SyncBatchNorm`` run the standard forward.
        drop_path_rate: stochastic depth rate, linearly increasing over the blocks.
        output_stride: 32, 16 or 8; 16 and 8 dilate the last levels (segmentation).
        timm_kwargs: extra keyword arguments for ``timm.create_model``.
        init_cfg: a ``dict(type='Pretrained', checkpoint=..., prefix=None)``, or a list holding one
            such entry (other entries, e.g. ``type='Kaiming'``, are applied first, as mmengine does).
            ``checkpoint`` is a timm hub tag (``'timm/rexnet_100.nav_in1k'``), a timm-format file
            (.pth/.safetensors) or an official clovaai file; ``prefix`` selects a sub-model of a
            detector/segmentor checkpoint (``'backbone.'``). Every backbone weight must load, or a
            ``CheckpointMismatchError`` names the missing and mismatched keys.

    Attributes:
        out_channels: channels of each output, in ``out_indices`` order (``neck.in_channels``).
        feature_info: timm's ``feature_info`` of the full model (levels 0..4).
        stage_ends: block index in ``features`` that ends each level 0..5 (5: the head conv).
    """

    #: out index of the final 1x1 conv
    HEAD_CONV_INDEX = 5

    def __init__(
            self,
            arch: str = 'rexnet_100',
            widen_factor: Optional[float] = None,
            out_indices: Union[int, Sequence[int]] = (1, 2, 3, 4),
            frozen_stages: int = -1,
            norm_cfg: Optional[Dict[str, Any]] = None,
            norm_eval: bool = False,
            with_cp: bool = False,
            drop_path_rate: float = 0.0,
            output_stride: int = 32,
            timm_kwargs: Optional[Dict[str, Any]] = None,
            init_cfg: Optional[Union[Dict[str, Any], List[Dict[str, Any]]]] = None,
            mem_efficient: bool = True,
    ):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(arch, str) or arch not in timm.list_models() or not arch.startswith('rexnet'):
            raise ValueError(f'unknown ReXNet arch {arch!r}; choose one of {_known_archs()} '
                             '(and `import rexnet_backbones` for the lite and extra widths)')
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride!r}')
        out_indices = (out_indices,) if isinstance(out_indices, int) else tuple(out_indices)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i <= self.HEAD_CONV_INDEX for i in out_indices) \
                or len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices must be an int or distinct ints in 0..{self.HEAD_CONV_INDEX} '
                             f'(0-4: strides 2, 4, 8, 16, 32; 5: final 1x1 conv), got {out_indices}')
        if not -1 <= frozen_stages <= self.HEAD_CONV_INDEX + 1:
            raise ValueError(f'frozen_stages must be in -1..{self.HEAD_CONV_INDEX + 1}, got {frozen_stages}')
        norm_cfg = dict(norm_cfg or dict(type='BN', requires_grad=True))
        norm_type = norm_cfg.pop('type', 'BN')
        if norm_type not in ('BN', 'SyncBN'):
            raise ValueError(f"norm_cfg type must be 'BN' or 'SyncBN', got {norm_type!r}")

        kwargs = dict(timm_kwargs or {})
        if widen_factor is not None:
            kwargs['width_mult'] = widen_factor
        model = timm.create_model(arch, pretrained=False, num_classes=0, output_stride=output_stride,
                                  drop_path_rate=drop_path_rate, **kwargs)
        # the BatchNorms as plain nn.BatchNorm2d with the activations beside them: mmengine's and torch's
        # SyncBN converters (and mmengine's revert) then swap the normalisation only and keep the network
        split_norm_act(model)
        if mem_efficient:
            convert_mem_efficient(model)
        self.arch = arch
        self._timm_kwargs = kwargs
        self.feature_info = list(model.feature_info)
        self.stage_ends = [_block_index(f['module']) for f in self.feature_info] + [len(model.features) - 1]
        level_channels = [f['num_chs'] for f in self.feature_info] + [model.num_features]
        #: channels of each requested output, e.g. for ``neck.in_channels``
        self.out_channels = [level_channels[i] for i in out_indices]
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        # timm levels to take (forward_intermediates needs at least one); the head conv is the
        # output of the last block, so with level 5 nothing can be pruned
        self._with_head_conv = self.HEAD_CONV_INDEX in out_indices
        self._taps = sorted(i for i in out_indices if i != self.HEAD_CONV_INDEX) or [len(self.feature_info) - 1]
        if not self._with_head_conv:
            model.prune_intermediate_layers(self._taps, prune_head=True)
        self._set_model(model)
        self._setup_norm(norm_type, norm_cfg)
        self._model.set_grad_checkpointing(with_cp)
        self._freeze_stages()

    def _set_model(self, model: nn.Module) -> None:
        """Register timm's ``stem`` and ``features`` as this module's own children (so that the
        state_dict keys are timm's) and keep the timm model, unregistered, for its forward methods.
        Both share the same module objects; ``forward`` follows a wholesale replacement of either."""
        self.__dict__['_model'] = model
        self.stem = model.stem
        self.features = model.features

    def _setup_norm(self, norm_type: str, norm_cfg: Dict[str, Any]) -> None:
        for module in self.modules():
            se = getattr(module, 'se', None)
            if se is not None and isinstance(getattr(se, 'bn', None), nn.BatchNorm2d):
                old = se.bn
                new = _BatchOneSafeBN(old.num_features, eps=old.eps, momentum=old.momentum)
                new.load_state_dict(old.state_dict())
                se.bn = new
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if 'eps' in norm_cfg:
                    m.eps = norm_cfg['eps']
                if 'momentum' in norm_cfg:
                    m.momentum = norm_cfg['momentum']
                if not norm_cfg.get('requires_grad', True):
                    for p in m.parameters():
                        p.requires_grad = False
        # SyncBN only under torch.distributed (as mmengine reverts SyncBN to BN when not distributed);
        # the activations are modules of their own (split_norm_act), so torch's converter keeps them.
        if norm_type == 'SyncBN' and torch.distributed.is_available() and torch.distributed.is_initialized():
            self._set_model(nn.SyncBatchNorm.convert_sync_batchnorm(self._model))

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        last = -1 if self.frozen_stages == 0 else self.stage_ends[self.frozen_stages - 1]
        return [self.stem] + list(self.features[:last + 1])

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'ReXNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        self._model.set_grad_checkpointing(self.with_cp and mode)
        return self

    def _timm_model(self) -> nn.Module:
        """timm's model running this module's current ``stem`` and ``features`` (a tool that swapped
        them wholesale, e.g. BN folding for deployment, is followed)."""
        model = self._model
        if model.stem is not self.stem:
            model.stem = self.stem
        if model.features is not self.features:
            model.features = self.features
        return model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        model = self._timm_model()
        if self._with_head_conv:  # run every block: the last one is the head conv
            last, feats = model.forward_intermediates(x, indices=self._taps, intermediates_only=False)
        else:
            last, feats = None, model.forward_intermediates(
                x, indices=self._taps, intermediates_only=True, stop_early=True)
        outs = dict(zip(self._taps, feats))
        outs[self.HEAD_CONV_INDEX] = last
        return tuple(outs[i] for i in self.out_indices)

    # ------------------------------------------------------------------ pretrained weights
    def init_weights(self) -> None:
        pretrained, others = _split_init_cfg(self.init_cfg)
        if pretrained is None or self._is_init:
            super().init_weights()
            return
        if others:  # mmengine applies Pretrained last, over the other initialisers
            initialize(self, others)
        self.load_pretrained(pretrained['checkpoint'], prefix=pretrained.get('prefix'))
        self._is_init = True

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> LoadedWeights:
        """Load ImageNet weights (hub tag, timm-format file or official file, or a detector/segmentor
        checkpoint with ``prefix``) through :func:`rexnet_backbones.weights.load_weights` and verify them.

        Raises ``CheckpointMismatchError`` unless every backbone tensor is in the checkpoint with the
        backbone's shape (keys the backbone does not have, e.g. the classifier, are ignored).
        """
        loaded = load_weights(self, checkpoint, prefix=prefix, strict=True)
        print_log(f'ReXNet: loaded {len(loaded.loaded)} tensors from {checkpoint}', logger='current')
        return loaded

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """This backbone's tensors of a ReXNet checkpoint (called by ``load_weights``): official files and
        checkpoints with a classifier are converted and checked against the full timm model of this
        ``arch``; the keys the backbone does not have (classifier, pruned blocks) are dropped."""
        if _needs_head(state_dict):
            with torch.device('meta'):
                reference = timm.create_model(self.arch, num_classes=1000, **self._timm_kwargs)
            state_dict = to_timm_state_dict(state_dict, reference)
        own = self.state_dict()
        return {k: v for k, v in state_dict.items() if k in own}


def _split_init_cfg(init_cfg: Any) -> Tuple[Optional[Dict[str, Any]], List[Dict[str, Any]]]:
    """(the Pretrained entry or None, the other entries) of a dict or list ``init_cfg``."""
    from mmengine.model.weight_init import PretrainedInit
    cfgs = [] if not init_cfg else [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg)
    pretrained = [c for c in cfgs if c.get('type') in ('Pretrained', PretrainedInit)]
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg holds {len(pretrained)} Pretrained entries; give one: {init_cfg}')
    if pretrained and not pretrained[0].get('checkpoint'):
        raise ValueError(f"init_cfg type='Pretrained' needs a checkpoint, got {pretrained[0]}")
    return (pretrained[0] if pretrained else None), [c for c in cfgs if c not in pretrained]


def _needs_head(sd: Dict[str, torch.Tensor]) -> bool:
    """Official files (and checkpoints with a classifier) are converted through the full timm model."""
    return any('.out.' in k for k in sd) or any(k.startswith('head.') for k in sd)
