"""Parallel precompile: before any group is measured, compile every compiled group's shapes,
several groups at once, each in its own process and into ITS OWN group's fresh compiler cache
(groups/<group>/compile-cache-1). The group's measuring process later starts from that cache
and nothing else (TR126's pitfall stays impossible: no directory is shared between groups).

Nothing is measured meanwhile: precompile is a phase of its own, journaled
(`precompile_phase_started`, the harness's `precompile_*` and `phase` events with the group
id, `precompile_exited`, `precompile_phase_finished`).
"""

from __future__ import annotations

import json
import os
import time
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
    prepared = []
    for group in todo:  # serially: two groups may share one model checkpoint
        try:
            model_dir, record = sweep._prepare_model(group[0])
        except KitError:
            continue  # _run_group reports the cells skipped
        prepared.append((group, model_dir, record))
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
    group_dir = sweep.run_dir / "groups" / gid
    group_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = sweep.fresh_cache(group_dir, 1)  # fresh: not yet in sweep.precompiled
    spec = sweep.group_spec(group, model_dir, model_record, cache_dir, inputs)
    input_path = group_dir / "input-precompile.json"
    input_path.write_text(json.dumps(spec))
    job = GroupJob(
        group_id=gid,
        input_path=input_path,
        group_dir=group_dir,
        model_dir=model_dir,
        compile_cache_dir=cache_dir,
        backend=group[0].backend,
        device=group[0].device,
        gpu_index=sweep.gpu_for(group[0]),
        timeout_s=float(sweep.settings.get("group_timeout_s", 1800.0)),
        harness_args=("--precompile",),
    )
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
