"""``sync_bn='torch'`` in multi-process runs on the CPU (gloo), through mmengine's ``MODEL_WRAPPERS``.

With ``sync_bn`` in a config, mmengine's Runner converts the model with ``mmengine.model.convert_sync_batchnorm``
before wrapping it for distributed training. torch's ``nn.SyncBatchNorm`` refuses CPU tensors in training mode
(it raises ``SyncBatchNorm expected input tensor to be on GPU``), and so does torch's DDP on the CPU. For a CPU run
(:func:`~.distributed.setup_cpu_distributed`) the model wrapper is ``GlooSyncBNDistributedDataParallel``: mmengine's
``MMDistributedDataParallel`` that first replaces every ``nn.SyncBatchNorm`` of the converted model by a
:class:`GlooSyncBatchNorm` holding the same parameters, buffers and children (``state_dict`` keys stay as they
are). In training mode it normalizes with the batch statistics of all ranks: per-channel sums, sums of squares and
counts are summed over the process group with ``torch.distributed.nn.functional.all_reduce`` (differentiable, so
that the gradients flow through the statistics as in torch's CUDA kernel); the running statistics are updated as
``nn.BatchNorm2d`` does. In eval mode, or with one process, it is ``nn.BatchNorm2d``'s forward. Statistics are computed in float32 and the output has the input's dtype
(as under autocast).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['GlooSyncBatchNorm', 'GlooSyncBNDistributedDataParallel', 'use_gloo_sync_batchnorm']


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics are those of all ranks, for CPU tensors (gloo); see the module.

    Not a subclass of ``nn.SyncBatchNorm``: torch's DDP refuses those on the CPU."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Optional[Any] = None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {input.dim()}D input)')

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = self.process_group or (dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)
        if not self.training or group is None or dist.get_world_size(group) == 1:
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
        x = input.float()
        channels = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        count = x.new_full((1,), x.numel() / channels)
        stats = torch.distributed.nn.functional.all_reduce(
            torch.cat([x.sum(dims), (x * x).sum(dims), count]), group=group)
        n = stats[-1]
        mean = stats[:channels] / n
        var = (stats[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                unbiased = var.detach() * (n.detach() / (n.detach() - 1).clamp_min(1))
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.float().view(shape) + self.bias.float().view(shape)
        return y.to(input.dtype)


def _gloo_copy(bn: nn.SyncBatchNorm) -> GlooSyncBatchNorm:
    new = GlooSyncBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                            bn.process_group)
    # the same parameter and buffer objects (DDP, the optimizer and the state_dict see no change)
    for name, param in bn.named_parameters(recurse=False):
        setattr(new, name, param)
    for name, buf in bn.named_buffers(recurse=False):
        new.register_buffer(name, buf)
    for name, child in bn.named_children():
        new.add_module(name, child)
    new.train(bn.training)
    return new


def use_gloo_sync_batchnorm(module: nn.Module) -> int:
    """Replace, in place, every ``nn.SyncBatchNorm`` (exactly that class) below ``module`` by a
    :class:`GlooSyncBatchNorm` holding the same parameters, buffers and children; returns how many."""
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.SyncBatchNorm:
                parent.add_module(name, _gloo_copy(child))
                count += 1
    return count


@MODEL_WRAPPERS.register_module(force=True)
class GlooSyncBNDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU runs whose model holds ``nn.SyncBatchNorm`` (``sync_bn='torch'``):
    those layers become :class:`GlooSyncBatchNorm`, which synchronizes over gloo."""

    def __init__(self, module: nn.Module, **kwargs):
        self.num_gloo_sync_bn = use_gloo_sync_batchnorm(module)
        super().__init__(module=module, **kwargs)
