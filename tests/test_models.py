"""ReXNet family as timm models: registry, timm model contract, paper fidelity, pretrained loading."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch

import rexnet_backbones  # noqa: F401
from rexnet_backbones.convert import official_key_map

LITE = ['rexnet_lite_100', 'rexnet_lite_130', 'rexnet_lite_150', 'rexnet_lite_200']
V1 = ['rexnet_100', 'rexnet_130', 'rexnet_150', 'rexnet_200', 'rexnet_300']
OFFICIAL = dict(zip(V1 + LITE, ['rexnetv1_1.0', 'rexnetv1_1.3', 'rexnetv1_1.5', 'rexnetv1_2.0', 'rexnetv1_3.0',
                                'rexnetv1_lite_1.0', 'rexnetv1_lite_1.3', 'rexnetv1_lite_1.5', 'rexnetv1_lite_2.0']))
# (GFLOPs, params in millions) from the paper / official README at 224x224
PAPER = {'rexnet_100': (0.40, 4.8), 'rexnet_130': (0.66, 7.6), 'rexnet_150': (0.88, 9.7), 'rexnet_200': (1.5, 16),
         'rexnet_300': (3.4, 34), 'rexnet_lite_100': (0.41, 4.7), 'rexnet_lite_130': (0.65, 6.8),
         'rexnet_lite_150': (0.84, 8.3), 'rexnet_lite_200': (1.5, 13)}


def test_import_registers_without_overwriting_or_warnings():
    code = ('import warnings, timm; warnings.simplefilter("error"); before = set(timm.list_models());'
            'import timm.models.rexnet as r; fn = timm.models.model_entrypoint("rexnet_100");'
            'import rexnet_backbones; after = set(timm.list_models());'
            'assert before <= after; assert timm.models.model_entrypoint("rexnet_100") is fn;'
            'print(sorted(after - before))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    added = eval(out.strip())
    assert set(LITE + ['rexnet_090', 'rexnet_220']) <= set(added)
    assert all(a.startswith('rexnet') for a in added)
    # timm's own v1 stays timm's own model
    m = timm.create_model('rexnet_100', features_only=True)
    assert type(m).__module__.startswith('timm.')


def test_lite_pretrained_cfg():
    for name in LITE:
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.first_conv == 'stem.conv' and cfg.classifier == 'head.fc'
        assert cfg.input_size == (3, 224, 224) and cfg.crop_pct == 0.875
        assert cfg.mean == timm.data.IMAGENET_DEFAULT_MEAN
        assert 'clovaai' in cfg.origin_url
        m = timm.create_model(name)
        assert m.get_classifier() is m.head.fc
        assert dict(m.named_modules())['stem.conv'].in_channels == 3


@pytest.mark.parametrize('name', V1 + LITE)
def test_params_equal_official(name, reference_dir):
    layouts = json.loads((reference_dir / 'official_state_dict_layouts.json').read_text())
    official = layouts[OFFICIAL[name]]
    model = timm.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == official['num_params']
    # the key map sends every timm tensor onto the official key with the same shape
    mapping = official_key_map(model)
    shapes = {k: tuple(s) for k, s in official['state_dict']}
    ours = {mapping[k]: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = {k: (s + (1, 1) if k in ('output.1.weight', 'output.4.weight') and len(s) == 2 and
                 (k == 'output.4.weight' or 'output.4.weight' not in ours) else s) for k, s in ours.items()}
    assert ours == shapes


@pytest.mark.parametrize('name', V1 + LITE)
def test_flops_match_paper(name):
    FlopAnalyzer = pytest.importorskip('mmengine.analysis').FlopAnalyzer
    model = timm.create_model(name).eval()
    flops = FlopAnalyzer(model, torch.zeros(1, 3, 224, 224)).unsupported_ops_warnings(False).total() / 1e9
    paper_flops, paper_params = PAPER[name]
    assert abs(flops - paper_flops) / paper_flops <= 0.05, (name, flops, paper_flops)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - paper_params) / paper_params <= 0.05


def test_paper_widths_constructible():
    for name, width in (('rexnet_090', 0.9), ('rexnet_220', 2.2)):
        m = timm.create_model(name, features_only=True).eval()
        ref = timm.create_model('rexnet_100', width_mult=width, features_only=True)
        assert m.feature_info.channels() == ref.feature_info.channels()
        assert len(m(torch.rand(1, 3, 64, 64))) == 5


@pytest.mark.parametrize('name', ['rexnet_lite_100', 'rexnet_lite_200', 'rexnet_100'])
def test_features_only_contract(name):
    m = timm.create_model(name, features_only=True).eval()
    assert m.feature_info.reduction() == [2, 4, 8, 16, 32]
    feats = m(torch.rand(2, 3, 128, 128))
    assert [f.shape[1] for f in feats] == m.feature_info.channels()
    assert [128 // f.shape[-1] for f in feats] == [2, 4, 8, 16, 32]
    sel = timm.create_model(name, features_only=True, out_indices=(2, 4)).eval()
    assert [f.shape[1] for f in sel(torch.rand(1, 3, 64, 64))] == [m.feature_info.channels()[i] for i in (2, 4)]


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_lite_output_stride(output_stride):
    m = timm.create_model('rexnet_lite_100', features_only=True, output_stride=output_stride).eval()
    feats = m(torch.rand(1, 3, 128, 128))
    assert 128 // feats[-1].shape[-1] == output_stride
    full = timm.create_model('rexnet_lite_100', output_stride=output_stride).eval()
    assert full(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_lite_model_api():
    m = timm.create_model('rexnet_lite_100', drop_path_rate=0.1).eval()
    x = torch.rand(2, 3, 96, 96)
    feats = m.forward_features(x)
    assert feats.shape == (2, 1280, 3, 3)
    assert m.forward_head(feats, pre_logits=True).shape == (2, 1024)
    assert m.forward_head(feats).shape == (2, 1000)
    final, inter = m.forward_intermediates(x)
    assert torch.allclose(final, feats) and [t.shape[1] for t in inter] == [16, 40, 64, 128, 184]
    only = m.forward_intermediates(x, indices=[1, 3], intermediates_only=True, stop_early=True)
    assert [t.shape[1] for t in only] == [40, 128]
    assert any(isinstance(mod, timm.layers.DropPath) for mod in m.modules())
    m.reset_classifier(10)
    assert m(x).shape == (2, 10)
    m.reset_classifier(0)
    assert m(x).shape == (2, 1024)
    m.set_grad_checkpointing(True)
    m.train()
    out = m.forward_features(x)
    out.mean().backward()
    assert m.stem.conv.weight.grad is not None
    kept = m.prune_intermediate_layers([0, 1, 2])
    assert kept == [0, 1, 2] and len(m.features) == m.stage_ends[2] + 1
    # as timm's RexNet: a pruned model returns the unpooled tap, a new classifier pools it
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (2, 64, 12, 12) and m.head_hidden_size == m.num_features == 64
        m.reset_classifier(0, 'avg')
        torch.testing.assert_close(m(x), m.forward_features(x).mean((2, 3)))


@pytest.mark.parametrize('pool,chs', [('avg', 1280), ('max', 1280), ('avgmax', 1280), ('catavgmax', 2560),
                                      ('fastcatavgmax', 2560)])
def test_lite_every_timm_pool(pool, chs):
    """The head conv sees the pooled width (2x for concat pools); pre-logits stay ``head_hidden_size`` wide."""
    m = timm.create_model('rexnet_lite_100', global_pool=pool, num_classes=3).eval()
    assert m.head.conv_head.in_channels == chs and m.head_hidden_size == 1024
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert m(x).shape == (2, 3)
        assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 1024)
    if chs != 1280:
        with pytest.raises(AssertionError, match=f'sized for {chs} pooled channels.*global_pool=.avg. gives 1280'):
            m.reset_classifier(3, 'avg')


def test_lite_unpooled_head_and_factory_kwargs():
    """As timm's RexNet: ``global_pool=''`` keeps (N, C, H, W); device/dtype reach every tensor."""
    x = torch.rand(2, 3, 64, 64)
    m = timm.create_model('rexnet_lite_100', num_classes=0, global_pool='').eval()
    with torch.no_grad():
        assert m(x).shape == (2, 1024, 2, 2)
        m.reset_classifier(0, 'avg')
        assert m(x).shape == (2, 1024)
        m.reset_classifier(0, '')
        assert m(x).shape == (2, 1024, 2, 2)
    meta = timm.create_model('rexnet_lite_100', device='meta', dtype=torch.float64)
    assert {(t.device.type, t.dtype) for t in meta.parameters()} == {('meta', torch.float64)}
    meta.reset_classifier(7)
    assert (meta.head.fc.weight.device.type, meta.head.fc.weight.dtype) == ('meta', torch.float64)
    with pytest.raises(TypeError, match='not_an_arg'):
        timm.create_model('rexnet_lite_100', not_an_arg=1)


