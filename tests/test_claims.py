"""Claims: the built-in files validate; a planted case of each verdict kind; unstable cells."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kit.claims.engine import evaluate
from kit.claims.evidence import CellEvidence, Evidence
from kit.claims.render import dumps, render_markdown, render_text
from kit.claims.spec import CLAIMS_DIR, load_claims
from kit.errors import KitError
from kit.harness.group import device_fatal
from kit.matrix.cell import Cell
from kit.matrix.spec import load_matrix
from kit.stats import wilson_interval


def test_builtin_claims_validate_and_cover_the_reports() -> None:
    files = {p.stem: load_claims(p) for p in sorted(CLAIMS_DIR.glob("*.yaml"))}
    assert set(files) == {"tr117", "tr126", "tr147"}
    claims = [c for f in files.values() for c in f.claims]
    assert len(claims) >= 12
    assert all(c.source and c.statement for c in claims)
    rules = {c.rule for c in claims}
    assert rules == {"direction", "magnitude", "equivalence", "share", "ordering", "gate", "external"}  # fmt: skip
    # every claim's selection is about cells its matrix really has (or says why not)
    for name, spec in files.items():
        cells = load_matrix(name).cells
        for claim in spec.claims:
            if claim.rule in ("direction", "magnitude", "equivalence", "share"):
                assert any(claim.select.matches(c) for c in cells), claim.id


def test_a_bad_claims_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent("""
        schema: 1
        matrix: tr147
        claims:
          - {id: x, statement: s, source: src, rule: direction, select: "group=a", a: "backend=b", expect: sideways, colour: red}
          - {id: x, statement: s, source: src, rule: telepathy}
        """)
    )
    with pytest.raises(KitError) as info:
        load_claims(path)
    text = info.value.title
    assert "claims[0].colour" in text and "claims[0].b" in text and "claims[0].expect" in text
    assert "claims[1].rule" in text


def _cell(model: str, backend: str, scenario: str = "single_micro", group: str = "g") -> Cell:
    return Cell(
        matrix="m", group=group, backend=backend, backend_label=backend, device="cpu",
        model=model, dtype="fp32", quantization=None, scenario=scenario, prompt_index=0,
        batch_size=1, concurrency=1, mode="prefill", repetitions=30, warmup=1,
        max_new_tokens=4, token_len=None, compile=None, cache="dynamic", pad_to_multiple=None,
        cudagraphs=True, sampling={"do_sample": False}, seed=42,
    )  # fmt: skip


def _ev(cell: Cell, ms: list[float], status: str = "ok", errors: int = 0) -> CellEvidence:
    counts = Counter({"ok": len(ms)})
    if errors:
        counts["error"] = errors
    return CellEvidence(cell, status, [f"{status} reason"] if status != "ok" else [], ms, counts)


def _noisy(centre: float, n: int = 30, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in centre * (1 + 0.02 * rng.standard_normal(n))]


CLAIMS = """
schema: 1
matrix: m
claims:
  - {id: dir, statement: s, source: src, rule: direction, select: "group=g", a: "backend=fast", b: "backend=slow", per: [model], expect: below}
  - {id: mag, statement: s, source: src, rule: magnitude, select: "group=g", a: "backend=fast", b: "backend=slow", per: [model], expect: below, margin: 0.03,
     published: [{key: {model: m1}, a: 1.0, b: 2.0}, {key: {model: m2}, value: 0.8}, {key: {model: m3}, value: 0.5}]}
  - {id: eq, statement: s, source: src, rule: equivalence, select: "group=g,model=m1", a: "backend=fast", b: "backend=fast2", margin_pct: 3}
  - {id: share, statement: s, source: src, rule: share, select: "group=h,backend=fast", level: call, published: 0.8, margin: 0.1}
  - {id: crash, statement: s, source: src, rule: share, select: "group=k,backend=fast", level: call, published: 0.8, margin: 0.1}
  - {id: skip, statement: s, source: src, rule: direction, select: "group=s", a: "backend=fast", b: "backend=slow", expect: below}
  - {id: order, statement: s, source: src, rule: ordering, select: "group=g,backend=fast",
     relations: [{a: "model=m1", b: "model=m3", expect: below}, {a: "model=m2", b: "model=m3", expect: equal, margin_pct: 10}]}
  - {id: gate, statement: s, source: src, rule: gate}
  - {id: ext, statement: s, source: src, rule: external, reason: "needs three Triton versions"}
