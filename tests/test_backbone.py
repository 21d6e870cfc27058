"""type='ReXNet' in the mmdet/mmseg registries: options as mmdet's ResNet has them, pretrained init."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import timm
import torch
import torch.nn as nn

pytest.importorskip('mmengine')
import rexnet_backbones  # noqa: E402,F401
from rexnet_backbones import ReXNet  # noqa: E402
from rexnet_backbones.errors import CheckpointMismatchError  # noqa: E402


def _bns(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_found_from_mmdet_and_mmseg_scopes():
    from mmdet.registry import MODELS as DET
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS as SEG
    for scope, registry in (('mmdet', DET), ('mmseg', SEG)):
        with DefaultScope.overwrite_default_scope(scope):
            m = registry.build(dict(type='ReXNet', arch='rexnet_lite_100'))
        assert isinstance(m, ReXNet)


def test_only_one_of_mmdet_mmseg_installed():
    """Registration needs mmengine only: with mmdet (or mmseg) hidden it still builds under the other."""
    for hidden, scope in (('mmseg', 'mmdet'), ('mmdet', 'mmseg')):
        code = (f'import sys; sys.modules["{hidden}"] = None\n'
                'import rexnet_backbones\n'
                f'from {scope}.registry import MODELS\n'
                'from mmengine.registry import DefaultScope\n'
                f'with DefaultScope.overwrite_default_scope("{scope}"):\n'
                '    m = MODELS.build(dict(type="ReXNet"))\n'
                'print(type(m).__name__)')
        r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == 'ReXNet', r.stderr[-2000:]


@pytest.mark.parametrize('arch,expected', [
    ('rexnet_100', [16, 38, 61, 128, 185, 1280]),
    ('rexnet_lite_100', [16, 40, 64, 128, 184, 1280]),
    ('rexnetr_100', [16, 40, 64, 128, 184, 1280]),
])
def test_out_indices_and_channels(arch, expected):
    assert len(ReXNet(arch=arch, out_indices=(1, 2)).features) < len(ReXNet(arch=arch).features), \
        'blocks after the last output are dropped (unused parameters break DDP)'
    m = ReXNet(arch=arch, out_indices=(0, 1, 2, 3, 4, 5)).eval()
    assert m.out_channels == expected
    outs = m(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == expected
    assert [64 // o.shape[-1] for o in outs] == [2, 4, 8, 16, 32, 32]


def test_widen_factor_override():
    m = ReXNet(arch='rexnet_100', widen_factor=2.2, out_indices=(1, 2, 3, 4))
    assert m.out_channels == [85, 134, 283, 406]


@pytest.mark.parametrize('arch', ['rexnet_100', 'rexnet_lite_100'])
def test_eval_outputs_equal_timm(arch):
    """Outputs in the requested order, bit-equal to timm's own model with the same weights."""
    torch.manual_seed(0)
    m = ReXNet(arch=arch, out_indices=(5, 0, 3), output_stride=16).eval()
    ref = timm.create_model(arch, num_classes=0, output_stride=16).eval()
    assert ref.load_state_dict(m.state_dict(), strict=False).unexpected_keys == []
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        head_conv, level0, level3 = m(x)
        ref0, ref3 = ref.forward_intermediates(x, indices=[0, 3], intermediates_only=True)
        assert torch.equal(level0, ref0) and torch.equal(level3, ref3)
        assert torch.equal(head_conv, ref.forward_features(x))


def test_out_indices_int_like_mmdet():
    m = ReXNet(arch='rexnet_100', out_indices=3).eval()
    assert m.out_indices == (3,) and m.out_channels == [128]
    assert len(m.features) == m.stage_ends[3] + 1
    (out,) = m(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 128, 4, 4)
    # DDP: every parameter of the kept blocks reaches the output
    m.train()(torch.rand(2, 3, 64, 64))[0].sum().backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize('output_stride', [8, 16])
def test_output_stride(output_stride):
    m = ReXNet(arch='rexnet_100', output_stride=output_stride).eval()
    outs = m(torch.rand(1, 3, 64, 64))
    assert 64 // outs[-1].shape[-1] == output_stride


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match='unknown ReXNet arch'):
        ReXNet(arch='resnet50')
    with pytest.raises(ValueError, match=r'out_indices must be an int or distinct ints in 0\.\.5 .* got \(1, 6\)'):
        ReXNet(out_indices=(1, 6))
    with pytest.raises(ValueError, match=r'got \(2, 2\)'):
        ReXNet(out_indices=(2, 2))
    with pytest.raises(ValueError, match='output_stride'):
        ReXNet(output_stride=4)
    with pytest.raises(ValueError, match='frozen_stages'):
        ReXNet(frozen_stages=9)
    with pytest.raises(ValueError, match='norm_cfg'):
        ReXNet(norm_cfg=dict(type='GN'))


