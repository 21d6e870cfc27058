"""Rank analysis: estimators against matrices of known spectrum, the identity property of the
single-layer study, layer discovery, and small end-to-end runs of the two tools."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers_tools import run_tool_in_process

from rexnet_backbones.analysis import (ESTIMATORS, effective_rank, feature_matrix, find_layers, nuclear_rank,
                                       numerical_rank, rank_estimates, rank_ratios, single_layer_study,
                                       stable_rank)

ROOT = Path(__file__).resolve().parents[1]


def _with_spectrum(s, rows=50, cols=None, seed=0):
    """rows x cols matrix with singular values ``s`` (random orthonormal factors)."""
    g = torch.Generator().manual_seed(seed)
    cols = cols or len(s)
    u, _ = torch.linalg.qr(torch.randn(rows, len(s), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, len(s), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


def test_estimators_on_known_spectrum():
    s = [4.0, 2.0, 1.0, 1.0, 0.0, 0.0]
    a = _with_spectrum(s, rows=40, cols=6)
    est = rank_estimates(a)
    p = torch.tensor([4, 2, 1, 1], dtype=torch.float64) / 8
    assert est['numerical'] == 4
    assert est['nuclear'] == pytest.approx(8 / 4)
    assert est['effective'] == pytest.approx(math.exp(float(-(p * p.log()).sum())))
    assert est['stable'] == pytest.approx((16 + 4 + 1 + 1) / 16)
    assert est['numerical_rtol'] == 4
    assert rank_ratios(a)['numerical'] == pytest.approx(4 / 6)
    # the user-set relative tolerance drops singular values below rtol * s_max
    assert numerical_rank(a, rtol=0.3) == 2
    assert numerical_rank(a) == int(torch.linalg.matrix_rank(a)) == 4
    assert (nuclear_rank(a), effective_rank(a), stable_rank(a)) == pytest.approx(
        (est['nuclear'], est['effective'], est['stable']))


def test_flat_spectrum_and_rank_one_and_zero():
    eye = torch.eye(7, dtype=torch.float64)
    assert all(v == pytest.approx(7) for v in rank_estimates(eye).values())
    one = torch.outer(torch.arange(1.0, 11.0), torch.arange(1.0, 5.0))
    assert all(v == pytest.approx(1) for v in rank_estimates(one).values())
    assert all(v == 0 for v in rank_estimates(torch.zeros(5, 3)).values())
    with pytest.raises(KeyError, match='unknown rank estimator'):
        rank_estimates(eye, ('trace',))


def test_float64_svd_and_float32_features():
    """Rank 3 in float64; a float32 SVD of the same matrix counts its round-off as rank. Features
    stored in float32 carry that round-off themselves: only a relative tolerance removes it."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 64, generator=g, dtype=torch.float64)
    assert numerical_rank(a) == 3
    s32 = torch.linalg.svdvals(a.float())
    assert int((s32 > 500 * torch.finfo(torch.float64).eps * s32[0]).sum()) > 3
    assert numerical_rank(a.float()) > 3
    assert numerical_rank(a.float(), rtol=1e-5) == 3


def test_centering():
    a = _with_spectrum([3.0, 2.0, 1.0], rows=100, cols=8)
    a = a - a.mean(0, keepdim=True) + torch.linspace(5, 9, 8, dtype=torch.float64)  # rank 3 + a mean
    assert numerical_rank(a) == 4
    assert numerical_rank(a, center=True) == 3
    assert nuclear_rank(a, center=True) > nuclear_rank(a)


def test_feature_matrix_layout_and_subsampling():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    m = feature_matrix(x, max_rows=None)
    assert m.shape == (40, 3) and m.dtype == torch.float64
    assert m[1 * 20 + 2 * 5 + 3].tolist() == x[1, :, 2, 3].tolist()  # row = (image, y, x), columns = channels
    sub = feature_matrix(x, max_rows=7, generator=torch.Generator().manual_seed(0))
    assert sub.shape == (7, 3)
    assert {tuple(r) for r in sub.tolist()} <= {tuple(r) for r in m.tolist()}
    with pytest.raises(ValueError, match='expected a'):
        feature_matrix(torch.zeros(2, 3, 4, 5, 6))


