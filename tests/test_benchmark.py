"""rexnet_backbones.benchmark (and its CLI tools/benchmark.py): request errors (quick, in-process),
backend selection and the parity column on a tiny input, and a tiny end-to-end run (slow).

The end-to-end test runs the tool as a subprocess on the ReXNet-1.0x RetinaNet config and mmdet's
RetinaNet R-18 baseline at 128x128 (timing) and at 256x256 (params and FLOPs only, ``--runs 0``); the run with
``--checkpoints`` (COCO metrics) runs the same tool in the test process (``run_tool_in_process``).
"""
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from _helpers_tools import run_tool_in_process
from rexnet_backbones import benchmark as bm
from rexnet_backbones.benchmark import Settings
from rexnet_backbones.errors import BenchmarkError

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO_ROOT, 'tools', 'benchmark.py')
REXNET_CONFIG = osp.join(REPO_ROOT, 'configs', 'det', 'retinanet_rexnet.py')
R18_CONFIG = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'


# ---------------------------------------------------------------------------------------------
# command-line errors: reported before anything is imported or built
# ---------------------------------------------------------------------------------------------
def test_missing_config_file(tmp_path):
    missing = str(tmp_path / 'no_such_config.py')
    with pytest.raises(BenchmarkError) as e:
        bm.plan(Settings(models=[REXNET_CONFIG, missing]))
    assert str(e.value).startswith(f'config file not found: {missing} (')


def test_missing_package_config():
    pytest.importorskip('mmdet')
    with pytest.raises(BenchmarkError, match='config file not found: mmdet::retinanet/no_such_config.py'):
        bm.plan(Settings(models=['mmdet::retinanet/no_such_config.py']))


def test_unknown_timm_name():
    with pytest.raises(BenchmarkError, match="unknown model 'rexnet_999': not a config file"):
        bm.plan(Settings(models=['rexnet_999']))


