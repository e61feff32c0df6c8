"""Real `kit run --gpus 0,1` sweeps of tiny CPU cells under the fake two-GPU NVML: per-gpu
groups really overlap, each process pinned to its GPU; the exclusive default never
overlaps; the journal, cells.jsonl, telemetry and the report say which ran beside which."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.gpu import nvml
from kit.runner.journal import finished_cells, read_jsonl
from kit.runner.plan import RunRequest
from kit.runner.service import start_run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

# Two groups (two matrix groups of one model), enough repetitions that each group process
# runs for seconds: started at once on two GPUs they overlap.
TWO_GROUPS = """
schema: 1
id: two-groups
defaults: {device: cpu, repetitions: 40, warmup: 1, max_new_tokens: 4, seed: 42}
groups:
  - id: first
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
  - id: second
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
"""


@pytest.fixture
def two_groups(tmp_path: Path) -> Path:
    path = tmp_path / "two-groups.yaml"
    path.write_text(textwrap.dedent(TWO_GROUPS))
    return path


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    nvml.shutdown()
    monkeypatch.setenv(nvml.FAKE_ENV, "two-gpus")
    yield
    nvml.shutdown()


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(run_dir / "journal.jsonl"))


def _spans(events: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """group id -> (gpu, spawn t_ns, exit t_ns) of its attempt-1 process."""
    spawned = {e["group_id"]: e for e in events if e["event"] == "group_spawned"}
    exited = {e["group_id"]: e for e in events if e["event"] == "child_exited"}
    return {g: (e["gpu"], e["t_ns"], exited[g]["t_ns"]) for g, e in spawned.items()}


def test_per_gpu_groups_overlap_each_pinned_to_its_gpu(two_groups: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "KIT_NVML_FAKE": "two-gpus"}
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--matrix", str(two_groups), "--weights", "random",
         "--gpus", "0,1", "--isolation", "per-gpu", "--idle-baseline", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = json.loads((out / "run.json").read_text())
    assert header["gpus"] == [0, 1] and header["isolation"] == "per-gpu"
    events = _events(out)
    spans = _spans(events)
    assert sorted(gpu for gpu, _, _ in spans.values()) == [0, 1]  # one group per GPU
    (_, a0, a1), (_, b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, "the two group processes did not overlap in time"
    later = max(spans.items(), key=lambda kv: kv[1][1])[0]
    spawned = next(e for e in events if e["event"] == "group_spawned" and e["group_id"] == later)
    assert [r["group_id"] for r in spawned["running"]] == [g for g in spans if g != later]
    assert spawned["isolation"] == "per-gpu" and spawned["device"] == "cpu"
    # every event of a group process names its group and GPU
    for e in events:
        if e["event"] in ("sample", "cell_started", "cell_finished", "group_started"):
            assert e["gpu"] == spans[e["group_id"]][0]
    # each process saw its own GPU only (the harness's own record of CUDA_VISIBLE_DEVICES)
    for gid, (gpu, _, _) in spans.items():
        record = json.loads((out / "env" / f"process-{gid}.attempt1.json").read_text())
        assert record["cuda_visible_devices"] == str(gpu)
    # per cell: its GPU and the neighbours that ran beside it
    final = finished_cells(out)
    assert len(final) == 8 and {r["status"] for r in final.values()} == {"ok"}
    gpu_of_cell = {e["cell"]: e["gpu"] for e in events if e["event"] == "cell_started"}
    beside = {gid: 0 for gid in spans}
    for cell, row in final.items():
        assert row["gpu"] == gpu_of_cell[cell]
        for n in row["co_scheduled"]:
            assert n["gpu"] != row["gpu"] and n["gpu"] == spans[n["group_id"]][0]
            beside[n["group_id"]] += 1
    assert all(beside.values()), beside  # each group was some cell's neighbour
    # a sampler per GPU, and each cell's phases joined to its own GPU's telemetry
    assert (out / "telemetry" / "gpu0.csv").is_file() and (out / "telemetry" / "gpu1.csv").is_file()
    started = [e for e in events if e["event"] == "sampler_started"]
    assert [(e["gpu"], e["available"]) for e in started] == [(0, True), (1, True)]
    phases = [json.loads(line) for line in (out / "telemetry" / "phases.jsonl").open()]
    cell_phases = [r for r in phases if r["scope"] == "cell_phase"]
    assert len(cell_phases) == 8
    assert all(r["gpu"] == gpu_of_cell[r["cell"]] for r in cell_phases)
    # the report's Co-scheduling table
    report = subprocess.run(
        [sys.executable, "-m", "kit", "report", str(out), "--out", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    text = (tmp_path / "report" / "REPORT.md").read_text()
    section = text.split("## Co-scheduling", 1)[1].split("\n## ", 1)[0]
    assert "isolation per-gpu on GPUs 0, 1" in section and "2 of 2 group processes" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    assert len(rows) == 2 and all(gid in section for gid in spans)
    assert (tmp_path / "report" / "co_scheduling.csv").is_file()


def test_exclusive_default_places_round_robin_and_never_overlaps(
    two_groups: Path, tmp_path: Path, two_gpus: None
) -> None:
    out = tmp_path / "run"
    request = RunRequest(matrix=str(two_groups), out=out, weights="random", gpus=(0, 1),
                         repetitions=5, idle_baseline_s=0.0)  # fmt: skip
    outcome = start_run(request)
    assert outcome.counts == {"ok": 8} and not outcome.interrupted
    header = json.loads((out / "run.json").read_text())
    assert header["isolation"] == "exclusive" and header["gpus"] == [0, 1]
    events = _events(out)
    spans = sorted(_spans(events).values(), key=lambda s: s[1])
    assert [gpu for gpu, _, _ in spans] == [0, 1]  # round-robin, in run order
    assert spans[0][2] < spans[1][1]  # the second started after the first exited
    assert all(e["running"] == [] for e in events if e["event"] == "group_spawned")
    assert not any(e["event"] == "per_gpu_started" for e in events)
    assert all(row["co_scheduled"] == [] for row in finished_cells(out).values())
    from kit.bundle.report import report_from_path

    report_from_path(out, tmp_path / "report", with_plots=False)
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "exclusive: one group at a time on GPUs 0, 1 (groups placed round-robin" in text
    assert "0 of 2 group processes ran beside another" in text


def test_per_gpu_on_one_gpu_is_exclusive_and_says_so(
    two_groups: Path, tmp_path: Path, two_gpus: None
) -> None:
    out = tmp_path / "run"
    request = RunRequest(matrix=str(two_groups), out=out, weights="random", gpus=(1,),
                         isolation="per-gpu", repetitions=2, idle_baseline_s=0.0,
                         selection="mode=prefill")  # fmt: skip
    start_run(request)
    header = json.loads((out / "run.json").read_text())
    assert header["isolation"] == "exclusive" and header["isolation_asked"] == "per-gpu"
    events = _events(out)
    logs = [e["message"] for e in events if e["event"] == "log" and e.get("level") == "info"]
    assert any("on one GPU is exclusive" in m for m in logs)
    assert any("--gpus only places their group processes" in m for m in logs)  # CPU cells
    assert {e["gpu"] for e in events if e["event"] == "group_spawned"} == {1}


def test_per_gpu_contains_a_crash_on_one_gpu_and_resumes_on_the_same_gpus(
    two_groups: Path, tmp_path: Path, two_gpus: None
) -> None:
    from kit.runner.service import resume_run
    from kit.runner.sweep import Controls

    out = tmp_path / "run"
    controls = Controls()
    state: dict[str, Any] = {"pids": {}, "cells": {}, "killed": None, "aborted": False}

    def on_event(event: dict[str, Any]) -> None:  # called from the per-GPU workers
        gid = event.get("group_id")
        if event["event"] == "group_started":
            state["pids"][gid] = event["pid"]
        if event["event"] == "cell_started":
            state["cells"].setdefault(gid, []).append(event["cell"])
        if event["event"] != "sample" or event["gpu"] != 1:
            return
        if state["killed"] is None and len(state["cells"][gid]) == 2:
            state["killed"] = event["cell"]  # the GPU 1 group's second cell, mid-cell
            os.kill(state["pids"][gid], 9)
        elif state["killed"] and event["attempt"] == 2 and not state["aborted"]:
            state["aborted"] = True  # the fresh GPU 1 process runs: stop the whole run
            controls.abort.set()

    request = RunRequest(matrix=str(two_groups), out=out, weights="random", gpus=(0, 1),
                         isolation="per-gpu", idle_baseline_s=0.0)  # fmt: skip
    first = start_run(request, controls, on_event)
    assert first.interrupted and state["killed"]
    final = finished_cells(out)
    assert final[state["killed"]]["status"] == "crash"
    assert "SIGKILL" in final[state["killed"]]["reasons"][0]
    assert final[state["killed"]]["gpu"] == 1
    second = resume_run(out)
    assert not second.interrupted and second.counts == {"ok": 7, "crash": 1}
    spawned = [e for e in _events(out) if e["event"] == "group_spawned"]
    gpu_of = {}
    for e in spawned:  # every attempt of a group, before and after the resume, on one GPU
        assert gpu_of.setdefault(e["group_id"], e["gpu"]) == e["gpu"]
    assert sorted(gpu_of.values()) == [0, 1]