def test_identity_layer_has_rank_min_din_dout():
    records = single_layer_study(['identity', 'relu'], [0.25, 0.5, 1.0, 1.5], d_out=32, n=64, num_networks=5)
    ident = [r for r in records if r['nonlinearity'] == 'identity' and r['estimator'] == 'numerical'
             and r['centring'] == 'uncentred']
    assert [(r['d_in'], r['rank_ratio_mean'], r['rank_ratio_std']) for r in ident] == [
        (8, 8 / 32, 0.0), (16, 0.5, 0.0), (32, 1.0, 0.0), (48, 1.0, 0.0)]
    relu = [r for r in records if r['nonlinearity'] == 'relu' and r['estimator'] == 'numerical'
            and r['centring'] == 'uncentred']
    assert relu[0]['rank_ratio_mean'] == 1.0  # the nonlinearity restores full numerical rank


def test_find_layers_blocks_and_expand_layers():
    import timm

    import rexnet_backbones  # noqa: F401
    layers = find_layers(timm.create_model('rexnet_100'))
    blocks = [n for n, k in layers if k == 'block']
    expand = [n for n, k in layers if k == 'expand']
    assert blocks == [f'features.{i}' for i in range(17)]  # 16 bottlenecks + the 1280-channel conv
    assert expand == [f'features.{i}.conv_exp' for i in range(1, 16)]  # the first block has no expansion
    layers = find_layers(timm.create_model('resnet18'))
    assert [n for n, _ in layers] == [f'layer{s}.{b}' for s in range(1, 5) for b in range(2)]


def test_count_macs_by_hand():
    from rexnet_backbones.analysis.network import count_macs
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8x8 out: 64 * 8 * 27
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 64 * 8 * (2 * 9)
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 10))  # 80
    assert count_macs(net, (16, 16)) == 64 * 8 * 27 + 64 * 8 * 18 + 80


def test_batch_norm_stats_normalises_and_restores():
    from rexnet_backbones.analysis.network import batch_norm_stats
    bn = torch.nn.BatchNorm2d(4).eval()
    x = 3 + 5 * torch.randn(8, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bn(x), x / math.sqrt(1 + bn.eps))  # stored statistics at init: (almost) an identity
    with batch_norm_stats(bn):
        y = bn(x)
    assert y.mean(dim=(0, 2, 3)).abs().max() < 1e-5 and (y.var(dim=(0, 2, 3)) - 1).abs().max() < 1e-2
    assert not bn.training and bn.momentum == 0.1 and int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))


def _run(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])),
               OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    res = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_rank_analysis_cli_timm_and_config(tmp_path):
    pytest.importorskip('mmengine')  # a config, and FLOPs by mmengine.analysis
    cfg = str(ROOT / 'configs' / 'det' / 'retinanet_rexnet.py')
    res = _run([str(ROOT / 'tools' / 'rank_analysis.py'), 'resnet18', cfg, '--num-images', '2',
                '--input-size', '64', '64', '--estimator', 'nuclear', 'numerical', '--out-dir', 'out'], tmp_path)
    assert 'forward 1/1' in res.stderr and 'layer 8/8' in res.stderr  # progress
    results = json.loads((tmp_path / 'out' / 'rank.json').read_text())
    assert [r['label'] for r in results] == ['resnet18', 'retinanet_rexnet (ReXNet backbone)']
    assert [layer['stride'] for layer in results[0]['layers']] == [4, 4, 8, 8, 16, 16, 32, 32]
    rex = results[1]['layers']
    assert sum(layer['kind'] == 'expand' for layer in rex) == 15 and rex[-1]['channels'] == 185
    for layer in rex:
        assert set(layer['rank_ratio']) == {'nuclear', 'numerical'}
        assert 0 < layer['rank_ratio']['nuclear'] <= layer['rank_ratio']['numerical'] <= 1
        assert layer['rank_ratio'] == layer['uncentred']['rank_ratio'] and 'centred' in layer
        assert layer['row_capped'] == (layer['rows'] < 4 * layer['channels'])
    assert rex[-1]['row_capped'] and rex[-1]['rows'] == rex[-1]['rows_available'] == 2 * 2 * 2  # stride 32
    assert results[0]['flops'] == pytest.approx(1.82e9 * (64 / 224) ** 2, rel=0.05)
    md = (tmp_path / 'out' / 'rank.md').read_text()
    assert '| 3 | 32 | 2 | 2 |' in md and 'mean centred | mean uncentred' in md and '†' in md and (tmp_path / 'out' / 'rank.png').stat().st_size > 10_000


