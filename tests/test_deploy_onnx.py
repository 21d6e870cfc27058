"""ONNX export (rexnet_backbones.deploy, tools/export.py) checked against PyTorch eager with ONNX
Runtime and OpenVINO, and mmdet/mmseg models whose network runs in ONNX Runtime giving the same
COCO mAP / mIoU as PyTorch through mmengine's Runner."""
from __future__ import annotations

import copy
import importlib.util
import re
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
timm = pytest.importorskip('timm')

import rexnet_backbones  # noqa: E402,F401
from _helpers_tools import run_tool_in_process  # noqa: E402
from rexnet_backbones.deploy import TensorMode, build_source_model, export_onnx, verify_onnx  # noqa: E402
from rexnet_backbones.errors import OnnxVerificationError
from rexnet_backbones.deploy.onnx import (STRUCTURE_KEY, flatten_outputs, read_structure,  # noqa: E402
                                          unflatten_outputs)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = osp.join(ROOT, 'tests', 'configs', 'retinanet_tiny_synthetic.py')
SEG_CONFIG = osp.join(ROOT, 'tests', 'configs', 'fpn_tiny_synthetic_seg.py')
EXPORT_TOOL = osp.join(ROOT, 'tools', 'export.py')


def _ort_outputs(path, x: torch.Tensor):
    """Run ``path`` in a fresh ONNX Runtime session (independent of the library's own session)."""
    s = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return s.run(None, {s.get_inputs()[0].name: x.numpy()})


def _input_dims(path):
    t = onnx.load(str(path)).graph.input[0].type.tensor_type
    return [d.dim_param or d.dim_value for d in t.shape.dim]


# ------------------------------------------------------------------------------------ timm models
def test_timm_classifier_export_matches_eager(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model('rexnet_100').eval()
    res = export_onnx(model, tmp_path / 'cls.onnx', (2, 3, 64, 64), verify=True)
    assert res.output_names == ['output'] and res.structure == 0
    assert res.dynamic_batch and res.dynamic_spatial and res.opset >= 17
    assert onnx.load(str(tmp_path / 'cls.onnx')).opset_import[0].version >= 17
    assert _input_dims(tmp_path / 'cls.onnx') == ['batch', 3, 'height', 'width']
    assert set(res.max_abs_diff) == {(2, 3, 64, 64), (3, 3, 96, 128)}
    # independent check at a third shape: dynamic axes really are dynamic
    x = torch.randn(1, 3, 80, 112)
    with torch.no_grad():
        ref = model(x).numpy()
    (got,) = _ort_outputs(tmp_path / 'cls.onnx', x)
    assert got.shape == (1, 1000)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_timm_features_only_export_and_openvino(tmp_path):
    model, src = build_source_model('rexnet_lite_100', features_only=True)
    size = src.input_size
    assert size == (224, 224)
    res = export_onnx(model, tmp_path / 'feat.onnx', (1, 3, 64, 96), verify=True)
    assert res.output_names == [f'output_{i}' for i in range(5)]
    assert read_structure(tmp_path / 'feat.onnx') == [0, 0, 0, 0, 0]
    x = torch.randn(2, 3, 96, 64)
    got = _ort_outputs(tmp_path / 'feat.onnx', x)
    with torch.no_grad():
        ref = model(x)
    assert [g.shape[1] for g in got] == model.feature_info.channels()
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r.numpy(), rtol=0, atol=1e-4)
    pytest.importorskip('openvino')
    diffs = verify_onnx(model, tmp_path / 'feat.onnx', [(1, 3, 64, 64)], backend='openvino')
    assert diffs[(1, 3, 64, 64)] <= 1e-4


