"""kit.stats.describe and kit.stats.bootstrap against numpy/scipy on known data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from kit.errors import KitError
from kit.stats import bootstrap_ci, bootstrap_cis, describe, iqr_outliers, normal_ci

RNG = np.random.default_rng(7)
DATA = RNG.lognormal(1.0, 0.2, 200)


def test_describe_matches_numpy_and_scipy() -> None:
    d = describe(DATA)
    assert d.n == 200
    assert d.mean == pytest.approx(DATA.mean())
    assert d.median == pytest.approx(np.median(DATA))
    assert d.std == pytest.approx(DATA.std(ddof=1))
    assert d.min == DATA.min() and d.max == DATA.max()
    for name, q in (("p5", 5), ("p95", 95), ("p99", 99)):
        assert getattr(d, name) == pytest.approx(np.percentile(DATA, q))
    assert d.cv == pytest.approx(DATA.std(ddof=1) / DATA.mean())
    assert d.trimmed_mean == pytest.approx(sps.trim_mean(DATA, 0.1))
    half = 1.96 * DATA.std(ddof=1) / math.sqrt(200)
    assert d.ci_mean_normal.low == pytest.approx(DATA.mean() - half)
    assert d.ci_mean_normal.high == pytest.approx(DATA.mean() + half)
    assert d.ci_mean_bootstrap.low < d.mean < d.ci_mean_bootstrap.high
    assert d.ci_median_bootstrap.low <= d.median <= d.ci_median_bootstrap.high
    assert d.reason == ""


def test_iqr_outliers_are_counted_and_kept() -> None:
    values = np.array([10.0, 10.1, 10.2, 9.9, 9.8, 10.0, 10.1, 50.0, -20.0])
    count, q1, q3 = iqr_outliers(values)
    assert count == 2
    assert (q1, q3) == (
        pytest.approx(np.percentile(values, 25)),
        pytest.approx(np.percentile(values, 75)),
    )
    d = describe(values)
    assert d.outliers == 2
    assert d.max == 50.0 and d.mean == pytest.approx(values.mean())  # kept in the statistics


@pytest.mark.parametrize("statistic", ["mean", "median"])
def test_bootstrap_agrees_with_scipy_percentile_bootstrap(statistic: str) -> None:
    ours = bootstrap_ci(DATA, statistic, resamples=4000, seed=1)
    func = np.mean if statistic == "mean" else np.median
    theirs = sps.bootstrap(
        (DATA,), func, n_resamples=4000, method="percentile", random_state=2
    ).confidence_interval
    width = theirs.high - theirs.low
    # Different random streams: the bounds agree to a small share of the interval's width.
    assert ours.low == pytest.approx(theirs.low, abs=0.1 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.1 * width)


def test_bootstrap_is_seeded_and_deterministic() -> None:
    a = bootstrap_cis(DATA, seed=42)
    b = bootstrap_cis(DATA, seed=42)
    c = bootstrap_cis(DATA, seed=43)
    assert a == b
    assert a["mean"] != c["mean"]
    assert describe(DATA) == describe(DATA)


def test_bootstrap_large_sample_is_chunked_but_correct() -> None:
    big = np.random.default_rng(3).normal(100.0, 5.0, 5000)
    ci = bootstrap_ci(big, "mean", resamples=2000)
    se = big.std(ddof=1) / math.sqrt(big.size)
    assert ci.low == pytest.approx(big.mean() - 1.96 * se, abs=0.15 * se * 1.96)
    assert ci.high == pytest.approx(big.mean() + 1.96 * se, abs=0.15 * se * 1.96)


def test_confidence_level_widens_interval() -> None:
    narrow = bootstrap_ci(DATA, confidence=0.5)
    wide = bootstrap_ci(DATA, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_empty_sample_gives_nan_and_reason() -> None:
    d = describe([])
    assert d.n == 0 and math.isnan(d.mean) and math.isnan(d.median)
    assert not d.ci_mean_bootstrap.defined and d.reason == "no samples"
    assert d.to_dict()["mean"] is None


def test_single_value_gives_nan_spread_and_reason() -> None:
    d = describe([3.5])
    assert d.n == 1 and d.mean == 3.5 and d.median == 3.5
    assert math.isnan(d.std) and math.isnan(d.cv)
    assert not d.ci_mean_bootstrap.defined and not d.ci_mean_normal.defined
    assert "n < 2" in d.reason
    assert "n < 2" in d.ci_median_bootstrap.reason


def test_zero_variance_is_well_defined() -> None:
    d = describe([2.0] * 10)
    assert d.std == 0.0 and d.cv == 0.0 and d.outliers == 0
    assert (d.ci_mean_bootstrap.low, d.ci_mean_bootstrap.high) == (2.0, 2.0)
    assert (d.ci_mean_normal.low, d.ci_mean_normal.high) == (2.0, 2.0)


def test_zero_mean_has_undefined_cv() -> None:
    d = describe([-1.0, 1.0])
    assert math.isnan(d.cv) and "CV undefined" in d.reason


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [1.0, float("inf")]])
def test_non_finite_values_raise_kit_error(bad: list[float]) -> None:
    with pytest.raises(KitError, match="NaN or infinite"):
        describe(bad)


def test_bad_bootstrap_arguments_raise_kit_error() -> None:
    with pytest.raises(KitError, match="resamples"):
        bootstrap_ci(DATA, resamples=0)
    with pytest.raises(KitError, match="confidence"):
        bootstrap_ci(DATA, confidence=1.5)
    with pytest.raises(KitError, match="unknown bootstrap statistic"):
        bootstrap_ci(DATA, "mode")


def test_normal_ci_edge_cases() -> None:
    assert not normal_ci(np.array([])).defined
    assert not normal_ci(np.array([1.0])).defined