def test_frozen_stages_like_resnet():
    m = ReXNet(arch='rexnet_100', frozen_stages=2)
    m.train()
    frozen = [m.stem] + list(m.features[:m.stage_ends[1] + 1])
    for mod in frozen:
        assert all(not p.requires_grad for p in mod.parameters())
        assert all(not bn.training for bn in _bns(mod))
    rest = list(m.features[m.stage_ends[1] + 1:])
    assert all(p.requires_grad for mod in rest for p in mod.parameters())
    assert all(bn.training for mod in rest for bn in _bns(mod))
    # frozen weights and statistics stay put through a training step
    frozen_keys = ('stem.', 'features.0.', 'features.1.', 'features.2.')
    before = {k: v.clone() for k, v in m.state_dict().items() if k.startswith(frozen_keys)}
    trained_before = m.features[10].conv_pwl.conv.weight.detach().clone()
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    sum(o.mean() for o in m(torch.rand(2, 3, 64, 64))).backward()
    opt.step()
    after = m.state_dict()
    assert len(before) > 20 and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(after['features.10.conv_pwl.conv.weight'], trained_before), 'unfrozen weights train'


def test_norm_eval_like_resnet():
    m = ReXNet(arch='rexnet_100', norm_eval=True)
    m.train()
    assert m.training and all(not bn.training for bn in _bns(m))
    stats = m.features[5].conv_pwl.bn.running_mean.clone()
    m(torch.rand(2, 3, 64, 64))
    assert torch.equal(stats, m.features[5].conv_pwl.bn.running_mean)
    # BN parameters still learn (norm_eval only freezes statistics)
    assert m.features[5].conv_pwl.bn.weight.requires_grad
    m2 = ReXNet(arch='rexnet_100', norm_eval=False).train()
    assert all(bn.training for bn in _bns(m2))


def test_norm_cfg_requires_grad_and_eps():
    m = ReXNet(norm_cfg=dict(type='BN', requires_grad=False, eps=1e-3))
    assert all(not bn.weight.requires_grad and bn.eps == 1e-3 for bn in _bns(m))
    # SyncBN outside torch.distributed falls back to BN, as mmengine reverts SyncBN when not distributed
    s = ReXNet(norm_cfg=dict(type='SyncBN'))
    assert not any(isinstance(b, nn.SyncBatchNorm) for b in s.modules())


def test_batch_one_training_and_unchanged_eval():
    torch.manual_seed(0)
    m = ReXNet(arch='rexnet_100', out_indices=(4,))
    ref = timm.create_model('rexnet_100', num_classes=0, global_pool='')
    m.train()
    out = m(torch.rand(1, 3, 64, 64))[0]  # timm's own model raises here
    out.mean().backward()
    with pytest.raises(ValueError, match='Expected more than 1 value'):
        ref.train()(torch.rand(1, 3, 64, 64))
    ref.load_state_dict(m.state_dict(), strict=False)
    m.eval(), ref.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m(x)[0], ref.forward_intermediates(x, indices=[4], intermediates_only=True)[0])
    # batch >= 2 in training: identical to plain BatchNorm
    m.train(), ref.train()
    with torch.no_grad():
        assert torch.allclose(m(x)[0], ref.forward_intermediates(x, indices=[4], intermediates_only=True)[0], atol=1e-6)


def test_with_cp_and_drop_path_gradients_match():
    torch.manual_seed(0)
    a = ReXNet(arch='rexnet_lite_100', with_cp=True).train()
    b = ReXNet(arch='rexnet_lite_100', with_cp=False).train()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for m in (a, b):
        sum(o.sum() for o in m(x)).backward()
    assert torch.allclose(a.stem.conv.weight.grad, b.stem.conv.weight.grad, atol=1e-5)
    d = ReXNet(arch='rexnet_100', drop_path_rate=0.2)
    assert any(isinstance(mod, timm.layers.DropPath) for mod in d.modules())


