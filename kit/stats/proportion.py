"""Intervals for shares (k events in n trials): the Wilson score interval.

Used for per-call error shares (TR147 v4A: 240 errors in 300 calls) and cell crash shares.
The Wilson interval keeps its coverage near 0 and 1, where the normal (Wald) interval
collapses to a point (0 of 300 errors would give [0, 0]).
"""

from __future__ import annotations

import math

from scipy import stats as sps

from kit.errors import KitError
from kit.stats.bootstrap import DEFAULT_CONFIDENCE, Interval


def wilson_interval(k: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Wilson score interval of the share k / n; undefined (with a reason) when n == 0.

    Raises KitError when k or n are negative, k > n, or confidence is outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise KitError(f"confidence must lie strictly between 0 and 1, not {confidence}")
    if n < 0 or k < 0 or k > n:
        raise KitError(f"a share needs 0 <= k <= n, not k={k}, n={n}")
    if n == 0:
        return Interval.undefined("no trials")
    z = float(sps.norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends: no rounding residue
    high = 1.0 if k == n else min(1.0, centre + half)
    return Interval(low, high)
