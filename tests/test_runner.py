"""Real CPU sweeps through the host runner: journal, statuses, crash recovery, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kit.cli import main
from kit.runner.journal import finished_cells, read_jsonl
from kit.runner.plan import RunRequest
from kit.runner.service import resume_run, start_run
from kit.runner.sweep import Controls

pytestmark = pytest.mark.slow

TINY = """
schema: 1
id: tiny
title: tiny CPU matrix for tests
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro, single_short]
    modes: [prefill, kv_decode, e2e_kv, generate]
"""


@pytest.fixture()
def tiny_matrix(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY))
    return path


def events(run_dir: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(run_dir / "journal.jsonl"))


def test_sweep_measures_every_phase_and_journals_it(tiny_matrix: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    outcome = start_run(
        RunRequest(matrix=str(tiny_matrix), out=out, weights="random", argv=("kit", "run"))
    )
    assert outcome.counts == {"ok": 16} and not outcome.interrupted
    assert 0 < outcome.efficiency < 1
    evs = events(out)
    names = [e["event"] for e in evs]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    samples = [e for e in evs if e["event"] == "sample"]
    assert Counter(s["phase"] for s in samples) == {
        "prefill": 16,
        "kv_decode": 16,
        "e2e_kv": 16,
        "generate": 16,
    }
    assert sum(s["warmup"] for s in samples) == 16  # one warmup per cell, recorded and flagged
    for s in samples:
        assert s["status"] == "ok" and s["latency_ms"] > 0 and s["t1_ns"] > s["t0_ns"]
        assert s["tokens_out"] == (1 if s["phase"] == "prefill" else 4)
    load = [e for e in evs if e["event"] == "phase" and e["phase"] == "load"]
    assert len(load) == 1 and load[0]["ms"] > 0
    header = json.loads((out / "run.json").read_text())
    assert header["matrix"]["id"] == "tiny" and len(header["cell_ids"]) == 16
    assert header["git_commit"] is None or len(header["git_commit"]) == 40
    started = [e for e in evs if e["event"] == "cell_started"]
    assert all(e["prompt_ids"] and e["prompt_ids"][0] for e in started)
    summary = json.loads((out / "summary.json").read_text())
    assert summary  # written at the end of the run
    process_env = list((out / "env").glob("process-*.json"))
    assert len(process_env) == 1  # one group, one process: its own ML stack record
    stack = json.loads(process_env[0].read_text())
    assert stack["torch"] and stack["transformers"] and "flags" in stack
    # the host's CPU stack (torch 2.13.0+cpu, transformers 5.17.0) is the torch:cpu image's lock
    assert stack["stack"]["locked_stack"]["image"] == "torch:cpu", stack["stack"]


def test_killed_child_marks_the_cell_crash_and_a_fresh_child_continues(tmp_path: Path) -> None:
    # Many cheap repetitions per cell, so the kill (sent when the second cell's first sample
    # arrives) lands while that cell is still running, not between cells.
    path = tmp_path / "long.yaml"
    path.write_text(textwrap.dedent(LONG_CELLS))
    out = tmp_path / "run"
    state: dict[str, Any] = {"pid": None, "killed_cell": None, "order": []}

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "group_started" and state["pid"] is None:
            state["pid"] = event["pid"]
        if event["event"] == "cell_started":
            state["order"].append(event["cell"])
        if event["event"] == "sample" and state["killed_cell"] is None and len(state["order"]) == 2:
            state["killed_cell"] = event["cell"]
            os.kill(state["pid"], signal.SIGKILL)

    outcome = start_run(RunRequest(matrix=str(path), out=out, weights="random"), on_event=on_event)
    assert state["killed_cell"] == state["order"][1]
    final = finished_cells(out)
    assert final[state["killed_cell"]]["status"] == "crash"
    assert "SIGKILL" in final[state["killed_cell"]]["reasons"][0]
    assert outcome.counts == {"ok": 3, "crash": 1}
    spawned = [e for e in events(out) if e["event"] == "group_spawned"]
    assert [e["attempt"] for e in spawned] == [1, 2]
    assert spawned[1]["cells"] == 2  # the fresh child ran only the cells not yet finished


def test_a_segfaulting_child_leaves_its_python_stack_in_the_crash_reason(tmp_path: Path) -> None:
    # TR147 v4A on the H200: a reduce-overhead decode call ended its process by SIGSEGV with
    # no Python error; faulthandler (on in every group process) names where it was.
    path = tmp_path / "long.yaml"
    path.write_text(textwrap.dedent(LONG_CELLS))
    out = tmp_path / "run"
    state: dict[str, Any] = {"pid": None, "sent": False}

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "group_started" and state["pid"] is None:
            state["pid"] = event["pid"]
        if event["event"] == "sample" and not state["sent"]:
            state["sent"] = True
            os.kill(state["pid"], signal.SIGSEGV)

    outcome = start_run(RunRequest(matrix=str(path), out=out, weights="random"), on_event=on_event)
    assert outcome.counts.get("crash") == 1
    crashed = [c for c in finished_cells(out).values() if c["status"] == "crash"]
    reason = crashed[0]["reasons"][0]
    assert reason.startswith("killed by signal SIGSEGV: Segmentation fault"), reason
    logs = list((out / "groups").glob("*/stderr.log"))
    assert any("Fatal Python error: Segmentation fault" in p.read_text() for p in logs)


LONG_CELLS = """
schema: 1
id: long-cells
defaults: {device: cpu, repetitions: 1000, warmup: 0, max_new_tokens: 1, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro, single_short]
    modes: [prefill]