def test_verification_detects_a_different_model(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model('rexnet_lite_100', features_only=True).eval()
    export_onnx(model, tmp_path / 'a.onnx', (1, 3, 64, 64))
    with torch.no_grad():
        model.stem.conv.weight[0, 0, 0, 0] += 0.5  # a single changed weight
    with pytest.raises(OnnxVerificationError, match=r"output 'output_0' for input \(1, 3, 64, 64\): "
                                                    r'max \|onnxruntime - PyTorch\| = .* > atol 0.0001'):
        verify_onnx(model, tmp_path / 'a.onnx', [(1, 3, 64, 64)])


def test_static_axes_and_opset_check(tmp_path):
    model = timm.create_model('rexnet_lite_100', features_only=True, out_indices=(4,)).eval()
    res = export_onnx(model, tmp_path / 's.onnx', (1, 3, 64, 64), dynamic_batch=False, dynamic_spatial=False,
                      verify=True)
    assert _input_dims(tmp_path / 's.onnx') == [1, 3, 64, 64]
    assert list(res.max_abs_diff) == [(1, 3, 64, 64)]  # nothing dynamic: nothing else to check
    with pytest.raises(ValueError, match='opset must be >= 17, got 13'):
        export_onnx(model, tmp_path / 't.onnx', (1, 3, 64, 64), opset=13)


def test_flatten_unflatten_round_trip():
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)
    flat, structure = flatten_outputs(((a, b), [c]))
    assert structure == [[0, 0], [0]] and [t.numel() for t in flat] == [1, 2, 3]
    out = unflatten_outputs(flat, structure)
    assert out[0][1] is b and out[1][0] is c and isinstance(out[1], tuple)
    with pytest.raises(ValueError, match='more outputs'):
        unflatten_outputs(flat + [a], structure)
    with pytest.raises(TypeError, match='cannot export an output of type dict'):
        flatten_outputs({'x': a})


@pytest.mark.slow
def test_dynamo_exporter_matches_eager(tmp_path):
    pytest.importorskip('onnxscript')
    model = timm.create_model('rexnet_lite_100', features_only=True, out_indices=(2, 4)).eval()
    res = export_onnx(model, tmp_path / 'd.onnx', (1, 3, 64, 64), dynamo=True, verify=True)
    assert len(res.max_abs_diff) == 2 and max(res.max_abs_diff.values()) <= 1e-4
    assert read_structure(tmp_path / 'd.onnx') == [0, 0]


# ------------------------------------------------------------------------------------ OpenMMLab
# a marker, not a module-level importorskip: the timm tests above and below run without the [mm] extra
needs_mmengine = pytest.mark.skipif(importlib.util.find_spec('mmengine') is None,
                                    reason='needs mmengine (the [mm] extra)')


@needs_mmengine
def test_mm_backbone_export_matches_eager(tmp_path):
    from rexnet_backbones.mm import ReXNet
    torch.manual_seed(0)
    backbone = ReXNet(arch='rexnet_100', out_indices=(1, 2, 3, 4, 5)).eval()
    res = export_onnx(backbone, tmp_path / 'bb.onnx', (1, 3, 64, 96), verify=True)
    assert res.structure == [0] * 5 and res.dynamic_spatial
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        ref = backbone(x)
    got = _ort_outputs(tmp_path / 'bb.onnx', x)
    assert [g.shape[1] for g in got] == backbone.out_channels
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r.numpy(), rtol=0, atol=1e-4)


def test_detector_tensor_mode_export_matches_eager(tmp_path):
    pytest.importorskip('mmdet')
    torch.manual_seed(0)
    model, src = build_source_model(DET_CONFIG)
    size = src.input_size
    assert isinstance(model, TensorMode) and size == (128, 128)
    res = export_onnx(model, tmp_path / 'det.onnx', (1, 3, *size), verify=True)
    # RetinaNet head: (cls_scores, bbox_preds), 5 FPN levels each
    assert res.structure == [[0] * 5, [0] * 5] and res.dynamic_spatial
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        ref, _ = flatten_outputs(model.model(x, mode='tensor'))
    got = _ort_outputs(tmp_path / 'det.onnx', x)
    assert got[0].shape == (2, 9 * 3, 12, 20)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r.numpy(), rtol=0, atol=1e-4)


def test_segmentor_export_falls_back_to_fixed_size(tmp_path):
    pytest.importorskip('mmseg')
    torch.manual_seed(0)
    model, src = build_source_model(SEG_CONFIG)
    size = src.input_size
    # mmseg's Upsample turns the traced sizes into Python ints: H and W cannot stay dynamic. The config's
    # init (conv_seg: normal, std 0.01) gives logits of ~2e-3, so the wrong-size error (~1e-5) shows at 1e-6
    with pytest.warns(UserWarning, match='EncoderDecoder does not allow dynamic spatial axes'):
        res = export_onnx(model, tmp_path / 'seg.onnx', (1, 3, *size), verify=True, atol=1e-6)
    assert res.dynamic_batch and not res.dynamic_spatial
    assert _input_dims(tmp_path / 'seg.onnx') == ['batch', 3, 128, 128]
    assert set(res.max_abs_diff) == {(1, 3, 128, 128), (2, 3, 128, 128)}
    assert max(res.max_abs_diff.values()) <= 1e-4
    from rexnet_backbones.deploy import make_session
    session = make_session(tmp_path / 'seg.onnx')
    assert session.fixed_hw == (128, 128)
    with pytest.raises(ValueError, match='fixed input size 128 x 128 .* got an input of 96 x 160: export it again'):
        session.run(torch.zeros(1, 3, 96, 160))