def test_rank_study_single_layer_cli_records(tmp_path):
    _run([str(ROOT / 'tools' / 'rank_study.py'), 'single-layer', '--num-networks', '3', '--d-out', '16', '--n', '32',
          '--dim-ratios', '0.25', '1', '2', '--weight-scales', 'fan_in', '8', '--n-boot', '100', '--out-dir', 'out'],
         tmp_path)
    study = json.loads((tmp_path / 'out' / 'study.json').read_text())
    records = study['records']
    assert len(records) == 2 * 11 * 3 * len(ESTIMATORS) * 2
    keys = {'weight_scale', 'nonlinearity', 'dim_ratio', 'd_in', 'd_out', 'n', 'estimator', 'centring',
            'rank_ratio_mean', 'rank_ratio_std', 'band_lo', 'band_hi', 'flat_fraction', 'clip6_fraction',
            'num_networks'}
    assert all(keys <= set(r) and 'values' not in r for r in records)
    assert {(r['weight_scale'], r['nonlinearity'], r['d_in'], r['estimator'], r['centring']) for r in records} == {
        (s, f, d, e, c) for s in ('fan_in', '8')
        for f in ('identity', 'relu', 'relu6', 'leaky_relu', 'elu', 'silu', 'gelu', 'softplus', 'sigmoid',
                  'tanh', 'hardswish') for d in (4, 16, 32) for e in ESTIMATORS for c in ('centred', 'uncentred')}
    assert len(study['claims']) == 2 * 2 * len(ESTIMATORS) * 2
    assert {c['status'] for c in study['claims']} <= {'holds', 'reverses', 'flat', 'mixed'}
    assert all((tmp_path / 'out' / n).is_file() for n in ('study.png', 'study_focus.png', 'study.md'))


@pytest.mark.slow
def test_rank_study_design_space_cli(tmp_path):
    args = [str(ROOT / 'tools' / 'rank_study.py'), 'design-space', '--num-models', '3', '--input-size', '64', '64',
            '--flops', '33e6', '--flops-tol', '0.3', '--num-images', '2', '--estimator', 'nuclear', 'effective']
    _run(args + ['--out-dir', 'out'], tmp_path)
    data = json.loads((tmp_path / 'out' / 'design_space.json').read_text())
    nets = data['networks']
    assert [n['space'] for n in nets] == [s for s in ('regnetx', 'regnetx_noquant', 'rexnet', 'rexnet_relu6')
                                          for _ in range(3)]
    assert all(abs(n['flops'] - 33e6) <= 0.3 * 33e6 for n in nets)
    # the ReLU6 ablation reuses the very networks sampled for ReXNet
    rex = [n for n in nets if n['space'] == 'rexnet']
    relu6 = [n for n in nets if n['space'] == 'rexnet_relu6']
    assert [dict(n['params'], act_layer='relu6') for n in rex] == [n['params'] for n in relu6]
    assert len(data['summary']) == 4 * 2 * 2
    assert '| rexnet_relu6 | 3 |' in (tmp_path / 'out' / 'design_space.md').read_text()
    # reproducible for a seed (one space is enough: each space has its own random stream), here in this process on
    # one thread as the subprocess above (its real command line was that run)
    again = run_tool_in_process('rank_study.py', args[1:] + ['--spaces', 'rexnet', '--threads', '1', '--out-dir',
                                                             'out2'], '', tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    again = json.loads((tmp_path / 'out2' / 'design_space.json').read_text())['networks']
    assert [(n['params'], n['mean']) for n in again] == [(n['params'], n['mean']) for n in rex]


def test_seed_differences_between_two_rank_files(tmp_path):
    import copy

    from _helpers_tools import run_tool_in_process
    from rexnet_backbones.analysis.network_report import seed_differences
    a = json.loads((ROOT / 'docs' / 'results' / 'rank' / 'network' / 'rank.json').read_text())
    b = copy.deepcopy(a)
    for layer in b[0]['layers']:  # shift one model's uncentred ratios by 0.01
        layer['uncentred']['rank_ratio']['nuclear'] += 0.01
    rows = seed_differences(a, b)
    moved = [r for r in rows if r['model'] == a[0]['label'] and r['centring'] == 'uncentred']
    assert moved and all(r['mean_diff'] == pytest.approx(0.01) and r['min_diff'] == pytest.approx(0.01) for r in moved)
    assert all(r['mean_diff'] == 0 for r in rows if r not in moved)
    (tmp_path / 'b.json').write_text(json.dumps(b))
    proc = run_tool_in_process('rank_analysis.py', ['--compare', ROOT / 'docs' / 'results' / 'rank' / 'network' / 'rank.json',
                                                    tmp_path / 'b.json'], '', tmp_path)
    assert proc.returncode == 0 and 'Over all: 0.010.' in proc.stdout
    both = run_tool_in_process('rank_analysis.py', ['resnet18', '--compare', 'x', 'y'], '', tmp_path)
    assert both.returncode == 2 and both.stderr.startswith('error: --compare takes two rank.json files')
