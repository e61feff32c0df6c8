"""kit.stats.compare and ratio_of_medians_ci against scipy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from kit.errors import KitError
from kit.stats import (
    bonferroni,
    cohens_d,
    holm,
    mann_whitney,
    ratio_of_medians_ci,
    tost,
    tost_relative,
    welch_t,
)

RNG = np.random.default_rng(11)
A = RNG.normal(10.0, 1.0, 30)
B = RNG.normal(10.6, 2.0, 45)


def test_welch_matches_scipy() -> None:
    ours = welch_t(A, B)
    theirs = sps.ttest_ind(A, B, equal_var=False)
    assert ours.t == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue)
    assert ours.df == pytest.approx(theirs.df)
    assert ours.mean_diff == pytest.approx(A.mean() - B.mean())
    assert ours.reason == ""


def test_cohens_d_pooled_sd_by_hand() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0, 7.0]
    pooled = math.sqrt((3 * np.var(a, ddof=1) + 4 * np.var(b, ddof=1)) / 7)
    assert cohens_d(a, b).d == pytest.approx((2.5 - 5.0) / pooled)
    assert cohens_d(A, B).d == pytest.approx(
        (A.mean() - B.mean()) / math.sqrt(((29) * A.var(ddof=1) + 44 * B.var(ddof=1)) / 73)
    )


def test_holm_and_bonferroni_known_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> monotone max .06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == [] and bonferroni([]) == []


def test_corrections_skip_nan_and_keep_order() -> None:
    adjusted = holm([0.01, math.nan, 0.02])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)
    assert math.isnan(adjusted[1])
    bonf = bonferroni([math.nan, 0.2])
    assert math.isnan(bonf[0]) and bonf[1] == pytest.approx(0.2)


def test_corrections_reject_invalid_p_values() -> None:
    with pytest.raises(KitError):
        holm([0.5, 1.5])
    with pytest.raises(KitError):
        bonferroni([-0.1])


def test_tost_matches_two_shifted_scipy_one_sided_welch_tests() -> None:
    margin = 1.0
    ours = tost(A, B, margin)
    p_lower = sps.ttest_ind(A, B - margin, equal_var=False, alternative="greater").pvalue
    p_upper = sps.ttest_ind(A, B + margin, equal_var=False, alternative="less").pvalue
    assert ours.p_lower == pytest.approx(p_lower)
    assert ours.p_upper == pytest.approx(p_upper)
    assert ours.p_value == pytest.approx(max(p_lower, p_upper))
    assert ours.equivalent == (max(p_lower, p_upper) < 0.05)
    # The 90% interval lies inside the margin exactly when TOST concludes equivalence.
    assert ours.equivalent == (-margin < ours.ci_low and ours.ci_high < margin)


def test_tost_equivalent_and_not() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(5.0, 0.1, 60)
    y = rng.normal(5.0, 0.1, 60)
    assert tost(x, y, 0.1).equivalent
    assert not tost(x, y + 1.0, 0.1).equivalent


def test_tost_relative_uses_percent_of_reference_mean() -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(100.0, 1.0, 60)
    same = rng.normal(100.5, 1.0, 60)
    slower = rng.normal(110.0, 1.0, 60)
    res = tost_relative(same, ref, 3.0)
    assert res.margin_ms == pytest.approx(0.03 * ref.mean())
    assert res.margin_pct == 3.0 and res.equivalent
    assert not tost_relative(slower, ref, 3.0).equivalent
    direct = tost(same, ref, 0.03 * ref.mean())
    assert res.p_value == pytest.approx(direct.p_value)


def test_tost_rejects_bad_margin_and_alpha() -> None:
    with pytest.raises(KitError, match="margin"):
        tost(A, B, 0.0)
    with pytest.raises(KitError, match="margin"):
        tost_relative(A, B, -3.0)
    with pytest.raises(KitError, match="alpha"):
        tost(A, B, 1.0, alpha=0.7)


def test_mann_whitney_matches_scipy() -> None:
    ours = mann_whitney(A, B)
    theirs = sps.mannwhitneyu(A, B, alternative="two-sided")
    assert ours.u == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue)


def test_ratio_of_medians_ci() -> None:
    a = RNG.normal(2.0, 0.1, 60)
    b = RNG.normal(4.0, 0.2, 60)
    res = ratio_of_medians_ci(a, b, resamples=3000, seed=42)
    assert res.ratio == pytest.approx(np.median(a) / np.median(b))
    assert res.low < res.ratio < res.high
    assert res == ratio_of_medians_ci(a, b, resamples=3000, seed=42)  # seeded

    def ratio(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.median(x) / np.median(y))

    theirs = sps.bootstrap(
        (a, b), ratio, n_resamples=3000, method="percentile", vectorized=False, random_state=0
    ).confidence_interval
    width = theirs.high - theirs.low
    assert res.low == pytest.approx(theirs.low, abs=0.15 * width)
    assert res.high == pytest.approx(theirs.high, abs=0.15 * width)


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ([], [1.0, 2.0], "no samples"),
        ([1.0], [1.0, 2.0], "n < 2"),
        ([1.0, 1.0], [2.0, 2.0], "zero variance"),
    ],
)
def test_welch_and_tost_edge_cases_give_nan_and_reason(
    a: list[float], b: list[float], why: str
) -> None:
    w = welch_t(a, b)
    assert math.isnan(w.t) and math.isnan(w.p_value) and why in w.reason
    t = tost(a, b, 1.0)
    assert math.isnan(t.p_value) and not t.equivalent and why in t.reason


def test_other_edge_cases() -> None:
    assert "no samples" in cohens_d([], [1.0]).reason
    assert "pooled SD is 0" in cohens_d([1.0, 1.0], [1.0, 1.0]).reason
    assert math.isnan(cohens_d([1.0], [2.0]).d)
    assert "no samples" in mann_whitney([], [1.0]).reason
    assert "reference mean is 0" in tost_relative([1.0, 2.0], [-1.0, 1.0], 3.0).reason
    empty = ratio_of_medians_ci([], [1.0])
    assert math.isnan(empty.ratio) and "no samples" in empty.reason
    zero = ratio_of_medians_ci([1.0, 2.0], [0.0, 0.0])
    assert math.isnan(zero.ratio) and "median of the reference" in zero.reason
    single = ratio_of_medians_ci([2.0], [1.0, 1.0])
    assert single.ratio == 2.0 and math.isnan(single.low) and "n < 2" in single.reason
    with pytest.raises(KitError, match="NaN or infinite"):
        welch_t([1.0, math.nan], [1.0, 2.0])
