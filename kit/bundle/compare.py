"""`kit compare A B`: TR147-style portability between two bundles (or run directories).

Per cell (same cell id) and phase present in both: B's median over A's median with a seeded
bootstrap CI, Welch's test with Holm's correction over the whole family, TOST equivalence at
+-margin % of A's mean, and the crash status on each side. Verdicts per cell:

- `equivalent`: TOST rejects both one-sided nulls (the difference lies inside the margin);
- `B slower` / `B faster`: Holm-adjusted p < alpha and the ratio's CI excludes 1;
- `inconclusive`: neither;
- `crash in A` / `crash in B` / `crash in both`: the cell's status (whatever it timed);
- `no data`: no timed ok samples on a side;
- `inputs differ`: the two sides fed the cell prompts of different lengths (e.g. one side had
  no tokenizer of the model and approximated the ids) or different weights: its timings are
  not compared (no test, outside Holm's family), whatever else they show. Prompts of the same
  length whose ids differ are compared (the same shapes, the same work) and counted in a
  line of their own.

Overall: `portable` when every common cell is equivalent and B crashes no cell A did not;
`not portable` when a cell with the same inputs is slower or faster beyond the tests or B
crashes more; else `inconclusive` (a cell whose inputs differ never counts as equivalent).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from kit.bundle.report_data import ReportData, load
from kit.errors import KitError
from kit.stats import holm, ratio_of_medians_ci, tost_relative, welch_t

ALPHA = 0.05
RESAMPLES = 1000


@dataclasses.dataclass
class CellComparison:
    cell: str
    phase: str
    model: str
    backend: str
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    ratio: float
    ci_low: float
    ci_high: float
    p_welch: float
    p_holm: float
    tost_p: float
    equivalent: bool
    status_a: str
    status_b: str
    verdict: str = ""
    # what differs in the cell's inputs between A and B (CellInputs.differences); empty when
    # they are the same or a side did not record them
    inputs_differ: list[str] = dataclasses.field(default_factory=list)
    same_work: bool = True  # CellInputs.same_work: False leaves the cell uncompared


@dataclasses.dataclass
class Comparison:
    a: str
    b: str
    margin_pct: float
    cells: list[CellComparison]
    only_in_a: list[str]
    only_in_b: list[str]
    crash_rate_a: float
    crash_rate_b: float
    verdict: str
    unverified: list[str] = dataclasses.field(default_factory=list)  # "A: UNVERIFIED: ..."

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        out = dataclasses.asdict(self)
        out["cells"] = [{k: clean(v) for k, v in c.items()} for c in out["cells"]]
        return out


def load_any(path: Path, unverified: bool = False) -> ReportData:
    """ReportData of a bundle archive (verified first) or a run directory (raises KitError).

    Its `verification` is None for a verified bundle, else the stamp (`UNVERIFIED: ...` or
    `not a bundle: unverified`) that the comparison carries."""
    from kit.bundle.reader import open_verified

    with open_verified(path, unverified=unverified) as opened:
        try:
            data = load(opened.source, opened.manifest)
        except (KeyError, ValueError) as err:
            raise KitError(
                f"{path} lacks a member compare needs ({err})", f"run `kit verify {path}`"
            ) from None
    data.verification = opened.stamp
    return data


def _crash_rate(data: ReportData) -> float:
    finished = [s for s in data.statuses.values() if s.get("status") != "missing"]
    return sum(s.get("status") == "crash" for s in finished) / len(finished) if finished else 0.0


def _status(data: ReportData, cid: str) -> str:
    return str(data.statuses.get(cid, {}).get("status", "missing"))


def compare(a: ReportData, b: ReportData, margin_pct: float = 3.0, names: tuple[str, str] = ("A", "B")) -> Comparison:  # fmt: skip
    if margin_pct <= 0:
        raise KitError(f"--margin-pct must be positive, not {margin_pct}", "e.g. --margin-pct 3")
    ids_a, ids_b = set(a.cells), set(b.cells)
    common = [cid for cid in a.cells if cid in ids_b]
    rows: list[CellComparison] = []
    for cid in common:
        phases = sorted({p for c, p in a.ok_ms if c == cid} | {p for c, p in b.ok_ms if c == cid})
        phases = phases or [str(a.cells[cid].get("mode"))]
        for phase in phases:
            rows.append(_compare_cell(a, b, cid, phase, margin_pct))
    tested = [r for r in rows if not math.isnan(r.p_welch) and r.same_work]
    for row, p in zip(tested, holm([r.p_welch for r in tested]), strict=True):
        row.p_holm = p
    for row in rows:
        row.verdict = _verdict(row)
    verdicts = {r.verdict for r in rows}
    crash_a, crash_b = _crash_rate(a), _crash_rate(b)
    new_crashes = any(r.verdict == "crash in B" for r in rows)
    if verdicts & {"B slower", "B faster"} or new_crashes:
        overall = "not portable"
    elif rows and verdicts <= {"equivalent", "crash in both"}:
        overall = "portable"
    else:
        overall = "inconclusive"
    return Comparison(
        a=names[0], b=names[1], margin_pct=margin_pct, cells=rows,
        only_in_a=sorted(ids_a - ids_b), only_in_b=sorted(ids_b - ids_a),
        crash_rate_a=crash_a, crash_rate_b=crash_b, verdict=overall,
        unverified=[f"{side}: {d.verification}" for side, d in (("A", a), ("B", b)) if d.verification],
    )  # fmt: skip


def _compare_cell(
    a: ReportData, b: ReportData, cid: str, phase: str, margin_pct: float
) -> CellComparison:
    va, vb = a.ok_ms.get((cid, phase), []), b.ok_ms.get((cid, phase), [])
    cell = a.cells[cid]
    nan = math.nan
    row = CellComparison(
        cell=cid, phase=phase, model=str(cell.get("model")), backend=str(cell.get("backend")),
        n_a=len(va), n_b=len(vb), median_a=nan, median_b=nan, ratio=nan, ci_low=nan,
        ci_high=nan, p_welch=nan, p_holm=nan, tost_p=nan, equivalent=False,
        status_a=_status(a, cid), status_b=_status(b, cid),
    )  # fmt: skip
    if cid in a.inputs and cid in b.inputs:
        row.inputs_differ = a.inputs[cid].differences(b.inputs[cid])
        row.same_work = a.inputs[cid].same_work(b.inputs[cid])
    if va and vb:
        ratio = ratio_of_medians_ci(vb, va, resamples=RESAMPLES)
        row.ratio, row.ci_low, row.ci_high = ratio.ratio, ratio.low, ratio.high
        row.median_a, row.median_b = float(np.median(va)), float(np.median(vb))
        row.p_welch = welch_t(vb, va).p_value
        tost = tost_relative(vb, va, margin_pct, ALPHA)
        row.tost_p, row.equivalent = tost.p_value, tost.equivalent
    return row


def _verdict(row: CellComparison) -> str:
    if not row.same_work:
        return "inputs differ"
    # A crash decides the verdict even when the cell timed some samples before it.
    crash_a, crash_b = row.status_a == "crash", row.status_b == "crash"
    if crash_a and crash_b:
        return "crash in both"
    if crash_b:
        return "crash in B"
    if crash_a:
        return "crash in A"
    if not row.n_a or not row.n_b:
        return "no data"
    if row.equivalent:
        return "equivalent"
    if not math.isnan(row.p_holm) and row.p_holm < ALPHA and not math.isnan(row.ci_low):
        if row.ci_low > 1.0:
            return "B slower"
        if row.ci_high < 1.0:
            return "B faster"
    return "inconclusive"


def render(result: Comparison) -> str:
    def f(v: float, d: int = 3) -> str:
        return "-" if math.isnan(v) else f"{v:.{d}f}"

    lines = [
        *[f"{'UNVERIFIED' if 'UNVERIFIED' in u else 'NOTE'} {u}" for u in result.unverified],
        f"A: {result.a}",
        f"B: {result.b}",
        f"margin: +-{result.margin_pct:g}% of A's mean (TOST, alpha {ALPHA}); Holm over "
        f"{sum(not math.isnan(c.p_welch) for c in result.cells)} tests",
        "",
        f"{'cell':16} {'phase':9} {'model':14} {'backend':22} {'med A':>9} {'med B':>9} "
        f"{'B/A':>6} {'95% CI':>15} {'p Holm':>8}  verdict",
    ]
    for c in result.cells:
        ci = "-" if math.isnan(c.ci_low) else f"[{c.ci_low:.3f},{c.ci_high:.3f}]"
        lines.append(
            f"{c.cell:16} {c.phase:9} {c.model[:14]:14} {c.backend[:22]:22} {f(c.median_a):>9} "
            f"{f(c.median_b):>9} {f(c.ratio):>6} {ci:>15} {f(c.p_holm, 4):>8}  {c.verdict}"
        )
    lines += [
        "",
        f"crash rate: A {result.crash_rate_a:.1%}, B {result.crash_rate_b:.1%}",
        f"cells only in A: {len(result.only_in_a)}"
        + (f" ({', '.join(result.only_in_a[:8])}{' ...' if len(result.only_in_a) > 8 else ''})" if result.only_in_a else ""),
        f"cells only in B: {len(result.only_in_b)}"
        + (f" ({', '.join(result.only_in_b[:8])}{' ...' if len(result.only_in_b) > 8 else ''})" if result.only_in_b else ""),
        *_inputs_lines(result),
        f"overall: {result.verdict}",
    ]  # fmt: skip
    return "\n".join(lines)


def _inputs_lines(result: Comparison) -> list[str]:
    """A line each on the common cells fed different inputs on A and B (not compared) and on
    those fed different ids of the same length (compared), each with an example."""
    common = len({c.cell for c in result.cells})
    lines = []
    for kind, rows, what in (
        ("inputs differ", [c for c in result.cells if not c.same_work],
         "prompts of different lengths or different weights on A and B: not compared"),
        ("same lengths, other ids", [c for c in result.cells if c.same_work and c.inputs_differ],
         "prompt ids of the same length but other values on A and B: compared (the same "
         "shapes, the same work)"),
    ):  # fmt: skip
        if rows:
            lines.append(
                f"{kind}: {len({c.cell for c in rows})} of {common} common cells were fed {what} "
                f"(e.g. {rows[0].cell}: {'; '.join(rows[0].inputs_differ)})"
            )
    return lines
