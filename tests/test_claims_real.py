"""Claims on real CPU runs: per-call errors (the harness test hook), an unstable cell from a
planted slow window, and the TR126 phase-2 / TR147 v1 claims regenerated from a bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kit.bundle.build import build_bundle
from kit.claims import claims_for_path
from kit.claims.render import dumps
from kit.claims.source import open_evidence
from kit.runner.journal import read_jsonl
from tests.cli_runs import REPO

pytestmark = pytest.mark.slow

HOOKED = """
schema: 1
id: hooked
title: per-call errors under the test hook
defaults: {device: cpu, repetitions: 12, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: keep-going
    on_error: continue
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
  - id: stop
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
"""


def test_failing_calls_are_error_samples_and_a_slow_window_is_unstable(tmp_path: Path) -> None:
    # reps count warmups: rep 0 is the warmup; 3 and 6 fail; 10..12 (the last window) are slow
    hook = {"fail": [3, 6], "slow": [10, 11, 12], "slow_ms": 40, "mode": "prefill"}
    env = {**os.environ, "KIT_TEST_CALL_HOOK": json.dumps(hook)}
    (tmp_path / "hooked.yaml").write_text(HOOKED)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--matrix", str(tmp_path / "hooked.yaml"),
         "--weights", "random", "--select", "prompt_index=0", "--out", str(run)],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]  # the `stop` cell crashed
    statuses = {r["cell"]: r for r in read_jsonl(run / "cells.jsonl")}
    cells = {c["group"]: c for c in json.loads((run / "matrix" / "cells.json").read_text())}
    keep, stop = statuses[cells["keep-going"]["id"]], statuses[cells["stop"]["id"]]
    assert keep["status"] == "degraded"
    assert any("2 of 12 timed calls failed" in r for r in keep["reasons"])
    assert stop["status"] == "crash" and "test hook" in " ".join(stop["reasons"])
    samples = [
        e
        for e in read_jsonl(run / "journal.jsonl")
        if e.get("event") == "sample" and e["cell"] == cells["keep-going"]["id"]
    ]
    errors = [s for s in samples if s["status"] == "error"]
    assert [s["rep"] for s in errors] == [3, 6]
    assert all("test hook" in s["error"] and s["latency_ms"] is None for s in errors)
    assert len(samples) == 13  # the cell kept calling to its repetitions
    evidence = open_evidence(run)
    keep_ev = evidence.cells[cells["keep-going"]["id"]]
    assert keep_ev.by_status == {"ok": 10, "error": 2}
    assert keep_ev.unstable
    medians = keep_ev.window_medians()
    assert medians[-1] > 1.1 * max(medians[:-1])


def _kit(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )  # fmt: skip


@pytest.mark.parametrize(
    ("matrix", "select", "claim"),
    [
        ("tr147", "group=v1-prefill,model=gpt2-25m,token_len=1", "tr147-v1-prefill-faster"),
        (
            "tr126",
            "group=phase2-dynamic,model=gpt2-25m,scenario=single_micro,prompt_index=0",
            "tr126-p2-dynamic-prefill-faster",
        ),
    ],
)
def test_claims_of_a_real_cpu_run_regenerate_from_its_bundle(
    tmp_path: Path, matrix: str, select: str, claim: str
) -> None:
    run = tmp_path / "run"
    proc = _kit(["run", "--matrix", matrix, "--select", select, "--device", "cpu", "--reps", "6",
                 "--warmup", "1", "--weights", "random", "--out", str(run)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    bundle = build_bundle(run, tmp_path / "b.tar.gz", plots=False).path
    report = claims_for_path(bundle)
    assert report.claims_file == "bundle matrix/claims.yaml"  # the bundle carries its claims
    got = {r.id: r for r in report.results}
    result = got[claim]
    assert result.verdict.startswith("partial 2 of ") and result.cells_run == 2
    assert result.n == 12 and result.low <= result.value <= result.high
    with tarfile.open(bundle) as tar:
        inside = tar.extractfile("report/claims.json").read().decode()  # type: ignore[union-attr]
    assert dumps(report) == inside
    again = _kit(["claims", str(bundle), "--json"])
    assert again.returncode == 0 and again.stdout == inside
    text = _kit(["claims", str(bundle)])
    assert claim in text.stdout and "partial 2 of" in text.stdout
    # kit compare adds a per-claim portability column (here a bundle against its own run)
    compared = _kit(["compare", str(bundle), str(run), "--json"])
    assert compared.returncode == 0, compared.stderr[-2000:]
    rows = {r["id"]: r for r in json.loads(compared.stdout)["claims"]}
    assert rows[claim]["verdict_a"] == rows[claim]["verdict_b"] == result.on_cells_run
    assert rows[claim]["portable"] in ("yes", "inconclusive")


ADAPTIVE = """
schema: 1
id: adaptive
title: adaptive repetitions
defaults: {device: cpu, repetitions: 4, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
"""


def test_until_ci_keeps_measuring_up_to_max_reps(tmp_path: Path) -> None:
    (tmp_path / "adaptive.yaml").write_text(ADAPTIVE)
    run = tmp_path / "run"
    # a CI half-width of 0.0001% is never reached: the cell stops at --max-reps
    proc = _kit(["run", "--matrix", str(tmp_path / "adaptive.yaml"), "--weights", "random",
                 "--select", "prompt_index=0", "--until-ci", "0.0001", "--max-reps", "7",
                 "--out", str(run)])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (cell,) = json.loads((run / "matrix" / "cells.json").read_text())
    assert cell["until_ci_pct"] == 0.0001 and cell["max_reps"] == 7  # recorded in the cell
    timed = [e for e in read_jsonl(run / "journal.jsonl") if e.get("event") == "sample" and not e["warmup"]]  # fmt: skip
    assert len(timed) == 7
    (finished,) = [e for e in read_jsonl(run / "journal.jsonl") if e.get("event") == "cell_finished"]  # fmt: skip
    adaptive = finished["evidence"]["adaptive"]
    assert adaptive["timed_ok"] == 7 and adaptive["reached"] is False
    assert adaptive["ci_half_width_pct"] > 0.0001


FATAL = """
schema: 1
id: fatal
title: a fatal device error under on_error continue
defaults: {device: cpu, repetitions: 4, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: fatal
    on_error: continue
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro, single_short]
    modes: [prefill]
"""


def _run_hooked(tmp_path: Path, matrix: str, hook: dict[str, object], *more: str) -> Path:
    (tmp_path / "m.yaml").write_text(matrix)
    run = tmp_path / "run"
    env = {**os.environ, "KIT_TEST_CALL_HOOK": json.dumps(hook)}
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--matrix", str(tmp_path / "m.yaml"),
         "--weights", "random", "--select", "prompt_index=0", "--out", str(run), *more],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )  # fmt: skip
    # exit 3 (CELLS_FAILED): the run finished with degraded or crashed cells
    assert proc.returncode == 3, proc.stderr[-2000:]
    return run


def test_a_fatal_device_error_ends_the_process_and_a_fresh_one_continues_the_cell(
    tmp_path: Path,
) -> None:
    # rep 0 is the warmup (rerun in each continuing process); rep 2 of each cell is fatal
    run = _run_hooked(tmp_path, FATAL, {"fatal": [2], "fail": [4], "group": "fatal"})
    cells = [c["id"] for c in json.loads((run / "matrix" / "cells.json").read_text())]
    statuses = {r["cell"]: r for r in read_jsonl(run / "cells.jsonl")}
    assert [statuses[c]["status"] for c in cells] == ["degraded", "degraded"]
    for cid in cells:
        assert any("2 of 4 timed calls failed" in r for r in statuses[cid]["reasons"])
    events = list(read_jsonl(run / "journal.jsonl"))
    suspended = [e for e in events if e.get("event") == "cell_suspended"]
    assert [(e["cell"], e["next_rep"], e["attempt"]) for e in suspended] == [
        (cells[0], 3, 1), (cells[1], 3, 2)
    ]  # fmt: skip
    assert "illegal memory access" in suspended[0]["fatal_error"]
    # process 1: cell 0 to its fatal rep; 2: cell 0 from rep 3, cell 1 to rep 2; 3: cell 1
    spawned = [e for e in events if e.get("event") == "group_spawned"]
    assert [e["attempt"] for e in spawned] == [1, 2, 3]
    first = [e for e in events if e.get("cell") == cells[0]]
    assert {e["attempt"] for e in first if e.get("event") == "sample"} == {1, 2}
    started = [e for e in first if e.get("event") == "cell_started"]
    assert [e.get("continues") for e in started] == [None, True]
    samples = [e for e in first if e.get("event") == "sample"]
    assert [(s["rep"], s["warmup"], s["status"]) for s in samples] == [
        (0, True, "ok"), (1, False, "ok"), (2, False, "error"),
        (0, True, "ok"), (3, False, "ok"), (4, False, "error"),
    ]  # fmt: skip
    assert samples[2]["fatal"] is True and "fatal" not in samples[5]
    (done,) = [e for e in first if e.get("event") == "cell_finished"]
    assert done["evidence"]["sample_counts"]["ok"] == 2
    assert done["evidence"]["sample_counts"]["error"] == 2
    assert done["evidence"]["continued"] == [
        {"attempt": 2, "from_rep": 3, "fatal_error": suspended[0]["fatal_error"]}
    ]
    # kit summarize: the ok samples of both processes, warmups left out
    summary = _kit(["summarize", str(run), "--json", "--no-write"])
    assert summary.returncode == 0, summary.stderr[-2000:]
    rows = {r["cell"]: r for r in json.loads(summary.stdout)["rows"]}
    assert rows[cells[0]]["counts"]["n"] == 2 and rows[cells[0]]["counts"]["superseded"] == 0
    # kit claims' evidence: the errors of both processes among the timed calls
    for source in (run, build_bundle(run, tmp_path / "b.tar.gz", plots=False).path):
        evidence = open_evidence(source)  # a bundle is verified first
        assert evidence.cells[cells[0]].by_status == {"ok": 2, "error": 2}


CAPPED = """
schema: 1
id: capped
title: a fatal device error on every call
defaults: {device: cpu, repetitions: 8, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: fatal
    on_error: continue
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
"""


@pytest.mark.parametrize(
    ("option", "restarts", "reason"),
    [
        ((), 3, "4 fatal device errors: each ended its process; gave up after 3 continuations"),
        (("--max-fatal-restarts", "1"), 1,
         "2 fatal device errors: each ended its process; gave up after 1 continuation;"),
    ],
)  # fmt: skip
def test_a_cell_fatal_on_every_call_gives_up_after_max_fatal_restarts(
    tmp_path: Path, option: tuple[str, ...], restarts: int, reason: str
) -> None:
    hook = {"fatal": list(range(2, 20)), "group": "fatal"}
    run = _run_hooked(tmp_path, CAPPED, hook, *option)
    (status,) = list(read_jsonl(run / "cells.jsonl"))
    assert status["status"] == "crash" and status["attempt"] == restarts + 1
    assert status["reasons"][0].startswith(reason)
    events = list(read_jsonl(run / "journal.jsonl"))
    assert len([e for e in events if e.get("event") == "group_spawned"]) == restarts + 1
    assert len([e for e in events if e.get("event") == "cell_suspended"]) == restarts + 1
    (done,) = [e for e in events if e.get("event") == "cell_finished"]
    assert done["evidence"]["sample_counts"]["error"] == restarts + 1
    assert [c["from_rep"] for c in done["evidence"]["continued"]] == list(range(3, 3 + restarts))
    assert any(e.get("event") == "run_finished" for e in events)


def test_a_run_stopped_after_a_suspension_reruns_the_cell_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.runner.plan import RunRequest
    from kit.runner.service import resume_run, start_run
    from kit.runner.sweep import Controls
    from kit.stats import summarize_run

    monkeypatch.setenv("KIT_TEST_CALL_HOOK", json.dumps({"fatal": [2], "group": "fatal"}))
    (tmp_path / "m.yaml").write_text(CAPPED)
    out = tmp_path / "run"
    controls = Controls()

    def on_event(event: dict[str, object]) -> None:
        if event["event"] == "cell_suspended":
            controls.abort.set()

    request = RunRequest(
        matrix=str(tmp_path / "m.yaml"), out=out, weights="random", selection="prompt_index=0"
    )
    first = start_run(request, controls, on_event)
    assert first.interrupted and first.counts == {"not_run": 1}
    second = resume_run(out)  # the continuation tallies are gone: the cell reruns
    assert not second.interrupted and second.counts == {"degraded": 1}
    (status,) = list(read_jsonl(out / "cells.jsonl"))
    assert any("1 of 8 timed calls failed" in r for r in status["reasons"])
    events = list(read_jsonl(out / "journal.jsonl"))
    started = [e.get("continues") for e in events if e.get("event") == "cell_started"]
    assert started == [None, None, True]  # first run, the resumed rerun, its continuation
    (row,) = summarize_run(out).rows
    assert row.latency.n == 7 and row.n_superseded == 3  # rep 0 (warmup), 1, 2 of the first run
