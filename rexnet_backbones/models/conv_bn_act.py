"""Conv -> BatchNorm -> activation with the BatchNorm as a plain ``nn.BatchNorm2d``, so that every BatchNorm
converter keeps the network.

timm's ``ConvNormAct`` keeps its activation *inside* the norm layer (``bn = BatchNormAct2d(act=...)``, a
``BatchNorm2d`` subclass). The converters that replace BatchNorm layers by class -- mmengine's
``convert_sync_batchnorm`` (the Runner's ``sync_bn='torch'``/``'mmcv'``), ``revert_sync_batchnorm`` (what the
Runner runs when not distributed) and torch's ``nn.SyncBatchNorm.convert_sync_batchnorm`` -- build a plain
(Sync)BatchNorm and re-attach the old children, which the new module never calls: the activation silently
disappears. :class:`ConvBnAct` holds the same tensors under the same ``state_dict`` keys (``bn.weight``,
``bn.running_mean``, ...) with the BatchNorm a plain ``nn.BatchNorm2d`` and the activation its own child
(``act``, parameter-free), so any converter swaps only the normalisation.

:func:`split_norm_act` switches a built model's ``ConvNormAct`` modules to :class:`ConvBnAct` in place,
sharing the parameter and buffer objects (an optimizer built before keeps working).
:func:`norm_layers_ignoring_children` finds what a converter broke in a model that was not split.
"""
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d, ConvNormAct
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['ConvBnAct', 'split_norm_act', 'norm_layers_ignoring_children']


class ConvBnAct(ConvNormAct):
    """timm's ``ConvNormAct`` with a plain ``bn`` (``nn.BatchNorm2d``) followed by its own ``drop`` and ``act``
    children: ``conv -> bn -> drop -> act [-> aa]``, the order of timm's ``BatchNormAct2d``. Made by
    :func:`split_norm_act` from a built ``ConvNormAct``; the ``state_dict`` keys are those of ``ConvNormAct``."""

    drop: nn.Module
    act: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.drop(self.bn(self.conv(x))))
        aa: Optional[nn.Module] = getattr(self, 'aa', None)
        if aa is not None:
            x = aa(x)
        return x


def _plain_bn_of(norm_act: BatchNormAct2d) -> nn.BatchNorm2d:
    """A ``nn.BatchNorm2d`` sharing ``norm_act``'s parameters, buffers, hyper-parameters and train mode."""
    bn = nn.BatchNorm2d(norm_act.num_features, eps=norm_act.eps, momentum=norm_act.momentum, affine=False,
                        track_running_stats=False, device='meta')
    bn.affine, bn.track_running_stats = norm_act.affine, norm_act.track_running_stats
    for name in ('weight', 'bias'):
        bn.register_parameter(name, getattr(norm_act, name))
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        bn.register_buffer(name, getattr(norm_act, name))
    return bn.train(norm_act.training)


def split_norm_act(model: nn.Module) -> nn.Module:
    """Switch, in place, every timm ``ConvNormAct`` whose norm is a ``BatchNormAct2d`` to :class:`ConvBnAct`
    (the same tensors, ``state_dict`` keys and outputs); returns ``model``. Idempotent."""
    for module in model.modules():
        if type(module) is ConvNormAct and type(module.bn) is BatchNormAct2d:
            norm_act = module.bn
            module.__class__ = ConvBnAct  # a subclass adding no state (as torch.nn.utils.parametrize does)
            module.bn = _plain_bn_of(norm_act)
            module.drop = norm_act.drop
            module.act = norm_act.act
    return model


def norm_layers_ignoring_children(model: nn.Module, norm_forwards: Sequence[Callable] = ()) -> List[str]:
    """Names (with the class and the ignored children) of the BatchNorm layers in ``model`` that carry child
    modules their forward never calls: what a converter leaves when it replaces a norm-with-activation
    (timm's ``BatchNormAct2d``) by a plain (Sync)BatchNorm and re-attaches the old children. A layer counts
    as plain when its class runs torch's ``_BatchNorm.forward`` or ``SyncBatchNorm.forward``, or one of
    ``norm_forwards`` (e.g. mmcv's ``SyncBatchNorm.forward``)."""
    plain = {_BatchNorm.forward, nn.SyncBatchNorm.forward, *norm_forwards}
    found = []
    for name, module in model.named_modules():
        children = [n for n, c in module.named_children() if not isinstance(c, nn.Identity)]
        if children and type(module).forward in plain:
            found.append(f"{name or '(model)'} ({type(module).__name__}; ignores {', '.join(children)})")
    return found