# ---------------------------------------------------------------- pretrained init
def test_init_cfg_official_file(reference_dir):
    src = reference_dir / 'rexnetv1_1.0_official_random.pth'
    official = torch.load(src, weights_only=True)
    m = ReXNet(arch='rexnet_100', out_indices=(1, 2, 3, 4, 5), init_cfg=dict(type='Pretrained', checkpoint=str(src)))
    m.init_weights()
    assert torch.equal(m.stem.conv.weight, official['features.0.weight'])
    assert torch.equal(m.features[-1].conv.weight, official['features.19.weight'])
    assert torch.equal(m.features[3].se.bn.running_var, official['features.6.out.5.fc.1.running_var'])


def test_init_cfg_timm_file_and_detector_checkpoint(tmp_path):
    src = timm.create_model('rexnet_lite_100')
    path = tmp_path / 'timm.pth'
    torch.save(src.state_dict(), path)
    m = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    m.init_weights()
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in m.state_dict().items())
    # a detector checkpoint: take the backbone with prefix=
    det = {'state_dict': {f'backbone.{k}': v for k, v in m.state_dict().items()}, 'meta': {}}
    torch.save(det, tmp_path / 'det.pth')
    m2 = ReXNet(arch='rexnet_lite_100',
                init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'det.pth'), prefix='backbone.'))
    m2.init_weights()
    assert torch.equal(m2.features[7].conv_dw.conv.weight, src.features[7].conv_dw.conv.weight)
    # safetensors
    from safetensors.torch import save_file
    save_file(src.state_dict(), str(tmp_path / 'w.safetensors'))
    m3 = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'w.safetensors')))
    m3.init_weights()
    assert torch.equal(m3.stem.conv.weight, src.stem.conv.weight)


def test_init_cfg_partial_checkpoint_raises_with_missing_keys(tmp_path):
    sd = timm.create_model('rexnet_lite_100').state_dict()
    partial = {k: v for k, v in sd.items() if not k.startswith('features.12.')}
    torch.save(partial, tmp_path / 'partial.pth')
    m = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'partial.pth')))
    with pytest.raises(CheckpointMismatchError, match='features.12.'):
        m.init_weights()
    # a checkpoint for a different width names the shape mismatches
    torch.save(timm.create_model('rexnet_lite_130').state_dict(), tmp_path / 'w130.pth')
    m = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'w130.pth')))
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        m.init_weights()


def test_init_cfg_list_is_verified_too(tmp_path, reference_dir):
    """``init_cfg=[dict(type='Pretrained', ...)]`` goes through the same verified loader as a dict."""
    src = reference_dir / 'rexnetv1_lite_1.0_official_random.pth'  # official layout: mmengine's loader loads nothing
    official = torch.load(src, weights_only=True)
    m = ReXNet(arch='rexnet_lite_100', init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                                                  dict(type='Pretrained', checkpoint=str(src))])
    m.init_weights()
    assert torch.equal(m.stem.conv.weight, official['features.0.weight'])
    assert torch.equal(m.features[5].conv_exp.conv.weight, official['features.8.out.0.weight'])
    # a detector checkpoint through a list with prefix=
    det = {'state_dict': {f'backbone.{k}': v for k, v in m.state_dict().items()}}
    torch.save(det, tmp_path / 'det.pth')
    m2 = ReXNet(arch='rexnet_lite_100',
                init_cfg=[dict(type='Pretrained', checkpoint=str(tmp_path / 'det.pth'), prefix='backbone')])
    m2.init_weights()
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in m2.state_dict().items())
    # a partial checkpoint in a list raises
    partial = {k: v for k, v in m.state_dict().items() if not k.startswith('features.12.')}
    torch.save(partial, tmp_path / 'partial.pth')
    m3 = ReXNet(arch='rexnet_lite_100', init_cfg=[dict(type='Pretrained', checkpoint=str(tmp_path / 'partial.pth'))])
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(\d+\): features\.12\.'):
        m3.init_weights()
    m4 = ReXNet(init_cfg=[dict(type='Pretrained', checkpoint='a.pth'), dict(type='Pretrained', checkpoint='b.pth')])
    with pytest.raises(ValueError, match='init_cfg holds 2 Pretrained entries'):
        m4.init_weights()


