"""rexnet_backbones.stats against known values (and scipy where it imports)."""
import math

import numpy as np
import pytest

from rexnet_backbones import stats

try:
    import scipy.stats as sps
except ImportError:  # pragma: no cover - scipy is optional
    sps = None


def test_mean_std_sample_std_and_single_value():
    mean, std = stats.mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(math.sqrt(5 / 3))  # ddof=1
    m1, s1 = stats.mean_std([0.7])
    assert m1 == 0.7 and math.isnan(s1)
    with pytest.raises(ValueError, match='empty'):
        stats.mean_std([])


def test_bootstrap_ci_constant_data_has_zero_width():
    lo, hi = stats.bootstrap_ci([0.1] * 5)
    assert lo == hi == pytest.approx(0.1)
    assert stats.median_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)


def test_bootstrap_ci_is_seeded_and_covers_the_mean():
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 1.0, size=50)
    ci = stats.bootstrap_ci(values, seed=3)
    assert ci == stats.bootstrap_ci(values, seed=3)
    assert ci != stats.bootstrap_ci(values, seed=4)
    assert ci[0] < values.mean() < ci[1]
    # roughly mean +- 1.96 * sem
    sem = values.std(ddof=1) / math.sqrt(values.size)
    assert ci[1] - ci[0] == pytest.approx(2 * 1.96 * sem, rel=0.15)


def test_bootstrap_over_three_values_is_min_max():
    # each extreme resample has probability 1/27 > 2.5%: the 95% percentile interval is [min, max]
    assert stats.bootstrap_ci([0.2, 0.5, 0.3]) == (pytest.approx(0.2), pytest.approx(0.5))


def test_bootstrap_ci_with_a_stat_without_axis():
    lo, hi = stats.bootstrap_ci([1.0, 2.0, 3.0, 4.0], stat=lambda v: float(max(v)), n_boot=500)
    assert 2.0 <= lo <= hi == 4.0


@pytest.mark.parametrize('df, q', [(1, 12.706204736), (2, 4.302652730), (3, 3.182446305), (4, 2.776445105),
                                   (9, 2.262157163), (30, 2.042272456)])
def test_t_quantile_known_values(df, q):
    assert stats.t_quantile(0.975, df) == pytest.approx(q, rel=1e-7)


@pytest.mark.skipif(sps is None, reason='scipy not installed')
@pytest.mark.parametrize('df', [1, 2, 5, 7, 12])
@pytest.mark.parametrize('p', [0.9, 0.95, 0.995])
def test_t_quantile_against_scipy(df, p):
    assert stats.t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-7)


def test_t_interval():
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    half = 4.302652730 * 1.0 / math.sqrt(3)
    assert (lo, hi) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


SEEDS = [0, 1, 2, 3, 4]
NOISE = [0.002, -0.001, 0.0015, -0.002, 0.0005]


def test_clear_difference_is_better_and_reversed_is_worse():
    ref = {s: 0.5 + 0.01 * s for s in SEEDS}
    model = {s: ref[s] + 0.1 + NOISE[s] for s in SEEDS}
    d = stats.paired_difference(model, ref)
    assert d.verdict == 'better' and d.n_pairs == 5 and d.seeds == SEEDS and d.note is None
    assert d.mean_diff == pytest.approx(0.1 + np.mean(NOISE))
    assert d.t_ci[0] > 0.09 and all(math.isnan(v) for v in d.ci)  # 5 pairs: no percentile bootstrap
    assert d.p_value < 0.001
    assert stats.paired_difference(ref, model).verdict == 'worse'
    # lower is better (e.g. a loss): the larger model is worse
    assert stats.paired_difference(model, ref, higher_is_better=False).verdict == 'worse'


def test_noise_is_inconclusive_not_no_difference():
    ref = {s: 0.5 for s in SEEDS}
    model = {s: 0.5 + 10 * NOISE[s] for s in SEEDS}
    d = stats.paired_difference(model, ref)
    assert d.verdict == 'inconclusive'
    assert d.t_ci[0] < 0 < d.t_ci[1] and d.p_value > 0.05


def test_three_positive_differences_follow_the_t_test_only():
    # three positive differences: the old bootstrap [min, max] excluded 0, the t interval (t=4.30) does not
    d = stats.paired_difference({0: 0.11, 1: 0.5, 2: 0.12}, {0: 0.1, 1: 0.1, 2: 0.1})
    assert all(math.isnan(v) for v in d.ci) and d.t_ci[0] < 0
    assert d.verdict == 'inconclusive'


def test_bootstrap_interval_from_ten_pairs():
    rng = np.random.default_rng(2)
    a = {s: float(v) for s, v in enumerate(rng.normal(1.0, 1.0, 12))}
    d = stats.paired_difference(a, {s: 0.0 for s in a})
    assert d.n_pairs == 12 and d.ci[0] < d.mean_diff < d.ci[1]


