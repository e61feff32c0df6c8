"""The statistics behind each rule, on one claim's cells.

Ratios are median(A) / median(B) with a seeded percentile bootstrap (kit.stats, 2000
resamples, seed 42): 95% for a direction, 90% for an equivalence (TOST at alpha 0.05 by
interval inclusion: the 90% interval inside the margin rejects both one-sided nulls).
Shares are k of n with a Wilson 95% interval. A decision resting on an `unstable` cell
(kit.claims.evidence) must also hold for the ratio of each window's medians; otherwise the
outcome is undecided ("the CI decides it" only when every window agrees).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

from kit.claims.evidence import WINDOWS, CellEvidence
from kit.stats import ratio_of_medians_ci, wilson_interval

RESAMPLES = 2000
SEED = 42
INF = math.inf

REPRODUCED = "reproduced"
DIRECTION_ONLY = "direction only"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Where an interval lies against a band: inside, outside or overlap (undecided)."""

    state: str
    value: float
    low: float
    high: float
    n: int
    why: str = ""


@dataclasses.dataclass
class KeyResult:
    key: str
    verdict: str
    statistic: str  # "ratio" or "share"
    value: float
    low: float
    high: float
    n: int
    published: str
    why: str
    unstable_cells: int = 0


def pooled(cells: Sequence[CellEvidence]) -> list[float]:
    return [x for c in cells for x in c.ok_ms]


def window_ratios(a: Sequence[CellEvidence], b: Sequence[CellEvidence]) -> list[float]:
    """median(A window w) / median(B window w) for each window index (cells with windows)."""
    out = []
    wa = [c.windows() for c in a if c.windows()]
    wb = [c.windows() for c in b if c.windows()]
    if not wa or not wb:
        return []
    for w in range(WINDOWS):
        ma = statistics.median([x for ws in wa for x in ws[w]])
        mb = statistics.median([x for ws in wb for x in ws[w]])
        out.append(ma / mb if mb else math.nan)
    return out


def _inside(x: float, lo: float, hi: float) -> bool:
    return lo < x < hi


def ratio_outcome(
    a: Sequence[CellEvidence],
    b: Sequence[CellEvidence],
    band: tuple[float, float],
    confidence: float,
) -> Outcome:
    """The bootstrap interval of median(A)/median(B) against the open band (lo, hi)."""
    va, vb = pooled(a), pooled(b)
    n = len(va) + len(vb)
    if not va or not vb:
        return Outcome("overlap", math.nan, math.nan, math.nan, n, "no timed ok samples on a side")
    ci = ratio_of_medians_ci(va, vb, resamples=RESAMPLES, seed=SEED, confidence=confidence)
    if math.isnan(ci.low):
        return Outcome("overlap", ci.ratio, ci.low, ci.high, n, ci.reason or "no interval")
    lo, hi = band
    if ci.low > lo and ci.high < hi:
        state = "inside"
    elif ci.high <= lo or ci.low >= hi:
        state = "outside"
    else:
        state = "overlap"
    unstable = [c for c in (*a, *b) if c.unstable]
    if unstable and state != "overlap":
        ratios = window_ratios(a, b)
        agree = ratios and all(_inside(r, lo, hi) == (state == "inside") for r in ratios)
        if not agree:
            shown = ", ".join(f"{r:.3f}" for r in ratios) or "none"
            return Outcome(
                "overlap", ci.ratio, ci.low, ci.high, n,
                f"{len(unstable)} unstable cells and the window ratios ({shown}) do not all agree",
            )  # fmt: skip
    return Outcome(state, ci.ratio, ci.low, ci.high, n)


def direction_band(expect: str) -> tuple[float, float]:
    return (-INF, 1.0) if expect == "below" else (1.0, INF)


def direction(
    a: Sequence[CellEvidence], b: Sequence[CellEvidence], expect: str
) -> tuple[str, Outcome]:
    o = ratio_outcome(a, b, direction_band(expect), 0.95)
    if o.state == "inside":
        return REPRODUCED, o
    if o.state == "outside":
        return NOT_REPRODUCED, o
    return INCONCLUSIVE, o


def magnitude(
    a: Sequence[CellEvidence],
    b: Sequence[CellEvidence],
    expect: str,
    published: tuple[float, float],
    margin: float,
) -> tuple[str, Outcome, str]:
    """(verdict, the 95% direction outcome, why)."""
    verdict, d = direction(a, b, expect)
    if verdict != REPRODUCED:
        why = d.why or f"95% CI of A/B {'does not exclude' if verdict == INCONCLUSIVE else 'lies on the other side of'} 1"  # fmt: skip
        return verdict, d, why
    band = (published[0] - margin, published[1] + margin)
    m = ratio_outcome(a, b, band, 0.90)
    shown = f"90% CI [{m.low:.3f}, {m.high:.3f}] vs published +-{margin:g} = ({band[0]:.3f}, {band[1]:.3f})"
    if m.state == "inside":
        return REPRODUCED, d, f"direction and magnitude: {shown}"
    if m.state == "outside":
        side = "larger" if (m.high <= band[0]) == (expect == "below") else "smaller"
        return (
            DIRECTION_ONLY,
            d,
            f"direction reproduced, magnitude differs (effect {side}): {shown}",
        )
    return INCONCLUSIVE, d, f"direction reproduced, magnitude undecided: {m.why or shown}"


def equivalence(
    a: Sequence[CellEvidence], b: Sequence[CellEvidence], margin_pct: float
) -> tuple[str, Outcome, str]:
    band = (1.0 - margin_pct / 100.0, 1.0 + margin_pct / 100.0)
    o = ratio_outcome(a, b, band, 0.90)
    shown = f"90% CI vs +-{margin_pct:g}%"
    if o.state == "inside":
        return REPRODUCED, o, f"equal within the margin ({shown})"
    if o.state == "outside":
        return NOT_REPRODUCED, o, f"different beyond the margin ({shown})"
    return INCONCLUSIVE, o, o.why or f"the interval straddles the margin ({shown})"


def share(
    k: int, n: int, published: tuple[float, float], margin: float
) -> tuple[str, Outcome, str]:
    ci = wilson_interval(k, n)
    value = k / n if n else math.nan
    if not ci.defined:
        return INCONCLUSIVE, Outcome("overlap", value, ci.low, ci.high, n), "no calls"
    band = (max(0.0, published[0] - margin), min(1.0, published[1] + margin))
    shown = f"Wilson 95% [{ci.low:.3f}, {ci.high:.3f}] vs published +-{margin:g} = [{band[0]:.3f}, {band[1]:.3f}]"
    o = Outcome("", value, ci.low, ci.high, n)
    if band[0] <= ci.low and ci.high <= band[1]:
        return REPRODUCED, o, f"{k} of {n}: {shown}"
    if ci.high < band[0] or ci.low > band[1]:
        return NOT_REPRODUCED, o, f"{k} of {n}: {shown}"
    return INCONCLUSIVE, o, f"{k} of {n}: {shown}"


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim from its keys' verdicts (keys not run are left out)."""
    found = [v for v in verdicts if v != NOT_RUN]
    if not found:
        return NOT_RUN
    if len(set(found)) == 1:
        return found[0]
    if NOT_REPRODUCED in found:
        return NOT_REPRODUCED
    if set(found) <= {REPRODUCED, DIRECTION_ONLY}:
        return DIRECTION_ONLY
    return INCONCLUSIVE
