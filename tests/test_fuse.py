"""rexnet_backbones.deploy.fuse: BN folding, deploy blocks and channel padding keep the outputs.

Models get random but non-trivial BN statistics and affine parameters before ``eval()``, so that a
wrong fold (e.g. mean and variance swapped, a BN left out) changes the outputs by far more than the
tolerances. The equivalence tests run in float64, where the folded model must match to 1e-9; one
float32 test checks the tolerance the deploy form is used with (1e-5).
"""
from __future__ import annotations

import os.path as osp

import pytest
import timm
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

import rexnet_backbones  # noqa: F401  (registers rexnet_lite_*, rexnet_090, rexnet_220)
from rexnet_backbones.deploy import deploy_model, fuse_bn
from rexnet_backbones.deploy.fuse import REXNET_BLOCKS, ConvAct, DeployBottleneck, count_batchnorm
from rexnet_backbones.deploy.pad import SliceChannels, pad_channels
from rexnet_backbones.models.rexnet_lite import LiteBottleneck

ALL_REXNETS = sorted(set(timm.list_models('rexnet*')))
REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running stats and affine parameters in every BN, then eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.8 + 0.4)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def max_diff(a, b) -> float:
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def test_registry_has_every_width():
    """The parametrisation below covers timm's names and ours."""
    for name in ('rexnet_100', 'rexnet_300', 'rexnetr_100', 'rexnet_090', 'rexnet_220',
                 'rexnet_lite_100', 'rexnet_lite_200'):
        assert name in ALL_REXNETS


@pytest.mark.parametrize('name', ALL_REXNETS)
def test_fold_every_registered_rexnet(name):
    """Classifier and features_only(1, 2, 3, 4): no BN left, outputs unchanged (float64)."""
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(name, num_classes=10)).double()
    n_convnormact = sum(1 for m in model.modules() if type(m).__name__ == 'ConvNormAct')
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        folded = deploy_model(model)
        out = folded(x)
    assert count_batchnorm(model) > 0  # a deep copy was folded
    assert count_batchnorm(folded) == 0
    assert sum(1 for m in folded.modules() if type(m).__name__ == 'ConvNormAct') == 0
    # ConvNormActs become ConvActs, the SE and lite-head BNs fold into their convs
    assert sum(1 for m in folded.modules() if isinstance(m, ConvAct)) == n_convnormact
    assert not folded.training
    assert max_diff(ref, out) < 1e-9
    assert float(ref.abs().max()) > 1e-3  # not a trivially zero output


@pytest.mark.parametrize('name', ['rexnet_100', 'rexnet_lite_100', 'rexnetr_100', 'rexnet_090'])
def test_deploy_forms_features(name):
    """features_only: every residual mode, channel padding (to 8 and 16) and channels_last."""
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4))).double()
    x = torch.randn(1, 3, 96, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        for residual in ('inplace', 'pad', 'cat'):
            for multiple in (None, 8, 16):
                d = deploy_model(model, residual=residual, channel_multiple=multiple,
                                 channels_last=multiple == 16)
                assert max_diff(ref, d(x)) < 1e-9, (residual, multiple)
                blocks = [m for m in d.modules() if isinstance(m, DeployBottleneck)]
                assert len(blocks) == 16 and all(b.residual == residual for b in blocks)
                if multiple:
                    assert isinstance(d, SliceChannels)
                    assert d.channels == list(model.feature_info.channels())
                    widths = [m.conv.out_channels for m in d.modules() if isinstance(m, ConvAct)]
                    assert all(w % multiple == 0 for w in widths), widths


def test_fold_float32_within_1e5():
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model('rexnet_100', features_only=True, out_indices=(1, 2, 3, 4)))
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        ref = model(x)
        for d in (fuse_bn(model), deploy_model(model, residual='pad', channel_multiple=8)):
            assert max_diff(ref, d(x)) < 1e-5


def test_fuse_bn_matches_sequential():
    """Independent check of the formula on one conv (with and without bias) against torch's modules."""
    torch.manual_seed(0)
    for bias in (False, True):
        seq = nn.Sequential(nn.Conv2d(5, 7, 3, padding=1, bias=bias), nn.BatchNorm2d(7, eps=1e-3))
        randomize_bn(seq)
        x = torch.randn(2, 5, 9, 11)
        with torch.no_grad():
            ref = seq(x)
            fused = fuse_bn(seq)
            out = fused(x)
        assert count_batchnorm(fused) == 0 and isinstance(fused[1], nn.Identity)
        assert torch.allclose(ref, out, atol=1e-5)
    with pytest.raises(ValueError, match='without running statistics'):
        fuse_bn(nn.Sequential(nn.Conv2d(5, 7, 1), nn.BatchNorm2d(7, track_running_stats=False)))
    with pytest.raises(ValueError, match='conv has 7 output channels, BN 8'):
        fuse_bn(nn.Sequential(nn.Conv2d(5, 7, 1), nn.BatchNorm2d(8)))


@pytest.mark.parametrize('name', ['rexnet_100', 'rexnet_lite_100'])
def test_deploy_float32_within_1e4_of_eager(name):
    """The deploy forms the benchmark times (in-place residual, SE gate and ReLU6, channels_last or not;
    the 'pad' residual of the ONNX export), float32 on random input: within the benchmark's 1e-4 of
    the eval model, the input left as it was."""
    torch.manual_seed(0)
    model = randomize_bn(timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4)))
    x = torch.randn(2, 3, 160, 128)
    kept = x.clone()
    with torch.no_grad():
        ref = model(x)
        for residual, channels_last in (('inplace', True), ('inplace', False), ('pad', False)):
            d = deploy_model(model, residual=residual, channel_multiple=8, channels_last=channels_last)
            inputs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            assert max_diff(ref, d(inputs)) < 1e-4, (residual, channels_last)
    assert torch.equal(x, kept)
    assert float(ref[-1].abs().max()) > 1e-2