def test_paired_difference_notes_mismatched_and_few_seeds():
    d = stats.paired_difference({0: 0.6, 1: 0.7, 5: 0.1}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert d.n_pairs == 2 and d.seeds == [0, 1]
    assert 'seeds not in both: 2, 5' in d.note and 'only 2 paired seeds' in d.note
    one = stats.paired_difference({0: 0.9}, {0: 0.1})
    assert one.verdict == 'inconclusive' and 'no interval' in one.note
    none = stats.paired_difference({0: 0.9}, {1: 0.1})
    assert none.n_pairs == 0 and math.isnan(none.mean_diff)
    nan = stats.paired_difference({0: float('nan'), 1: 0.2, 2: 0.3, 3: 0.4}, {0: 0.1, 1: 0.1, 2: 0.1, 3: 0.1})
    assert nan.seeds == [1, 2, 3] and 'non-finite values dropped at seeds 0' in nan.note
    assert nan.to_json()['ci'] == list(nan.ci)


def test_edf_at_known_points():
    x, F = stats.edf([3.0, 1.0, 2.0, 2.0])
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0]
    assert F.tolist() == [0.25, 0.75, 0.75, 1.0]
    assert stats.edf_at([3.0, 1.0, 2.0, 2.0], [0.0, 1.0, 1.5, 2.0, 10.0]).tolist() == [0, 0.25, 0.25, 0.75, 1]


def test_edf_band_contains_the_edf_and_is_monotone():
    values = np.random.default_rng(0).normal(size=40)
    grid = np.linspace(-3, 3, 25)
    band = stats.edf_band(values, grid, n_boot=300, seed=1)
    assert np.all(band.lo <= band.F + 1e-12) and np.all(band.F <= band.hi + 1e-12)
    assert np.all(np.diff(band.lo) >= 0) and band.hi[-1] == 1.0 and band.lo[0] == 0.0
    const = stats.edf_band([1.0] * 4, [0.0, 1.0, 2.0], n_boot=50)
    assert const.lo.tolist() == const.hi.tolist() == [0.0, 1.0, 1.0]


def test_rankdata_average_ties():
    assert stats.rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    rows = stats.rankdata([[10, 20, 20, 5], [1, 1, 1, 0]])
    assert rows.tolist() == [[2.0, 3.5, 3.5, 1.0], [3.0, 3.0, 3.0, 1.0]]


def test_spearman_monotone_reversed_and_ties():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stats.spearman(x, [v ** 3 for v in x]) == pytest.approx(1.0)
    assert stats.spearman(x, [-math.exp(v) for v in x]) == pytest.approx(-1.0)
    x_t, y_t = [1, 2, 2, 3, 4, 4, 5], [2, 1, 3, 3, 5, 6, 4]
    # Pearson of the average ranks x = 1, 2.5, 2.5, 4, 5.5, 5.5, 7 and y = 2, 1, 3.5, 3.5, 6, 7, 5:
    # sum dx*dy = 21.75, sum dx^2 = 27, sum dy^2 = 27.5 -> 0.79820
    expected = 21.75 / math.sqrt(27 * 27.5) if sps is None else sps.spearmanr(x_t, y_t).correlation
    assert stats.spearman(x_t, y_t) == pytest.approx(expected, abs=1e-5)
    assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))


@pytest.mark.skipif(sps is None, reason='scipy not installed')
def test_spearman_against_scipy_random_with_ties():
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 6, size=30), rng.integers(0, 6, size=30)
    assert stats.spearman(x, y) == pytest.approx(sps.spearmanr(x, y).correlation, abs=1e-12)


def test_spearman_ci():
    x = np.arange(20.0)
    y = x + np.random.default_rng(2).normal(0, 3, size=20)
    lo, hi = stats.spearman_ci(x, y, n_boot=500, seed=0)
    r = stats.spearman(x, y)
    assert -1 <= lo < r < hi <= 1
    assert stats.spearman_ci(x, x, n_boot=200) == (pytest.approx(1.0), pytest.approx(1.0))
    with pytest.raises(ValueError, match='differ in length'):
        stats.spearman_ci([1, 2], [1, 2, 3])


def test_bad_level_and_n_boot():
    with pytest.raises(ValueError, match=r'level must be in \(0, 1\)'):
        stats.bootstrap_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match=r'level must be in \(0, 1\)'):
        stats.edf_band([1.0, 2.0], [1.0], level=1.0)
    with pytest.raises(ValueError, match='n_boot must be >= 1'):
        stats.median_ci([1.0, 2.0], n_boot=0)


@pytest.mark.skipif(sps is None, reason='scipy not installed')
def test_t_test_p_against_scipy():
    rng = np.random.default_rng(5)
    for n in (2, 3, 8, 40):
        v = rng.normal(0.3, 1.0, n)
        assert stats.t_test_p(v) == pytest.approx(sps.ttest_1samp(v, 0.0).pvalue, rel=1e-7, abs=1e-12)
    assert stats.t_test_p([1.0, 1.0]) == 0.0 and stats.t_test_p([0.0, 0.0]) == 1.0
    assert math.isnan(stats.t_test_p([1.0]))


