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
    assert d.ci[0] > 0.09 and d.t_ci[0] > 0.09
    assert stats.paired_difference(ref, model).verdict == 'worse'
    # lower is better (e.g. a loss): the larger model is worse
    assert stats.paired_difference(model, ref, higher_is_better=False).verdict == 'worse'


def test_noise_is_no_difference():
    ref = {s: 0.5 for s in SEEDS}
    model = {s: 0.5 + 10 * NOISE[s] for s in SEEDS}
    d = stats.paired_difference(model, ref)
    assert d.verdict == 'no difference at this budget'
    assert d.ci[0] < 0 < d.ci[1] and d.t_ci[0] < 0 < d.t_ci[1]


def test_verdict_needs_both_intervals():
    # three positive differences: the bootstrap [min, max] excludes 0, the t interval (t=4.30) does not
    d = stats.paired_difference({0: 0.11, 1: 0.5, 2: 0.12}, {0: 0.1, 1: 0.1, 2: 0.1})
    assert d.ci[0] > 0 and d.t_ci[0] < 0
    assert d.verdict == 'no difference at this budget'


def test_paired_difference_notes_mismatched_and_few_seeds():
    d = stats.paired_difference({0: 0.6, 1: 0.7, 5: 0.1}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert d.n_pairs == 2 and d.seeds == [0, 1]
    assert 'seeds not in both: 2, 5' in d.note and 'only 2 paired seeds' in d.note
    one = stats.paired_difference({0: 0.9}, {0: 0.1})
    assert one.verdict == 'no difference at this budget' and 'no interval' in one.note
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