"""


def _planted(tmp_path: Path, extra_planned: bool = False) -> tuple[Evidence, Path]:
    path = tmp_path / "claims.yaml"
    path.write_text(textwrap.dedent(CLAIMS))
    cells = [
        _ev(_cell("m1", "fast"), _noisy(1.0, seed=1)),  # m1: ratio 0.5, as published
        _ev(_cell("m1", "slow"), _noisy(2.0, seed=2)),
        _ev(_cell("m1", "fast2"), _noisy(1.0, seed=7)),
        _ev(_cell("m2", "fast"), _noisy(1.0, seed=3)),  # m2: ratio 0.5, published 0.8
        _ev(_cell("m2", "slow"), _noisy(2.0, seed=4)),
        _ev(_cell("m3", "fast"), _noisy(3.0, seed=5)),  # m3: A slower than B
        _ev(_cell("m3", "slow"), _noisy(2.0, seed=6)),
        _ev(_cell("m1", "fast", group="h"), _noisy(1.0, 60), "degraded", errors=240),
        _ev(_cell("m1", "fast", group="k"), [1.0, 1.1], "crash"),
        _ev(_cell("m1", "fast", group="s"), [], "skipped"),
        _ev(_cell("m1", "slow", group="s"), [], "skipped"),
    ]
    planned = [e.cell for e in cells]
    if extra_planned:
        planned.append(_cell("m4", "fast"))
    evidence = Evidence("m", {e.cell.id: e for e in cells}, planned, {}, [])
    return evidence, path


def test_each_verdict_kind_from_planted_evidence(tmp_path: Path) -> None:
    evidence, path = _planted(tmp_path)
    report = evaluate(load_claims(path), evidence)
    got = {r.id: r for r in report.results}
    keys = {k.key: k.verdict for k in got["dir"].keys}
    assert keys == {"m1": "reproduced", "m2": "reproduced", "m3": "not reproduced"}
    assert got["dir"].verdict == "not reproduced"
    mag = {k.key: k.verdict for k in got["mag"].keys}
    assert mag == {"m1": "reproduced", "m2": "direction only", "m3": "not reproduced"}
    assert "magnitude differs (effect larger)" in got["mag"].keys[1].why
    assert got["eq"].verdict == "reproduced"
    assert got["share"].verdict == "reproduced" and got["share"].n == 300
    assert abs(got["share"].value - 0.8) < 1e-9
    assert got["crash"].verdict == "inconclusive" and "on_error: continue" in got["crash"].why
    assert got["skip"].verdict == "not run" and "skipped" in got["skip"].why
    rel = [k.verdict for k in got["order"].keys]
    assert rel == ["reproduced", "not reproduced"] and got["order"].verdict == "not reproduced"
    assert got["gate"].verdict == "not run" and "--record" in got["gate"].why
    assert got["ext"].verdict == "not run" and got["ext"].why == "needs three Triton versions"
    # an inconclusive direction: the same distribution on both sides
    pair = [
        _ev(_cell("m1", "fast"), _noisy(1.0, seed=1)),
        _ev(_cell("m1", "slow"), _noisy(1.0, seed=2)),
    ]
    same = Evidence("m", {e.cell.id: e for e in pair}, None, {}, [])
    verdicts = {r.id: r.verdict for r in evaluate(load_claims(path), same).results}
    assert verdicts["dir"] == "inconclusive"
    # the gate from its record
    evidence.gates["m"] = {"matrix": "m", "device": "cpu", "passed": False,
                           "checks": [{"check": "cuda_available", "passed": False, "value": False}, {"check": "x", "passed": True}]}  # fmt: skip
    gate = {r.id: r for r in evaluate(load_claims(path), evidence).results}["gate"]
    assert gate.verdict == "not reproduced" and "1 of 2 checks passed" in gate.why


def test_partial_coverage_and_byte_identical_output(tmp_path: Path) -> None:
    evidence, path = _planted(tmp_path, extra_planned=True)
    first = evaluate(load_claims(path), evidence)
    got = {r.id: r for r in first.results}
    assert got["dir"].verdict == "partial 6 of 7 cells"
    assert got["dir"].why.startswith("on the 6 cells run: not reproduced")
    again = evaluate(load_claims(path), evidence)
    assert dumps(first) == dumps(again)
    assert render_text(first) == render_text(again)
    assert render_markdown(first).startswith("| claim | verdict |")


def test_an_unstable_cell_makes_a_ci_decided_claim_inconclusive(tmp_path: Path) -> None:
    path = tmp_path / "claims.yaml"
    path.write_text(textwrap.dedent(CLAIMS))
    steady = _noisy(1.0, 24, seed=1)
    slow_window = steady + _noisy(1.5, 6, seed=9)  # most of the last window 50% slower
    a = _ev(_cell("m1", "fast"), slow_window)
    b = _ev(_cell("m1", "slow"), _noisy(1.2, 30, seed=2))
    assert a.unstable and not b.unstable
    assert [round(m, 1) for m in a.window_medians()] == [1.0, 1.0, 1.5]
    evidence = Evidence("m", {a.cell.id: a, b.cell.id: b}, None, {}, [])
    result = {r.id: r for r in evaluate(load_claims(path), evidence).results}["dir"]
    assert result.high < 1.0  # the pooled CI alone would call it reproduced
    assert result.verdict == "inconclusive" and "unstable" in result.why
    assert result.unstable_cells == 1


NEIGHBOUR = [{"group_id": "other.group", "attempt": 1, "gpu": 1}]


def test_cells_beside_a_busy_neighbour_are_a_condition_of_their_own(tmp_path: Path) -> None:
    evidence, path = _planted(tmp_path)
    by = {(e.cell.model, e.cell.backend, e.cell.group): e for e in evidence.cells.values()}
    by[("m1", "slow", "g")].neighbours = NEIGHBOUR  # m1: A alone, B beside a neighbour
    by[("m2", "fast", "g")].neighbours = NEIGHBOUR  # m2: both sides beside one
    by[("m2", "slow", "g")].neighbours = NEIGHBOUR
    got = {r.id: r for r in evaluate(load_claims(path), evidence).results}
    keys = {k.key: k for k in got["dir"].keys}
    assert keys["m1"].verdict == "inconclusive"  # alone: reproduced; never pooled with B
    assert keys["m1"].why.startswith("cells measured beside a busy neighbour (per-gpu isolation)")
    assert "A 0 of 1, B 1 of 1 cells" in keys["m1"].why and "reproduced" in keys["m1"].why
    assert keys["m2"].verdict == "reproduced"  # one condition on both sides: the verdict stands
    assert "A and B all measured beside a busy neighbour" in keys["m2"].why
    assert keys["m3"].verdict == "not reproduced" and "neighbour" not in keys["m3"].why
    # ordering: m2 fast (beside) against m3 fast (alone) is a mix too
    relations = [k.verdict for k in got["order"].keys]
    assert relations == ["reproduced", "inconclusive"]


def test_a_degraded_cell_is_no_evidence_for_its_label(tmp_path: Path) -> None:
    """A cell whose label is not what ran (a compiled frame fell back to eager: `degraded`)
    makes every ratio it is part of inconclusive, whatever its samples say."""
    evidence, path = _planted(tmp_path)
    by = {(e.cell.model, e.cell.backend, e.cell.group): e for e in evidence.cells.values()}
    by[("m1", "fast", "g")].status = "degraded"
    by[("m1", "fast", "g")].reasons = ["1 dynamo frame past the recompile limit ran eager"]
    got = {r.id: r for r in evaluate(load_claims(path), evidence).results}
    keys = {k.key: k for k in got["dir"].keys}
    assert keys["m1"].verdict == "inconclusive"  # reproduced on its samples alone
    assert keys["m1"].why.startswith("1 of 2 cells degraded (1 dynamo frame past")
    assert "(on all of them: reproduced," in keys["m1"].why
    assert keys["m2"].verdict == "reproduced" and "degraded" not in keys["m2"].why
    assert {k.key: k.verdict for k in got["mag"].keys}["m1"] == "inconclusive"


def test_sides_fed_prompts_of_other_lengths_are_not_compared(tmp_path: Path) -> None:
    """Cells merged from runs that tokenized differently (one had the model's tokenizer, one
    approximated it): where A and B ran the same prompt with other token counts, the key is
    inconclusive whatever its ratio; the same counts with other ids (or unrecorded inputs) stand."""
    from kit.bundle.report_data import CellInputs

    evidence, path = _planted(tmp_path)
    by = {(e.cell.model, e.cell.backend, e.cell.group): e for e in evidence.cells.values()}
    by[("m1", "fast", "g")].inputs = CellInputs("aa", 8, "approximate", None)
    by[("m1", "slow", "g")].inputs = CellInputs("bb", 9, "exact", None)
    by[("m2", "fast", "g")].inputs = CellInputs("aa", 8, "approximate", None)
    by[("m2", "slow", "g")].inputs = CellInputs("cc", 8, "exact", None)
    got = {r.id: r for r in evaluate(load_claims(path), evidence).results}
    keys = {k.key: k for k in got["dir"].keys}
    assert keys["m1"].verdict == "inconclusive"
    assert keys["m1"].why.startswith(
        "A and B were fed prompts of other lengths (single_micro#0: 8 vs 9 tokens)"
    )
    assert "(on all of them: reproduced," in keys["m1"].why
    assert keys["m2"].verdict == "reproduced" and "prompts" not in keys["m2"].why
    assert keys["m3"].verdict == "not reproduced"  # no inputs recorded: as before


def test_evidence_reads_each_cells_neighbours_from_the_bundle() -> None:
    import json

    from kit.bundle.report_data import MappingSource
    from kit.claims.evidence import load_evidence

    alone, beside = _cell("m1", "fast"), _cell("m1", "slow")
    statuses = [
        {"cell": alone.id, "status": "ok", "reasons": [], "gpu": 0, "co_scheduled": []},
        {"cell": beside.id, "status": "ok", "reasons": [], "gpu": 1, "co_scheduled": NEIGHBOUR},
    ]
    source = MappingSource(
        {
            "matrix/cells.json": json.dumps([c.to_dict() for c in (alone, beside)]).encode(),
            "results/statuses.jsonl": "".join(json.dumps(r) + "\n" for r in statuses).encode(),
        }
    )
    evidence = load_evidence(source)
    assert not evidence.cells[alone.id].beside_neighbour
    assert evidence.cells[beside.id].neighbours == NEIGHBOUR


def test_wilson_interval_and_device_fatal() -> None:
    ci = wilson_interval(240, 300)
    assert 0.75 < ci.low < 0.8 < ci.high < 0.85
    zero = wilson_interval(0, 300)
    assert zero.low == 0.0 and 0.0 < zero.high < 0.02
    assert not wilson_interval(0, 0).defined
    with pytest.raises(KitError):
        wilson_interval(5, 3)
    assert device_fatal(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not device_fatal(RuntimeError("accessing tensor output of CUDAGraphs that has been overwritten"))  # fmt: skip


def test_per_claim_portability_between_two_runs(tmp_path: Path) -> None:
    from kit.claims.portability import portability

    evidence, path = _planted(tmp_path)
    a = evaluate(load_claims(path), evidence)
    # B: the m3 effect flipped (now faster, like m1/m2); every other cell the same
    flipped = dict(evidence.cells)
    m3 = next(e for e in flipped.values() if e.cell.model == "m3" and e.cell.backend == "fast")
    flipped[m3.cell.id] = _ev(m3.cell, _noisy(1.0, seed=5))
    b = evaluate(load_claims(path), Evidence("m", flipped, evidence.planned, {}, []))
    rows = {r.id: r for r in portability(a, b)}
    assert rows["dir"].portable == "no" and rows["dir"].verdict_b == "reproduced"
    assert rows["eq"].portable == "yes"
    assert rows["gate"].portable == "not comparable"


def test_long_sweeps_default_to_a_seeded_shuffle(tmp_path: Path) -> None:
    from kit.runner.plan import RunRequest, plan_cells, resolved_order

    long = RunRequest(matrix="tr147", out=tmp_path, selection="group=v1-prefill")
    _, cells = plan_cells(long)
    listed = [c.id for c in load_matrix("tr147").cells if c.group == "v1-prefill"]
    assert len(cells) == 70 and resolved_order(long.order, len(cells)) == "shuffled"
    assert [c.id for c in cells] != listed and sorted(c.id for c in cells) == sorted(listed)
    assert [c.id for c in plan_cells(long)[1]] == [c.id for c in cells]  # seeded
    short = RunRequest(matrix="tr147", out=tmp_path, selection="group=v1-prefill,model=gpt2-25m")
    assert [c.id for c in plan_cells(short)[1]] == [c for c in listed if c in {x.id for x in plan_cells(short)[1]}]  # fmt: skip
    assert resolved_order("auto", 10) == "listed"


def test_median_ci_half_width() -> None:
    from kit.harness.group import median_ci_half_width_pct

    assert median_ci_half_width_pct([1.0]) is None
    assert median_ci_half_width_pct([2.0] * 10) == 0.0
    wide = median_ci_half_width_pct([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert wide is not None and wide > 10


def test_claims_refuse_a_bundle_that_fails_verification(tmp_path: Path) -> None:
    from kit.claims import claims_for_path

    source = Path(__file__).resolve().parent.parent / "docs/validation/h100-tr126-baseline.tar.gz"
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the compressed stream
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(bytes(data))
    with pytest.raises(KitError) as info:
        claims_for_path(broken)
    assert "fails verification" in info.value.title
    # the intact bundle gives verdicts (from the kit's built-in claims: it carries none)
    report = claims_for_path(source)
    assert report.claims_file == "claims/tr126.yaml" and len(report.results) == 11


def test_a_process_killed_under_on_error_continue_is_no_per_call_share(tmp_path: Path) -> None:
    # TR147 v4A on the H200: reduce-overhead kv_decode ended its process by SIGSEGV at the
    # first call, so no call raised (and no error sample exists): not a share of 0 of 0 calls.
    path = tmp_path / "claims.yaml"
    path.write_text(textwrap.dedent(CLAIMS))
    cell = _cell("m1", "fast", group="k").replace(on_error="continue")
    killed = CellEvidence(cell, "crash", ["killed by signal SIGSEGV"], [], Counter())
    evidence = Evidence("m", {cell.id: killed}, None, {}, [])
    got = {r.id: r for r in evaluate(load_claims(path), evidence).results}["crash"]
    assert got.verdict == "inconclusive"
    assert "crashed before any timed call was recorded" in got.why and "no calls" not in got.why
    assert "killed by signal SIGSEGV" in got.why
    # a continue cell that recorded calls before it crashed still counts them
    some = CellEvidence(cell, "crash", ["killed by signal SIGSEGV"], [1.0] * 8,
                        Counter({"ok": 8, "error": 32}))  # fmt: skip
    evidence = Evidence("m", {cell.id: some}, None, {}, [])
    got = {r.id: r for r in evaluate(load_claims(path), evidence).results}["crash"]
    assert got.n == 40 and abs(got.value - 0.8) < 1e-9