def test_missing_config_subprocess(tmp_path):
    """As a user sees it: exit status 2 and one line on stderr, nothing on stdout.

    The timeout only guards against a hang: on a loaded machine the start (torch, timm) alone takes minutes."""
    proc = subprocess.run([sys.executable, TOOL, str(tmp_path / 'nope.py')], cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 2
    assert proc.stdout == ''
    assert 'config file not found' in proc.stderr and 'Traceback' not in proc.stderr


def test_checkpoint_count_must_match_configs(tmp_path):
    ckpt = tmp_path / 'a.pth'
    ckpt.write_bytes(b'')
    with pytest.raises(BenchmarkError, match=r'got 1 checkpoint\(s\) for 2 config\(s\)'):
        bm.plan(Settings(models=[REXNET_CONFIG, REXNET_CONFIG], checkpoints=[str(ckpt)]))
    # one per config is accepted ('none' skips one); a missing file is reported
    entries = bm.plan(Settings(models=[REXNET_CONFIG, REXNET_CONFIG], checkpoints=[str(ckpt), 'none']))
    assert [e.checkpoint for e in entries] == [str(ckpt), None]
    with pytest.raises(BenchmarkError, match='checkpoint not found'):
        bm.plan(Settings(models=[REXNET_CONFIG], checkpoints=[str(tmp_path / 'missing.pth')]))


def test_baselines_resolve():
    """--baselines names existing mmdet configs (ResNet and RegNet backbones)."""
    pytest.importorskip('mmdet')
    for _, spec in bm.BASELINES:
        assert osp.isfile(bm.resolve_config(spec)), spec


def test_reference_selection():
    """auto: RegNetX-800MF when measured; an explicit reference is added once."""
    entries = bm.plan(Settings(models=['rexnet_100', 'regnetx_008']))
    assert [e.reference for e in entries] == [False, True]
    entries = bm.plan(Settings(models=['rexnet_100']))
    assert [e.reference for e in entries] == [False]
    entries = bm.plan(Settings(models=['rexnet_100'], reference='regnetx_002'))
    assert [(e.spec, e.reference) for e in entries] == [('rexnet_100', False), ('regnetx_002', True)]
    entries = bm.plan(Settings(models=['rexnet_100', 'regnetx_008'], reference='none'))
    assert [e.reference for e in entries] == [False, False]


def test_missing_runtime_names_the_extra(monkeypatch):
    """--backends onnxruntime without onnxruntime installed: an error naming the [deploy] extra."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'onnxruntime' else real(name, *a))
    with pytest.raises(BenchmarkError) as e:
        bm.plan(Settings(models=['rexnet_100'], backends=('eager', 'onnxruntime')))
    assert "onnxruntime not installed; pip install -e '.[deploy]'" in str(e.value)


def test_bad_settings():
    with pytest.raises(BenchmarkError, match='unknown backend'):
        bm.plan(Settings(models=['rexnet_100'], backends=('tensorrt',)))
    with pytest.raises(BenchmarkError, match='--threads must be >= 1'):
        bm.plan(Settings(models=['rexnet_100'], threads=0))


def test_max_abs_diff():
    """The parity column: deploy's comparison of a nested PyTorch output with a session's flat list."""
    import numpy as np
    import torch

    from rexnet_backbones.deploy.runtime import max_abs_diff
    a = (torch.zeros(2, 3), [torch.ones(4)])
    b = [np.zeros((2, 3), dtype=np.float32), np.array([1.0, 1.0, 1.5, 1.0], dtype=np.float32)]
    assert max_abs_diff(a, b) == 0.5
    assert max_abs_diff(a, b[:1]) == float('inf')  # an output missing
    assert max_abs_diff(a, [np.zeros((3, 2)), b[1]]) == float('inf')  # another shape


def test_disable_pretrained():
    """What the JSON's disabled_pretrained_init lists: the model-source seam's strip_pretrained."""
    from rexnet_backbones.sources import strip_pretrained
    model = dict(backbone=dict(type='ResNet', init_cfg=dict(type='Pretrained', checkpoint='x')),
                 neck=dict(init_cfg=[dict(type='Xavier'), dict(type='Pretrained', checkpoint='y')]),
                 head=dict(init_cfg=dict(type='Normal', std=0.01)), pretrained='z')
    changed = strip_pretrained(model)
    assert sorted(changed) == ['model.backbone.init_cfg', 'model.neck.init_cfg', 'model.pretrained']
    assert model['backbone']['init_cfg'] is None and model['pretrained'] is None
    assert model['neck']['init_cfg'] == [dict(type='Xavier')]
    assert model['head']['init_cfg'] == dict(type='Normal', std=0.01)


# ---------------------------------------------------------------------------------------------
# typed results, comparison and tables on a fixed report (nothing built)
# ---------------------------------------------------------------------------------------------
def _fixed_report(backends=()):
    from rexnet_backbones.benchmark import (Costs, Environment, ModelResult, Report, ReportSettings,
                                            Timing)
    env = Environment(date='2026-01-02T03:04:05+00:00', python='3.11.7', platform='Linux',
                      versions={'torch': '2.0'}, cpu_model='Test CPU', logical_cpus=4, usable_cpus=2,
                      torch_threads=2, torch_interop_threads=2, load_average_start=[1.0, 1.0, 1.0],
                      devices=['cpu'], cuda_available=False, cuda_version=None,
                      load_average_end=[2.0, 2.0, 2.0])
    settings = ReportSettings(input_size=[224, 224], batch_sizes=[1], runs=2, warmup=1, devices=['cpu'],
                              backbone_only=False, threads=2, timed='T', flops_convention='F',
                              backends=list(backends), deploy='both', precisions=['fp32'],
                              channel_multiple=8, tolerance=1e-4, out_indices=[1, 2, 3, 4], reference='auto')
    models = [
        ModelResult(label=name, kind='timm', config=None, config_path=None, timm_model=name,
                    out_indices=[1, 2, 3, 4], baseline=False, scope=None, model_type='timm features_only',
                    backbone=name, disabled_pretrained_init=[], reference=name == 'ref',
                    input_shape=[224, 224], padded_input_shape=[224, 224],
                    costs=Costs(params=3_280_000, backbone_params=3_280_000, flops=400_000_000,
                                flops_by_module=None, rois_per_image=None, backbone_flops=400_000_000,
                                unsupported_ops={}),
                    latency={} if backends else {'cpu': {'1': Timing.of([10.0, 12.0], 1, 2, 1)}})
        for name in ('a', 'ref')]
    return Report(argv=[], environment=env, settings=settings, models=models)


def test_markdown_of_a_fixed_report():
    table = bm.markdown(_fixed_report())
    lines = table.splitlines()
    assert lines[0] == ('Measured on CPU: Test CPU, 2 usable logical CPUs, torch 2.0 with 2 threads '
                        '(load average 1.0 at start); 2026-01-02.')
    assert lines[4:] == [
        '| model | detector | backbone | params (M) | backbone params (M) | GFLOPs | backbone GFLOPs | '
        'CPU latency bs1 (ms) | CPU img/s bs1 |',
        '|---|---|---|---:|---:|---:|---:|---:|---:|',
        '| a | timm features_only | a | 3.28 | 3.28 | 0.40 | 0.40 | 11.0 | 90.91 |',
        '| ref | timm features_only | ref | 3.28 | 3.28 | 0.40 | 0.40 | 11.0 | 90.91 |']
    assert bm.markdown_backends(_fixed_report()) == ''  # no backends, no second table


def test_ratios_and_backend_table_of_a_fixed_report():
    """Ratios to the reference per path, the best fp32 path (a path above the tolerance or with an
    error is not eligible) and how the table shows them."""
    from rexnet_backbones.benchmark import PathResult, Timing
    from rexnet_backbones.benchmark.ratios import summarise_backends

    def path(backend, ms, parity=0.0, deploy=False):
        return PathResult(backend=backend, deploy=deploy, parity_max_abs=parity,
                          timing=Timing.of([ms, ms], 1, 2, 1), cpu_times_ms=[ms, ms])
    report = _fixed_report(backends=('eager', 'onnxruntime'))
    a, ref = report.models
    a.backends = {'eager': path('eager', 4.0), 'onnxruntime': path('onnxruntime', 2.0, parity=1e-3),
                  'onnxruntime+deploy': PathResult(error='RuntimeError: x')}
    ref.backends = {'eager': path('eager', 8.0), 'onnxruntime': path('onnxruntime', 4.0),
                    'onnxruntime+deploy': path('onnxruntime', 2.0, deploy=True)}
    summarise_backends(report.models, tolerance=1e-4)
    assert (a.best_fp32.key, ref.best_fp32.key, a.best_ratio) == ('eager', 'onnxruntime+deploy', 2.0)
    assert [p.ratio for p in a.backends.values()] == [0.5, 0.5, None]
    assert a.backend_ratios == {'eager': 0.5}  # its only ONNX Runtime paths: flagged or failed
    lines = bm.markdown_backends(report).splitlines()
    assert 'Best fp32 path of each runtime vs the reference on that runtime: a: eager 0.50.' in lines
    start = lines.index('| path | precision | a ms | a parity | ref (ref) ms | ref (ref) parity | a / ref |')
    assert lines[start + 2:] == [
        '| eager | fp32 | 4.00 | 0.0e+00 | 8.00 | 0.0e+00 | 0.50 |',
        '| onnxruntime | fp32 | 2.00 | 1.0e-03 ! | 4.00 | 0.0e+00 | 0.50 |',
        '| onnxruntime+deploy | fp32 | error | - | 2.00 | 0.0e+00 | - |',
        '| **best fp32** | fp32 | 4.00 | eager | 2.00 | onnxruntime+deploy | 2.00 |',
        '',
        '- error: a onnxruntime+deploy: RuntimeError: x']
    data = json.loads(json.dumps(report.to_json()))
    assert list(data['models'][0]) == [
        'label', 'config', 'config_path', 'timm_model', 'out_indices', 'baseline', 'scope', 'model_type',
        'backbone', 'disabled_pretrained_init', 'params', 'backbone_params', 'reference', 'input_shape',
        'padded_input_shape', 'flops', 'flops_by_module', 'rois_per_image', 'backbone_flops',
        'unsupported_ops', 'activations', 'bytes_moved', 'traffic_unsupported_ops', 'roofline', 'latency',
        'backends', 'output_max_abs', 'measure_seconds', 'best_fp32', 'best_ratio', 'backend_ratios',
        'roofline_fractions', 'checkpoint', 'metrics']
    assert data['models'][0]['backends']['onnxruntime+deploy'] == {'error': 'RuntimeError: x', 'ratio': None}
    assert data['models'][0]['backends']['eager']['median_ms'] == 4.0
    assert data['models'][0]['best_fp32'] == {'key': 'eager', 'median_ms': 4.0}


def test_cost_table_of_a_fixed_report():
    """The cost table shows the best fp32 path and its fraction; a table of every path's fraction
    follows with backends; no roofline, no table."""
    from rexnet_backbones.benchmark import PathResult, Timing
    from rexnet_backbones.benchmark.ratios import summarise_backends
    from rexnet_backbones.benchmark.roofline import MachinePeak, Roofline
    report = _fixed_report(backends=('eager',))
    assert bm.markdown_costs(report) == ''
    report.machine = MachinePeak(peak_flops_per_s=1e11, bandwidth_bytes_per_s=1e10, one_thread_flops_per_s=5e10,
                                 one_thread_bandwidth_bytes_per_s=8e9, median_flops_per_s=5e10,
                                 median_bandwidth_bytes_per_s=5e9, threads=2, matmul_size=256, copy_mib=64,
                                 chunk_mib=4, seconds=2.0, method='M')
    for m, ms in zip(report.models, (8.0, 16.0)):
        m.costs.activations, m.costs.bytes_moved = 5_150_000, 82_000_000
        m.costs.roofline = Roofline(roofline_ms=4.0, compute_ms=4.0, memory_ms=8.2)
        m.backends = {'eager': PathResult(backend='eager', parity_max_abs=0.0, timing=Timing.of([ms, ms], 1, 2, 1),
                                          cpu_times_ms=[ms, ms])}
    summarise_backends(report.models, tolerance=1e-4)
    for m in report.models:
        m.fill_roofline_fractions(1)
    assert [m.roofline_fractions for m in report.models] == [{'eager': 0.5}, {'eager': 0.25}]
    lines = bm.markdown_costs(report).splitlines()
    assert lines[0].startswith('Cost model, one image 224x224: machine peak 100.0 GFLOP/s (multiply-adds), '
                               'bandwidth 10.0 GB/s, 2 thread(s) (1 thread: 50.0 GFLOP/s, 8.0 GB/s; median '
                               '2-thread rates 50.0 GFLOP/s, 5.0 GB/s) (M).')
    assert lines[2:6] == [
        '| model | measured path | params (M) | GFLOPs | activations (M) | MB/img | compute ms | memory ms | '
        'roofline ms | measured ms | fraction | CPU ms | CPU fraction |',
        '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
        '| a | eager | 3.28 | 0.40 | 5.15 | 82 | 4.00 | 8.20 | 4.00 | 8.00 | 0.50 | 8.00 | 1.00 |',
        '| ref | eager | 3.28 | 0.40 | 5.15 | 82 | 4.00 | 8.20 | 4.00 | 16.0 | 0.25 | 16.0 | 0.50 |']
    assert lines[-3:] == ['| path | a | ref |', '|---|---:|---:|', '| eager | 0.50 | 0.25 |']
    data = json.loads(json.dumps(report.to_json()))
    assert data['machine']['peak_flops_per_s'] == 1e11 and data['models'][1]['roofline_fractions'] == {'eager': 0.25}
    assert data['models'][0]['roofline'] == {'roofline_ms': 4.0, 'compute_ms': 4.0, 'memory_ms': 8.2}
    assert 'layers' not in data['models'][0] and 'layers' not in data


# ---------------------------------------------------------------------------------------------
# backends side by side (in-process, tiny input)
# ---------------------------------------------------------------------------------------------
def _backend_run(**kw):
    pytest.importorskip('onnxruntime')
    settings = Settings(models=['rexnet_lite_100'], reference='regnetx_002', input_size=(64, 96),
                        batch_sizes=(1,), runs=2, warmup=1, threads=1,
                        backends=('eager', 'channels_last', 'onnxruntime'), deploy='both', **kw)
    report, status = bm.run_benchmark(settings, argv=[])
    assert status == 0
    return report


@pytest.mark.slow
def test_backends_side_by_side():
    report = _backend_run()
    rexnet, ref = report.models
    assert (rexnet.label, ref.label, ref.reference) == ('rexnet_lite_100', 'regnetx_002', True)
    keys = {'eager', 'channels_last', 'onnxruntime', 'eager+deploy', 'channels_last+deploy',
            'onnxruntime+deploy'}
    for m in (rexnet, ref):
        assert set(m.backends) == keys
        for key, p in m.backends.items():
            assert p.error is None, (key, p)
            assert len(p.timing.times_ms) == 2 and p.timing.warmup == 1 and p.precision == 'fp32'
            assert p.parity_max_abs <= 1e-4, (m.label, key, p.parity_max_abs)
        assert m.backends['eager'].parity_max_abs < 1e-6  # the reference module, run again
        assert m.best_fp32.key in keys
    assert all(p.ratio == 1.0 for p in ref.backends.values())
    e, r = rexnet.backends['onnxruntime'], ref.backends['onnxruntime']
    assert e.ratio == pytest.approx(e.median_ms / r.median_ms)
    assert rexnet.best_ratio == pytest.approx(rexnet.best_fp32.median_ms / ref.best_fp32.median_ms)
    assert rexnet.backends['onnxruntime'].info['providers'] == ['CPUExecutionProvider']
    table = bm.markdown_backends(report)
    assert 'every path 1 warm-up run(s), then 2 timed runs round-robin' in table
    header = next(line for line in table.splitlines() if line.startswith('| path |'))
    assert header == ('| path | precision | rexnet_lite_100 ms | rexnet_lite_100 parity | '
                      'regnetx_002 (ref) ms | regnetx_002 (ref) parity | rexnet_lite_100 / ref |')
    rows = [line.split(' | ')[0][2:] for line in table.splitlines() if line.startswith('| ')][1:]
    assert rows == ['eager', 'channels_last', 'onnxruntime', 'eager+deploy', 'channels_last+deploy',
                    'onnxruntime+deploy', '**best fp32**']


@pytest.mark.slow
def test_parity_flags_a_wrong_path(monkeypatch):
    """A deploy form whose conv weights are off by 10 % (as a wrong BN fold would be) shows in the
    parity column and is not eligible as the best fp32 path."""
    import torch.nn as nn

    from rexnet_backbones.benchmark import backends
    real = backends.deploy_model

    def broken(model, **kw):
        deployed = real(model, **kw)
        for m in deployed.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data.mul_(1.1)
        return deployed
    monkeypatch.setattr(backends, 'deploy_model', broken)
    report = _backend_run()
    for m in report.models:
        for key, p in m.backends.items():
            if key.endswith('+deploy'):
                assert p.parity_max_abs > 1e-2, (m.label, key)
            else:
                assert p.parity_max_abs <= 1e-4, (m.label, key)
        assert not m.best_fp32.key.endswith('+deploy')
    table = bm.markdown_backends(report)
    row = next(line for line in table.splitlines() if line.startswith('| onnxruntime+deploy |'))
    assert row.count(' !') == 2  # both models flagged


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------
def _run(args, cwd):
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=str(cwd), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope='module')
def tiny_runs(tmp_path_factory):
    pytest.importorskip('mmdet')
    out = tmp_path_factory.mktemp('benchmark')
    common = [REXNET_CONFIG, R18_CONFIG, '--device', 'cpu', '--threads', '1']
    timed = _run(common + ['--input-size', 128, 128, '--batch-sizes', 1, 2, '--runs', 2,
                           '--warmup', 1, '--out-json', out / 'b128.json',
                           '--out-md', out / 'b128.md'], out)
    _run(common + ['--input-size', 256, 256, '--runs', 0, '--out-json', out / 'b256.json'], out)
    with open(out / 'b128.json') as f:
        small = json.load(f)
    with open(out / 'b256.json') as f:
        large = json.load(f)
    return timed, small, large, (out / 'b128.md').read_text()


@pytest.mark.slow
def test_json_numbers(tiny_runs):
    _, report, _, _ = tiny_runs
    env = report['environment']
    assert env['versions']['torch'] and env['cpu_model'] and env['date']
    assert env['torch_threads'] == 1 and env['devices'] == ['cpu']
    assert report['settings']['input_size'] == [128, 128]
    assert report['settings']['batch_sizes'] == [1, 2] and report['settings']['runs'] == 2
    assert [m['label'] for m in report['models']] == ['retinanet_rexnet', 'RetinaNet R-18']
    assert [m['baseline'] for m in report['models']] == [False, True]
    for m in report['models']:
        for key in ('params', 'backbone_params', 'flops', 'backbone_flops'):
            assert _positive(m[key]), (m['label'], key, m[key])
        assert m['backbone_params'] < m['params'] and m['backbone_flops'] < m['flops']
        assert m['disabled_pretrained_init'] == ['model.backbone.init_cfg']
        assert m['padded_input_shape'] == [128, 128]
        assert set(m['latency']) == {'cpu'} and set(m['latency']['cpu']) == {'1', '2'}
        for bs, stats in m['latency']['cpu'].items():
            assert len(stats['times_ms']) == 2
            assert all(_positive(t) for t in stats['times_ms'])
            assert _positive(stats['median_ms']) and _positive(stats['images_per_s'])
            assert stats['images_per_s'] == pytest.approx(int(bs) * 1000 / stats['median_ms'])
        # the whole-model count splits into the detector's parts, the backbone among them
        assert sum(m['flops_by_module'].values()) == m['flops']
        assert m['flops_by_module']['backbone'] == m['backbone_flops']
        # the cost model: activations, bytes, roofline and the achieved fraction of each timed batch
        assert _positive(m['activations']) and _positive(m['bytes_moved'])
        roofline = m['roofline']
        assert 0 < max(roofline['compute_ms'], roofline['memory_ms']) <= roofline['roofline_ms']
        assert roofline['roofline_ms'] <= roofline['compute_ms'] + roofline['memory_ms'] + 1e-9
        for bs, stats in m['latency']['cpu'].items():
            assert m['roofline_fractions'][f'cpu bs{bs}'] == pytest.approx(
                roofline['roofline_ms'] * int(bs) / stats['median_ms'])
    machine = report['machine']
    assert _positive(machine['peak_flops_per_s']) and _positive(machine['bandwidth_bytes_per_s'])
    assert machine['threads'] == 1 and 'torch.mm' in machine['method']


@pytest.mark.slow
def test_rexnet_backbone_params_match_timm(tiny_runs):
    timm = pytest.importorskip('timm')
    _, report, _, _ = tiny_runs
    rexnet = report['models'][0]
    assert rexnet['backbone'] == 'ReXNet rexnet_100'
    ref = timm.create_model('rexnet_100', pretrained=False, num_classes=0)  # no classifier
    without_classifier = sum(p.numel() for p in ref.parameters())
    # the final 1x1 conv (features[-1]) feeds no FPN level (out_indices strides 4-32): the
    # backbone drops it, so it is the timm network up to stride 32
    last = int(ref.feature_info[-1]['module'].split('.')[-1])
    head_conv = sum(p.numel() for blk in ref.features[last + 1:] for p in blk.parameters())
    assert head_conv > 0
    assert rexnet['backbone_params'] == without_classifier - head_conv
    full = timm.create_model('rexnet_100', pretrained=False)
    assert without_classifier < sum(p.numel() for p in full.parameters())  # 4.8M with classifier


@pytest.mark.slow
def test_flops_scale_with_input_area(tiny_runs):
    _, small, large, _ = tiny_runs
    assert large['settings']['runs'] == 0
    for s, l in zip(small['models'], large['models']):
        assert s['label'] == l['label'] and l['latency'] == {}
        assert l['params'] == s['params']
        for key in ('flops', 'backbone_flops'):
            ratio = l[key] / s[key]
            assert 3.5 <= ratio <= 4.5, (s['label'], key, ratio)


@pytest.mark.slow
def test_cost_table(tiny_runs):
    _, report, _, md = tiny_runs
    lines = md.splitlines()
    header = ('| model | measured path | params (M) | GFLOPs | activations (M) | MB/img | compute ms | memory ms | '
              'roofline ms | measured ms | fraction |')
    start = lines.index(header) + 2
    rows = lines[start:start + 2]
    for row, m in zip(rows, report['models']):
        cells = row.strip('| ').split(' | ')
        assert cells[:2] == [m['label'], 'eager CPU bs1']
        assert cells[4] == f"{m['activations'] / 1e6:.2f}" and cells[5] == f"{m['bytes_moved'] / 1e6:.0f}"
        assert cells[-1] == f"{m['roofline_fractions']['cpu bs1']:.2f}"
    assert 'Cost model, one image 128x128: machine peak ' in md


@pytest.mark.slow
def test_markdown_table(tiny_runs):
    proc, report, _, md = tiny_runs
    assert proc.stdout == md  # the table on stdout is the --out-md file
    assert 'Measured on CPU: ' in md and report['environment']['cpu_model'] in md
    header = next(line for line in md.splitlines() if line.startswith('| model |'))
    for column in ('backbone', 'params (M)', 'backbone params (M)', 'GFLOPs', 'backbone GFLOPs',
                   'CPU latency bs1 (ms)', 'CPU latency bs2 (ms)', 'CPU img/s bs1',
                   'CPU img/s bs2'):
        assert f'| {column} |' in header, column
    assert 'mAP' not in header  # no checkpoints, no metric column
    lines = md.splitlines()
    start = lines.index(header) + 2
    rows = lines[start:lines.index('', start)]  # the main table (the cost table follows)
    assert len(rows) == 2
    assert rows[0].startswith('| retinanet_rexnet | RetinaNet | ReXNet rexnet_100 |')
    assert rows[1].startswith('| RetinaNet R-18 (mmdet) | RetinaNet | ResNet-18 |')
    params_m = f"{report['models'][0]['params'] / 1e6:.2f}"
    assert f'| {params_m} |' in rows[0]
    assert '[benchmark' in proc.stderr and '[benchmark' not in proc.stdout  # progress: stderr


@pytest.mark.slow
def test_checkpoint_metrics(data_root, tmp_path):
    """--checkpoints: COCO metrics through rexnet_backbones.engine.test on the tiny synthetic set."""
    pytest.importorskip('mmdet')
    pytest.importorskip('pycocotools')
    import torch
    from _helpers_tools import DET_CONFIG, describe

    pytest.importorskip('rexnet_backbones.engine', exc_type=ImportError)  # evaluates with engine.test
    from rexnet_backbones.sources import build_source
    model = build_source(DET_CONFIG).model
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)

    out_json = tmp_path / 'metrics.json'
    proc = run_tool_in_process('benchmark.py', [DET_CONFIG, '--checkpoints', ckpt, '--input-size', 128, 128,
                                                '--runs', 0, '--device', 'cpu', '--out-json', out_json,
                                                '--work-dir', tmp_path / 'work'], data_root, tmp_path)
    assert proc.returncode == 0, describe(proc)
    with open(out_json) as f:
        (result,) = json.load(f)['models']
    assert result['checkpoint'] == str(ckpt)
    assert 0.0 <= result['metrics']['coco/bbox_mAP'] <= 1.0, result['metrics']
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('| model |'))  # the main table
    assert lines[at].endswith('| bbox mAP |')
    row = lines[at + 2]  # its one model row (the cost-model table follows)
    assert row.endswith(f"| {result['metrics']['coco/bbox_mAP']:.3f} |")


# ---------------------------------------------------------------------------------------------
# --train-step: memory, time and saved tensors of a training step
# ---------------------------------------------------------------------------------------------
TINY_DET = osp.join(REPO_ROOT, 'tests', 'configs', 'retinanet_tiny_synthetic.py')


def test_train_step_measures_memory_time_and_saved_tensors():
    """In-process on the tiny RetinaNet: positive peak memory and step time; the ReXNet backbone's
    memory-efficient forward keeps fewer bytes than timm's modules (deterministic)."""
    from rexnet_backbones.benchmark.train_step import measure_train_step
    results = {v: measure_train_step(TINY_DET, 'tiny', 2, (64, 96), runs=1, warmup=1, mem_efficient=v)
               for v in (False, True)}
    for r in results.values():
        assert r.peak_mib > 0 and r.step_ms > 0 and len(r.times_ms) == 1
        assert r.padded_shape == [64, 96] and r.backbone == 'ReXNet rexnet_100'
        assert set(r.saved_by_part_mib) >= {'backbone', 'neck', 'bbox_head'}
        assert sum(r.saved_by_part_mib.values()) == pytest.approx(r.saved_mib)
    off, on = results[False].saved_by_part_mib, results[True].saved_by_part_mib
    assert on['backbone'] < 0.5 * off['backbone']
    assert on['neck'] == off['neck'] and on['bbox_head'] == off['bbox_head']
    assert any('_BNActConv' in k for k in results[True].saved_by_op_mib)
    assert any('SiluBackward0' in k for k in results[False].saved_by_op_mib)


def test_train_step_request_errors():
    with pytest.raises(BenchmarkError, match="--mem-efficient must be 'on', 'off' or 'both'"):
        Settings(models=[TINY_DET], train_step=True, mem_efficient='yes').check()
    with pytest.raises(BenchmarkError, match='--train-step measures training steps; leave out --backends'):
        Settings(models=[TINY_DET], train_step=True, backends=('eager',)).check()
    with pytest.raises(BenchmarkError, match='--compile, --channels-last and --train-dtype go with --train-step'):
        Settings(models=[TINY_DET], compile='on').check()
    with pytest.raises(BenchmarkError, match="--train-dtype must be 'fp32' or 'bf16'"):
        Settings(models=[TINY_DET], train_step=True, train_dtype='fp16').check()
    if not torch.cuda.is_available():
        with pytest.raises(BenchmarkError, match='--device cuda: no CUDA device is visible'):
            Settings(models=[TINY_DET], train_step=True, device='cuda').check()


def test_train_step_timm_classifier_channels_last_bf16():
    """A timm classifier's step (in-process): img/s from the median step, the CPU time of each step, the
    warm-up steps kept; channels-last weights; bf16 autocast; the memory-efficient variant of ReXNet."""
    from rexnet_backbones.benchmark.train_step import measure_train_step
    r = measure_train_step('rexnet_100', 'r', 2, (32, 32), runs=2, warmup=1, mem_efficient=True, threads=1,
                           kind='timm', dtype='bf16', channels_last=True)
    assert r.kind == 'timm' and r.backbone == 'timm rexnet_100' and r.dtype == 'bf16' and r.channels_last
    assert len(r.times_ms) == len(r.cpu_ms) == 2 and len(r.warmup_ms) == 1
    assert r.img_per_s == pytest.approx(2000.0 / r.step_ms) and r.cpu_per_wall > 0
    assert r.peak_mib > 0 and r.saved_mib == 0  # saved tensors: eager configs only
    assert r.to_json()['img_per_s'] == pytest.approx(r.img_per_s)


@pytest.mark.slow
def test_train_step_cli_side_by_side(tmp_path):
    """The tool, one fresh process per config and variant: the table and the JSON."""
    out_json = tmp_path / 'train.json'
    proc = subprocess.run([sys.executable, TOOL, TINY_DET, R18_CONFIG, '--train-step', '--batch-sizes', '1',
                           '--input-size', '64', '64', '--runs', '1', '--warmup', '1', '--threads', '1',
                           '--mem-efficient', 'both', '--out-json', str(out_json)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = [m['label'] for m in json.loads(out_json.read_text())['models']]
    assert labels == ['retinanet_tiny_synthetic (timm modules)', 'retinanet_tiny_synthetic (mem-efficient)',
                      'RetinaNet R-18']
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| retinanet_tiny') or 'R-18' in line]
    assert len(rows) == 3 and 'peak GiB above model' in proc.stdout
    data = json.loads(out_json.read_text())
    assert all(m['peak_mib'] > 0 and m['step_ms'] > 0 for m in data['models'])
    assert data['mode'] == 'train_step' and data['settings']['batch_size'] == 1


@pytest.mark.slow
def test_train_step_cli_timm_eager_and_compiled(tmp_path):
    """The tool on a tiny timm classifier, eager and torch.compile'd side by side: img/s, the compiled row's
    first step holds the compilation, ratios against the reference measured the same way."""
    out_json = tmp_path / 'train.json'
    proc = subprocess.run([sys.executable, TOOL, 'test_resnet', '--train-step', '--batch-sizes', '2',
                           '--input-size', '32', '32', '--runs', '1', '--warmup', '1', '--threads', '1',
                           '--compile', 'both', '--channels-last', '--reference', 'test_resnet',
                           '--out-json', str(out_json)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out_json.read_text())
    eager, compiled = data['models']
    assert (eager['label'], compiled['label']) == ('test_resnet', 'test_resnet compiled')
    assert not eager['compiled'] and compiled['compiled'] and compiled['channels_last']
    assert all(m['img_per_s'] > 0 and m['kind'] == 'timm' for m in data['models'])
    assert data['settings']['compile'] == 'both'
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| test_resnet')]
    assert len(rows) == 2 and all('| 1.00 |' in row for row in rows)  # each against its own kind of reference


def test_environment_keeps_no_build_host_paths():
    from rexnet_backbones.benchmark.report import environment
    env = environment(['cpu'])
    assert env.collect_env['PyTorch'] == torch.__version__  # the wheel is named by its version
    assert 'PyTorch compiling details' not in env.collect_env  # torch's build host: its compiler paths