def test_deploy_inplace_ops_keep_autograd():
    """With an input that requires grad the SE gate runs out of place: backward works and the
    outputs are the same as without grad."""
    torch.manual_seed(0)
    d = deploy_model(randomize_bn(timm.create_model('rexnet_100', features_only=True, out_indices=(2,))))
    se_blocks = [m for m in d.modules() if type(m).__name__ == 'DeploySE']
    assert len(se_blocks) == 2
    assert all(b.block.act_dw.inplace for b in d.modules() if isinstance(b, DeployBottleneck))
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    out = d(x)[0]
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with torch.no_grad():
        assert max_diff(out.detach(), d(x.detach())[0]) == 0


def test_inplace_and_copy():
    model = randomize_bn(timm.create_model('rexnet_lite_100', num_classes=0))
    n = count_batchnorm(model)
    copy = fuse_bn(model)
    assert count_batchnorm(model) == n and count_batchnorm(copy) == 0
    same = fuse_bn(model, inplace=True)
    assert same is model and count_batchnorm(model) == 0


def test_public_names():
    """One public name per concept: the old aliases are gone."""
    import rexnet_backbones.deploy as deploy
    from rexnet_backbones.deploy import fuse
    assert {'fuse_bn', 'deploy_model'} <= set(deploy.__all__)
    for old in ('fold_batchnorm', 'fuse_conv_bn'):
        assert not hasattr(fuse, old) and not hasattr(deploy, old)


def test_blocks_recognised_by_type():
    """Blocks are wrapped by class, not by name: a look-alike class called ``LinearBottleneck`` is
    left alone, a subclass of ours with another name is wrapped."""
    class LinearBottleneck(nn.Module):  # not timm's
        in_channels = out_channels = 8
        use_shortcut = True

        def __init__(self):
            super().__init__()
            self.conv_pwl = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            return x + self.conv_pwl(x)

    class MyLite(LiteBottleneck):
        pass

    d = deploy_model(nn.Sequential(LinearBottleneck(), MyLite(8, 16, exp_ratio=2.0)))
    assert type(d[0]) is LinearBottleneck
    assert isinstance(d[1], DeployBottleneck) and type(d[1].block) is MyLite
    with pytest.raises(TypeError, match='takes a ReXNet block'):
        DeployBottleneck(nn.Conv2d(8, 8, 1))


@pytest.mark.parametrize('name', ['rexnet_100', 'rexnet_lite_100'])
def test_deploy_block_runs_the_blocks_own_forward(name):
    """DeployBottleneck keeps the timm/lite block (folded) and calls its forward; only the residual is its own."""
    model = randomize_bn(timm.create_model(name, features_only=True, out_indices=(1, 2)))
    d = deploy_model(model, residual='pad')
    blocks = [m for m in d.modules() if isinstance(m, DeployBottleneck)]
    assert blocks and all(isinstance(b.block, REXNET_BLOCKS) and not b.block.use_shortcut for b in blocks)
    calls = []
    for b in blocks:
        b.block.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        d(torch.randn(1, 3, 32, 32))
    assert len(calls) == len(blocks)


def test_pad_channels_rejects_other_models():
    model = timm.create_model('regnetx_002', features_only=True).eval()
    with pytest.raises(ValueError, match='give a model after deploy_model'):
        pad_channels(fuse_bn(model))
    with pytest.raises(ValueError, match='is not a ReXNet feature extractor'):
        pad_channels(timm.create_model('rexnet_100'))
    # deploy_model pads only models with ReXNet blocks: a RegNet is folded and left unpadded
    d = deploy_model(model, channel_multiple=8)
    assert not isinstance(d, SliceChannels) and count_batchnorm(d) == 0
    with pytest.raises(ValueError, match="residual must be one of"):
        deploy_model(model, residual='add')


def _mm_backbones():
    pytest.importorskip('mmdet')
    from rexnet_backbones import ReXNet
    return ReXNet


@pytest.mark.parametrize('arch', ['rexnet_100', 'rexnet_lite_100'])
def test_mm_backbone(arch):
    """The mm backbone, with its _BatchOneSafeBN SE norms, folds and pads to the same outputs."""
    ReXNet = _mm_backbones()
    torch.manual_seed(0)
    backbone = randomize_bn(ReXNet(arch, out_indices=(1, 2, 3, 4))).double()
    if arch == 'rexnet_100':
        assert any(type(m).__name__ == '_BatchOneSafeBN' for m in backbone.modules())
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        ref = backbone(x)
        for multiple in (None, 8):
            d = deploy_model(backbone, residual='pad', channel_multiple=multiple)
            out = d(x)
            assert isinstance(out, tuple) and count_batchnorm(d) == 0
            assert max_diff(ref, out) < 1e-9


def test_detector_whole_model():
    """A RetinaNet with the ReXNet backbone: backbone padded and folded, FPN/head unchanged."""
    pytest.importorskip('mmdet')
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'tests', 'configs', 'retinanet_tiny_synthetic.py'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
    model = randomize_bn(model).double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x, None, mode='tensor')
        d = deploy_model(model, residual='pad', channel_multiple=8)
        out = d(x, None, mode='tensor')
    assert isinstance(d.backbone, SliceChannels) and count_batchnorm(d.backbone) == 0
    assert max_diff([t for level in ref for t in level], [t for level in out for t in level]) < 1e-9