def test_lite_fx_trace_then_script():
    """torch.fx traces the model and TorchScript compiles the traced graph (timm's fx + script test)."""
    m = timm.create_model('rexnet_lite_100').eval()
    scripted = torch.jit.script(torch.fx.symbolic_trace(m))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), m(x))


def test_lite_kernel_sizes():
    m = timm.create_model('rexnet_lite_100', kernel_sizes='335577')
    assert m.features[-2].conv_dw.conv.kernel_size == (7, 7)
    assert m.features[0].conv_dw.conv.kernel_size == (3, 3)
    assert m.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match='kernel_sizes'):
        timm.create_model('rexnet_lite_100', kernel_sizes=(3, 4))


def test_bad_inputs_are_clear():
    with pytest.raises(RuntimeError, match='Unknown model'):
        timm.create_model('rexnet_lite_999')
    with pytest.raises(ValueError, match='output_stride'):
        timm.create_model('rexnet_lite_100', output_stride=4)
    with pytest.raises(ValueError, match='out_indices'):
        timm.create_model('rexnet_lite_100', features_only=True, out_indices=(1, 7))


def test_pretrained_without_source_is_clear_error():
    with pytest.raises(RuntimeError, match='pretrained_cfg_overlay=dict\\(file='):
        timm.create_model('rexnet_lite_100', pretrained=True)
    with pytest.raises(RuntimeError, match='no downloadable weights'):
        timm.create_model('rexnet_220', pretrained=True)


