from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfactory import make_run_dir

from kit.bundle.build import build_bundle
from kit.bundle.compare import compare, load_any
from kit.cli import main


def _run(path: Path, **kw) -> Path:
    kw.setdefault("n_cells", 3)
    kw.setdefault("n_samples", 30)
    return make_run_dir(path, **kw).path


def test_same_data_is_portable(tmp_path: Path) -> None:
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b")
    result = compare(load_any(a), load_any(b))
    assert [c.verdict for c in result.cells] == ["equivalent"] * 3
    assert all(c.ratio == pytest.approx(1.0) for c in result.cells)
    assert result.verdict == "portable"


def test_slower_stack_is_not_portable(tmp_path: Path) -> None:
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", base_latency_ms=2.5, seed=3)
    result = compare(load_any(a), load_any(b), margin_pct=3)
    assert {c.verdict for c in result.cells} == {"B slower"}
    assert all(c.ci_low > 1.0 and c.p_holm < 0.05 for c in result.cells)
    assert result.verdict == "not portable"


def test_crashes_and_mismatched_cells(tmp_path: Path) -> None:
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", n_cells=4, statuses=["ok", "crash", "ok", "ok"])
    result = compare(load_any(a), load_any(b))
    assert result.cells[1].verdict == "crash in B"
    assert result.crash_rate_b == pytest.approx(0.25) and result.crash_rate_a == 0.0
    assert len(result.only_in_b) == 1 and result.only_in_a == []
    assert result.verdict == "not portable"


def test_cli_json_from_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = build_bundle(_run(tmp_path / "a"), tmp_path / "a.tar.gz", report=False).path
    b = build_bundle(_run(tmp_path / "b"), tmp_path / "b.tar.gz", report=False).path
    assert main(["compare", str(a), str(b), "--json", "--margin-pct", "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "portable" and data["margin_pct"] == 5.0
    assert len(data["cells"]) == 3
    assert main(["compare", str(a), str(tmp_path / "missing.tar.gz")]) == 1
    assert capsys.readouterr().err.startswith("error: not found")


def _feed(run: Path, prompts: dict[int, tuple[list[list[int]], int]], weights: str = "") -> None:
    """Rewrite the run's journal: cell i's cell_started gets prompt_ids and tokens_in from
    `prompts`; with `weights`, a model_prepared of each of the cells' models with that sha256
    first."""
    cells = json.loads((run / "matrix" / "cells.json").read_text())
    index = {c["id"]: i for i, c in enumerate(cells)}
    lines = []
    for line in (run / "journal.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "run_started" and weights:
            lines.append(line)
            lines += [json.dumps({"event": "model_prepared", "t_ns": event["t_ns"],
                                  "model": {"model_id": m, "sha256": weights}})
                      for m in sorted({c["model"] for c in cells})]  # fmt: skip
            continue
        if event.get("event") == "cell_started" and index[event["cell"]] in prompts:
            event["prompt_ids"], event["tokens_in"] = prompts[index[event["cell"]]]
        lines.append(json.dumps(event))
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")


def test_cells_fed_other_prompts_are_not_compared(tmp_path: Path, capsys) -> None:
    """A cell whose prompt has another length on B (an approximate tokenizer on one side) is
    `inputs differ`: no test, outside Holm's family, never `equivalent`; one whose ids differ
    at the same length is compared and counted on a line of its own."""
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    _feed(b, {0: ([[5, 6, 7]], 3), 1: ([[9]], 8)})  # cell 0: 3 tokens, not 8; cell 1: 8 tokens
    _feed(a, {0: ([[1]], 8), 1: ([[1]], 8)})
    result = compare(load_any(a), load_any(b))
    first, second, third = result.cells
    assert first.verdict == "inputs differ" and not first.same_work
    assert first.inputs_differ and "3 tokens" in first.inputs_differ[0]
    assert first.p_holm != first.p_holm  # NaN: left out of the family
    assert second.verdict == "equivalent" and second.same_work and second.inputs_differ
    assert third.verdict == "equivalent" and not third.inputs_differ
    assert result.verdict == "inconclusive"  # one common cell was not compared
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "inputs differ: 1 of 3 common cells were fed prompts of different lengths" in out
    assert "same lengths, other ids: 1 of 3 common cells" in out
    assert "overall: inconclusive" in out


def test_cells_of_other_weights_are_not_compared(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", base_latency_ms=2.5, seed=3)
    _feed(a, {}, weights="a" * 64)
    _feed(b, {}, weights="b" * 64)
    result = compare(load_any(a), load_any(b))
    assert {c.verdict for c in result.cells} == {"inputs differ"}
    assert "weights (sha256 aaaaaaaaaaaa vs bbbbbbbbbbbb)" in result.cells[0].inputs_differ
    assert result.verdict == "inconclusive"  # B's slower timings are of other weights
    _feed(b, {}, weights="a" * 64)  # the same weights: compared again, and B is slower
    assert {c.verdict for c in compare(load_any(a), load_any(b)).cells} == {"B slower"}
