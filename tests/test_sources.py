"""The model-source seam (rexnet_backbones.sources) and the one weights loader (rexnet_backbones.weights).

Every kind of source builds; every checkpoint format the project knows loads through ``load_weights`` with
the same tensors; mismatches name the keys and the likely cause; an ``mmdet::`` config exports.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import rexnet_backbones  # noqa: F401
from rexnet_backbones.convert import to_timm_state_dict
from rexnet_backbones.sources import build_source, strip_pretrained
from rexnet_backbones.errors import CheckpointMismatchError, WeightsNotFoundError
from rexnet_backbones.state_dicts import prefix_hint
from rexnet_backbones.weights import check_weights_readable, load_weights

from _hub_cache import make_hub_cache

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = str(ROOT / 'tests' / 'configs' / 'retinanet_tiny_synthetic.py')
MMDET_R18 = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ sources
def test_timm_source_classifier_and_features():
    src = build_source('rexnet_lite_100')
    assert (src.kind, src.label, src.input_size, src.cfg, src.scope) == ('timm', 'rexnet_lite_100', (224, 224),
                                                                         None, None)
    assert not src.model.training and src.model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    feats = build_source('rexnet_lite_100', features_only=True, out_indices=(2, 4)).model
    assert [f.shape[1] for f in feats(torch.zeros(1, 3, 64, 64))] == feats.feature_info.channels()
    assert len(feats.feature_info.channels()) == 2
    # the same seed gives the same random weights
    assert _same(build_source('rexnet_lite_100', seed=3).model.state_dict(),
                 build_source('rexnet_lite_100', seed=3).model.state_dict())


def test_config_sources_local_and_mmdet():
    local = build_source(LOCAL_CONFIG)
    assert (local.kind, local.label, local.scope) == ('config', 'retinanet_tiny_synthetic', 'mmdet')
    assert type(local.model).__name__ == 'RetinaNet' and not local.model.training
    assert local.path == LOCAL_CONFIG
    det = build_source(MMDET_R18)
    assert det.path.endswith(os.path.join('retinanet', 'retinanet_r18_fpn_1x_coco.py'))
    assert det.disabled_init == ['model.backbone.init_cfg']  # torchvision://resnet18 is not downloaded
    assert det.input_size == (800, 1344)  # test Resize (1333, 800), padded to 32
    bb = build_source(MMDET_R18, backbone_only=True)
    assert bb.label == 'retinanet_r18_fpn_1x_coco (ResNet backbone)' and type(bb.model).__name__ == 'ResNet'


def test_unknown_sources_and_options_say_what_to_do():
    with pytest.raises(ValueError, match="unknown model 'rexnet_999': not a config .* nor a timm model name.*"
                                         "ReXNet models: .*rexnet_lite_100"):
        build_source('rexnet_999')
    with pytest.raises(FileNotFoundError, match='config file not found: mmdet::retinanet/nope.py'):
        build_source('mmdet::retinanet/nope.py')
    with pytest.raises(ValueError, match='features_only applies to timm model names, not to configs'):
        build_source(LOCAL_CONFIG, features_only=True)
    with pytest.raises(WeightsNotFoundError, match="checkpoint not found: no/such.pth .the file 'no/such.pth' "
                                                   'does not exist'):
        build_source('rexnet_lite_100', 'no/such.pth')


def test_strip_pretrained_reports_and_keeps_the_rest():
    model = dict(type='X', pretrained='torchvision://resnet18',
                 backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='a.pth')),
                 neck=dict(init_cfg=[dict(type='Kaiming'), dict(type='Pretrained', checkpoint='b.pth')]),
                 head=dict(init_cfg=dict(type='Normal', std=0.01)))
    changed = strip_pretrained(model)
    assert sorted(changed) == ['model.backbone.init_cfg', 'model.neck.init_cfg', 'model.pretrained']
    assert model['backbone']['init_cfg'] is None and model['pretrained'] is None
    assert model['neck']['init_cfg'] == [dict(type='Kaiming')] and model['head']['init_cfg']['type'] == 'Normal'
    assert strip_pretrained(model) == []


# ------------------------------------------------------------------------------------------ one loader
@pytest.fixture(scope='module')
def lite_weights(reference_dir):
    """The seeded official rexnet_lite_100 file and its timm-format conversion (the expected tensors)."""
    path = reference_dir / 'rexnetv1_lite_1.0_official_random.pth'
    official = torch.load(path, weights_only=True)
    return path, to_timm_state_dict(official, timm.create_model('rexnet_lite_100'))


def _formats(tmp_path: Path, sd: dict, official: Path) -> dict:
    """The same weights in every format the project loads."""
    from safetensors.torch import save_file
    torch.save(sd, tmp_path / 'timm.pth')
    save_file(sd, str(tmp_path / 'timm.safetensors'))
    torch.save({'state_dict': {f'module.{k}': v for k, v in sd.items()}}, tmp_path / 'ddp.pth')
    torch.save({'meta': {'epoch': 3}, 'state_dict': {f'backbone.{k}': v for k, v in sd.items()}}, tmp_path / 'det.pth')
    return {'official': (str(official), None), 'timm .pth': (str(tmp_path / 'timm.pth'), None),
            'safetensors': (str(tmp_path / 'timm.safetensors'), None), 'ddp': (str(tmp_path / 'ddp.pth'), None),
            'detector': (str(tmp_path / 'det.pth'), 'backbone.')}


def test_every_format_loads_the_same_tensors(lite_weights, tmp_path):
    official, expected = lite_weights
    from rexnet_backbones.mm import ReXNet
    body = {k: v for k, v in expected.items() if not k.startswith('head.')}
    for name, (ckpt, prefix) in _formats(tmp_path, expected, official).items():
        model = timm.create_model('rexnet_lite_100')
        loaded = load_weights(model, ckpt, prefix=prefix)
        assert _same(model.state_dict(), expected), name
        assert loaded.layout == ('official' if name == 'official' else 'as is') and len(loaded.loaded) == len(expected)
        backbone = ReXNet(arch='rexnet_lite_100')
        backbone.load_pretrained(ckpt, prefix=prefix)  # the mm backbone's Pretrained init: the same loader
        own = backbone.state_dict()  # the blocks after the last out index are pruned
        assert 0 < len(own) < len(body) and all(torch.equal(v, body[k]) for k, v in own.items()), name
        feats = build_source('rexnet_lite_100', ckpt, checkpoint_prefix=prefix, features_only=True)
        assert torch.equal(feats.model.stem.conv.weight, expected['stem.conv.weight']), name


def test_hub_tag_loads_from_the_cache_and_fails_fast_offline(lite_weights, tmp_path, monkeypatch):
    import huggingface_hub.constants
    _, expected = lite_weights
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path))
    cached = make_hub_cache(tmp_path, expected, repo_id='timm/rexnet_100.nav_in1k')
    assert Path(check_weights_readable('timm/rexnet_100.nav_in1k')) == cached
    model = timm.create_model('rexnet_lite_100')
    load_weights(model, 'timm/rexnet_100.nav_in1k')  # any file: the tag only names where it is
    assert _same(model.state_dict(), expected)
    with pytest.raises(WeightsNotFoundError, match="'timm/rexnet_150.nav_in1k' are not in the Hugging Face cache "
                                                   'and HF_HUB_OFFLINE is set. Give a local file instead'):
        check_weights_readable('timm/rexnet_150.nav_in1k')
    with pytest.raises(FileNotFoundError, match='timm has no downloadable weights'):
        check_weights_readable('timm/rexnet_lite_100.clova_in1k')


def test_readable_check_is_cheap_and_specific(tmp_path):
    (tmp_path / 'm.onnx').write_bytes(b'x')
    with pytest.raises(ValueError, match='is an ONNX model'):
        check_weights_readable(str(tmp_path / 'm.onnx'))
    with pytest.raises(ValueError, match='URLs are not downloaded'):
        check_weights_readable('https://example.com/w.pth')
    with pytest.raises(WeightsNotFoundError, match='is a directory'):
        check_weights_readable(str(tmp_path))
    (tmp_path / 'garbage.pth').write_bytes(b'not read by the check')
    assert check_weights_readable(str(tmp_path / 'garbage.pth')) == str(tmp_path / 'garbage.pth')


def test_config_source_loads_detector_and_imagenet_checkpoints(reference_dir, tmp_path):
    """A whole-detector checkpoint into the detector; an official ImageNet file into its ReXNet backbone."""
    det = build_source(LOCAL_CONFIG)
    torch.save({'meta': {}, 'state_dict': det.model.state_dict()}, tmp_path / 'det.pth')
    again = build_source(LOCAL_CONFIG, str(tmp_path / 'det.pth'), seed=1)
    assert _same(again.model.state_dict(), det.model.state_dict()) and again.weights.checkpoint.endswith('det.pth')
    assert det.cfg.model.backbone.arch == 'rexnet_100'
    official = reference_dir / 'rexnetv1_1.0_official_random.pth'
    expected = to_timm_state_dict(torch.load(official, weights_only=True), timm.create_model('rexnet_100'))
    imagenet = build_source(LOCAL_CONFIG, str(official))
    assert imagenet.weights.layout == 'official'
    assert all(torch.equal(v, expected[k]) for k, v in imagenet.model.backbone.state_dict().items())
    # the backbone of a detector checkpoint, as rank analysis builds it
    bb = build_source(LOCAL_CONFIG, str(tmp_path / 'det.pth'), checkpoint_prefix='backbone.', backbone_only=True)
    assert _same(bb.model.state_dict(), {k[len('backbone.'):]: v for k, v in det.model.state_dict().items()
                                         if k.startswith('backbone.')})


def test_rank_analysis_accepts_an_official_file(lite_weights):
    from rexnet_backbones.analysis import build_model
    official, expected = lite_weights
    model, label = build_model('rexnet_lite_100', str(official))
    assert label == 'rexnet_lite_100' and _same(model.state_dict(), expected)


# ------------------------------------------------------------------------------------------ one diff
def test_mismatch_names_keys_and_cause(tmp_path):
    torch.save(timm.create_model('rexnet_lite_130').state_dict(), tmp_path / 'w130.pth')
    with pytest.raises(CheckpointMismatchError, match=r'(?s)w130.pth.*shape mismatches \(\d+\): stem\.conv\.weight: '
                                                      r'checkpoint \(\d+, 3, 3, 3\) vs model \(\d+, 3, 3, 3\)'):
        build_source('rexnet_lite_100', str(tmp_path / 'w130.pth'))
    # a detector checkpoint into its backbone without prefix: the hint names the prefix
    det = build_source(LOCAL_CONFIG).model
    torch.save({'state_dict': det.state_dict()}, tmp_path / 'det.pth')
    with pytest.raises(CheckpointMismatchError, match=r"(?s)missing keys \(\d+\).*likely cause: "
                                                      r"the checkpoint's keys start with 'backbone\.'") as e:
        build_source(LOCAL_CONFIG, str(tmp_path / 'det.pth'), backbone_only=True)
    assert len(e.value.missing) == len(det.backbone.state_dict())
    with pytest.raises(CheckpointMismatchError, match="no key starts with prefix 'model.'; its keys start with "
                                                      "'backbone.'"):
        build_source(LOCAL_CONFIG, str(tmp_path / 'det.pth'), checkpoint_prefix='model', backbone_only=True)
    # non-strict: only shapes are refused; what was left out is reported
    model = timm.create_model('rexnet_lite_100')
    part = {k: v for k, v in model.state_dict().items() if not k.startswith('head.fc.')}
    loaded = load_weights(model, part, strict=False)
    assert loaded.missing == ['head.fc.weight', 'head.fc.bias'] and loaded.unexpected == []


def test_prefix_hint_for_any_model():
    own = ['conv1.weight', 'layer1.0.conv1.weight']
    assert prefix_hint(['backbone.conv1.weight', 'backbone.layer1.0.conv1.weight', 'neck.x'], own) == 'backbone.'
    assert prefix_hint(['conv1.weight'], own) is None  # already fits
    assert prefix_hint(['neck.x'], own) is None


# ------------------------------------------------------------------------------------------ export
def test_mmdet_config_exports(tmp_path):
    """``tools/export.py mmdet::...`` (the benchmark's sources) works: no "config file not found"."""
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
               OMP_NUM_THREADS='1')
    out = tmp_path / 'r.onnx'
    cmd = [sys.executable, str(ROOT / 'tools' / 'export.py'), MMDET_R18, str(out), '--input-size', '64', '64']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.is_file() and 'wrote' in r.stdout and '10 outputs' in r.stdout
