"""Seeded percentile-bootstrap confidence intervals, vectorised with numpy.

The reports used 1000-resample percentile bootstraps with seed 42 (TR147); the kit defaults to
2000 resamples and seed 42. Resampling is done in chunks of rows so that memory stays bounded
(about `_MAX_DRAWS` floats at a time) however large a cell is; the chunk size depends only on
the sample size, so the same values, seed and resample count always give the same interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from kit.errors import KitError

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 42
DEFAULT_CONFIDENCE = 0.95
_MAX_DRAWS = 2_000_000  # resampled values held in memory at once (16 MB of float64)

FloatArray = npt.NDArray[np.float64]
# A statistic over axis 1 of a (resamples, n) matrix, returning one value per row.
RowStatistic = Callable[[FloatArray], FloatArray]

NAN = math.nan


@dataclasses.dataclass(frozen=True)
class Interval:
    """A two-sided interval; `low`/`high` are NaN when it is undefined, and `reason` says why."""

    low: float
    high: float
    reason: str = ""

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @classmethod
    def undefined(cls, reason: str) -> Interval:
        return cls(NAN, NAN, reason)


@dataclasses.dataclass(frozen=True)
class RatioCI:
    """Ratio of medians `median(a) / median(b)` with its percentile-bootstrap interval."""

    ratio: float
    low: float
    high: float
    resamples: int
    seed: int
    confidence: float
    reason: str = ""


def _row_mean(m: FloatArray) -> FloatArray:
    return np.asarray(m.mean(axis=1), dtype=np.float64)


def _row_median(m: FloatArray) -> FloatArray:
    return np.asarray(np.median(m, axis=1), dtype=np.float64)


STATISTICS: dict[str, RowStatistic] = {"mean": _row_mean, "median": _row_median}


def as_finite_array(values: Sequence[float] | npt.ArrayLike, what: str = "values") -> FloatArray:
    """Return `values` as a 1-D float64 array; raise KitError if any value is NaN or infinite."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise KitError(
            f"{what} contain NaN or infinite numbers",
            "drop missing measurements before computing statistics",
        )
    return arr


def _check_args(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise KitError(f"bootstrap resamples must be at least 1, not {resamples}")
    if not 0.0 < confidence < 1.0:
        raise KitError(f"confidence must lie strictly between 0 and 1, not {confidence}")


def _percentiles(stats: FloatArray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_distributions(
    values: FloatArray,
    statistics: Sequence[RowStatistic],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> list[FloatArray]:
    """Resample `values` with replacement `resamples` times and apply each statistic.

    All statistics see the same resamples. Returns one array of length `resamples` per
    statistic. `values` must be a non-empty finite 1-D array.
    """
    n = int(values.size)
    rng = np.random.default_rng(seed)
    outs = [np.empty(resamples, dtype=np.float64) for _ in statistics]
    chunk = max(1, _MAX_DRAWS // max(n, 1))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        drawn = values[rng.integers(0, n, size=(stop - start, n))]
        for out, statistic in zip(outs, statistics, strict=True):
            out[start:stop] = statistic(drawn)
    return outs


def bootstrap_cis(
    values: Sequence[float] | npt.ArrayLike,
    statistics: Sequence[str] = ("mean", "median"),
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict[str, Interval]:
    """Percentile-bootstrap intervals of named statistics (`mean`, `median`) of one sample.

    The statistics share the same resamples. With fewer than 2 values every interval is
    undefined (NaN, with a reason). Raises KitError on bad arguments, unknown statistic names
    or non-finite values.
    """
    _check_args(resamples, confidence)
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown:
        raise KitError(f"unknown bootstrap statistic {unknown[0]!r}", "use mean or median")
    arr = as_finite_array(values)
    if arr.size < 2:
        reason = "no samples" if arr.size == 0 else "n < 2: one sample has no spread"
        return {s: Interval.undefined(reason) for s in statistics}
    dists = bootstrap_distributions(arr, [STATISTICS[s] for s in statistics], resamples, seed)
    return {
        s: Interval(*_percentiles(d, confidence)) for s, d in zip(statistics, dists, strict=True)
    }


def bootstrap_ci(
    values: Sequence[float] | npt.ArrayLike,
    statistic: str = "mean",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Percentile-bootstrap interval of one statistic (`mean` or `median`); see bootstrap_cis."""
    return bootstrap_cis(values, (statistic,), resamples, seed, confidence)[statistic]


def ratio_of_medians_ci(
    a: Sequence[float] | npt.ArrayLike,
    b: Sequence[float] | npt.ArrayLike,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RatioCI:
    """TR147-style portability ratio `median(a) / median(b)` with a bootstrap interval.

    `a` and `b` are resampled independently (two unpaired samples) from one seeded stream.
    The ratio is NaN with a reason when either sample is empty or median(b) is 0; the interval
    is NaN with a reason when either sample has fewer than 2 values or a resampled median of
    `b` is 0. Raises KitError on bad arguments or non-finite values.
    """
    _check_args(resamples, confidence)
    arr_a = as_finite_array(a, "first sample values")
    arr_b = as_finite_array(b, "second sample values")

    def result(ratio: float, low: float, high: float, reason: str = "") -> RatioCI:
        return RatioCI(ratio, low, high, resamples, seed, confidence, reason)

    if arr_a.size == 0 or arr_b.size == 0:
        return result(NAN, NAN, NAN, "no samples in one of the two groups")
    med_b = float(np.median(arr_b))
    if med_b == 0.0:
        return result(NAN, NAN, NAN, "median of the reference sample is 0")
    ratio = float(np.median(arr_a)) / med_b
    if arr_a.size < 2 or arr_b.size < 2:
        return result(ratio, NAN, NAN, "n < 2 in one of the two groups: no interval")
    rng = np.random.default_rng(seed)
    ratios = np.empty(resamples, dtype=np.float64)
    chunk = max(1, _MAX_DRAWS // max(arr_a.size, arr_b.size))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        rows = stop - start
        med_a_star = np.median(arr_a[rng.integers(0, arr_a.size, size=(rows, arr_a.size))], axis=1)
        med_b_star = np.median(arr_b[rng.integers(0, arr_b.size, size=(rows, arr_b.size))], axis=1)
        if np.any(med_b_star == 0.0):
            return result(ratio, NAN, NAN, "a resampled median of the reference sample is 0")
        ratios[start:stop] = med_a_star / med_b_star
    low, high = _percentiles(ratios, confidence)
    return result(ratio, low, high)
