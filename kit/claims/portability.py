"""Per-claim portability between two runs (TR147's own question: does the finding travel to
another GPU / stack?). Each side's verdict is on the cells it ran; a claim ports when both
sides reach the same decided verdict and, for ratio claims, their key ratios' CIs overlap.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kit.claims.engine import ClaimResult, ClaimsReport, clean
from kit.claims.rules import DIRECTION_ONLY, NOT_REPRODUCED, NOT_RUN, REPRODUCED

DECIDED = (REPRODUCED, DIRECTION_ONLY, NOT_REPRODUCED)


@dataclasses.dataclass
class ClaimPortability:
    id: str
    verdict_a: str
    verdict_b: str
    value_a: float
    value_b: float
    portable: str  # yes, no, inconclusive, not comparable
    why: str


def _overlap(a: ClaimResult, b: ClaimResult) -> bool | None:
    """Every common key's ratio CIs overlap (None when no key has an interval on both sides)."""
    keys_b = {k.key: k for k in b.keys}
    pairs = [(k, keys_b[k.key]) for k in a.keys if k.key in keys_b]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x.low) or math.isnan(y.low))]
    if not pairs:
        return None
    return all(x.low <= y.high and y.low <= x.high for x, y in pairs)


def portability(a: ClaimsReport, b: ClaimsReport) -> list[ClaimPortability]:
    results_b = {r.id: r for r in b.results}
    rows = []
    for ra in a.results:
        rb = results_b.get(ra.id)
        if rb is None:
            continue
        va, vb = ra.on_cells_run or ra.verdict, rb.on_cells_run or rb.verdict
        if NOT_RUN in (va, vb):
            portable, why = "not comparable", "not run on one side"
        elif va in DECIDED and vb in DECIDED:
            overlap = _overlap(ra, rb) if ra.statistic.startswith("A/B") else True
            if va != vb:
                portable, why = "no", f"{va} vs {vb}"
            elif overlap is None:
                portable, why = "not comparable", "no key with an interval on both sides"
            elif overlap is False:
                portable, why = "no", "same verdict, but the ratio CIs of a key do not overlap"
            else:
                portable, why = "yes", f"{va} on both"
        else:
            portable, why = "inconclusive", f"{va} vs {vb}"
        rows.append(ClaimPortability(ra.id, va, vb, ra.value, rb.value, portable, why))
    return rows


def to_dicts(rows: list[ClaimPortability]) -> list[dict[str, Any]]:
    return [clean(dataclasses.asdict(r)) for r in rows]


def render(rows: list[ClaimPortability]) -> str:
    if not rows:
        return "claims: none in common"
    width = max(len(r.id) for r in rows)

    def f(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.3f}"

    lines = [f"{'claim':{width}}  {'verdict A':16}  {'verdict B':16}  {'A':>7}  {'B':>7}  portable"]
    for r in rows:
        lines.append(
            f"{r.id:{width}}  {r.verdict_a:16}  {r.verdict_b:16}  {f(r.value_a):>7}  {f(r.value_b):>7}  {r.portable} ({r.why})"
        )
    return "\n".join(lines)
