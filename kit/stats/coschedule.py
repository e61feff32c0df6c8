"""Who ran beside whom, read back from a journal: each group process's span (from its
`group_spawned` to its `child_exited`), its GPU, and the processes it overlapped.

A neighbour is any other group process alive during the span (loading, compiling or
measuring): on one host they share PCIe, host CPU cores and memory bandwidth, so a busy
neighbour is part of a cell's conditions (`cells.jsonl` `co_scheduled` per cell).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

_WANTED = (b'"group_spawned"', b'"group_unparked"', b'"child_exited"')


@dataclasses.dataclass
class GroupRun:
    """One group process: `end_ns` None when the journal has no `child_exited` for it (a
    killed orchestrator); it then counts as running until the journal's last such event."""

    group_id: str
    attempt: int
    gpu: int | None
    device: str | None
    start_ns: int
    end_ns: int | None = None
    beside: list[tuple[str, int, int | None, float]] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.group_id} (attempt {self.attempt})"


def relevant_lines(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    """The journal events this module reads, from raw JSONL lines (others are not parsed)."""
    for line in lines:
        if not any(w in line for w in _WANTED):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(event, dict):
            yield event


def group_runs(events: Iterable[dict[str, Any]]) -> list[GroupRun]:
    """Group processes in spawn order, each with the processes it overlapped (`beside`:
    group id, attempt, GPU, seconds of overlap)."""
    runs: dict[tuple[str, int], GroupRun] = {}
    waiting: set[tuple[str, int]] = set()  # parked (precompile.py), not yet told to measure
    last_ns = 0
    for ev in events:
        t_ns = ev.get("t_ns")
        if not isinstance(t_ns, int):
            continue
        last_ns = max(last_ns, t_ns)
        key = (str(ev.get("group_id")), int(ev.get("attempt") or 0))
        gpu = ev.get("gpu") if isinstance(ev.get("gpu"), int) else None
        if ev.get("event") == "group_spawned":
            runs[key] = GroupRun(key[0], key[1], gpu, ev.get("device"), t_ns)
            if ev.get("park"):
                waiting.add(key)
        elif ev.get("event") == "group_unparked" and key in runs:
            # A parked process compiled beside others while nothing was measured; its
            # measuring span starts when it is told to go.
            runs[key].start_ns = t_ns
            waiting.discard(key)
        elif ev.get("event") == "child_exited" and key in runs:
            runs[key].end_ns = t_ns
    for key in waiting:  # stopped while parked: it never measured
        runs.pop(key, None)
    ordered = sorted(runs.values(), key=lambda r: (r.start_ns, r.group_id, r.attempt))
    for run in ordered:
        for other in ordered:
            if other is run:
                continue
            lo = max(run.start_ns, other.start_ns)
            hi = min(run.end_ns or last_ns, other.end_ns or last_ns)
            if hi > lo:
                run.beside.append((other.group_id, other.attempt, other.gpu, (hi - lo) / 1e9))
    return ordered


def coschedule_line(run_json: dict[str, Any], runs: list[GroupRun]) -> str:
    """One sentence: the isolation asked and in effect, and how many processes overlapped."""
    gpus = run_json.get("gpus")
    isolation = run_json.get("isolation") or "exclusive"
    on = f" on GPUs {', '.join(str(g) for g in gpus)}" if gpus else ""
    overlapped = sum(1 for r in runs if r.beside)
    if isolation == "per-gpu":
        head = f"isolation per-gpu{on}: up to one group process per GPU at once"
    else:
        head = f"exclusive: one group at a time{on}"
        if gpus and len(gpus) > 1:
            head += " (groups placed round-robin over the GPUs)"
        if run_json.get("isolation_asked") == "per-gpu":
            head += " (per-gpu was asked; on one GPU it is exclusive)"
    return f"{head}; {overlapped} of {len(runs)} group processes ran beside another"


def coschedule_rows(runs: list[GroupRun]) -> list[dict[str, Any]]:
    """Rows of the report's Co-scheduling table: one per group process that overlapped."""
    if not runs:
        return []
    origin = min(r.start_ns for r in runs)
    rows = []
    for run in runs:
        if not run.beside:
            continue
        rows.append(
            {
                "group": run.group_id,
                "attempt": run.attempt,
                "gpu": "-" if run.gpu is None else str(run.gpu),
                "device": run.device or "-",
                "start_s": (run.start_ns - origin) / 1e9,
                "end_s": None if run.end_ns is None else (run.end_ns - origin) / 1e9,
                "beside": "; ".join(
                    f"{g} (attempt {a}) on GPU {'-' if gpu is None else gpu}: {s:.1f} s"
                    for g, a, gpu, s in run.beside
                ),
            }
        )
    return rows
