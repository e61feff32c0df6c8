"""Evaluate a claims file on the evidence of one run: one verdict per claim.

Verdicts: reproduced, direction only, not reproduced, inconclusive, not run, and
"partial k of K cells" when only k of the K matrix cells a claim needs ran (the verdict on
the cells run is then given in `why`). Everything is deterministic: the same bundle and kit
give byte-identical output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from kit.claims import rules
from kit.claims.evidence import CellEvidence, Evidence
from kit.claims.spec import Claim, ClaimsFile
from kit.matrix.cell import Cell
from kit.matrix.select import Selection

NOT_ATTEMPTED = ("missing", "skipped")
NEIGHBOUR_REASON = "cells measured beside a busy neighbour (per-gpu isolation)"


def _condition(
    a: Sequence[CellEvidence], b: Sequence[CellEvidence], verdict: str, why: str
) -> tuple[str, str]:
    """A comparison's verdict and why, given its cells' conditions (alone, or beside a busy
    neighbour): cells of both conditions are never pooled, so a mix is inconclusive. A
    degraded cell (what ran was not what its label says, e.g. a compiled frame that fell back
    to eager) is no evidence for its label: any makes the comparison inconclusive."""
    unequal = _unequal_prompts(a, b)
    if unequal:
        return rules.INCONCLUSIVE, (
            f"A and B were fed prompts of other lengths ({unequal}): not compared "
            f"(on all of them: {verdict}, {why})"
        )
    degraded = [e for e in (*a, *b) if e.status == "degraded"]
    if degraded:
        return rules.INCONCLUSIVE, (
            f"{len(degraded)} of {len(a) + len(b)} cells degraded "
            f"({first_line(degraded[0].reasons)}): not evidence for their label "
            f"(on all of them: {verdict}, {why})"
        )
    na, nb = sum(e.beside_neighbour for e in a), sum(e.beside_neighbour for e in b)
    if na + nb == 0:
        return verdict, why
    if na == len(a) and nb == len(b):
        return verdict, f"{why} (A and B all measured beside a busy neighbour)"
    mixed = (
        f"{NEIGHBOUR_REASON}: A {na} of {len(a)}, B {nb} of {len(b)} cells; cells measured "
        f"alone are not pooled with them (on all of them: {verdict}, {why})"
    )
    return rules.INCONCLUSIVE, mixed


def _unequal_prompts(a: Sequence[CellEvidence], b: Sequence[CellEvidence]) -> str:
    """The prompts that sides A and B both ran but fed with other token counts (e.g. cells
    merged from runs of which one had the model's tokenizer and one approximated it), as
    `scenario#prompt: A vs B tokens`, the first three; empty when none."""

    def lengths(side: Sequence[CellEvidence]) -> dict[tuple[Any, ...], set[str]]:
        out: dict[tuple[Any, ...], set[str]] = {}
        for e in side:
            if e.inputs is not None and e.inputs.token_method != "server":  # a server counts
                c = e.cell
                key = (c.scenario, c.prompt_index, c.batch_size, c.token_len)
                out.setdefault(key, set()).add(str(e.inputs.tokens_in))
        return out

    la, lb = lengths(a), lengths(b)
    differ = [
        f"{k[0]}#{k[1]}: {'/'.join(sorted(la[k]))} vs {'/'.join(sorted(lb[k]))} tokens"
        for k in la
        if k in lb and la[k] != lb[k]
    ]
    return "; ".join(differ[:3]) + (f"; {len(differ) - 3} more" if len(differ) > 3 else "")


@dataclasses.dataclass
class ClaimResult:
    id: str
    statement: str
    source: str
    rule: str
    verdict: str
    statistic: str
    value: float
    low: float
    high: float
    n: int
    published: str
    why: str
    cells_run: int
    cells_planned: int
    unstable_cells: int
    keys: list[rules.KeyResult]
    note: str = ""
    value_max: float = math.nan  # the largest key value (value is the smallest)
    on_cells_run: str = ""  # the verdict on the cells run (differs from `verdict` when partial)


@dataclasses.dataclass
class ClaimsReport:
    matrix: str
    claims_file: str
    results: list[ClaimResult]
    notes: list[str]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            kind = "partial" if r.verdict.startswith("partial") else r.verdict
            out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        return clean(dataclasses.asdict(self) | {"counts": self.counts()})


def clean(value: Any) -> Any:
    """JSON-safe and stable: floats rounded to 6 decimals, NaN/inf as null."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def first_line(reasons: Sequence[str], limit: int = 160) -> str:
    """The first line of the first reason, shortened (crash reasons carry stack traces)."""
    text = reasons[0].strip().splitlines()[0] if reasons and reasons[0].strip() else "no reason"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sides(claim: Claim) -> list[Selection]:
    if claim.rule == "ordering":
        return [s for r in claim.relations for s in (r.a, r.b)]
    return [s for s in (claim.a, claim.b) if s is not None]


def needed(claim: Claim, cells: Sequence[Cell]) -> list[Cell]:
    """The cells a claim rests on: its selection, and one of its sides when it has sides."""
    sides = _sides(claim)
    return [
        c
        for c in cells
        if claim.select.matches(c) and (not sides or any(s.matches(c) for s in sides))
    ]


def evaluate(claims: ClaimsFile, evidence: Evidence) -> ClaimsReport:
    notes = list(evidence.notes)
    if claims.matrix != evidence.matrix:
        notes.append(
            f"the claims are about matrix {claims.matrix}; this run is of {evidence.matrix or 'no cells'}"
        )
    results = [evaluate_claim(c, evidence) for c in claims.claims]
    return ClaimsReport(evidence.matrix, claims.path, results, notes)


def _result(claim: Claim, verdict: str, why: str, **kw: Any) -> ClaimResult:
    base: dict[str, Any] = dict(
        statistic="-", value=math.nan, low=math.nan, high=math.nan, n=0,
        cells_run=0, cells_planned=0, unstable_cells=0, keys=[],
    )  # fmt: skip
    base.update(kw)
    return ClaimResult(
        id=claim.id, statement=claim.statement, source=claim.source, rule=claim.rule,
        verdict=verdict, published=claim.published_text(), why=why, note=claim.note, **base,
    )  # fmt: skip


def evaluate_claim(claim: Claim, ev: Evidence) -> ClaimResult:
    if claim.rule == "external":
        return _result(claim, rules.NOT_RUN, claim.reason)
    if claim.rule == "gate":
        return _gate(claim, ev)
    run_cells = [e.cell for e in ev.cells.values()]
    planned = needed(claim, ev.planned if ev.planned is not None else run_cells)
    mine = [ev.cells[c.id] for c in needed(claim, run_cells)]
    attempted = [e for e in mine if e.status not in NOT_ATTEMPTED]
    K = len(planned)
    k = len(attempted)
    coverage = {"cells_run": k, "cells_planned": K}
    if K == 0:
        return _result(claim, rules.NOT_RUN, "the run's matrix has no cell this claim needs", **coverage)  # fmt: skip
    lacking = [s.expression for s in _sides(claim) if not any(s.matches(c) for c in planned)]
    if lacking:
        why = f"the run's matrix has no cell for side {lacking[0]!r}"
        return _result(claim, rules.NOT_RUN, why, **coverage)
    if k == 0:
        skipped = [e for e in mine if e.status == "skipped"]
        why = (
            f"its cells were skipped: {first_line(skipped[0].reasons)}"
            if skipped
            else f"none of its {K} cells ran in this run"
        )
        return _result(claim, rules.NOT_RUN, why, **coverage)
    result = _evaluate_rule(claim, attempted)
    result.cells_run, result.cells_planned = k, K
    result.on_cells_run = result.verdict
    if k < K:
        result.why = f"on the {k} cells run: {result.verdict}; {result.why}"
        result.verdict = f"partial {k} of {K} cells"
    return result


def _key(cell: Cell, fields: Sequence[str]) -> str:
    flat = cell.flat()
    return ", ".join(str(flat.get(f)) for f in fields)


def _by_key(claim: Claim, cells: Sequence[CellEvidence]) -> dict[str, list[CellEvidence]]:
    out: dict[str, list[CellEvidence]] = {}
    for e in cells:
        out.setdefault(_key(e.cell, claim.per), []).append(e)
    return out


def _key_pairs(claim: Claim, key_cells: Sequence[CellEvidence]) -> tuple[tuple[str, str], ...]:
    flat = key_cells[0].cell.flat()
    return tuple(sorted((f, str(flat.get(f))) for f in claim.per))


def _evaluate_rule(claim: Claim, cells: list[CellEvidence]) -> ClaimResult:
    if claim.rule == "share":
        return _share(claim, cells)
    if claim.rule == "ordering":
        return _ordering(claim, cells)
    keys: list[rules.KeyResult] = []
    assert claim.a is not None and claim.b is not None
    for key, group in _by_key(claim, cells).items():
        a = [e for e in group if claim.a.matches(e.cell) and e.ok_ms]
        b = [e for e in group if claim.b.matches(e.cell) and e.ok_ms]
        unstable = sum(e.unstable for e in (*a, *b))
        published = next((p for p in claim.published if p.applies(_key_pairs(claim, group))), None)
        pub_text = published.text if published else "-"
        if not a or not b:
            crashed = [e for e in group if e.status == "crash"]
            why = f"no timed ok samples on side {'A' if not a else 'B'}"
            if crashed:
                why += f"; {len(crashed)} cells crashed: {first_line(crashed[0].reasons)}"
            else:
                why = f"side {'A' if not a else 'B'} did not run"
            verdict = rules.INCONCLUSIVE if crashed else rules.NOT_RUN
            keys.append(rules.KeyResult(key, verdict, "ratio", math.nan, math.nan, math.nan, 0, pub_text, why, unstable))  # fmt: skip
            continue
        if claim.rule == "direction":
            verdict, o = rules.direction(a, b, claim.expect)
            why = o.why or f"95% CI of A/B {'entirely ' + claim.expect + ' 1' if verdict == rules.REPRODUCED else ('on the other side of 1' if verdict == rules.NOT_REPRODUCED else 'contains 1')}"  # fmt: skip
        elif claim.rule == "magnitude":
            if published is None:
                verdict, o = rules.direction(a, b, claim.expect)
                verdict = rules.INCONCLUSIVE if verdict == rules.REPRODUCED else verdict
                why = "no published value for this key: magnitude not comparable"
            else:
                verdict, o, why = rules.magnitude(a, b, claim.expect, (published.low, published.high), claim.margin)  # fmt: skip
        else:  # equivalence
            verdict, o, why = rules.equivalence(a, b, claim.margin_pct)
        verdict, why = _condition(a, b, verdict, why)
        keys.append(rules.KeyResult(key, verdict, "ratio", o.value, o.low, o.high, o.n, pub_text, why, unstable))  # fmt: skip
    return _summary(claim, keys, "A/B (medians)")


def _summary(claim: Claim, keys: list[rules.KeyResult], statistic: str) -> ClaimResult:
    verdict = rules.combine([k.verdict for k in keys])
    values = [k.value for k in keys if not math.isnan(k.value)]
    lows = [k.low for k in keys if not math.isnan(k.low)]
    highs = [k.high for k in keys if not math.isnan(k.high)]
    if len(keys) == 1:
        why = keys[0].why
    else:
        tally: dict[str, int] = {}
        for k in keys:
            tally[k.verdict] = tally.get(k.verdict, 0) + 1
        why = f"{len(keys)} keys: " + ", ".join(f"{n} {v}" for v, n in sorted(tally.items()))
    return _result(
        claim, verdict, why, statistic=statistic,
        value=min(values) if values else math.nan,
        low=min(lows) if lows else math.nan, high=max(highs) if highs else math.nan,
        n=sum(k.n for k in keys), unstable_cells=sum(k.unstable_cells for k in keys), keys=keys,
        value_max=max(values) if values else math.nan,
    )  # fmt: skip


def _share(claim: Claim, cells: list[CellEvidence]) -> ClaimResult:
    published = claim.published[0]
    if claim.level == "cell":
        k = sum(e.status in claim.statuses for e in cells)
        verdict, o, why = rules.share(k, len(cells), (published.low, published.high), claim.margin)
        key = rules.KeyResult("", verdict, "share", o.value, o.low, o.high, o.n, published.text, f"cells: {why}")  # fmt: skip
        return _summary(claim, [key], "cell share")
    # A crash with no timed call recorded is not a call's error: under on_error: continue too,
    # when a signal (SIGSEGV, SIGKILL) ended the process or the first (compiling) call failed,
    # since only an error a timed call raises becomes a sample.
    whole = [
        e for e in cells if e.status == "crash" and (e.on_error != "continue" or not e.n_timed)
    ]
    counted = [e for e in cells if e not in whole]
    if not counted:
        if all(e.on_error == "continue" for e in whole):
            why = (
                f"{len(whole)} cells crashed before any timed call was recorded (a signal ended "
                "the process, or the cell's first, compiling call failed), so no per-call share "
                "exists: on_error: continue counts the errors of timed calls"
            )
        else:
            why = (
                f"{len(whole)} cells crashed as a whole at one call (the process ended at its "
                "first error): the per-call share is not measured; it needs the group option "
                "on_error: continue"
            )
        first = first_line(whole[0].reasons)
        key = rules.KeyResult("", rules.INCONCLUSIVE, "share", math.nan, math.nan, math.nan, 0, published.text, f"{why} ({first})")  # fmt: skip
        return _summary(claim, [key], "call share")
    k = sum(e.by_status.get(s, 0) for e in counted for s in claim.statuses)
    n = sum(e.n_timed for e in counted)
    verdict, o, why = rules.share(k, n, (published.low, published.high), claim.margin)
    if whole:
        why += f"; {len(whole)} cells crashed as a whole and are not counted"
        verdict = rules.INCONCLUSIVE if verdict == rules.REPRODUCED else verdict
    key = rules.KeyResult("", verdict, "share", o.value, o.low, o.high, o.n, published.text, f"calls: {why}")  # fmt: skip
    return _summary(claim, [key], "call share")


def _ordering(claim: Claim, cells: list[CellEvidence]) -> ClaimResult:
    keys = []
    for rel in claim.relations:
        a = [e for e in cells if rel.a.matches(e.cell) and e.ok_ms]
        b = [e for e in cells if rel.b.matches(e.cell) and e.ok_ms]
        label = f"{rel.a.expression} {rel.expect} {rel.b.expression}"
        unstable = sum(e.unstable for e in (*a, *b))
        if not a or not b:
            keys.append(rules.KeyResult(label, rules.NOT_RUN, "ratio", math.nan, math.nan, math.nan, 0, "-", "a side has no timed ok samples", unstable))  # fmt: skip
            continue
        if rel.expect == "equal":
            verdict, o, why = rules.equivalence(a, b, rel.margin_pct)
        else:
            verdict, o = rules.direction(a, b, rel.expect)
            why = o.why or f"95% CI of A/B vs 1 ({rel.expect} expected)"
        verdict, why = _condition(a, b, verdict, why)
        keys.append(rules.KeyResult(label, verdict, "ratio", o.value, o.low, o.high, o.n, "-", why, unstable))  # fmt: skip
    result = _summary(claim, keys, "A/B per relation")
    if any(k.verdict == rules.NOT_RUN for k in keys):
        result.verdict = (
            rules.INCONCLUSIVE if result.verdict != rules.NOT_REPRODUCED else result.verdict
        )
        result.why = "a relation could not be tested; " + result.why
    return result


def _gate(claim: Claim, ev: Evidence) -> ClaimResult:
    record = ev.gates.get(ev.matrix)
    if record is None:
        return _result(
            claim, rules.NOT_RUN,
            f"no gate record in this run: `kit gate {ev.matrix or 'MATRIX'} --record RUN_DIR` before bundling",
        )  # fmt: skip
    checks = record.get("checks") or []
    failed = [c for c in checks if not c.get("passed")]
    n = len(checks)
    verdict = rules.REPRODUCED if checks and not failed else rules.NOT_REPRODUCED
    why = f"{n - len(failed)} of {n} checks passed on {record.get('device', '?')}"
    if failed:
        why += "; failed: " + ", ".join(f"{c.get('check')} = {c.get('value')!r}" for c in failed)
    return _result(
        claim, verdict, why, statistic="checks passed", value=float(n - len(failed)), n=n
    )
