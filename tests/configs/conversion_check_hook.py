"""Test helper hook: before training, every rank compares its model's backbone as the Runner left it (after
``sync_bn`` conversion and the model wrapper, or ``revert_sync_batchnorm``) with a freshly built backbone of the
same config holding the same weights: eval-mode outputs on a seeded input, the number of activation-module calls,
and the module types. Writes ``<work_dir>/rank<r>_conversion.json``.

Imported through ``custom_imports`` (tests/configs must be on PYTHONPATH)."""
import collections
import json
import os.path as osp

import torch
import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, MODELS, DefaultScope

ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish, nn.GELU)


def _outputs_and_activation_calls(backbone: nn.Module, x: torch.Tensor):
    calls = [0]
    handles = [m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
               for m in backbone.modules() if isinstance(m, ACTIVATIONS)]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(x)
    finally:
        backbone.train(was_training)
        for h in handles:
            h.remove()
    return [o.float() for o in out], calls[0]


@HOOKS.register_module(force=True)
class ConversionCheckHook(Hook):
    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        converted = model.backbone
        with DefaultScope.overwrite_default_scope(runner.cfg.get('default_scope')):
            reference = MODELS.build(runner.cfg.model.backbone)
        missing, unexpected = reference.load_state_dict(converted.state_dict(), strict=False)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        got, got_calls = _outputs_and_activation_calls(converted, x)
        want, want_calls = _outputs_and_activation_calls(reference, x)
        rank, world_size = get_dist_info()
        result = dict(
            rank=rank, world_size=world_size, wrapper=type(runner.model).__name__,
            max_abs_diff=max((a - b).abs().max().item() for a, b in zip(got, want)),
            activation_calls=got_calls, reference_activation_calls=want_calls,
            missing_keys=list(missing), unexpected_keys=list(unexpected),
            types=dict(collections.Counter(type(m).__name__ for m in converted.modules())),
            reference_types=dict(collections.Counter(type(m).__name__ for m in reference.modules())))
        with open(osp.join(runner.work_dir, f'rank{rank}_conversion.json'), 'w') as f:
            json.dump(result, f, indent=1)