def test_detector_checkpoint_without_prefix_suggests_it(tmp_path):
    sd = timm.create_model('rexnet_lite_100', num_classes=0).state_dict()
    det = {'state_dict': {**{f'backbone.{k}': v for k, v in sd.items()}, 'neck.lateral.weight': torch.zeros(1)}}
    torch.save(det, tmp_path / 'det.pth')
    m = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'det.pth')))
    with pytest.raises(CheckpointMismatchError, match=r"(?s)missing keys \(\d+\).*likely cause: the checkpoint's "
                                                      r"keys start with 'backbone\.'.*prefix='backbone\.'") as e:
        m.init_weights()
    assert len(e.value.missing) == len(m.state_dict())
    m = ReXNet(arch='rexnet_lite_100',
               init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'det.pth'), prefix='model.'))
    with pytest.raises(CheckpointMismatchError, match="no key starts with prefix 'model.'; its keys start with "
                                                      "'backbone.'"):
        m.init_weights()


def test_init_cfg_missing_file_is_not_taken_for_a_hub_tag():
    for name in ('no/such/file.pth', 'rexnet_100.pth', 'rexnet_100.nav_in1k.safetensors', 'ckpt/rexnet_100.nav_in1k'):
        m = ReXNet(init_cfg=dict(type='Pretrained', checkpoint=name))
        with pytest.raises(FileNotFoundError, match=f'file {name!r} does not exist'):
            m.init_weights()


def test_init_cfg_hub_tag_offline_fails_fast(tmp_path, monkeypatch):
    """Not cached and HF_HUB_OFFLINE set: our own check answers, before timm's download retries."""
    import huggingface_hub.constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path))  # an empty cache
    for tag in ('timm/rexnet_100.nav_in1k', 'rexnet_100.nav_in1k', 'hf-hub:timm/rexnet_100.nav_in1k'):
        m = ReXNet(init_cfg=dict(type='Pretrained', checkpoint=tag))
        with pytest.raises(FileNotFoundError, match='not in the Hugging Face cache and HF_HUB_OFFLINE is set. '
                                                    'Give a local file instead'):
            m.init_weights()
    m = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint='timm/rexnet_lite_100.clova_in1k'))
    with pytest.raises(FileNotFoundError, match='timm has no downloadable weights'):
        m.init_weights()


def test_init_cfg_never_unpickles_code(tmp_path):
    marker = tmp_path / 'ran'

    class Evil:
        def __reduce__(self):
            return (type(marker).touch, (marker,))

    sd = timm.create_model('rexnet_lite_100').state_dict()
    torch.save({'state_dict': sd, 'x': Evil()}, tmp_path / 'evil.pth')
    m = ReXNet(arch='rexnet_lite_100', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'evil.pth')))
    with pytest.raises(RuntimeError, match='trust'):
        m.init_weights()
    assert not marker.exists()


def test_detector_init_weights_loads_backbone(reference_dir):
    """Through a whole detector built from a config, as the Runner does it."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    cfg = Config.fromfile('configs/det/retinanet_rexnet-lite-1.0x_fpn_1x_coco.py')
    cfg.model.backbone.init_cfg.checkpoint = str(reference_dir / 'rexnetv1_lite_1.0_official_random.pth')
    det = MODELS.build(cfg.model)
    det.init_weights()
    official = torch.load(reference_dir / 'rexnetv1_lite_1.0_official_random.pth', weights_only=True)
    assert torch.equal(det.backbone.features[5].conv_exp.conv.weight, official['features.8.out.0.weight'])


# ---------------------------------------------------------------- config checks
def test_check_in_channels_with_real_configs():
    from mmengine.config import Config
    from rexnet_backbones.mm import check_in_channels
    cfg = Config.fromfile('configs/det/retinanet_rexnet.py')
    assert check_in_channels(cfg.model) == [38, 61, 128, 185]
    cfg.model.neck.in_channels = [38, 61, 128, 512]
    with pytest.raises(ValueError, match=re.escape(
            'model.neck.in_channels is [38, 61, 128, 512], but the backbone ReXNet(arch=\'rexnet_100\', '
            'out_indices=[1, 2, 3, 4]) gives backbone.out_channels = [38, 61, 128, 185]: write '
            'model = dict(neck=dict(in_channels=[38, 61, 128, 185]))')):
        check_in_channels(cfg)  # a whole Config works too
    seg = Config.fromfile('configs/seg/deeplabv3plus_rexnet-1.0x-d8_4xb2-80k_cityscapes-512x1024.py')
    assert check_in_channels(seg.model) == [38, 61, 128, 185]
    seg.model.decode_head.in_channels = 128
    with pytest.raises(ValueError, match=re.escape('set model.decode_head.in_channels = 185')):
        check_in_channels(seg.model)
    assert check_in_channels(dict(backbone=dict(type='ResNet', depth=50), neck=dict(in_channels=[1]))) is None