def test_pretrained_missing_file_names_it():
    """timm alone raises a bare ``FileNotFoundError()``; ours names the file and says what to give."""
    with pytest.raises(FileNotFoundError, match=r"tools/convert_checkpoint.py.*: 'no/such/rexnet.pth'") as e:
        timm.create_model('rexnet_lite_100', pretrained=True, pretrained_cfg_overlay=dict(file='no/such/rexnet.pth'))
    assert e.value.filename == 'no/such/rexnet.pth' and 'official clovaai file' in str(e.value)
    with pytest.raises(FileNotFoundError, match='rexnet_090: pretrained weights file not found'):
        timm.create_model('rexnet_090', pretrained=True, pretrained_cfg=dict(file='missing.safetensors'))


def test_other_timm_tools_use_new_names():
    """timm's generic machinery (data config, feature wrapper, registry queries) sees the new names."""
    assert timm.list_models('rexnet_lite*') == LITE
    # the tags are registered (with their cfg), but no weights are listed as downloadable
    assert timm.list_models('rexnet_lite*', include_tags=True) == [f'{n}.clova_in1k' for n in LITE]
    assert timm.list_pretrained('rexnet_lite*') == []
    cfg = timm.models.get_pretrained_cfg('rexnet_lite_100.clova_in1k')
    assert cfg.origin_url == 'https://github.com/clovaai/rexnet' and cfg.hf_hub_id is None
    m = timm.create_model('rexnet_lite_100')
    cfg = timm.data.resolve_data_config({}, model=m)
    assert cfg['input_size'] == (3, 224, 224) and cfg['interpolation'] == 'bicubic'
    assert timm.models.is_model('rexnet_lite_130')


def test_timm_part_works_without_openmmlab():
    """With mmengine (and so mmdet/mmseg) missing, the timm part imports and the mm part says what to install."""
    code = ('import sys\n'
            'for m in ("mmengine", "mmcv", "mmdet", "mmseg"): sys.modules[m] = None\n'
            'import timm, torch, rexnet_backbones\n'
            'm = timm.create_model("rexnet_lite_100", features_only=True).eval()\n'
            'assert len(m(torch.rand(1, 3, 64, 64))) == 5\n'
            'try:\n'
            '    rexnet_backbones.ReXNet\n'
            'except ImportError as e:\n'
            '    print(e)\n')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pip install 'rexnet_backbones[mm]'" in r.stdout
