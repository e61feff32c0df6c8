"""Fork server, parallel precompile and --order interleaved, on real CPU sweeps."""

from __future__ import annotations

import itertools
import json
import os
import signal
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kit.runner.journal import read_jsonl
from kit.runner.plan import RunRequest
from kit.runner.service import start_run

pytestmark = pytest.mark.slow

ONE_CELL = """
schema: 1
id: one
defaults: {device: cpu, repetitions: 2, warmup: 0, max_new_tokens: 2, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
"""

PAIR = """
schema: 1
id: pair
defaults: {device: cpu, repetitions: 6, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: cmp
    backends:
      - {backend: transformers-eager, label: eager}
      - {backend: transformers-compile, label: compiled, compile: {backend: inductor, mode: default}}
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
"""


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(run_dir / "journal.jsonl"))


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_both_start_methods_run_a_group_and_journal_its_startup(
    tmp_path: Path, method: str
) -> None:
    matrix = tmp_path / "one.yaml"
    matrix.write_text(textwrap.dedent(ONE_CELL))
    out = tmp_path / "run"
    outcome = start_run(
        RunRequest(
            matrix=str(matrix),
            out=out,
            weights="random",
            start_method=method,
            selection="prompt_index=0",
        )
    )
    assert outcome.counts == {"ok": 1}
    evs = _events(out)
    spawned = [e for e in evs if e["event"] == "group_spawned"]
    started = [e for e in evs if e["event"] == "group_started"]
    assert [e["runner"]["start_method"] for e in spawned] == [method]
    assert started[0]["start_method"] == method and started[0]["startup_ms"] > 0
    if method == "forkserver":
        server = spawned[0]["runner"]["forkserver"]
        assert server["pid"] != started[0]["pid"]  # a fresh child, not the server itself
        # the server's own cache dirs were never written: children use their group's only
        assert not [p for p in (out / "forkserver-cache-never-used").rglob("*") if p.is_file()]


def test_interleaved_pair_alternates_blocks_and_no_group_reads_another_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    monkeypatch.setenv("KIT_AUDIT_OPENS", str(audit))
    matrix = tmp_path / "pair.yaml"
    matrix.write_text(textwrap.dedent(PAIR))
    out = tmp_path / "run"
    outcome = start_run(
        RunRequest(
            matrix=str(matrix),
            out=out,
            weights="random",
            order="interleaved",
            block_reps=3,
            selection="prompt_index=0",
        )
    )
    assert outcome.counts == {"ok": 4}, outcome.counts
    evs = _events(out)
    cells = {c["id"]: c for c in json.loads((out / "matrix" / "cells.json").read_text())}

    # precompile ran for the compiled group, into its own cache, before any measurement
    names = [e["event"] for e in evs]
    assert names.index("precompile_phase_finished") < names.index("sample")
    finished = {e["cell"]: e for e in evs if e["event"] == "cell_finished"}
    compiled = [f for c, f in finished.items() if cells[c]["backend"] == "transformers-compile"]
    for f in compiled:
        ev = f["evidence"]
        assert ev["precompile"]["compile_ms"] and ev["inductor_artifacts"]["output_code_modules"]
        assert ev["group_counters"]["unique_graphs"] > 0
        assert ev["group_counters"]["fxgraph_cache_hit"] > 0  # started from its own cache

    # the block schedule alternates between the two groups, and covers every repetition
    blocks = [e for e in evs if e["event"] == "block" and e["block"] > 0]
    order = [b["group_id"] for b in blocks]
    assert len(set(order)) == 2
    assert all(a != b for a, b in itertools.pairwise(order))
    timed = Counter(e["cell"] for e in evs if e["event"] == "sample" and not e["warmup"])
    assert set(timed.values()) == {6}
    summary = json.loads((out / "summary.json").read_text())
    assert summary

    # no process of one group ever opened or listed anything in another group's cache
    caches = {p.parent.name: p for p in (out / "groups").glob("*/compile-cache-*")}
    logs = list(audit.glob("*.log"))
    assert len(logs) >= 3  # precompile + two measuring processes
    seen_own = 0
    for log in logs:
        paths = log.read_text().splitlines()
        mine = {g for g in caches if any(str(out / "groups" / g) in p for p in paths)}
        assert len(mine) <= 1, log
        for gid, cache in caches.items():
            touched = [p for p in paths if p.startswith(str(cache))]
            if gid not in mine:
                assert not touched, (log, touched[:3])
            else:
                seen_own += bool(touched)
    assert seen_own >= 1  # the audit does see cache reads (the compiled group's own)


