"""`kit merge DIR1 DIR2 ... --out RUN`: ordinary run directories joined into one run that
`kit bundle`, `kit verify` and `kit report` accept (the same merge joins a Slurm sweep)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runfactory import make_run_dir

REPO = Path(__file__).resolve().parent.parent

TINY = """
schema: 1
id: tiny-merge
title: one tiny-gpt2 group, run in two sessions
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
"""


def kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600)  # fmt: skip


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.slow
def test_two_kit_runs_merge_into_one_verifiable_bundle(tmp_path: Path) -> None:
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(textwrap.dedent(TINY))
    runs = []
    for mode in ("prefill", "kv_decode"):  # a sweep split over two sessions
        out = tmp_path / mode
        proc = kit("run", "--matrix", str(matrix), "--weights", "random",
                   "--select", f"prompt_index=0,mode={mode}", "--out", str(out))  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(out)
    merged = tmp_path / "merged"
    proc = kit("merge", *map(str, runs), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    assert "cells: 2 ok (of 2)" in proc.stdout
    assert "note:" not in proc.stdout  # both inputs fed prompts from the model's tokenizer
    finals = _lines(merged / "cells.jsonl")
    assert sorted(str(f["task"]) for f in finals) == ["kv_decode", "prefill"]
    header = json.loads((merged / "run.json").read_text())
    assert header["merged"]["complete"] and header["matrix"]["id"] == "tiny-merge"
    assert (merged / "summary.json").is_file()
    bundle = tmp_path / "merged.tar.gz"
    assert kit("bundle", str(merged), "-o", str(bundle), "--no-plots").returncode == 0
    verified = kit("verify", str(bundle))
    assert verified.returncode == 0 and "2 ok" in verified.stdout, verified.stdout
    assert kit("report", str(bundle), "-o", str(tmp_path / "rep"), "--no-plots").returncode == 0
    # the inputs' process records (env/tasks/<task>/process-*.json) give the ML stack
    report = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "- ML stack of the measuring processes: torch " in report
    assert "(2 processes)" in report, report.split("## ")[0]

    # An input made without the model's tokenizer (approximate ids): the merge says so.
    approx = tmp_path / "approx"
    shutil.copytree(runs[0], approx)
    journal = approx / "journal.jsonl"
    text = journal.read_text()
    assert '"token_method":"exact"' in text
    journal.write_text(text.replace('"token_method":"exact"', '"token_method":"approximate"'))
    noted = kit("merge", str(approx), str(runs[1]), "--out", str(tmp_path / "m4"))
    assert noted.returncode == 0, noted.stderr
    assert ("note: tiny-gpt2: prompts tokenized exactly in 1 cell starts and approximately "
            "in 1") in noted.stdout  # fmt: skip

    # One cell, two results: refused (even with --force), naming both runs.
    shutil.copytree(runs[0], tmp_path / "again")
    twice = kit("merge", str(runs[0]), str(tmp_path / "again"), "--out", str(tmp_path / "m2"))
    assert twice.returncode == 1 and "has a final result in both" in twice.stderr
    assert "Traceback" not in twice.stderr
    forced = kit(
        "merge", str(runs[0]), str(tmp_path / "again"), "--out", str(tmp_path / "m3"), "--force"
    )
    assert forced.returncode == 1


def test_overlapping_clocks_are_shifted_and_telemetry_follows(tmp_path: Path) -> None:
    # Two machines (same monotonic start): A finished cell 0, B cell 1 (A left it half-done).
    a = make_run_dir(tmp_path / "a", n_cells=2, statuses=["ok", "incomplete"], telemetry_rows=40,
                     finished=False)  # fmt: skip
    b = make_run_dir(tmp_path / "b", n_cells=2, statuses=["not_run", "ok"], telemetry_rows=40)
    merged = tmp_path / "merged"
    proc = kit("merge", str(a.path), str(b.path), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    assert "clocks shifted for 1 inputs" in proc.stdout
    inputs = json.loads((merged / "run.json").read_text())["merged"]["inputs"]
    offset = inputs[1]["t_ns_offset"]
    assert inputs[0]["t_ns_offset"] == 0 and offset > b.span_ns[1] - b.span_ns[0]
    with (merged / "telemetry" / "gpu0.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    with (b.path / "telemetry" / "gpu0.csv").open() as fh:
        b_rows = list(csv.DictReader(fh))
    assert len(rows) == 80 and int(rows[40]["t_ns"]) == int(b_rows[0]["t_ns"]) + offset
    events = _lines(merged / "journal.jsonl")
    b_samples = [e for e in events if e.get("task") == "b" and e["event"] == "sample"]
    assert b_samples and all(int(str(e["t0_ns"])) >= b.span_ns[0] + offset for e in b_samples)
    assert {e["event"] for e in events if e.get("task")} >= {"task_run_started"}
    assert (merged / "tasks" / "a" / "journal.jsonl").read_bytes() == (
        a.path / "journal.jsonl"
    ).read_bytes()
    assert len(list((merged / "env" / "nodes").glob("*.json"))) == 1  # one host record, once
    bundle = tmp_path / "m.tar.gz"
    assert kit("bundle", str(merged), "-o", str(bundle), "--no-plots").returncode == 0
    assert kit("verify", str(bundle)).returncode == 0


def test_missing_cells_make_an_incomplete_run_and_bad_inputs_are_refused(tmp_path: Path) -> None:
    a = make_run_dir(
        tmp_path / "a", n_cells=3, statuses=["ok", "not_run", "not_run"], finished=False
    )
    b = make_run_dir(
        tmp_path / "b", n_cells=3, statuses=["not_run", "ok", "not_run"], finished=False
    )
    merged = tmp_path / "merged"
    proc = kit("merge", str(a.path), str(b.path), "--out", str(merged))
    assert proc.returncode == 0 and "INCOMPLETE: 1 cells" in proc.stderr
    header = json.loads((merged / "run.json").read_text())
    assert header["merged"]["missing_cells"] == [a.cells[2]["id"]]
    assert _lines(merged / "journal.jsonl")[-1]["event"] == "interrupted"
    built = kit("bundle", str(merged), "-o", str(tmp_path / "m.tar.gz"), "--no-plots")
    assert built.returncode == 0 and "INCOMPLETE run: 1 cells missing" in built.stdout

    other = make_run_dir(tmp_path / "other", n_cells=1, statuses=["not_run"], finished=False)
    run_json = other.path / "run.json"
    record = json.loads(run_json.read_text())
    record["matrix"]["sha256"] = "0" * 64
    record["kit_version"] = "9.9.9"
    record["created_utc"] = "2999-01-01T00:00:00+00:00"  # the latest input
    run_json.write_text(json.dumps(record))
    newer_source = (other.path / "matrix" / "source.yaml").read_text() + "# changed later\n"
    (other.path / "matrix" / "source.yaml").write_text(newer_source)
    refused = kit("merge", str(a.path), str(other.path), "--out", str(tmp_path / "x"))
    assert (
        refused.returncode == 1
        and "the runs differ: matrix" in refused.stderr
        and "kit version" in refused.stderr
    )
    forced = kit("merge", str(a.path), str(other.path), "--out", str(tmp_path / "y"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((tmp_path / "y" / "run.json").read_text())["merged"]["forced_differences"]
    # A forced merge describes the matrix by its newest definition, in either argument order.
    for out, order in (("y", (a.path, other.path)), ("y2", (other.path, a.path))):
        if out == "y2":
            assert (
                kit("merge", *map(str, order), "--out", str(tmp_path / out), "--force").returncode
                == 0
            )
        header = json.loads((tmp_path / out / "run.json").read_text())
        assert header["matrix"]["sha256"] == "0" * 64
        assert header["merged"]["matrix_from"] == "other"
        assert (tmp_path / out / "matrix" / "source.yaml").read_text() == newer_source
    # Cells of two GPU models: refused (one run reads as one machine), forced only by --force.
    for run, names in ((a, ["NVIDIA H100 80GB HBM3"]), (b, ["NVIDIA H200", "NVIDIA H200"])):
        gpus = [{"index": i, "name": n, "uuid": f"GPU-{i}"} for i, n in enumerate(names)]
        (run.path / "env" / "gpu.json").write_text(json.dumps({"schema": 1, "gpus": gpus}))
    mixed = kit("merge", str(a.path), str(b.path), "--out", str(tmp_path / "mixed"))
    assert mixed.returncode == 1 and "Traceback" not in mixed.stderr
    assert ("GPU models: a has NVIDIA H100 80GB HBM3, b has 2x NVIDIA H200") in mixed.stderr
    assert not (tmp_path / "mixed").exists()
    forced = kit("merge", str(a.path), str(b.path), "--out", str(tmp_path / "mixed"), "--force")
    assert forced.returncode == 0, forced.stderr
    differences = json.loads((tmp_path / "mixed" / "run.json").read_text())["merged"]
    assert any("GPU models" in d for d in differences["forced_differences"])
    (b.path / "env" / "gpu.json").write_text(json.dumps({"schema": 1, "gpus": [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-other"}]}))  # fmt: skip
    same = kit("merge", str(a.path), str(b.path), "--out", str(tmp_path / "same"))
    assert same.returncode == 0, same.stderr  # another card of the same model: one machine kind
    assert kit("merge", str(a.path), "--out", str(merged)).returncode == 1  # not empty
    assert "not a run directory" in kit("merge", str(tmp_path), "--out", str(tmp_path / "z")).stderr


def test_bundles_merge_after_verification_and_later_wins_is_explicit(tmp_path: Path) -> None:
    """The GPU campaign brings back bundles, not run directories: `kit merge` takes them,
    verifies each first, and keeps the raw records; a cell finished twice needs --later-wins."""
    early = make_run_dir(tmp_path / "early", n_cells=3, statuses=["ok", "ok", "not_run"],
                         finished=False, base_latency_ms=2.0)  # fmt: skip
    late = make_run_dir(tmp_path / "late", n_cells=3, statuses=["not_run", "ok", "ok"],
                        finished=False, base_latency_ms=5.0, seed=1)  # fmt: skip
    for run, stamp in ((early, "2026-12-01T10:00:00+00:00"), (late, "2026-12-02T10:00:00+00:00")):
        record = json.loads((run.path / "run.json").read_text())
        record["created_utc"] = stamp
        (run.path / "run.json").write_text(json.dumps(record))
    gate = {"matrix": "tr126", "checks": [], "passed": 0}
    (early.path / "env" / "gate-tr126.json").write_text(json.dumps(gate))
    bundles = []
    for run in (late, early):  # given out of order: merged chronologically
        bundle = tmp_path / f"{run.path.name}.tar.gz"
        built = kit("bundle", str(run.path), "-o", str(bundle), "--no-plots")
        assert built.returncode == 0, built.stderr
        bundles.append(bundle)

    refused = kit("merge", *map(str, bundles), "--out", str(tmp_path / "m1"))
    assert refused.returncode == 1 and "--later-wins" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    merged = tmp_path / "merged"
    proc = kit("merge", *map(str, bundles), "--out", str(merged), "--later-wins")
    assert proc.returncode == 0, proc.stderr
    assert "cells: 3 ok (of 3)" in proc.stdout
    header = json.loads((merged / "run.json").read_text())["merged"]
    assert [i["task"] for i in header["inputs"]] == ["early", "late"]
    assert header["inputs"][0]["path"] == str(bundles[1])
    assert header["inputs"][0]["bundle"]["content_hash"].startswith("sha256:")
    middle = early.cells[1]["id"]
    assert header["replaced_results"] == [{"cell": middle, "kept": "late", "kept_status": "ok",
                                           "dropped": "early", "dropped_status": "ok"}]  # fmt: skip
    finals = {str(f["cell"]): f["task"] for f in _lines(merged / "cells.jsonl")}
    assert finals[middle] == "late"
    # The replaced result's events are gone from the merged journal (they stay under tasks/).
    events = _lines(merged / "journal.jsonl")
    assert {e["task"] for e in events if e.get("cell") == middle and "task" in e} == {"late"}
    assert json.loads((merged / "env" / "gate-tr126.json").read_text()) == gate
    rebundled = tmp_path / "merged.tar.gz"
    assert kit("bundle", str(merged), "-o", str(rebundled), "--no-plots").returncode == 0
    assert kit("verify", str(rebundled)).returncode == 0

    # A bundle that fails verification is not merged.
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bundles[0].read_bytes()[:-200])
    broken = kit("merge", str(bad), str(bundles[1]), "--out", str(tmp_path / "m2"))
    assert broken.returncode == 1 and "fails verification" in broken.stderr, broken.stderr
    assert not (tmp_path / "m2").exists()
    missing = kit("merge", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "m3"))
    assert missing.returncode == 1 and "not a run directory or bundle" in missing.stderr
