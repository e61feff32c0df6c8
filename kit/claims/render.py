"""Claims as text (one line per claim, keys indented), a Markdown table and JSON."""

from __future__ import annotations

import json
import math

from kit.claims.engine import ClaimResult, ClaimsReport
from kit.claims.rules import KeyResult


def _num(x: float, digits: int = 3) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def statistic_text(r: ClaimResult | KeyResult) -> str:
    """e.g. `A/B (medians) 0.130..0.270 95% CI [0.120, 0.290] n=600`."""
    if math.isnan(r.value):
        return "-"
    value = _num(r.value)
    high = getattr(r, "value_max", math.nan)
    if not math.isnan(high) and high != r.value:
        value += f"..{_num(high)}"
    ci = "" if math.isnan(r.low) else f" CI [{_num(r.low)}, {_num(r.high)}]"
    return f"{r.statistic} {value}{ci} n={r.n}"


def render_text(report: ClaimsReport, keys: bool = True) -> str:
    lines = [f"claims of {report.matrix or '-'} ({report.claims_file})", ""]
    width = max((len(r.id) for r in report.results), default=10)
    for r in report.results:
        lines.append(
            f"{r.id:{width}}  {r.verdict:22}  {statistic_text(r)}  | published: {r.published}"
            f"  | {r.why}" + (f" [{r.unstable_cells} unstable cells]" if r.unstable_cells else "")
        )
        if keys and len(r.keys) > 1:
            for k in r.keys:
                lines.append(
                    f"{'':{width}}    {k.key}: {k.verdict}  {statistic_text(k)}"
                    f"  | published: {k.published}  | {k.why}"
                    + (f" [{k.unstable_cells} unstable]" if k.unstable_cells else "")
                )
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items())
    lines += ["", f"{len(report.results)} claims: {counts}"]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def render_markdown(report: ClaimsReport) -> str:
    """The claims table REPORT.md opens with."""
    head = "| claim | verdict | statistic (95% CI, n) | published | why | source |\n|---|---|---|---|---|---|"
    rows = []
    for r in report.results:
        cells = [r.id, f"**{r.verdict}**", statistic_text(r), r.published, r.why, r.source]
        rows.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items())
    text = "\n".join([head, *rows]) + "\n"
    text += f"\n{len(report.results)} claims: {counts}. Per-key detail: `claims.json`.\n"
    return text


def dumps(report: ClaimsReport) -> str:
    return json.dumps(report.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"