@pytest.mark.skipif(sps is None, reason='scipy not installed')
@pytest.mark.parametrize('n', [3, 5, 8, 20])
@pytest.mark.parametrize('effect', [0.5, 1.0, 2.0])
def test_t_power_against_scipy_noncentral_t(n, effect):
    df, lam = n - 1, effect * math.sqrt(n)
    crit = sps.t.ppf(0.975, df)
    exact = sps.nct.sf(crit, df, lam) + sps.nct.cdf(-crit, df, lam)
    assert stats.t_power(effect, n) == pytest.approx(exact, abs=1e-6)


def test_power_of_three_seeds_and_minimal_detectable_difference():
    assert stats.t_power(1.0, 3) == pytest.approx(0.179, abs=1e-3)  # the 18% at one sigma
    mdd = stats.min_detectable_difference(2.0, 8)
    assert stats.t_power(mdd / 2.0, 8) == pytest.approx(0.8, abs=1e-6)
    assert stats.min_detectable_difference(1.0, 3) > stats.min_detectable_difference(1.0, 8) > 1.0
    assert math.isnan(stats.min_detectable_difference(1.0, 1))


def test_holm_known_values():
    # sorted 0.01, 0.03, 0.04, 0.2 -> 4*0.01, max(0.04, 3*0.03), max(0.09, 2*0.04), max(0.09, 0.2)
    assert stats.holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = stats.holm([0.02, float('nan')])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_adjust_verdicts_holm_turns_a_marginal_win_inconclusive():
    rng = np.random.default_rng(0)
    ref = {s: 0.0 for s in range(3)}
    clear = stats.paired_difference({0: 1.0, 1: 1.01, 2: 0.99}, ref)
    marginal = stats.paired_difference({0: 1.0, 1: 1.5, 2: 1.3}, ref)  # p ~ 0.02 alone
    noise = [stats.paired_difference({s: float(rng.normal()) for s in range(3)}, ref) for _ in range(8)]
    assert clear.verdict == marginal.verdict == 'better' and marginal.p_value > 0.005
    family = [clear, marginal] + noise
    raw = [d.p_value for d in family]
    stats.adjust_verdicts(family)
    assert clear.verdict == 'better' and clear.family_size == 10
    assert [d.p_adjusted for d in family] == pytest.approx(stats.holm(raw))
    assert marginal.p_value < 0.05 < marginal.p_adjusted
    assert marginal.verdict == 'inconclusive'


@pytest.mark.skipif(sps is None, reason='scipy not installed')
def test_partial_spearman_known_answers():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(200, 2))
    x = z[:, 0] + 0.3 * rng.normal(size=200)
    y = z[:, 0] + z[:, 1] + 0.3 * rng.normal(size=200)
    # x and y share only z0: their rho is large, their partial rho given z0 near 0
    assert stats.spearman(x, y) > 0.5
    assert abs(stats.partial_spearman(x, y, z)) < 0.15
    assert stats.partial_spearman(x, y, []) == pytest.approx(sps.spearmanr(x, y)[0])
    # the residual correlation of ranks, computed with scipy's ranks and numpy's least squares
    X = np.column_stack([np.ones(200), sps.rankdata(z[:, 0])])
    rx = sps.rankdata(x) - X @ np.linalg.lstsq(X, sps.rankdata(x), rcond=None)[0]
    ry = sps.rankdata(y) - X @ np.linalg.lstsq(X, sps.rankdata(y), rcond=None)[0]
    assert stats.partial_spearman(x, y, z[:, :1]) == pytest.approx(sps.pearsonr(rx, ry)[0])
    lo, hi = stats.partial_spearman_ci(x, y, z[:, :1], n_boot=500)
    assert lo < stats.partial_spearman(x, y, z[:, :1]) < hi


def test_median_and_adjusted_differences_known_answers():
    d, (lo, hi) = stats.median_difference([1.0, 2.0, 3.0, 4.0, 100.0], [0.0, 0.5, 1.0])
    assert d == pytest.approx(2.5) and lo <= d <= hi
    # y = 2*group + 3*depth exactly plus small noise: the adjusted difference is 2, the raw one is not
    rng = np.random.default_rng(1)
    depth = np.concatenate([rng.integers(10, 14, 60), rng.integers(14, 28, 60)]).astype(float)
    group = np.r_[np.ones(60), np.zeros(60)].astype(bool)
    y = 2.0 * group + 3.0 * depth + rng.normal(0, 0.1, 120)
    adj = stats.adjusted_difference(y, group, depth[:, None])
    assert adj.estimate == pytest.approx(2.0, abs=0.1) and adj.t_ci[0] < 2.0 < adj.t_ci[1] and adj.df == 117
    raw = stats.adjusted_difference(y, group)
    assert raw.estimate == pytest.approx(y[group].mean() - y[~group].mean()) and raw.estimate < -10
    if sps is not None:  # no covariates: the pooled two-sample t test
        y2 = 0.4 * group + rng.normal(0, 1.0, 120)
        plain = stats.adjusted_difference(y2, group)
        assert plain.p_value == pytest.approx(sps.ttest_ind(y2[group], y2[~group]).pvalue, rel=1e-6)