@needs_mmengine
def test_fused_export_matches_unfused_model(tmp_path):
    from rexnet_backbones.mm import ReXNet
    torch.manual_seed(0)
    backbone = ReXNet(arch='rexnet_lite_100', out_indices=(2, 4))
    backbone.train()
    with torch.no_grad():  # non-trivial BN statistics
        for _ in range(3):
            backbone(torch.randn(4, 3, 64, 64))
    backbone.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = [r.numpy() for r in backbone(x)]
    from rexnet_backbones.deploy import fuse_bn
    fused = fuse_bn(copy.deepcopy(backbone))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    export_onnx(fused, tmp_path / 'f.onnx', (1, 3, 64, 64), verify=True)
    for g, r in zip(_ort_outputs(tmp_path / 'f.onnx', x), ref):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------ tools/export.py
def _tool(argv, capsys=None):
    """tools/export.py ARGV in this process (``run_tool_in_process``; its real command line runs as a subprocess
    in tests/test_errors.py, tests/test_sources.py and below): (None, exit code, stdout, stderr)."""
    proc = run_tool_in_process('export.py', argv, '', os.getcwd())
    return None, proc.returncode, proc.stdout, proc.stderr


def test_export_tool_checkpoint_and_verify(tmp_path, capsys):
    torch.manual_seed(1)
    model = timm.create_model('rexnet_lite_100').eval()
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    result, code, out, err = _tool(['rexnet_lite_100', tmp_path / 'm.onnx', '--checkpoint', tmp_path / 'w.pth',
                                    '--input-size', 64, 96, '--verify'], capsys)
    assert code == 0, err
    assert 'dynamic: batch, height, width' in out and out.count('verified with onnxruntime') == 2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(_ort_outputs(tmp_path / 'm.onnx', x)[0], ref, rtol=0, atol=1e-4)


def test_export_tool_deploy_form(tmp_path, capsys):
    """--deploy exports deploy_model's form (the partial residual as Pad + Add, widths padded), and
    --verify compares it with the model as built (not with the deploy form itself)."""
    torch.manual_seed(2)
    model = timm.create_model('rexnet_100')
    with torch.no_grad():  # non-trivial BN statistics, so that a wrong fold shows
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64))
    torch.save(model.state_dict(), tmp_path / 'w.pth')
    common = ['--checkpoint', tmp_path / 'w.pth', '--features-only', '--input-size', 64, 96]
    _, code, out, err = _tool(['rexnet_100', tmp_path / 'd.onnx', *common, '--deploy', '--verify'], capsys)
    assert code == 0, err
    assert out.count('verified with onnxruntime') == 2
    _, code, _, err = _tool(['rexnet_100', tmp_path / 'plain.onnx', *common], capsys)
    assert code == 0, err
    ops, widths = {}, {}
    for p in ('d.onnx', 'plain.onnx'):
        graph = onnx.load(str(tmp_path / p)).graph
        ops[p] = {n.op_type for n in graph.node}
        weights = {n.input[1] for n in graph.node if n.op_type == 'Conv'}
        widths[p] = {t.dims[0] for t in graph.initializer if t.name in weights}
    # the residual as Pad + Add; ReXNet-1.0's 27-channel stage padded to 32
    assert 'Pad' in ops['d.onnx'] and 'Pad' not in ops['plain.onnx']
    assert 27 in widths['plain.onnx'] and 27 not in widths['d.onnx'] and 32 in widths['d.onnx']
    features = timm.create_model('rexnet_100', features_only=True, pretrained=True,  # timm's own loading
                                 pretrained_cfg_overlay=dict(state_dict=model.state_dict()))
    x = torch.randn(2, 3, 96, 128)  # a third shape, against the model as built
    with torch.no_grad():
        ref = [r.numpy() for r in features.eval()(x)]
    got = _ort_outputs(tmp_path / 'd.onnx', x)
    assert [g.shape for g in got] == [r.shape for r in ref]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-4)


