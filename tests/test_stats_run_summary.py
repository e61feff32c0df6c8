"""kit.stats.run_summary on synthetic run directories (tests/runfactory.py)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runfactory import make_run_dir

from kit.errors import KitError
from kit.stats import PhaseSummary, RunSummary, summarize_run, write_summary


def _rows_by_cell(summary: RunSummary) -> dict[str, PhaseSummary]:
    return {row.cell: row for row in summary.rows}


def test_statistics_match_the_kept_samples(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=3, n_samples=25, modes=["prefill", "kv_decode"])
    summary = summarize_run(run.path)
    rows = _rows_by_cell(summary)
    assert list(rows) == [c["id"] for c in run.cells]
    for cell in run.cells:
        row, kept = rows[cell["id"]], np.array(run.kept[cell["id"]])
        assert row.phase == cell["mode"] and row.status == "ok"
        assert row.latency.n == 25 == kept.size
        assert row.latency.mean == pytest.approx(kept.mean())
        assert row.latency.median == pytest.approx(np.median(kept))
        assert row.n_warmup == 2 and row.n_excluded == 2 and row.n_samples == 27
        assert row.fields["model"] == cell["model"]
        assert row.cuda_event is None
    assert summary.complete and summary.cells_by_status == {"ok": 3}


def test_tokens_per_second_and_per_token_decode(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2, modes=["prefill", "kv_decode"])
    rows = _rows_by_cell(summarize_run(run.path))
    prefill, decode = run.cells
    kept = np.array(run.kept[prefill["id"]])
    tp = rows[prefill["id"]].throughput
    assert tp.basis == "tokens_in/latency"
    assert tp.tokens_per_s_median == pytest.approx(np.median(prefill["token_len"] / (kept / 1000)))
    assert math.isnan(tp.ms_per_token_median)
    kept = np.array(run.kept[decode["id"]])
    tp = rows[decode["id"]].throughput
    assert tp.basis == "tokens_out/latency"
    assert tp.tokens_per_s_mean == pytest.approx(np.mean(64 / (kept / 1000)))
    assert tp.ms_per_token_median == pytest.approx(np.median(kept / 64))


def test_non_ok_samples_are_counted_by_status_not_averaged(tmp_path: Path) -> None:
    def status(cell: int, rep: int) -> str:
        return {2: "length_mismatch", 5: "suspicious_fast", 7: "length_mismatch"}.get(rep, "ok")

    run = make_run_dir(tmp_path / "run", n_cells=1, n_samples=10, sample_status=status)
    row = summarize_run(run.path).rows[0]
    assert row.not_ok == {"length_mismatch": 2, "suspicious_fast": 1}
    assert row.latency.n == 7 == len(run.kept[row.cell])
    assert row.latency.mean == pytest.approx(np.mean(run.kept[row.cell]))
    assert row.n_excluded == 2 + 3


def test_cuda_event_times_are_summarised_when_present(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1, cuda_events=True)
    row = summarize_run(run.path).rows[0]
    assert row.cuda_event is not None
    assert row.cuda_event.median == pytest.approx(np.median(run.kept_cuda[row.cell]))


def test_partial_run_with_crash_incomplete_not_run_and_cut_journal(tmp_path: Path) -> None:
    statuses = ["ok", "crash", "incomplete", "not_run", "skipped", "degraded"]
    run = make_run_dir(
        tmp_path / "run", n_cells=6, n_samples=10, statuses=statuses, truncate_journal=True
    )
    summary = summarize_run(run.path)
    rows = _rows_by_cell(summary)
    assert [rows[c["id"]].status for c in run.cells] == statuses
    assert rows[run.cells[1]["id"]].latency.n == 5  # crashed half-way: samples kept
    assert rows[run.cells[1]["id"]].reasons == ("child killed by signal 9",)
    assert rows[run.cells[2]["id"]].latency.n == 5
    for idx in (3, 4):  # no samples: one row for the cell's mode, n = 0, NaN statistics
        row = rows[run.cells[idx]["id"]]
        assert row.phase == "prefill" and row.latency.n == 0 and math.isnan(row.latency.mean)
    assert summary.journal_truncated_tail and summary.journal_bad_lines == 0
    assert not summary.complete
    assert summary.cells_by_status["not_run"] == 1


def test_resumed_cell_keeps_only_its_latest_attempt(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2, n_samples=10, resumed_first_cell=True)
    row = _rows_by_cell(summarize_run(run.path))[run.cells[0]["id"]]
    assert row.attempts == 2
    assert row.n_superseded == 2 + 5  # warmup + half the timed samples of attempt 1
    assert row.latency.n == 10
    assert row.latency.mean == pytest.approx(np.mean(run.kept[row.cell]))


def test_last_cells_jsonl_line_wins_and_bad_lines_are_counted(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1)
    cell = run.cells[0]["id"]
    with (run.path / "cells.jsonl").open("a") as out:
        out.write("not json\n")
        out.write(json.dumps({"cell": cell, "status": "degraded", "reasons": ["rerun"]}) + "\n")
    with (run.path / "journal.jsonl").open("a") as out:
        out.write("[1, 2]\n{broken\n")
        out.write(json.dumps({"event": "sample", "t_ns": 1}) + "\n")  # no cell: bad
    summary = summarize_run(run.path)
    assert summary.rows[0].status == "degraded" and summary.rows[0].reasons == ("rerun",)
    assert summary.cells_jsonl_bad_lines == 1
    assert summary.journal_bad_lines == 3 and not summary.journal_truncated_tail


def test_unknown_cells_in_journal_are_reported(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1)
    with (run.path / "journal.jsonl").open("a") as out:
        sample = {"event": "sample", "t_ns": 1, "cell": "feedfacefeedface", "phase": "prefill",
                  "rep": 0, "warmup": False, "latency_ms": 1.5, "cuda_event_ms": None,
                  "tokens_in": 4, "tokens_out": 1, "t0_ns": 0, "t1_ns": 1, "status": "ok",
                  "flags": []}  # fmt: skip
        out.write(json.dumps(sample) + "\n")
        bad = dict(sample, latency_ms=None)  # an ok sample without a latency: invalid
        out.write(json.dumps(bad) + "\n")
    summary = summarize_run(run.path)
    assert summary.unknown_cells == ["feedfacefeedface"]
    row = summary.rows[-1]
    assert row.cell == "feedfacefeedface" and row.fields == {} and row.status == "incomplete"
    assert row.latency.n == 1 and row.n_invalid == 1


def test_write_summary_files(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=3, statuses=["ok", "crash", "not_run"])
    summary = write_summary(run.path)
    doc = json.loads((run.path / "summary.json").read_text())  # strict: no NaN tokens
    assert doc["schema"] == 1 and doc["bootstrap"]["seed"] == 42
    assert doc["bootstrap"]["resamples"] == 2000
    assert len(doc["rows"]) == 3 and doc["rows"][2]["latency_ms"]["mean"] is None
    assert doc["rows"][0]["counts"]["n"] == 10
    assert doc["run"]["git_commit"] == "0" * 40
    with (run.path / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["cell"] for r in rows] == [c["id"] for c in run.cells]
    first = rows[0]
    assert first["status"] == "ok" and int(first["n"]) == 10
    assert float(first["median_ms"]) == pytest.approx(summary.rows[0].latency.median)
    assert first["model"] == "gpt2-25m" and first["tokens_per_s_basis"] == "tokens_in/latency"
    assert rows[2]["mean_ms"] == "" and rows[2]["status"] == "not_run"


def test_summary_files_are_deterministic(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2, cuda_events=True)
    write_summary(run.path)
    first = (run.path / "summary.json").read_bytes(), (run.path / "summary.csv").read_bytes()
    write_summary(run.path)
    assert first == (
        (run.path / "summary.json").read_bytes(),
        (run.path / "summary.csv").read_bytes(),
    )


def test_bootstrap_settings_reach_the_summary(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1)
    a = summarize_run(run.path, resamples=500, seed=1).rows[0].latency.ci_mean_bootstrap
    b = summarize_run(run.path, resamples=500, seed=2).rows[0].latency.ci_mean_bootstrap
    assert a != b


def test_errors_for_missing_and_non_run_directories(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="no such run directory"):
        summarize_run(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(KitError, match="not a directory"):
        summarize_run(tmp_path / "file.txt")
    with pytest.raises(KitError, match="not a run directory") as info:
        summarize_run(tmp_path)
    assert "kit run" in info.value.hint


def test_damaged_cells_json_is_a_kit_error(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1)
    (run.path / "matrix" / "cells.json").write_text("{not json")
    with pytest.raises(KitError, match="not valid JSON"):
        summarize_run(run.path)
    (run.path / "matrix" / "cells.json").write_text('{"id": "x"}')
    with pytest.raises(KitError, match="not a list of cells"):
        summarize_run(run.path)


def test_journal_only_run_directory(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2)
    (run.path / "matrix" / "cells.json").unlink()
    (run.path / "run.json").unlink()
    summary = summarize_run(run.path)
    assert [r.cell for r in summary.rows] == [c["id"] for c in run.cells]
    assert summary.rows[0].fields == {} and summary.rows[0].latency.n == 10


def test_stats_never_imports_torch_or_textual() -> None:
    code = (
        "import sys, kit.stats, kit.stats.run_summary, kit.commands.summarize\n"
        "bad = [m for m in ('torch', 'textual', 'transformers') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_runfactory_cells_are_real_cells(tmp_path: Path) -> None:
    """The factory follows docs/FORMATS.md: every field present, ids as kit.matrix computes."""
    from kit.matrix.cell import Cell

    run = make_run_dir(tmp_path / "run", n_cells=4, modes=["prefill", "kv_decode", "e2e_kv"])
    on_disk = json.loads((run.path / "matrix" / "cells.json").read_text())
    assert on_disk == run.cells
    for data in on_disk:
        assert Cell.from_dict(data).to_dict() == data
    journal = [json.loads(line) for line in (run.path / "journal.jsonl").open()]
    assert all("event" in e and isinstance(e["t_ns"], int) for e in journal)
    assert [e["t_ns"] for e in journal] == sorted(e["t_ns"] for e in journal)
    assert journal[0]["event"] == "run_started" and journal[-1]["event"] == "run_finished"


def test_runfactory_telemetry_covers_the_run(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1, telemetry_rows=20)
    with (run.path / "telemetry" / "gpu0.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and rows[0]["power_kind"] == "instant"
    assert int(rows[0]["t_ns"]) == run.span_ns[0] and int(rows[-1]["t_ns"]) == run.span_ns[1]


def test_a_continued_cell_keeps_the_samples_of_every_process(tmp_path: Path) -> None:
    from kit.stats.journal_scan import scan_journal

    def sample(rep: int, ms: float | None, warmup: bool = False, status: str = "ok") -> str:
        return json.dumps({"event": "sample", "cell": "c", "phase": "prefill", "rep": rep,
                           "warmup": warmup, "latency_ms": ms, "status": status})  # fmt: skip

    lines = [
        json.dumps({"event": "cell_started", "cell": "c"}),
        sample(0, 9.0, warmup=True), sample(1, 1.0), sample(2, None, status="error"),
        json.dumps({"event": "cell_suspended", "cell": "c", "next_rep": 3}),
        json.dumps({"event": "cell_started", "cell": "c", "continues": True, "from_rep": 3}),
        sample(0, 9.0, warmup=True), sample(3, 2.0), sample(4, 3.0),
        json.dumps({"event": "cell_finished", "cell": "c", "status": "degraded"}),
    ]  # fmt: skip
    (tmp_path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    cell = scan_journal(tmp_path / "journal.jsonl").cells["c"]
    acc = cell.phases["prefill"]
    assert cell.attempts == 2 and acc.n_superseded == 0
    assert list(acc.latency_ms) == [1.0, 2.0, 3.0]
    assert acc.n_warmup == 2 and acc.not_ok == {"error": 1}
