"""Parallel precompile: before any group is measured, compile every compiled group's shapes,
several groups at once, each in its own process and into ITS OWN group's fresh compiler cache
(groups/<group>/compile-cache-1). The group's measuring process later starts from that cache
and nothing else (TR126's pitfall stays impossible: no directory is shared between groups).

Nothing is measured meanwhile: precompile is a phase of its own, journaled
(`precompile_phase_started`, the harness's `precompile_*` and `phase` events with the group
id, `precompile_exited`, `precompile_phase_finished`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell
from kit.runner.base import GroupJob

COMPILED_BACKENDS = ("transformers-compile",)


def default_jobs(n_groups: int) -> int:
    """Groups compiled at once: a quarter of the cores each (Inductor compiles kernels in
    its own worker pool), at least one."""
    return max(1, min(n_groups, (os.cpu_count() or 1) // 4))


def precompile_groups(
    sweep: Any, groups: list[list[Cell]], inputs: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """group id -> {ms per cell, wall_ms, exit}: the groups whose cache was precompiled."""
    todo = [g for g in groups if g[0].backend in COMPILED_BACKENDS]
    if not todo or sweep.controls.stopping:
        return {}
    prepared = _prepared(sweep, todo)
    jobs = int(sweep.settings.get("precompile_jobs") or default_jobs(len(prepared)))
    sweep.record(
        {
            "event": "precompile_phase_started",
            "groups": [g[0].group_id() for g, _, _ in prepared],
            "parallel": jobs,
        }
    )
    t0 = time.monotonic_ns()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda p: _one(sweep, p[0], p[1], p[2], inputs), prepared))
    done = {gid: rec for gid, rec in results if rec is not None}
    sweep.record(
        {
            "event": "precompile_phase_finished",
            "wall_ms": round((time.monotonic_ns() - t0) / 1e6, 1),
            "precompiled": sorted(done),
        }
    )
    return done


def _prepared(
    sweep: Any, groups: list[list[Cell]], journal: bool = False
) -> list[tuple[list[Cell], Path, dict[str, Any]]]:
    """(group, model dir, model record) of each group whose model could be prepared, one
    after another (two groups may share one checkpoint); `journal`: record `model_prepared`
    now (a parked group's _run_group does not)."""
    prepared = []
    for group in groups:
        try:
            model_dir, record = sweep._prepare_model(group[0])
        except KitError:
            continue  # _run_group reports the cells skipped
        if journal:
            sweep.record(
                {"event": "model_prepared", "group_id": group[0].group_id(), "model": record}
            )
        prepared.append((group, model_dir, record))
    return prepared


def _one(
    sweep: Any,
    group: list[Cell],
    model_dir: Path,
    model_record: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
) -> tuple[str, dict[str, Any] | None]:
    gid = group[0].group_id()
    if sweep.controls.stopping:
        return gid, None
    # A fresh compile-cache-1 (the group is not yet in sweep.precompiled).
    job = sweep.new_job(
        group, 1, model_dir, model_record, inputs,
        input_name="input-precompile.json", harness_args=("--precompile",),
    )  # fmt: skip
    cache_dir = job.compile_cache_dir
    t0 = time.monotonic_ns()
    proc = sweep.runner.start(job)
    per_cell: dict[str, float] = {}
    counters: dict[str, Any] = {}
    deadline = time.monotonic() + job.timeout_s
    for line in proc.lines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or "event" not in event:
            continue
        event["group_id"] = gid
        event["attempt"] = 0
        if event["event"] == "phase" and event.get("phase") == "precompile":
            per_cell[str(event.get("cell"))] = float(event.get("ms") or 0.0)
            counters[str(event.get("cell"))] = event.get("detail")
        sweep.record(event)
        if sweep.controls.abort.is_set() or time.monotonic() > deadline:
            proc.stop()
            break
    info = proc.wait()
    wall_ms = round((time.monotonic_ns() - t0) / 1e6, 1)
    sweep.record(
        {
            "event": "precompile_exited",
            "group_id": gid,
            "returncode": info.returncode,
            "detail": info.detail,
            "wall_ms": wall_ms,
            "runner": sweep.runner.describe(job),
        }
    )
    if not info.clean or not per_cell:
        return gid, None
    return gid, {
        "cache_dir": str(cache_dir),
        "wall_ms": wall_ms,
        "compile_ms": per_cell,
        "counters": counters,
    }


# -- parking: the measuring process compiles, then waits its turn ---------------------------
@dataclasses.dataclass
class Parked:
    """A compiled group's measuring process (attempt 1) that compiled its cells' shapes
    while nothing was measured and now waits for `go`; `buffered`: its events so far (the
    runner journals them when it adopts the process, with the rest of its stream)."""

    job: GroupJob
    proc: Any
    lines: Iterator[str]
    spawn_ns: int
    buffered: list[str]
    parked: bool  # False: it ended before parking (its buffered events say how)
    wall_ms: float = 0.0


def default_park_max() -> int:
    """Compiled groups parked at once (each holds its model, CUDA context and compiler
    workers): a quarter of the cores, at least two."""
    return max(2, (os.cpu_count() or 1) // 4)


def can_park(sweep: Any) -> bool:
    """Parking needs a runner that can write to the group's stdin (the host runner), the
    listed order, and no per-GPU scheduler; `--park-max 0` turns it off."""
    settings = sweep.settings
    return (
        bool(settings.get("precompile", True))
        and settings.get("park_max") != 0
        and settings.get("runner", "host") == "host"
        and settings.get("order") != "interleaved"
        and not (sweep.placed and sweep.isolation == "per-gpu")
    )


def run_parked(sweep: Any, groups: list[list[Cell]], inputs: dict[str, dict[str, Any]]) -> bool:
    """The listed order in windows of at most `park_max` compiled groups: the window's
    compiled groups start at once and compile (nothing is measured meanwhile), then every
    group of the window is measured in turn, a compiled one in the process that compiled it.
    Returns False when the sweep was stopped (resumable)."""
    limit = int(sweep.settings.get("park_max") or default_park_max())
    compiled = [i for i, g in enumerate(groups) if g[0].backend in COMPILED_BACKENDS]
    start = 0
    while start < len(groups):
        ahead = [i for i in compiled if i >= start]
        end = ahead[limit] if len(ahead) > limit else len(groups)
        window = groups[start:end]
        parked = park_groups(
            sweep, [g for g in window if g[0].backend in COMPILED_BACKENDS], inputs
        )
        try:
            for group in _ended_first(window, parked):
                if sweep.controls.stopping:
                    return False
                gid = group[0].group_id()
                if not sweep._run_group(group, inputs, parked=parked.pop(gid, None)):
                    return False
        finally:
            for left in parked.values():  # stopped early: never adopted
                left.proc.stop()
                left.proc.wait()
        start = end
    return True


def park_groups(
    sweep: Any, groups: list[list[Cell]], inputs: dict[str, dict[str, Any]]
) -> dict[str, Parked]:
    """Start each group's measuring process with `--park`, several at once, and read each
    until it parks (or ends). group id -> Parked."""
    if not groups or sweep.controls.stopping:
        return {}
    prepared = _prepared(sweep, groups, journal=True)
    if not prepared:
        return {}
    jobs = int(sweep.settings.get("precompile_jobs") or default_jobs(len(prepared)))
    sweep.record(
        {
            "event": "precompile_phase_started",
            "groups": [g[0].group_id() for g, _, _ in prepared],
            "parallel": jobs,
            "park": True,
        }
    )
    t0 = time.monotonic_ns()
    started: dict[int, tuple[Any, float]] = {}  # id -> (process, deadline), still compiling
    done = threading.Event()

    def watchdog() -> None:
        # An abort stops every process being compiled at once; one past its group's time
        # limit before it parks is stopped as timed out.
        while not done.wait(0.1):
            aborted = sweep.controls.abort.is_set()
            for key, (proc, deadline) in list(started.items()):
                if aborted or time.monotonic() > deadline:
                    if not aborted and hasattr(proc, "mark_timed_out"):
                        proc.mark_timed_out()
                    proc.stop()
                    started.pop(key, None)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(
                pool.map(lambda p: _park_one(sweep, p[0], p[1], p[2], inputs, started), prepared)
            )
    finally:
        done.set()
    found = {p.job.group_id: p for p in results if p is not None}
    sweep.record(
        {
            "event": "precompile_phase_finished",
            "wall_ms": round((time.monotonic_ns() - t0) / 1e6, 1),
            "parked": sorted(g for g, p in found.items() if p.parked),
            "ended_before_parking": sorted(g for g, p in found.items() if not p.parked),
        }
    )
    return found


def _park_one(
    sweep: Any,
    group: list[Cell],
    model_dir: Path,
    model_record: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    started: dict[int, tuple[Any, float]],
) -> Parked | None:
    gid = group[0].group_id()
    if sweep.controls.stopping:
        return None
    job = sweep.new_job(
        group, 1, model_dir, model_record, inputs, harness_args=("--park",), interactive=True
    )
    spawn_ns = time.monotonic_ns()
    proc = sweep.runner.start(job)
    started[id(proc)] = (proc, time.monotonic() + job.timeout_s)
    sweep.record(
        {
            "event": "group_spawned",
            "group_id": gid,
            "attempt": 1,
            "cells": len(group),
            "runner": sweep.runner.describe(job),
            "park": True,
            **sweep.spawn_fields(job),
        }
    )
    lines = iter(proc.lines())
    buffered: list[str] = []
    parked = False
    for line in lines:
        buffered.append(line)
        if '"parked"' in line and _is_parked(line):
            parked = True
            break
    started.pop(id(proc), None)  # parked (its group's clock starts again when adopted)
    wall_ms = round((time.monotonic_ns() - spawn_ns) / 1e6, 1)
    event: dict[str, Any] = {"event": "group_parked" if parked else "group_ended_unparked",
                             "group_id": gid, "pid": getattr(proc, "pid", None),
                             "wall_ms": wall_ms}  # fmt: skip
    if not parked:
        # Said now, not only at the group's turn (a sweep stopped before it would never say).
        info = proc.wait(timeout_s=30.0)
        event.update(returncode=info.returncode, signal=info.signal, **_ended_how(buffered))
    sweep.record(event)
    return Parked(job, proc, lines, spawn_ns, buffered, parked, wall_ms)


def _ended_how(buffered: list[str]) -> dict[str, Any]:
    """What a process that ended before parking had recorded: the cells it finished by
    status, and the first crash reason."""
    statuses: dict[str, int] = {}
    first = ""
    for line in buffered:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("event") != "cell_finished":
            continue
        status = str(event.get("status"))
        statuses[status] = statuses.get(status, 0) + 1
        if status == "crash" and not first:
            first = str((event.get("reasons") or [""])[0])[:300]
    return {"finished": statuses, "first_crash": first or None}


def _ended_first(window: list[list[Cell]], parked: dict[str, Parked]) -> list[list[Cell]]:
    """The window's groups in listed order, except that those whose process ended while
    compiling ahead come first: their records (a crash in a compile call) are journaled at
    once instead of being lost when the sweep is stopped before their turn, and their
    processes hold nothing while the parked ones wait."""
    ended = {gid for gid, p in parked.items() if not p.parked}
    return [g for g in window if g[0].group_id() in ended] + [
        g for g in window if g[0].group_id() not in ended
    ]


def _is_parked(line: str) -> bool:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(event, dict) and event.get("event") == "parked"