@pytest.mark.parametrize('argv, message', [
    (['rexnet_nope', 'x.onnx'], "error: unknown model 'rexnet_nope': not a config"),
    (['configs/det/nope.py', 'x.onnx'], 'error: config file not found: configs/det/nope.py'),
    (['rexnet_100', 'x.onnx', '--checkpoint', 'missing.pth'], 'error: checkpoint not found: missing.pth'),
    ([DET_CONFIG, 'x.onnx', '--features-only'], 'features_only applies to timm model names'),
])
def test_export_tool_bad_input(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, code, out, err = _tool(argv, capsys)
    assert code == 2 and message in err and 'Traceback' not in err
    assert not (tmp_path / 'x.onnx').exists()


def test_export_tool_names_the_deploy_extra_when_onnxruntime_is_missing(tmp_path):
    fake = tmp_path / 'fake' / 'onnxruntime'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text("raise ImportError('onnxruntime is hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake.parent), ROOT]), OMP_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, EXPORT_TOOL, 'rexnet_lite_100', str(tmp_path / 'x.onnx'), '--verify'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "error: onnxruntime is not installed" in proc.stderr
    assert "pip install -e '.[deploy]'" in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'x.onnx').exists()


@needs_mmengine
def test_structure_is_stored_in_the_file(tmp_path):
    from rexnet_backbones.mm import ReXNet
    export_onnx(ReXNet(arch='rexnet_lite_100', out_indices=(3, 5)), tmp_path / 'b.onnx', (1, 3, 64, 64))
    props = {p.key: p.value for p in onnx.load(str(tmp_path / 'b.onnx')).metadata_props}
    assert props[STRUCTURE_KEY] == '[0, 0]'


# ------------------------------------------------------------------------------------ ONNX Runtime models
def _det_samples(n: int, size: int = 128):
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(2 * size, 2 * size), scale_factor=(0.5, 0.5),
                                        pad_shape=(size, size), batch_input_shape=(size, size), img_id=i))
            for i in range(n)]


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_ort_detector_predicts_as_pytorch(backend, tmp_path):
    pytest.importorskip('mmdet')
    pytest.importorskip(backend)
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    from rexnet_backbones.deploy import use_onnx_backend
    torch.manual_seed(0)
    model, src = build_source_model(DET_CONFIG)
    size = src.input_size
    export_onnx(model, tmp_path / 'det.onnx', (1, 3, *size))
    cfg = Config.fromfile(DET_CONFIG)
    cfg.load_from = 'epoch_1.pth'
    cfg = use_onnx_backend(cfg, str(tmp_path / 'det.onnx'), backend=backend, num_threads=1)
    assert cfg.model.type == 'ORTDetector' and cfg.model.model.type == 'RetinaNet'
    assert cfg.model.backend == backend
    assert cfg.load_from is None
    assert 'rexnet_backbones.deploy.ort_model' in cfg.custom_imports['imports']
    with DefaultScope.overwrite_default_scope('mmdet'):
        ort_model = MODELS.build(cfg.model).eval()
        x = torch.randn(2, 3, 128, 128)
        with torch.no_grad():
            expected = model.model.predict(x, _det_samples(2))
            got = ort_model(x, _det_samples(2), mode='predict')
            raw = ort_model(x, mode='tensor')
        with pytest.raises(RuntimeError, match='can only be tested, not trained'):
            ort_model(x, _det_samples(2), mode='loss')
    assert len(raw) == 2 and len(raw[0]) == 5 and isinstance(raw[0][0], torch.Tensor)
    for e, g in zip(expected, got):
        e, g = e.pred_instances, g.pred_instances
        assert len(g) == len(e) == 20  # test_cfg.max_per_img
        assert torch.equal(g.labels, e.labels)
        torch.testing.assert_close(g.scores, e.scores, rtol=0, atol=1e-4)
        torch.testing.assert_close(g.bboxes, e.bboxes, rtol=0, atol=1e-3)


