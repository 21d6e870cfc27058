"""Rank estimators without artifacts: known spectra centred and not, ratios to min(rows, C), the
row-capped flag (and more rows where the images have them), numerical_rank's rtol=0, effective >=
nuclear, and the single-layer study's scale sweep and claims table."""
from __future__ import annotations

import math

import pytest
import torch

from rexnet_backbones.analysis import (ESTIMATORS, batched_estimates, is_row_capped, measure, numerical_rank,
                                       rank_estimates, rank_profile, rank_ratios, single_layer_study)
from rexnet_backbones.analysis.single_layer import parse_weight_scale
from rexnet_backbones.analysis.single_layer_report import FINDINGS, paper_claims, study_markdown
from rexnet_backbones.errors import InvalidInputError


def _zero_mean_with_spectrum(s, rows, cols, seed=0):
    """rows x cols matrix U diag(s) V^T whose columns have mean 0 (U orthogonal to the ones vector)."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.cat([torch.ones(rows, 1, dtype=torch.float64),
                       torch.randn(rows, len(s), generator=g, dtype=torch.float64)], dim=1)
    u = torch.linalg.qr(basis)[0][:, 1:]  # orthonormal and orthogonal to ones: zero column means
    v = torch.linalg.qr(torch.randn(cols, len(s), generator=g, dtype=torch.float64))[0]
    return u @ torch.diag(torch.tensor(s, dtype=torch.float64)) @ v.T


def _expected(s):
    s = torch.tensor([x for x in s if x > 0], dtype=torch.float64)
    p = s / s.sum()
    return dict(numerical=len(s), numerical_rtol=int((s > 1e-3 * s.max()).sum()), nuclear=float(s.sum() / s.max()),
                effective=math.exp(float(-(p * p.log()).sum())), stable=float((s * s).sum() / s.max() ** 2))


def test_known_spectrum_centred_and_uncentred():
    s = [5.0, 3.0, 2.0, 0.5, 1e-4]
    a = _zero_mean_with_spectrum(s, rows=60, cols=12)
    exp = _expected(s)
    for center in (False, True):  # zero column means: centring changes nothing
        est = rank_estimates(a, center=center)
        assert est == pytest.approx(exp, rel=1e-9)
    # a rank-one mean (every row the same vector m) on top: uncentred it is one more component,
    # centring removes it exactly
    m = torch.linspace(1, 4, 12, dtype=torch.float64) * 10
    b = a + m
    assert rank_estimates(b, center=True) == pytest.approx(exp, rel=1e-9)
    unc = rank_estimates(b)
    assert unc['numerical'] == len(s) + 1
    s_b = torch.linalg.svdvals(b)  # a's columns have mean 0, so b^T b = a^T a + rows * m m^T
    assert float((s_b ** 2).sum()) == pytest.approx(sum(x * x for x in s) + 60 * float(m @ m), rel=1e-9)
    assert unc['nuclear'] < exp['nuclear'] and unc['stable'] < 1.1  # the mean dominates


def test_ratios_are_to_min_rows_channels_and_measure_flags_row_caps():
    a = _zero_mean_with_spectrum([1.0] * 9, rows=10, cols=40)  # 10 rows: rank at most 9 once centred
    assert rank_ratios(a)['numerical'] == pytest.approx(9 / 10)  # not 9 / 40
    m = measure(a, ('nuclear', 'numerical'))
    assert (m['rows'], m['channels'], m['row_capped']) == (10, 40, True)
    assert set(m) == {'rows', 'channels', 'row_capped', 'centred', 'uncentred'}
    assert m['centred']['rank'] == pytest.approx({'nuclear': 9.0, 'numerical': 9.0})
    assert m['centred']['rank_ratio'] == pytest.approx({'nuclear': 0.9, 'numerical': 0.9})
    assert not measure(torch.randn(160, 40, dtype=torch.float64))['row_capped']
    assert is_row_capped(159, 40) and not is_row_capped(160, 40) and is_row_capped(160, 40, rows_per_channel=5)


def test_numerical_rank_rtol_zero_is_zero():
    a = torch.zeros(5, 3, dtype=torch.float64)
    a[0, 0], a[1, 1] = 1.0, 1e-5  # singular values exactly 1, 1e-5, 0
    assert numerical_rank(a, rtol=0.0) == 2  # not the 1e-3 default, which gives 1
    assert numerical_rank(a, rtol=1e-3) == 1
    assert numerical_rank(a) == 2
    assert rank_estimates(a, ('numerical_rtol',), rtol=0.0)['numerical_rtol'] == 2


def test_effective_at_least_nuclear_at_least_stable():
    g = torch.Generator().manual_seed(0)
    spectra = [torch.rand(50, generator=g, dtype=torch.float64) ** k for k in (1, 4, 16, 64)]
    spectra += [torch.tensor([1.0] + [1e-9] * 20, dtype=torch.float64), torch.ones(7, dtype=torch.float64)]
    for s in spectra:
        est = batched_estimates(s[None], (100, len(s)))
        assert float(est['effective']) >= float(est['nuclear']) - 1e-12
        assert float(est['nuclear']) >= float(est['stable']) - 1e-12
    flat = batched_estimates(torch.ones(1, 7, dtype=torch.float64), (7, 7))
    assert all(float(v) == pytest.approx(7) for v in flat.values())  # equality for a flat spectrum
    # batched == one at a time, the zero matrix has rank 0
    batch = torch.stack([spectra[0], spectra[1], torch.zeros(50, dtype=torch.float64)])
    out = batched_estimates(batch, (100, 50))
    for i in range(2):
        one = batched_estimates(batch[i:i + 1], (100, 50))
        assert {k: float(v[i]) for k, v in out.items()} == pytest.approx({k: float(v[0]) for k, v in one.items()})
    assert all(float(v[2]) == 0 for v in out.values())


class _Block(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.a = torch.nn.Conv2d(cin, cout, 3, stride, 1)
        self.b = torch.nn.Conv2d(cout, cout, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_rank_profile_takes_more_rows_and_flags_the_capped_layer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(_Block(3, 8, 1), _Block(8, 64, 4)).eval()
    images = torch.randn(2, 3, 8, 8)
    layers = rank_profile(net, images, ('nuclear', 'numerical'), max_rows=16)
    first, second = layers
    # 8 channels: max_rows=16 is raised to 4 x 8 = 32 of the 128 positions; not capped
    assert (first['rows'], first['rows_available'], first['row_capped']) == (32, 128, False)
    # 64 channels at stride 4: 2 images x 2 x 2 = 8 positions, all taken; capped
    assert (second['rows'], second['rows_available'], second['row_capped']) == (8, 8, True)
    assert second['rank_ratio']['numerical'] == pytest.approx(1.0)  # ratio to min(8, 64)
    for layer in layers:
        assert layer['rank'] == layer['uncentred']['rank']  # center=False: the primary is uncentred
        assert layer['centred']['rank']['numerical'] <= layer['uncentred']['rank']['numerical']
    only = rank_profile(net, images, ('nuclear',), center=True, both_centrings=False)
    assert 'uncentred' not in only[0] and only[0]['rank'] == only[0]['centred']['rank']


def test_weight_scale_sweep_clips_relu6():
    recs = single_layer_study(['relu', 'relu6', 'silu'], [0.5], d_out=16, n=64, num_networks=8,
                              estimators=('nuclear',), weight_scales=['fan_in', 'unit', 8])
    assert {(r['weight_scale'], r['centring']) for r in recs} == {
        (s, c) for s in ('fan_in', 'unit', '8') for c in ('centred', 'uncentred')}
    got = {(r['weight_scale'], r['nonlinearity']): r for r in recs if r['centring'] == 'centred'}
    assert got[('fan_in', 'relu6')]['clip6_fraction'] < 1e-4
    assert got[('8', 'relu6')]['clip6_fraction'] == pytest.approx(0.2266, abs=0.02)  # P(N(0, 64) > 6)
    assert got[('8', 'relu6')]['flat_fraction'] == pytest.approx(0.5 + 0.2266, abs=0.03)
    assert got[('fan_in', 'relu')]['flat_fraction'] == pytest.approx(0.5, abs=0.03)
    assert got[('fan_in', 'silu')]['flat_fraction'] < 0.1
    r = got[('fan_in', 'relu')]
    assert len(r['values']) == 8 and r['band_lo'] <= r['rank_ratio_mean'] <= r['band_hi']
    # the same draws at every scale: ReLU's rank is scale-invariant, network by network
    assert got[('8', 'relu')]['values'] == pytest.approx(r['values'], rel=1e-9)
    for bad in ('abc', '-1', 0):
        with pytest.raises(InvalidInputError, match='weight scale'):
            parse_weight_scale(bad)


def _fake(f, ratio, values, e='nuclear', c='centred'):
    return dict(weight_scale='fan_in', nonlinearity=f, dim_ratio=ratio, d_in=int(ratio * 10), d_out=10, n=40,
                estimator=e, centring=c, values=values, rank_ratio_mean=sum(values) / len(values),
                rank_ratio_std=0.0, band_lo=min(values), band_hi=max(values), flat_fraction=0.0,
                clip6_fraction=0.0, num_networks=len(values))


def test_claims_statuses_on_constructed_records():
    noise = [0.01 * ((i * 7) % 5 - 2) for i in range(12)]
    base = {f: [0.3 + x for x in noise] for f in ('relu', 'relu6', 'silu', 'elu')}
    recs = []
    for f, v in base.items():
        lift = 0.1 if f in ('silu', 'elu') else 0.0  # finding 2 holds
        recs.append(_fake(f, 0.5, [x + lift for x in v]))
        recs.append(_fake(f, 1.0, [x + 0.2 + (0.0 if f != 'elu' else -0.4) for x in v]))  # ELU falls: mixed
    claims = {c['finding']: c for c in paper_claims(recs, n_boot=500)}
    one, two = claims[FINDINGS[0]], claims[FINDINGS[1]]
    assert two['status'] == 'holds' and two['margin'] == pytest.approx(0.1) and two['counts']['holds'] == 4
    assert two['ci'][0] > 0
    assert one['status'] == 'mixed' and one['counts'] == {'holds': 3, 'reverses': 1, 'flat': 0}
    assert one['weakest'].startswith('elu') and one['margin'] == pytest.approx(-0.3)  # ELU: (v - 0.2) - (v + 0.1)
    same = [_fake(f, r, [0.5] * 12) for f in ('relu', 'relu6', 'silu', 'elu') for r in (0.5, 1.0)]
    assert {c['status'] for c in paper_claims(same, n_boot=100)} == {'flat'}


def test_claims_table_on_a_tiny_study():
    recs = single_layer_study(['identity', 'relu', 'relu6', 'elu', 'silu'], [0.25, 1.0], d_out=16, n=64,
                              num_networks=12)
    claims = paper_claims(recs, n_boot=200)
    assert len(claims) == 2 * len(ESTIMATORS) * 2
    by = {(c['finding'], c['estimator'], c['centring']): c for c in claims}
    assert by[(FINDINGS[0], 'nuclear', 'centred')]['status'] == 'holds'
    assert by[(FINDINGS[1], 'numerical', 'uncentred')]['status'] == 'flat'  # every nonlinearity: full rank
    assert all(c['num_networks'] == 12 for c in claims)
    md = study_markdown(recs, claims=claims)
    assert '| 1: rank rises with d_in/d_out | fan_in | nuclear | centred | **holds** |' in md
    assert 'pre-activation > 6' in md and '0.25 centred' in md


def test_single_layer_bad_settings():
    with pytest.raises(InvalidInputError, match='--num-networks'):
        single_layer_study(['relu'], [0.5], d_out=8, n=16, num_networks=1)
    with pytest.raises(InvalidInputError, match='--n'):
        single_layer_study(['relu'], [0.5], d_out=8, n=4, num_networks=4)


@pytest.mark.parametrize('centred', [True, False])
def test_width_free_rank_is_flat_in_width_where_the_capped_ratio_falls(centred):
    """i.i.d. Gaussian features (no structure at all): the older statistic, the ratio to min(rows, C) at
    a fixed 1,024-row sample, falls with C alone; the ratio at a fixed 4 rows per channel (no cap) and
    the ratio to the white-noise null of the same shape stay flat."""
    from rexnet_backbones.analysis.estimators import feature_matrix, null_ratios, rank_ratios, sample_rows
    widths = (64, 256, 1024)
    old, fixed, null = [], [], []
    for c in widths:
        g = torch.Generator().manual_seed(c)
        x = torch.randn(4 * c + 512, c, generator=g)  # more rows than either sample takes
        capped = feature_matrix(x, 1024, torch.Generator().manual_seed(1))
        per_channel = sample_rows(x, 4, torch.Generator().manual_seed(1))
        assert per_channel.shape == (4 * c, c)
        old.append(rank_ratios(capped, ('nuclear',), center=centred)['nuclear'])
        fixed.append(rank_ratios(per_channel, ('nuclear',), center=centred)['nuclear'])
        null.append(null_ratios(capped, ('nuclear',), center=centred)['nuclear'])
    # the older statistic: 0.80 at C = 64, 0.43 at C = 1024 (the same at every centring for white noise)
    assert old[0] > 0.75 and old[-1] < 0.47 and old[0] - old[-1] > 0.3
    assert max(fixed) - min(fixed) < 0.04 and 0.6 < min(fixed)
    assert all(abs(v - 1.0) < 0.03 for v in null)


def test_measure_fixed_reports_both_norms_and_short_samples():
    from rexnet_backbones.analysis.estimators import measure_fixed, null_estimates
    g = torch.Generator().manual_seed(0)
    low = torch.randn(400, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 32, generator=g, dtype=torch.float64)
    m = measure_fixed(low, ('nuclear', 'numerical_rtol'))
    assert m["rows"] == 400 and m["channels"] == 32 and not m["short"]  # 400 >= 4 x 32
    assert measure_fixed(low[:100], ("nuclear",))["short"]  # 100 < 128
    for key in ('centred', 'uncentred'):
        assert m[key]['ratio']['numerical_rtol'] == pytest.approx(4 / 32)
        assert m[key]['null']['nuclear'] < 0.4  # rank 4 of 32: far below white noise
    assert null_estimates(400, 32, ('numerical_rtol',))['numerical_rtol'] == 32


def test_white_noise_widths_table():
    from rexnet_backbones.analysis.estimators import white_noise_widths
    rows = white_noise_widths((32, 256), max_rows=256)
    assert [r['channels'] for r in rows] == [32, 256] and rows[1]['fixed_rows'] == 1024
    for key in ('centred', 'uncentred'):
        assert rows[0][key]['capped'] - rows[1][key]['capped'] > 0.15  # width alone moves the older ratio
        assert abs(rows[0][key]['fixed'] - rows[1][key]['fixed']) < 0.04
        assert all(abs(r[key]['null'] - 1) < 0.03 for r in rows)
