"""Descriptive statistics of one sample (one cell and phase), as the reports computed them.

Conventions, stated once:
- `std` is the sample standard deviation (ddof=1); CV = std / mean.
- Percentiles use numpy's default linear interpolation.
- Outliers follow the 1.5 IQR rule (below Q1 - 1.5 IQR or above Q3 + 1.5 IQR); they are
  counted and flagged, and KEPT in every other statistic.
- `trimmed_mean` cuts `trim` (10%) of the values from each end (scipy.stats.trim_mean).
- `ci_mean_normal` is TR126's normal approximation mean +- 1.96 SD / sqrt(n).
- `ci_mean_bootstrap` and `ci_median_bootstrap` are seeded percentile bootstraps sharing
  the same resamples (see kit.stats.bootstrap).
A statistic that is undefined for the sample (empty, n < 2, mean 0) is NaN, and `reason`
says why; nothing here raises for small samples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from kit.stats.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    NAN,
    Interval,
    as_finite_array,
    bootstrap_cis,
)

NORMAL_Z = 1.96  # TR126's constant, used as published rather than norm.ppf(0.975)
DEFAULT_TRIM = 0.1


@dataclasses.dataclass(frozen=True)
class Description:
    """Summary of one sample. Fields are NaN where undefined; `reason` explains."""

    n: int
    mean: float
    median: float
    std: float
    min: float
    max: float
    p5: float
    p95: float
    p99: float
    cv: float
    trimmed_mean: float
    q1: float
    q3: float
    outliers: int
    ci_mean_normal: Interval
    ci_mean_bootstrap: Interval
    ci_median_bootstrap: Interval
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict; NaN becomes None; intervals become `<name>_low/_high`."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Interval):
                out[f"{field.name}_low"] = _json_float(value.low)
                out[f"{field.name}_high"] = _json_float(value.high)
            elif isinstance(value, float):
                out[field.name] = _json_float(value)
            else:
                out[field.name] = value
        return out


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _empty(reason: str) -> Description:
    undefined = Interval.undefined(reason)
    return Description(
        n=0,
        mean=NAN,
        median=NAN,
        std=NAN,
        min=NAN,
        max=NAN,
        p5=NAN,
        p95=NAN,
        p99=NAN,
        cv=NAN,
        trimmed_mean=NAN,
        q1=NAN,
        q3=NAN,
        outliers=0,
        ci_mean_normal=undefined,
        ci_mean_bootstrap=undefined,
        ci_median_bootstrap=undefined,
        reason=reason,
    )


def iqr_outliers(values: npt.NDArray[np.float64]) -> tuple[int, float, float]:
    """Count values outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR]; return (count, Q1, Q3)."""
    if values.size == 0:
        return 0, NAN, NAN
    q1, q3 = (float(q) for q in np.percentile(values, [25.0, 75.0]))
    spread = q3 - q1
    low, high = q1 - 1.5 * spread, q3 + 1.5 * spread
    return int(np.count_nonzero((values < low) | (values > high))), q1, q3


def normal_ci(values: npt.NDArray[np.float64]) -> Interval:
    """TR126's 95% interval of the mean: mean +- 1.96 SD / sqrt(n) (SD with ddof=1)."""
    if values.size < 2:
        return Interval.undefined("no samples" if values.size == 0 else "n < 2: no SD")
    mean = float(values.mean())
    half = NORMAL_Z * float(values.std(ddof=1)) / math.sqrt(values.size)
    return Interval(mean - half, mean + half)


def describe(
    values: Sequence[float] | npt.ArrayLike,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    trim: float = DEFAULT_TRIM,
) -> Description:
    """Describe one sample (see the module docstring for every convention).

    Raises KitError when a value is NaN or infinite or the bootstrap arguments are invalid;
    an empty or one-value sample gives NaN fields with a reason instead.
    """
    arr = as_finite_array(values)
    if arr.size == 0:
        return _empty("no samples")
    reasons: list[str] = []
    mean = float(arr.mean())
    if arr.size >= 2:
        std = float(arr.std(ddof=1))
    else:
        std = NAN
        reasons.append("n < 2: SD, CV and intervals undefined")
    if mean != 0.0:
        cv = std / mean
    else:
        cv = NAN
        reasons.append("mean is 0: CV undefined")
    p5, median, p95, p99 = (float(p) for p in np.percentile(arr, [5.0, 50.0, 95.0, 99.0]))
    outliers, q1, q3 = iqr_outliers(arr)
    cis = bootstrap_cis(arr, ("mean", "median"), resamples, seed, confidence)
    return Description(
        n=int(arr.size),
        mean=mean,
        median=median,
        std=std,
        min=float(arr.min()),
        max=float(arr.max()),
        p5=p5,
        p95=p95,
        p99=p99,
        cv=cv,
        trimmed_mean=float(sps.trim_mean(arr, trim)),
        q1=q1,
        q3=q3,
        outliers=outliers,
        ci_mean_normal=normal_ci(arr),
        ci_mean_bootstrap=cis["mean"],
        ci_median_bootstrap=cis["median"],
        reason="; ".join(reasons),
    )
