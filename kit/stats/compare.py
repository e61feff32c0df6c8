"""Two-sample comparisons and multiple-testing corrections used by the reports.

Welch's t test, Cohen's d with the pooled SD, Holm and Bonferroni corrections, TOST
equivalence (absolute margin in ms as TR126's epsilon = 1 ms, or relative margin in percent
of the reference mean as TR147's +-3 pp), and a Mann-Whitney U test for completeness.

Every function takes two plain samples `a` (candidate) and `b` (reference) of finite numbers.
Results undefined for the data (n < 2, zero variance, empty) are NaN with a `reason`; bad
arguments (non-finite values, a non-positive margin, alpha outside (0, 1)) raise KitError.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from kit.errors import KitError
from kit.stats.bootstrap import NAN, FloatArray, as_finite_array

Sample = Sequence[float] | npt.ArrayLike


@dataclasses.dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t test of mean(a) - mean(b) (two-sided)."""

    t: float
    df: float
    p_value: float
    mean_diff: float
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class EffectSize:
    """Cohen's d = (mean(a) - mean(b)) / pooled SD."""

    d: float
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class TostResult:
    """Two one-sided Welch tests for equivalence within +-margin_ms of mean(a) - mean(b).

    `equivalent` is True when both one-sided nulls are rejected at `alpha` (p_value < alpha),
    which is the same as the (1 - 2 alpha) interval of the difference lying inside the margin.
    """

    margin_ms: float
    margin_pct: float | None  # set when the margin was given relative to mean(b)
    mean_diff: float
    ci_low: float  # (1 - 2 alpha) Welch interval of the difference
    ci_high: float
    df: float
    p_lower: float  # H0: diff <= -margin
    p_upper: float  # H0: diff >= +margin
    p_value: float  # max(p_lower, p_upper)
    alpha: float
    equivalent: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class MannWhitneyResult:
    """Two-sided Mann-Whitney U test (scipy's default method); `u` is U of sample a."""

    u: float
    p_value: float
    reason: str = ""


def _two(a: Sample, b: Sample) -> tuple[FloatArray, FloatArray]:
    return as_finite_array(a, "first sample values"), as_finite_array(b, "second sample values")


def _welch_parts(x: FloatArray, y: FloatArray) -> tuple[float, float, float, str]:
    """Return (mean difference, standard error, Welch-Satterthwaite df, reason)."""
    if x.size < 2 or y.size < 2:
        reason = "no samples" if x.size == 0 or y.size == 0 else "n < 2 in one of the samples"
        diff = float(x.mean() - y.mean()) if x.size and y.size else NAN
        return diff, NAN, NAN, reason
    diff = float(x.mean() - y.mean())
    va = float(x.var(ddof=1)) / x.size
    vb = float(y.var(ddof=1)) / y.size
    if va + vb == 0.0:
        return diff, NAN, NAN, "both samples have zero variance"
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return diff, math.sqrt(va + vb), df, ""


def welch_t(a: Sample, b: Sample) -> WelchResult:
    """Welch's t test, two-sided; matches scipy.stats.ttest_ind(a, b, equal_var=False)."""
    x, y = _two(a, b)
    diff, se, df, reason = _welch_parts(x, y)
    if reason:
        return WelchResult(NAN, NAN, NAN, diff, reason)
    t = diff / se
    return WelchResult(t, df, float(2.0 * sps.t.sf(abs(t), df)), diff)


def cohens_d(a: Sample, b: Sample) -> EffectSize:
    """Cohen's d with the pooled SD sqrt(((na-1) va + (nb-1) vb) / (na + nb - 2))."""
    x, y = _two(a, b)
    if x.size == 0 or y.size == 0:
        return EffectSize(NAN, "no samples")
    if x.size + y.size < 3:
        return EffectSize(NAN, "too few samples for a pooled SD (na + nb < 3)")
    ss = (x.size - 1) * (float(x.var(ddof=1)) if x.size > 1 else 0.0)
    ss += (y.size - 1) * (float(y.var(ddof=1)) if y.size > 1 else 0.0)
    pooled = math.sqrt(ss / (x.size + y.size - 2))
    if pooled == 0.0:
        return EffectSize(NAN, "pooled SD is 0")
    return EffectSize(float(x.mean() - y.mean()) / pooled)