def test_a_refused_fork_falls_back_to_spawn_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.runner import forkserver

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise forkserver.ForkServerError("the fork server touched CUDA before forking")

    monkeypatch.setattr(forkserver.ForkServer, "fork", refuse)
    matrix = tmp_path / "one.yaml"
    matrix.write_text(textwrap.dedent(ONE_CELL))
    out = tmp_path / "run"
    outcome = start_run(
        RunRequest(matrix=str(matrix), out=out, weights="random", selection="prompt_index=0")
    )
    assert outcome.counts == {"ok": 1}
    spawned = [e for e in _events(out) if e["event"] == "group_spawned"]
    assert spawned[0]["runner"]["start_method"] == "spawn"
    assert "touched CUDA" in spawned[0]["runner"]["forkserver_note"]


def test_bad_interleave_requests_get_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.cli import main

    matrix = tmp_path / "one.yaml"
    matrix.write_text(textwrap.dedent(ONE_CELL))
    base = ["run", "--matrix", str(matrix), "--order", "interleaved"]
    assert main([*base, "--runner", "docker", "--out", str(tmp_path / "a")]) == 1
    assert "needs the host runner" in capsys.readouterr().err
    assert main([*base, "--block-reps", "0", "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "--block-reps 0 is out of range" in err and "Traceback" not in err


FATAL_PAIR = """
schema: 1
id: pair
defaults: {device: cpu, repetitions: 4, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: cmp
    on_error: continue
    backends:
      - {backend: transformers-eager, label: eager}
      - {backend: transformers-compile, label: compiled, compile: {backend: inductor, mode: default}}
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
"""


def test_interleaved_cell_suspended_by_a_fatal_error_is_continued_serially(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIT_TEST_CALL_HOOK", json.dumps({"fatal": [2], "group": "cmp"}))
    matrix = tmp_path / "pair.yaml"
    matrix.write_text(textwrap.dedent(FATAL_PAIR))
    out = tmp_path / "run"
    request = RunRequest(matrix=str(matrix), out=out, weights="random", order="interleaved",
                         block_reps=2, selection="prompt_index=0")  # fmt: skip
    outcome = start_run(request)
    assert outcome.counts == {"degraded": 2}, outcome.counts
    evs = _events(out)
    assert len([e for e in evs if e["event"] == "cell_suspended"]) == 2
    for e in evs:
        if e["event"] == "cell_finished":
            assert any("1 of 4 timed calls failed" in r for r in e["reasons"]), e["reasons"]
            assert [c["attempt"] for c in e["evidence"]["continued"]] == [2]
    # each cell: 4 timed calls over two processes; the compiled cell compiles in each
    timed = Counter(e["cell"] for e in evs if e["event"] == "sample" and not e["warmup"])
    assert set(timed.values()) == {4}
    compiles = Counter(
        e["attempt"] for e in evs if e["event"] == "phase" and e["phase"] == "compile"
    )
    assert compiles == {1: 1, 2: 1}


TWO_COMPILED = """
schema: 1
id: two
defaults: {device: cpu, repetitions: 4, warmup: 1, max_new_tokens: 2, seed: 42}
groups:
  - id: cmp
    backends:
      - {backend: transformers-eager, label: eager}
      - {backend: transformers-compile, label: compiled, compile: {backend: inductor, mode: default}}
      - {backend: transformers-compile, label: compiled-dyn, compile: {backend: inductor, mode: default, dynamic: true}}
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
"""


def test_parked_groups_compile_first_and_are_measured_in_the_process_that_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = tmp_path / "audit"
    audit.mkdir()
    monkeypatch.setenv("KIT_AUDIT_OPENS", str(audit))
    matrix = tmp_path / "two.yaml"
    matrix.write_text(textwrap.dedent(TWO_COMPILED))
    out = tmp_path / "run"
    outcome = start_run(
        RunRequest(matrix=str(matrix), out=out, weights="random", selection="prompt_index=0")
    )
    assert outcome.counts == {"ok": 6}, outcome.counts
    evs = _events(out)
    cells = {c["id"]: c for c in json.loads((out / "matrix" / "cells.json").read_text())}
    started = next(e for e in evs if e["event"] == "precompile_phase_started")
    finished = next(e for e in evs if e["event"] == "precompile_phase_finished")
    assert started["park"] is True and len(started["groups"]) == 2
    assert sorted(finished["parked"]) == sorted(started["groups"])
    assert all(".transformers-compile." in g for g in started["groups"])
    # one process per group, each loading once: the compiled ones are not loaded twice
    spawned = [e for e in evs if e["event"] == "group_spawned"]
    assert len(spawned) == 3 and sum(bool(e.get("park")) for e in spawned) == 2
    assert len([e for e in evs if e["event"] == "phase" and e["phase"] == "load"]) == 3
    assert not [e for e in evs if e["event"] == "phase" and e["phase"] == "precompile"]
    # nothing was measured while anything compiled (true times, not journal order: a parked
    # process's events are journaled when it is adopted)
    samples = [e["t_ns"] for e in evs if e["event"] == "sample"]
    compiles = [e for e in evs if e["event"] == "phase" and e["phase"] == "compile"]
    parked = [e for e in evs if e["event"] == "parked"]
    assert len(parked) == 2 and len(compiles) == 4  # every compiled cell's compile call
    assert max(e["t1_ns"] for e in compiles) < min(samples)
    assert max(e["t_ns"] for e in parked) < min(samples)
    # the report's co-scheduling counts measuring spans: compiling ahead side by side is not
    # "beside another" (nothing was measured then)
    from kit.stats.coschedule import group_runs

    runs = group_runs(evs)
    assert len(runs) == 3 and not [r for r in runs if r.beside]
    assert len([e for e in evs if e["event"] == "group_unparked"]) == 2
    done = {e["cell"]: e for e in evs if e["event"] == "cell_finished"}
    for cid, e in done.items():
        if cells[cid]["backend"] == "transformers-compile":
            ev = e["evidence"]
            assert ev["compiled"] and ev["group_counters"]["unique_graphs"] > 0
            assert ev["inductor_artifacts"]["output_code_modules"] > 0
            assert ev["first_call_counters"]["frames_ok"] >= 1
    # no process of one group opened or listed anything in another group's cache
    caches = {p.parent.name: p for p in (out / "groups").glob("*/compile-cache-*")}
    assert len(caches) == 3
    for log in audit.glob("*.log"):
        paths = log.read_text().splitlines()
        mine = {g for g in caches if any(str(out / "groups" / g) in p for p in paths)}
        assert len(mine) <= 1, log
        for gid, cache in caches.items():
            if gid not in mine:
                assert not [p for p in paths if p.startswith(str(cache))], log


def test_a_parked_process_that_dies_is_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    matrix = tmp_path / "pair.yaml"
    matrix.write_text(textwrap.dedent(PAIR))
    out = tmp_path / "run"
    killed: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "group_parked" and not killed:
            killed.append(event["group_id"])
            os.kill(int(event["pid"]), signal.SIGKILL)

    outcome = start_run(
        RunRequest(matrix=str(matrix), out=out, weights="random", selection="prompt_index=0"),
        on_event=on_event,
    )
    assert killed and outcome.counts == {"ok": 4}, outcome.counts
    evs = _events(out)
    attempts = [e["attempt"] for e in evs if e["event"] == "group_spawned" and e["group_id"] == killed[0]]  # fmt: skip
    assert attempts == [1, 2]
    warned = [e for e in evs if e["event"] == "log" and e.get("group_id") == killed[0]]
    assert any("parked process ended before measuring" in e["message"] for e in warned)


def test_a_group_that_ends_while_compiling_ahead_says_why_at_once_and_goes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fatal error in a compile call ends the compiled group's process before it parks
    (the H100's phase3-reduce-overhead group did this on every call of 2026-12-08). The
    journal says so when it happens, and the group is measured before the listed groups
    ahead of it, so a sweep stopped before its turn still keeps that crash record."""
    from kit.cli import main
    from kit.harness.group import TEST_HOOK_ENV

    matrix = tmp_path / "pair.yaml"
    matrix.write_text(textwrap.dedent(PAIR))
    monkeypatch.setenv(TEST_HOOK_ENV, json.dumps({"mode": "prefill", "fatal": [-1]}))
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--matrix", "pair.yaml", "--weights", "random",
                 "--select", "prompt_index=0", "--out", "run"])  # fmt: skip
    assert code == 3  # a cell crashed
    assert "crash: " in capsys.readouterr().err
    out = tmp_path / "run"
    evs = _events(out)
    cells = {c["id"]: c for c in json.loads((out / "matrix" / "cells.json").read_text())}
    ended = [e for e in evs if e["event"] == "group_ended_unparked"]
    assert len(ended) == 1 and ".transformers-compile." in ended[0]["group_id"]
    assert ended[0]["returncode"] == 3 and ended[0]["finished"] == {"crash": 1}
    assert "illegal memory access" in ended[0]["first_crash"]
    finished = [cells[e["cell"]] for e in evs if e["event"] == "cell_finished"]
    # listed order is eager first; the ended compiled group's crash is journaled before it
    assert finished[0]["backend"] == "transformers-compile" and finished[0]["mode"] == "prefill"
    assert [c["backend"] for c in finished[1:]] == ["transformers-compile"] + 2 * [
        "transformers-eager"
    ]
    statuses = Counter(json.loads(x)["status"] for x in (out / "cells.jsonl").read_text().splitlines())  # fmt: skip
    assert statuses == {"ok": 3, "crash": 1}


def test_park_max_zero_keeps_the_separate_precompile_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.cli import main

    matrix = tmp_path / "pair.yaml"
    matrix.write_text(textwrap.dedent(PAIR))
    out = tmp_path / "run"
    args = ["run", "--matrix", str(matrix), "--weights", "random", "--select", "prompt_index=0"]
    assert main([*args, "--park-max", "-1", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "--park-max -1 is out of range" in err and "Traceback" not in err
    assert main([*args, "--park-max", "0", "--out", str(out)]) == 0
    evs = _events(out)
    assert [e for e in evs if e["event"] == "phase" and e["phase"] == "precompile"]
    assert not [e for e in evs if e["event"] == "parked"]
    header = json.loads((out / "run.json").read_text())
    assert header["settings"]["park_max"] == 0


def test_a_failing_cell_does_not_stop_the_separate_precompile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--park-max 0: a precompile process whose cell raises records the error and compiles
    the next cells ahead anyway (before, it stopped at the first error and left every later
    cell to its measuring process). Whether the measuring process then hits the cache depends
    on dynamo seeing the same compile sequence (automatic dynamic shapes), so it is not
    asserted here."""
    from kit.cli import main
    from kit.harness.group import TEST_HOOK_ENV

    matrix = tmp_path / "pair.yaml"
    matrix.write_text(textwrap.dedent(PAIR))
    monkeypatch.setenv(TEST_HOOK_ENV, json.dumps({"mode": "prefill", "fail": [-1]}))
    out = tmp_path / "run"
    code = main(["run", "--matrix", str(matrix), "--weights", "random", "--park-max", "0",
                 "--select", "prompt_index=0,backend=transformers-compile", "--out", str(out)])  # fmt: skip
    assert code == 0
    evs = _events(out)
    cells = {c["id"]: c["mode"] for c in json.loads((out / "matrix" / "cells.json").read_text())}
    pre = {cells[e["cell"]]: e["detail"] for e in evs if e["event"] == "phase" and e["phase"] == "precompile"}  # fmt: skip
    assert "test hook" in pre["prefill"]["error"]
    assert "error" not in pre["kv_decode"] and pre["kv_decode"]["fxgraph_cache_miss"] >= 1
    statuses = {json.loads(x)["cell"]: json.loads(x)["status"] for x in (out / "cells.jsonl").read_text().splitlines()}  # fmt: skip
    assert sorted(statuses.values()) == ["ok", "ok"]  # the hook fails only precompile calls
    assert any("failed, going on" in str(e.get("message")) for e in evs if e["event"] == "log")
