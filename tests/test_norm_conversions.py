"""Every BatchNorm conversion keeps the network: mmengine's ``sync_bn`` ('torch', 'mmcv') and
``revert_sync_batchnorm``, torch's ``SyncBatchNorm.convert_sync_batchnorm`` and the backbone's own
``norm_cfg=dict(type='SyncBN')`` give, in eval mode, the outputs of the unconverted model (within 1e-5) and the
same ``state_dict`` keys -- on the ReXNet backbone (v1 and lite) and on whole detectors and segmentors built
from our configs. A control shows that the same converters do change timm's model as built (its activations
live inside ``BatchNormAct2d``), so these tests can fail."""
from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn

pytest.importorskip('mmcv')
from mmengine.config import Config  # noqa: E402
from mmengine.model import convert_sync_batchnorm, revert_sync_batchnorm  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402

from rexnet_backbones.engine.hooks import _mmcv_norm_forwards  # noqa: E402
from rexnet_backbones.mm.backbone import ReXNet  # noqa: E402
from rexnet_backbones.models.conv_bn_act import norm_layers_ignoring_children  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5


@contextlib.contextmanager
def _process_group():
    """A one-process gloo group (mmcv's SyncBatchNorm asks for the world size when it is built)."""
    with tempfile.TemporaryDirectory() as d:
        dist.init_process_group('gloo', init_method=f'file://{d}/pg', rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def _mmcv_sync(m):
    with _process_group():
        return convert_sync_batchnorm(m, 'mmcv')


CONVERTERS = {
    'mmengine_sync_bn_torch': lambda m: convert_sync_batchnorm(m, 'torch'),
    'mmengine_sync_bn_mmcv': _mmcv_sync,
    'mmengine_revert': lambda m: revert_sync_batchnorm(convert_sync_batchnorm(m, 'torch')),
    'mmengine_revert_mmcv': lambda m: revert_sync_batchnorm(_mmcv_sync(m)),
    'torch_convert_sync_batchnorm': nn.SyncBatchNorm.convert_sync_batchnorm,
}


def _norm_count(model: nn.Module) -> int:
    from mmcv.ops import SyncBatchNorm as MMCVSyncBN
    return sum(isinstance(m, (_BatchNorm, MMCVSyncBN)) for m in model.modules())


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics and affine parameters away from the identity, so that every layer matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


def _flat(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flat(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return []


def _max_diff(a, b) -> float:
    fa, fb = _flat(a), _flat(b)
    assert len(fa) == len(fb) and fa, 'the same outputs'
    return max((x - y).abs().max().item() for x, y in zip(fa, fb))


def _check_kept(model: nn.Module, run, converter) -> None:
    model.eval()
    ref = run(model)
    keys = list(model.state_dict())
    before = _norm_count(model)
    converted = converter(copy.deepcopy(model)).eval()
    assert list(converted.state_dict()) == keys
    assert _norm_count(converted) == before > 0
    assert norm_layers_ignoring_children(converted, _mmcv_norm_forwards()) == []
    assert _max_diff(run(converted), ref) <= TOL


X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize('arch', ['rexnet_100', 'rexnet_lite_100'])
@pytest.mark.parametrize('converter', list(CONVERTERS))
def test_backbone_conversions_keep_the_network(arch, converter):
    torch.manual_seed(0)
    backbone = _randomise_norms(ReXNet(arch, out_indices=(1, 2, 3, 4, 5)))
    with torch.no_grad():
        _check_kept(backbone, lambda m: m(X), CONVERTERS[converter])


@pytest.mark.parametrize('arch', ['rexnet_100', 'rexnet_lite_100'])
def test_control_timm_model_loses_its_activations(arch):
    """The same converter on timm's model as built (activations inside BatchNormAct2d) changes the outputs
    and leaves norm layers with children they ignore: what the backbone's modules avoid."""
    import timm
    import rexnet_backbones  # noqa: F401  (registers rexnet_lite_*)
    torch.manual_seed(0)
    model = _randomise_norms(timm.create_model(arch, num_classes=0)).eval()
    with torch.no_grad():
        ref = model(X)
        converted = convert_sync_batchnorm(copy.deepcopy(model), 'torch').eval()
        assert norm_layers_ignoring_children(converted)
        assert _max_diff(converted(X), ref) > 1e-2


def test_backbone_norm_cfg_syncbn_under_torch_distributed():
    """``norm_cfg=dict(type='SyncBN')`` under an initialised process group (gloo, one process) gives
    SyncBatchNorm layers and the outputs of the BN backbone."""
    torch.manual_seed(0)
    plain = _randomise_norms(ReXNet('rexnet_100')).eval()
    with _process_group():
        torch.manual_seed(0)
        synced = ReXNet('rexnet_100', norm_cfg=dict(type='SyncBN'))
    synced.load_state_dict(plain.state_dict())
    synced.eval()
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == _norm_count(plain) > 0
    assert list(synced.state_dict()) == list(plain.state_dict())
    assert norm_layers_ignoring_children(synced) == []
    with torch.no_grad():
        assert _max_diff(synced(X), plain(X)) <= TOL


# whole models from our configs: the backbone and every other norm layer of the neck and heads
MODEL_CONFIGS = ['det/retinanet_rexnet.py', 'det/faster-rcnn_rexnet.py', 'det/mask-rcnn_rexnet.py',
                 'det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py', 'det/ssdlite_rexnet-1.0x_8xb24-600e_coco.py',
                 'seg/fpn_rexnet-1.0x_4xb4-160k_ade20k-512x512.py',
                 'seg/deeplabv3plus_rexnet-1.0x-d8_4xb2-80k_cityscapes-512x1024.py']


def _build(rel: str):
    cfg = Config.fromfile(str(ROOT / 'configs' / rel))
    cfg.model.backbone.init_cfg = None  # offline: no pretrained download
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    return cfg, model


def _tensor_outputs(cfg):
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))

    def run(model):
        with torch.no_grad(), DefaultScope.overwrite_default_scope(cfg.default_scope):
            feats = model.extract_feat(x)
            heads = model.rpn_head(feats) if hasattr(model, 'rpn_head') else model._forward(x)
            return feats, heads
    return run


@pytest.mark.parametrize('rel', MODEL_CONFIGS, ids=lambda r: Path(r).stem)
@pytest.mark.parametrize('converter', ['mmengine_sync_bn_torch', 'mmengine_sync_bn_mmcv', 'mmengine_revert',
                                       'torch_convert_sync_batchnorm'])
def test_whole_model_conversions_keep_the_network(rel, converter):
    torch.manual_seed(0)
    cfg, model = _build(rel)
    _check_kept(_randomise_norms(model), _tensor_outputs(cfg), CONVERTERS[converter])


class _Toy:
    """A one-layer model for mmengine's Runner: timm's ConvNormAct (BN with SiLU inside), optionally split."""

    @staticmethod
    def build(split: bool):
        from mmengine.model import BaseModel
        from timm.layers import ConvNormAct

        from rexnet_backbones.models.conv_bn_act import split_norm_act

        class Toy(BaseModel):
            def __init__(self):
                super().__init__()
                layer = ConvNormAct(3, 4, 3, act_layer='silu')
                self.layer = nn.SyncBatchNorm.convert_sync_batchnorm(split_norm_act(layer) if split else layer)

            def forward(self, inputs, data_samples=None, mode='tensor'):
                out = self.layer(torch.stack(inputs) if isinstance(inputs, list) else inputs)
                return dict(loss=out.square().mean()) if mode == 'loss' else out
        return Toy()


@pytest.mark.parametrize('split', [False, True], ids=['timm_layer', 'split_layer'])
def test_runner_refuses_a_model_whose_conversion_dropped_an_activation(tmp_path, split):
    """mmengine's Runner (not distributed) reverts SyncBatchNorm to ``_BatchNormXd``; a norm layer that held
    its activation is left with a SiLU it never calls, and the hook stops the run before its first iteration
    with one message. The split layer trains."""
    from mmengine.runner import Runner

    import rexnet_backbones.engine.hooks  # noqa: F401  (registers the hook)
    from rexnet_backbones.engine.errors import ToolError
    runner = Runner(
        model=_Toy.build(split), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=[dict(inputs=torch.randn(3, 8, 8)) for _ in range(2)], batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False), collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=1), optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=[dict(type='NormConversionCheckHook')], default_hooks=dict(checkpoint=None), default_scope=None)
    if split:
        runner.train()
        assert runner.iter == 1
    else:
        with pytest.raises(ToolError, match=r'BatchNorm conversion changed the network: 1 norm layer.*ignores act'):
            runner.train()
        assert runner.iter == 0
