"""ReXNet as an OpenMMLab backbone (``type='ReXNet'`` in mmdet and mmseg configs)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS

from ..checkpoint import safe_load
from ..convert import CheckpointMismatchError, to_timm_state_dict, unwrap_state_dict
from ..models import REXNET_ARCHS

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


@MODELS.register_module()
class ReXNet(BaseModule):
    """ReXNet v1 / ReXNet-lite backbone built from the timm registry.

    Args:
        arch: timm model name: ``rexnet_{090,100,130,150,200,220,300}``, ``rexnetr_*`` or
            ``rexnet_lite_{100,130,150,200}``.
        widen_factor: override the width multiplier of ``arch`` (e.g. 2.2).
        out_indices: pyramid levels to return: 0..4 are strides 2, 4, 8, 16, 32 and 5 is the final
            1x1 head conv (1280 x width channels, stride 32), as mmdet's MobileNetV2 exposes ``conv2``.
        frozen_stages: freeze (no grad, BN in eval mode) the stem and the first ``k`` levels, i.e.
            everything up to stride ``2**k``; -1 freezes nothing, 6 also freezes the head conv.
        norm_cfg: ``dict(type='BN')`` or ``dict(type='SyncBN')``; ``eps``, ``momentum`` and
            ``requires_grad`` are honoured.
        norm_eval: keep all BN layers in eval mode while training (frozen statistics).
        with_cp: gradient checkpointing of each block (saves memory, costs compute).
        drop_path_rate: stochastic depth rate, linearly increasing over the blocks.
        output_stride: 32, 16 or 8; 16 and 8 dilate the last levels (segmentation).
        timm_kwargs: extra keyword arguments for ``timm.create_model``.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` with a timm hub tag
            (``'timm/rexnet_100.nav_in1k'``), a timm-format file or an official clovaai file.
            Every backbone weight must load or an error names the missing keys.
    """

    #: out index of the final 1x1 conv
    HEAD_CONV_INDEX = 5

    def __init__(
            self,
            arch: str = 'rexnet_100',
            widen_factor: Optional[float] = None,
            out_indices: Sequence[int] = (1, 2, 3, 4),
            frozen_stages: int = -1,
            norm_cfg: Optional[Dict[str, Any]] = None,
            norm_eval: bool = False,
            with_cp: bool = False,
            drop_path_rate: float = 0.0,
            output_stride: int = 32,
            timm_kwargs: Optional[Dict[str, Any]] = None,
            init_cfg: Optional[Union[Dict[str, Any], List[Dict[str, Any]]]] = None,
    ):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(arch, str) or arch not in timm.list_models() or not arch.startswith('rexnet'):
            raise ValueError(f'unknown ReXNet arch {arch!r}; choose one of {_known_archs()} '
                             '(and `import rexnet_backbones` for the lite and extra widths)')
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride!r}')
        out_indices = tuple(out_indices)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i <= self.HEAD_CONV_INDEX for i in out_indices) \
                or len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices must be distinct ints in 0..{self.HEAD_CONV_INDEX} '
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
        self.arch = arch
        self._timm_kwargs = kwargs
        self.stem = model.stem
        self.features = model.features
        self.feature_info = list(model.feature_info)
        self.stage_ends = [int(f['module'].split('.')[-1]) for f in self.feature_info]
        self.stage_ends.append(len(self.features) - 1)  # head conv
        #: channels of each requested output, e.g. for ``neck.in_channels``
        self.out_channels = [self._level_channels(i) for i in out_indices]
        # drop the blocks after the last requested output: unused parameters break DDP
        self.features = self.features[:max(self.stage_ends[i] for i in out_indices) + 1]
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        self._setup_norm(norm_type, norm_cfg)
        self._freeze_stages()

    def _level_channels(self, i: int) -> int:
        if i == self.HEAD_CONV_INDEX:
            return self.features[-1].conv.out_channels
        return self.feature_info[i]['num_chs']

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
        # timm's converter keeps the activation fused in timm's BatchNormAct2d.
        if norm_type == 'SyncBN' and torch.distributed.is_available() and torch.distributed.is_initialized():
            from timm.layers import convert_sync_batchnorm
            self.stem = convert_sync_batchnorm(self.stem)
            self.features = convert_sync_batchnorm(self.features)

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
        return self

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        wanted = {self.stage_ends[i]: i for i in self.out_indices}
        outs: Dict[int, torch.Tensor] = {}
        last = max(wanted)
        for idx, block in enumerate(self.features):
            if self.with_cp and self.training and x.requires_grad:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if idx in wanted:
                outs[wanted[idx]] = x
            if idx == last:
                break
        return tuple(outs[i] for i in self.out_indices)

    # ------------------------------------------------------------------ pretrained weights
    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> None:
        """Load ImageNet weights (hub tag, timm-format file or official file) and verify them."""
        state_dict = self._read_checkpoint(checkpoint)
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if not state_dict:
                raise CheckpointMismatchError(f'{checkpoint}: no key starts with prefix {prefix!r}')
        if _needs_head(state_dict):  # official or full timm checkpoint: convert with the full layout
            with torch.device('meta'):
                reference = timm.create_model(self.arch, num_classes=1000, **self._timm_kwargs)
            state_dict = to_timm_state_dict(state_dict, reference)
        own = self.state_dict()
        body = {k: v for k, v in state_dict.items() if k in own}
        mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in body.items()
                      if k in own and v.shape != own[k].shape]
        missing = [k for k in own if k not in body]
        if missing or mismatched:
            raise CheckpointMismatchError(
                f'{checkpoint} does not fit ReXNet(arch={self.arch!r}): not every backbone weight would load',
                missing, [], mismatched)
        self.load_state_dict(body, strict=True)
        print_log(f'ReXNet: loaded {len(body)} tensors from {checkpoint}', logger='current')

    def _read_checkpoint(self, checkpoint: str) -> Dict[str, torch.Tensor]:
        path = os.path.expanduser(str(checkpoint))
        if os.path.isfile(path):
            if path.endswith('.safetensors'):
                from safetensors.torch import load_file
                return load_file(path)
            return unwrap_state_dict(safe_load(path))
        if checkpoint.startswith(('timm/', 'timm:', 'hf-hub:')) or (checkpoint.split('.')[0] in timm.list_models()
                                                                      and not os.path.sep in checkpoint):
            tag = checkpoint.split(':', 1)[-1].removeprefix('timm/')
            try:
                model = timm.create_model(tag, pretrained=True)
            except Exception as e:  # offline, unknown tag, ...
                raise RuntimeError(
                    f'could not fetch the timm weights {checkpoint!r} ({type(e).__name__}: {e}). Offline? '
                    "Give a local file instead: init_cfg=dict(type='Pretrained', checkpoint='path/to/file.pth') "
                    '(timm-format or official clovaai file; see README "Pretrained weights").') from e
            return model.state_dict()
        raise FileNotFoundError(
            f'pretrained checkpoint {checkpoint!r} not found: give an existing file (timm-format or official '
            "clovaai .pth/.safetensors) or a timm hub tag such as 'timm/rexnet_100.nav_in1k'")


def _needs_head(sd: Dict[str, torch.Tensor]) -> bool:
    """Official files (and checkpoints with a classifier) are converted through the full timm model."""
    return any('.out.' in k for k in sd) or any(k.startswith('head.') for k in sd)
