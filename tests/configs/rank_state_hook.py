"""Test helper hook: every rank saves its model state (before and after training) to
``<work_dir>/rank<r>_state.pth`` so that a test can check that all ranks hold identical weights.

Imported through ``custom_imports`` (tests/configs must be on PYTHONPATH)."""
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class RankStateDumpHook(Hook):
    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._initial = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        rank, world_size = get_dist_info()
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        buffers = sorted(name for name, _ in model.named_buffers())
        torch.save(
            dict(rank=rank, world_size=world_size, iter=runner.iter,
                 wrapper=type(runner.model).__name__, buffers=buffers, state_dict=state,
                 initial_state_dict=getattr(self, '_initial', None)),
            osp.join(runner.work_dir, f'rank{rank}_state.pth'))
