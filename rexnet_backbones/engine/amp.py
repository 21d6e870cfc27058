"""Mixed precision on the CPU for ``--amp``: ``CpuAmpOptimWrapper``, registered in mmengine's ``OPTIM_WRAPPERS``.

mmengine 0.10.7's ``AmpOptimWrapper`` refuses a machine without a GPU: its ``__init__`` asserts that CUDA, NPU,
MLU or MUSA is available. ``tools/train.py --amp`` therefore selects, where no such device is visible, this
wrapper instead: mmengine's ``OptimWrapper`` whose ``optim_context`` (the forward with losses of every training
iteration) runs under ``mmengine.runner.amp.autocast(device_type='cpu', dtype=torch.bfloat16)``, the autocast that
``AmpOptimWrapper`` would enter. bfloat16 keeps float32's exponent range, so there is no loss scaling (a
``GradScaler`` is for float16). On a GPU ``--amp`` selects mmengine's ``AmpOptimWrapper`` (float16 with dynamic
loss scaling), as mmdet's ``tools/train.py`` does.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

__all__ = ['CpuAmpOptimWrapper']


@OPTIM_WRAPPERS.register_module(force=True)
class CpuAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose training forward autocasts on the CPU in bfloat16 (no loss scaling).

    Args:
        dtype: ``'bfloat16'`` (CPU autocast supports no other dtype in mmengine's ``autocast``).
        **kwargs: those of :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs):
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f"CpuAmpOptimWrapper autocasts in bfloat16 on the CPU; got dtype={dtype!r}")
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module):
        from mmengine.runner.amp import autocast
        with super().optim_context(model), autocast(device_type='cpu', dtype=self.cast_dtype):
            yield