@needs_mmengine
def test_use_onnx_backend_errors(tmp_path):
    from mmengine.config import Config
    from rexnet_backbones.deploy import use_onnx_backend
    cfg = Config.fromfile(DET_CONFIG)
    with pytest.raises(FileNotFoundError, match='ONNX file not found: .*missing.onnx'):
        use_onnx_backend(cfg, str(tmp_path / 'missing.onnx'))
    (tmp_path / 'a.onnx').write_bytes(b'')
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        use_onnx_backend(cfg, str(tmp_path / 'a.onnx'), backend='tensorrt')
    cfg.default_scope = 'mmpretrain'
    with pytest.raises(ValueError, match="supports mmdet and mmseg configs .* got default_scope='mmpretrain'"):
        use_onnx_backend(cfg, str(tmp_path / 'a.onnx'))


def _run_test(cfg, work_dir, name):
    from mmengine.runner import Runner
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name
    return Runner.from_cfg(cfg).test()


@pytest.mark.slow
def test_retinanet_same_map_through_onnxruntime(trained_det, tmp_path):
    """The tiny RetinaNet-ReXNet trained on the synthetic set (tests/conftest.py), tested with PyTorch and with
    the network in ONNX Runtime: the COCO metrics are equal."""
    from rexnet_backbones.deploy import use_onnx_backend
    torch_metrics = trained_det.metrics
    model, src = build_source_model(DET_CONFIG, str(trained_det.checkpoint))
    size = src.input_size
    res = export_onnx(model, tmp_path / 'retinanet.onnx', (1, 3, *size), verify=True)
    assert res.dynamic_spatial
    ort_cfg = use_onnx_backend(copy.deepcopy(trained_det.cfg), str(tmp_path / 'retinanet.onnx'), num_threads=1)
    ort_metrics = _run_test(ort_cfg, tmp_path / 'test_ort', 'deploy_det_ort')

    assert torch_metrics['coco/bbox_mAP'] > 0.1, torch_metrics  # a trained model (0.26 here): equality means something
    for k in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert ort_metrics[k] == pytest.approx(torch_metrics[k], abs=1e-3), (k, torch_metrics, ort_metrics)

    # the same through the command line: tools/test.py CONFIG MODEL.onnx --backend onnxruntime (in this process;
    # its real command line: tests/test_errors.py)
    proc = run_tool_in_process('test.py', [DET_CONFIG, tmp_path / 'retinanet.onnx', '--backend', 'onnxruntime',
                                           '--threads', '1', '--work-dir', tmp_path / 'cli'],
                               trained_det.data_root, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli_map = float(re.findall(r'coco/bbox_mAP: ([0-9.]+)', proc.stdout + proc.stderr)[-1])
    assert cli_map == pytest.approx(torch_metrics['coco/bbox_mAP'], abs=1e-3)


@pytest.mark.slow
def test_segmentor_same_miou_through_onnxruntime(trained_seg, tmp_path):
    """The same for the tiny Semantic-FPN segmentor (tests/conftest.py) and mmseg's IoUMetric."""
    from rexnet_backbones.deploy import use_onnx_backend
    torch_metrics = trained_seg.metrics
    model, src = build_source_model(SEG_CONFIG, str(trained_seg.checkpoint))
    size = src.input_size
    with pytest.warns(UserWarning, match='does not allow dynamic spatial axes'):
        export_onnx(model, tmp_path / 'fpn.onnx', (1, 3, *size), verify=True)
    ort_cfg = use_onnx_backend(copy.deepcopy(trained_seg.cfg), str(tmp_path / 'fpn.onnx'), num_threads=1)
    ort_metrics = _run_test(ort_cfg, tmp_path / 'test_ort', 'deploy_seg_ort')

    # more than the all-background score (21.97 here): the shapes are found
    assert torch_metrics['mIoU'] > 25 and torch_metrics['mAcc'] > 30, torch_metrics
    for k in ('aAcc', 'mIoU', 'mAcc'):
        assert float(ort_metrics[k]) == pytest.approx(torch_metrics[k], abs=0.1), (k, torch_metrics, ort_metrics)


def test_export_tool_checkpoint_of_another_arch(tmp_path, capsys):
    torch.save(timm.create_model('rexnet_lite_100').state_dict(), tmp_path / 'lite.pth')
    _, code, _, err = _tool(['rexnet_100', tmp_path / 'x.onnx', '--checkpoint', tmp_path / 'lite.pth'], capsys)
    assert code == 2 and 'checkpoint does not match rexnet_100' in err and 'lite.pth' in err and 'missing keys' in err
    assert 'Traceback' not in err and not (tmp_path / 'x.onnx').exists()
