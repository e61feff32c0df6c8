"""`--order interleaved`: the groups of one comparison run in alternating short blocks.

A comparison is the groups that share (matrix group, model, dtype, device) and differ in the
backend or its compile settings (e.g. eager and compiled of one model). Every group keeps its
own fresh process and compiler cache; all of a comparison's processes stay alive, each paused
by the harness between blocks (kit/harness/blocks.py) while another group measures. So host
drift over minutes hits both sides alike. Round robin: group A gets one block (its load,
compile and warmup belong to its first block), then B, then A, ...; each `block` event is
journaled with the group id (the schedule); the summary combines a cell's blocks, as all its
samples are the cell's samples.

A process that ends early (crash, fatal error) leaves the rotation; its remaining cells then
run serially in a fresh process, as in listed order.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell
from kit.runner.base import GroupJob
from kit.runner.plan import groups_in_order


def comparison_key(cell: Cell) -> tuple[str, str, str, str]:
    return (cell.group, cell.model, cell.dtype, cell.device)


def comparisons(groups: list[list[Cell]]) -> list[list[list[Cell]]]:
    """Groups gathered by comparison, in order of first appearance."""
    sets: dict[tuple[str, str, str, str], list[list[Cell]]] = {}
    for group in groups:
        sets.setdefault(comparison_key(group[0]), []).append(group)
    return list(sets.values())


@dataclasses.dataclass
class Member:
    group: list[Cell]
    job: GroupJob
    proc: Any
    lines: Iterator[str]
    spawn_ns: int
    finished: set[str] = dataclasses.field(default_factory=set)
    inflight: str | None = None
    ended: bool = False


def run_interleaved(sweep: Any, groups: list[list[Cell]], inputs: dict[str, Any]) -> bool:
    for members in comparisons(groups):
        if sweep.controls.stopping:
            return False
        if len(members) == 1:
            if not sweep._run_group(members[0], inputs):
                return False
            continue
        leftovers = _run_set(sweep, members, inputs)
        if leftovers is None:
            return False
        for group in groups_in_order(leftovers):
            if not sweep._run_group(group, inputs, first_attempt=2):
                return False
    return True


def _start(sweep: Any, group: list[Cell], inputs: dict[str, Any]) -> Member | None:
    first = group[0]
    gid = first.group_id()
    try:
        model_dir, record = sweep._prepare_model(first)
    except KitError:
        return None
    sweep.record({"event": "model_prepared", "group_id": gid, "model": record})
    block_reps = str(int(sweep.settings.get("block_reps") or 5))
    job = sweep.new_job(
        group, 1, model_dir, record, inputs,
        harness_args=("--block-reps", block_reps), interactive=True,
    )  # fmt: skip
    spawn_ns = time.monotonic_ns()
    proc = sweep.runner.start(job)
    sweep.record(
        {
            "event": "group_spawned",
            "group_id": gid,
            "attempt": 1,
            "cells": len(group),
            "runner": sweep.runner.describe(job),
            "interleaved": True,
        }
    )
    return Member(group, job, proc, iter(proc.lines()), spawn_ns)


def _run_set(sweep: Any, groups: list[list[Cell]], inputs: dict[str, Any]) -> list[Cell] | None:
    """Run one comparison interleaved; the cells left for a serial retry, or None when the
    sweep was stopped."""
    from kit.runner.sweep import _mark_startup, _parse

    members: list[Member] = []
    skipped: list[Cell] = []
    for group in groups:
        member = _start(sweep, group, inputs)
        if member is None:
            skipped.extend(group)  # the serial path reports "model not prepared"
        else:
            members.append(member)
    if not members:
        return skipped
    sweep.record(
        {
            "event": "interleave_started",
            "groups": [m.job.group_id for m in members],
            "block_reps": int(sweep.settings.get("block_reps") or 5),
        }
    )
    deadline = time.monotonic() + max(m.job.timeout_s for m in members) * len(members)
    done = threading.Event()

    def watchdog() -> None:
        while not done.is_set():
            aborted = sweep.controls.abort.wait(0.05)
            if aborted or time.monotonic() > deadline:
                for m in members:
                    if not aborted and hasattr(m.proc, "mark_timed_out"):
                        m.proc.mark_timed_out()
                    m.proc.stop()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    stopped = False
    try:
        # Each process first pauses before loading (block 0); then round robin.
        for m in members:
            _advance(sweep, m, inputs, _mark_startup, _parse)
        while any(not m.ended for m in members) and not stopped:
            for m in members:
                if m.ended:
                    continue
                if sweep.controls.stopping:
                    stopped = True
                    break
                try:
                    assert m.proc.stdin is not None
                    m.proc.stdin.write("go\n")
                    m.proc.stdin.flush()
                except (OSError, ValueError):
                    pass  # it is ending: _advance reads to EOF
                _advance(sweep, m, inputs, _mark_startup, _parse)
    finally:
        done.set()
        for m in members:
            if not m.ended:
                m.proc.stop()
                _finish(sweep, m)
    if sweep.controls.abort.is_set() or stopped:
        return None
    left = [c for m in members for c in m.group if c.id not in m.finished]
    return skipped + left


def _advance(sweep: Any, m: Member, inputs: dict[str, Any], mark: Any, parse: Any) -> None:
    """Read one member's events until it pauses (a `block` event) or ends."""
    for line in m.lines:
        event = parse(line)
        event["attempt"] = 1
        name = event.get("event")
        if name == "group_started":
            mark(event, m.spawn_ns, m.proc)
            if isinstance(event.get("ml_stack"), dict):
                sweep._write_process_env(m.job.group_id, 1, event["ml_stack"])
        elif name == "cell_started":
            m.inflight = event.get("cell")
            event.setdefault("token_method", inputs.get(m.inflight or "", {}).get("method"))
        elif name == "sample":
            sweep.measured_ns += int(event.get("t1_ns", 0)) - int(event.get("t0_ns", 0))
        elif name == "block":
            event["group_id"] = m.job.group_id
        sweep.record(event)
        if name == "cell_finished" and event.get("cell"):
            cid = str(event["cell"])
            sweep.finish_cell(cid, str(event.get("status")), list(event.get("reasons") or []), 1)
            m.finished.add(cid)
            m.inflight = None
        if name == "cell_suspended" and event.get("cell"):
            # A fatal device error: the serial attempt 2 continues the cell (sweep.py).
            if sweep._suspend(m.job, event, 1):
                m.finished.add(str(event["cell"]))
            m.inflight = None
        if name == "block":
            return
    _finish(sweep, m)


def _finish(sweep: Any, m: Member) -> None:
    if m.ended:
        return
    m.ended = True
    info = m.proc.wait()
    sweep.record(
        {
            "event": "child_exited",
            "group_id": m.job.group_id,
            "attempt": 1,
            "returncode": info.returncode,
            "signal": info.signal,
            "oom_killed": info.oom_killed,
            "timed_out": info.timed_out,
            "detail": info.detail,
        }
    )
    if m.inflight and not sweep.controls.abort.is_set():
        reason = info.detail or "the process ended in the middle of the cell"
        sweep.finish_cell(m.inflight, "crash", [reason], 1)
        sweep.record(
            {
                "event": "cell_finished",
                "cell": m.inflight,
                "status": "crash",
                "reasons": [reason],
                "evidence": {"by": "runner", "exit": dataclasses.asdict(info)},
                "attempt": 1,
            }
        )
        m.finished.add(m.inflight)
        m.inflight = None