def _finite_positions(p_values: Sequence[float]) -> tuple[list[int], FloatArray]:
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    valid = [i for i, v in enumerate(p) if not math.isnan(v)]
    if any(p[i] < 0.0 or p[i] > 1.0 for i in valid):
        raise KitError("p-values must lie between 0 and 1")
    return valid, p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    NaN p-values (undefined tests) stay NaN and do not count in the family size.
    Reject hypothesis i at level alpha when its adjusted p-value is <= alpha.
    """
    valid, p = _finite_positions(p_values)
    out = [NAN] * len(p)
    m = len(valid)
    running = 0.0
    for rank, i in enumerate(sorted(valid, key=lambda k: p[k])):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        out[i] = running
    return out


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni adjusted p-values min(1, m p); NaN stays NaN and is not counted in m."""
    valid, p = _finite_positions(p_values)
    out = [NAN] * len(p)
    for i in valid:
        out[i] = min(1.0, len(valid) * float(p[i]))
    return out


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise KitError(f"alpha must lie strictly between 0 and 0.5, not {alpha}")


def _tost(
    x: FloatArray, y: FloatArray, margin: float, pct: float | None, alpha: float
) -> TostResult:
    diff, se, df, reason = _welch_parts(x, y)
    if reason:
        return TostResult(margin, pct, diff, NAN, NAN, NAN, NAN, NAN, NAN, alpha, False, reason)
    p_lower = float(sps.t.sf((diff + margin) / se, df))
    p_upper = float(sps.t.cdf((diff - margin) / se, df))
    half = float(sps.t.ppf(1.0 - alpha, df)) * se
    p_value = max(p_lower, p_upper)
    return TostResult(
        margin, pct, diff, diff - half, diff + half, df, p_lower, p_upper, p_value, alpha,
        p_value < alpha,
    )  # fmt: skip


def tost(a: Sample, b: Sample, margin_ms: float, alpha: float = 0.05) -> TostResult:
    """TOST equivalence of mean(a) and mean(b) within +-margin_ms (Welch standard error)."""
    if not margin_ms > 0.0 or not math.isfinite(margin_ms):
        raise KitError(f"the equivalence margin must be a positive number, not {margin_ms}")
    _check_alpha(alpha)
    x, y = _two(a, b)
    return _tost(x, y, float(margin_ms), None, alpha)


def tost_relative(a: Sample, b: Sample, margin_pct: float, alpha: float = 0.05) -> TostResult:
    """TOST within +-margin_pct percent of the reference mean, mean(b) (TR147: 3 pp).

    The margin in ms is margin_pct / 100 * |mean(b)|, treated as fixed (as TR147 did).
    """
    if not margin_pct > 0.0 or not math.isfinite(margin_pct):
        raise KitError(f"the equivalence margin must be a positive percent, not {margin_pct}")
    _check_alpha(alpha)
    x, y = _two(a, b)
    if y.size == 0 or float(y.mean()) == 0.0:
        why = "no samples" if y.size == 0 else "reference mean is 0: no relative margin"
        return TostResult(NAN, margin_pct, NAN, NAN, NAN, NAN, NAN, NAN, NAN, alpha, False, why)
    margin = margin_pct / 100.0 * abs(float(y.mean()))
    return _tost(x, y, margin, float(margin_pct), alpha)


def mann_whitney(a: Sample, b: Sample) -> MannWhitneyResult:
    """Two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu); NaN with a reason if empty.

    When every value is tied scipy's answer (p = 1) is kept: there is no evidence of a shift.
    """
    x, y = _two(a, b)
    if x.size == 0 or y.size == 0:
        return MannWhitneyResult(NAN, NAN, "no samples")
    res = sps.mannwhitneyu(x, y, alternative="two-sided")
    return MannWhitneyResult(float(res.statistic), float(res.pvalue))