"""


def test_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    # Long cells, so the abort (sent at the second cell's first sample) lands mid-cell.
    path = tmp_path / "long.yaml"
    path.write_text(textwrap.dedent(LONG_CELLS))
    out = tmp_path / "run"
    controls = Controls()
    started: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "cell_started":
            started.append(event["cell"])
        if event["event"] == "sample" and len(started) == 2 and not controls.abort.is_set():
            controls.abort.set()

    first = start_run(RunRequest(matrix=str(path), out=out, weights="random"), controls, on_event)
    half_done = started[1]
    assert first.interrupted and first.counts == {"ok": 1, "not_run": 3}
    assert events(out)[-1]["event"] == "interrupted"
    assert half_done not in finished_cells(out)
    second = resume_run(out)
    assert not second.interrupted and second.counts == {"ok": 4}
    starts = Counter(e["cell"] for e in events(out) if e["event"] == "cell_started")
    assert starts[half_done] == 2  # the half-done cell reran from its start
    assert starts[started[0]] == 1  # the completed cell was not rerun
    rows = json.loads((out / "summary.json").read_text())
    assert half_done in json.dumps(rows)


def test_ctrl_c_stops_cleanly_with_the_interrupted_exit_code(
    tiny_matrix: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kit",
            "run",
            "--matrix",
            str(tiny_matrix),
            "--out",
            str(out),
            "--weights",
            "random",
            "--reps",  # cells long enough that the run cannot end before the SIGINT lands
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(finished_cells(out)) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with" in err and "Traceback" not in err
    evs = events(out)
    assert evs[-1]["event"] == "interrupted"
    pids = [e["pid"] for e in evs if e["event"] == "group_started"]
    for pid in pids:  # no harness child left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_bad_input_gets_one_line_and_nonzero_exit(
    tiny_matrix: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [
        (["run", "--matrix", "tr999", "--out", str(tmp_path / "a")], "unknown matrix"),
        (
            ["run", "--matrix", "tr126", "--select", "model=nope", "--out", str(tmp_path / "b")],
            "matches no cell",
        ),
        (
            ["run", "--matrix", str(tiny_matrix), "--device", "cuda", "--out", str(tmp_path / "c")],
            "need device cuda",
        ),
        (["run", "--matrix", "tr126"], "needs --matrix and --out"),
    ]
    monkeypatch.setenv("KIT_NVML_FAKE", "none")
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.startswith("error:") and "Traceback" not in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "run.json").write_text("{}")
    assert main(["run", "--matrix", str(tiny_matrix), "--out", str(taken)]) == 1
    assert "already holds a run" in capsys.readouterr().err


def test_a_frame_past_dynamos_recompile_limit_is_not_called_compiled(tmp_path: Path) -> None:
    # Dynamic-cache decode with dynamic=False: every step's longer cache and mask are new
    # shapes, so a recompile. Past the limit dynamo runs the frame EAGER, silently: the kit must
    # say so in this cell and in every later cell of the process. (Dynamo's own "eager"
    # backend keeps the test fast; the fallback does not depend on the backend.)
    path = tmp_path / "limit.yaml"
    path.write_text(
        textwrap.dedent("""
        schema: 1
        id: recompile-limit
        defaults: {device: cpu, repetitions: 2, warmup: 1, max_new_tokens: 4}
        groups:
          - id: tight
            backends: [{backend: transformers-compile, label: compiled, compile: {backend: eager, dynamic: false, recompile_limit: 2}}]
            models: [tiny-gpt2]
            scenarios: [single_micro, single_short]
            modes: [kv_decode]
          - id: roomy
            backends: [{backend: transformers-compile, label: compiled, compile: {backend: eager, dynamic: false}}]
            models: [tiny-gpt2]
            scenarios: [single_micro]
            modes: [kv_decode]
    """)
    )
    out = tmp_path / "run"
    start_run(RunRequest(matrix=str(path), out=out, weights="random", selection="prompt_index=0"))
    finished = [e for e in events(out) if e["event"] == "cell_finished"]
    cells = {c["id"]: c for c in json.loads((out / "matrix" / "cells.json").read_text())}
    by_group: dict[str, list[dict[str, Any]]] = {}
    for ev in finished:
        by_group.setdefault(cells[ev["cell"]]["group"], []).append(ev)
    assert len(by_group["tight"]) == 2
    for ev in by_group["tight"]:  # the first cell hit the limit; the second inherits it
        assert ev["status"] == "degraded"
        assert any("hit its recompile limit (2) on 1 frame(s)" in r and "eager" in r
                   for r in ev["reasons"]), ev["reasons"]  # fmt: skip
        counters = ev["evidence"]["group_counters"]
        assert counters["frames_total"] > counters["frames_ok"]
        assert counters["recompile_limit_hits"] == 1
    (roomy,) = by_group["roomy"]
    assert not any("recompile limit" in r for r in roomy["reasons"]), roomy["reasons"]
    assert roomy["evidence"]["group_counters"]["recompile_limit_hits"] == 0
    assert roomy["evidence"]["group_counters"]["unique_graphs"] >= 5  # prefill + 4 steps
    assert "during_timed_calls" in roomy["evidence"]["first_call_counters"]


def test_compile_is_proved_not_labelled(tmp_path: Path) -> None:
    path = tmp_path / "compile.yaml"
    path.write_text(
        textwrap.dedent("""
        schema: 1
        id: compile-proof
        defaults: {device: cpu, repetitions: 2, warmup: 1, max_new_tokens: 2}
        groups:
          - id: real
            backends: [{backend: transformers-compile, label: compiled, compile: {backend: inductor, mode: default}}]
            models: [tiny-gpt2]
            scenarios: [single_micro]
            modes: [prefill]
          - id: fake
            backends: [{backend: transformers-compile, label: compiled, compile: {backend: aot_eager}}]
            models: [tiny-gpt2]
            scenarios: [single_micro]
            modes: [prefill]
    """)
    )
    out = tmp_path / "run"
    start_run(RunRequest(matrix=str(path), out=out, weights="random", selection="prompt_index=0"))
    finished = {e["cell"]: e for e in events(out) if e["event"] == "cell_finished"}
    cells = {c["id"]: c for c in json.loads((out / "matrix" / "cells.json").read_text())}
    by_group = {cells[cid]["group"]: ev for cid, ev in finished.items()}
    real, fake = by_group["real"], by_group["fake"]
    assert real["status"] == "ok", real["reasons"]
    assert real["evidence"]["group_counters"]["unique_graphs"] > 0
    assert real["evidence"]["inductor_artifacts"]["output_code_modules"] > 0
    assert fake["status"] == "degraded"
    assert any("not Inductor" in r for r in fake["reasons"])
    compile_phases = [e for e in events(out) if e["event"] == "phase" and e["phase"] == "compile"]
    assert len(compile_phases) == 2 and all(e["ms"] > 0 for e in compile_phases)
    # each group compiled into its own fresh cache directory
    caches = sorted(p.name for p in (out / "groups").glob("*/compile-cache-*"))
    assert len(caches) == 2
