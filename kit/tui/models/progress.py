"""A run's live progress, rebuilt from the sweep's journal events as they arrive.

`RunProgress.apply(event)` takes each event dict the sweep records (docs/FORMATS.md); the Run
screen renders the fields. The clock is injected so tests and snapshots are deterministic.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from kit.matrix import Cell

FAILED = ("crash", "skipped", "degraded")


@dataclasses.dataclass
class CellLive:
    cell: Cell
    status: str = "pending"
    latencies: list[float] = dataclasses.field(default_factory=list)
    warmups: int = 0
    reasons: list[str] = dataclasses.field(default_factory=list)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None


@dataclasses.dataclass
class GroupLive:
    group_id: str
    label: str
    total: int
    done: int = 0


class RunProgress:
    def __init__(
        self,
        cells: Iterable[Cell],
        finished: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        log_lines: int = 200,
    ) -> None:
        self.clock = clock
        self.cells: dict[str, CellLive] = {c.id: CellLive(c) for c in cells}
        self.groups: dict[str, GroupLive] = {}
        self.group_of: dict[str, str] = {}
        for live in self.cells.values():
            c = live.cell
            gid = c.group_id()
            self.group_of[c.id] = gid
            label = f"{c.group} {c.backend} {c.model} {c.device}"
            self.groups.setdefault(gid, GroupLive(gid, label, 0)).total += 1
        self.total = len(self.cells)
        self.done_before = 0
        for cid in finished:
            if cid in self.cells:
                self._mark_done(cid, "ok (earlier)")
                self.done_before += 1
        self.current: str | None = None
        self.phase = "waiting"
        self.log: deque[tuple[str, str]] = deque(maxlen=log_lines)  # (level, text)
        self.logged = 0  # entries ever logged (the deque keeps the newest)
        self.failures: list[tuple[str, str]] = []  # (cell id, reason)
        self.started_at = clock()
        self.state = "running"  # running | finished | interrupted | failed
        self.last_gpu_row: dict[str, Any] | None = None

    # -- derived values ---------------------------------------------------------------------
    @property
    def done(self) -> int:
        return sum(g.done for g in self.groups.values())

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def eta_s(self) -> float | None:
        """Seconds left at the pace of the cells finished in this session; None before one."""
        done_now = self.done - self.done_before
        if done_now <= 0:
            return None
        per_cell = (self.clock() - self.started_at) / done_now
        return per_cell * (self.total - self.done)

    def current_cell(self) -> CellLive | None:
        return self.cells.get(self.current) if self.current else None

    # -- events -----------------------------------------------------------------------------
    def _mark_done(self, cid: str, status: str) -> None:
        live = self.cells[cid]
        if live.status in ("pending", "running"):
            self.groups[self.group_of[cid]].done += 1
        live.status = status

    def note(self, level: str, text: str) -> None:
        self.log.append((level, text))
        self.logged += 1

    def apply(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        cid = str(event.get("cell") or "")
        if name == "cell_started" and cid in self.cells:
            self.current = cid
            self.cells[cid].status = "running"
            if not event.get("continues"):  # a continued cell keeps its earlier latencies
                self.cells[cid].latencies.clear()
            self.phase = "starting"
        elif name == "cell_suspended" and cid in self.cells:
            self.note("error", f"{cid}: {event.get('fatal_error')}; a fresh process continues it")
        elif name == "sample" and cid in self.cells:
            live = self.cells[cid]
            kind = "warmup" if event.get("warmup") else "timed"
            self.phase = f"{event.get('phase')} {kind} rep {event.get('rep')}"
            if event.get("warmup"):
                live.warmups += 1
            elif event.get("status") == "ok" and event.get("latency_ms") is not None:
                live.latencies.append(float(event["latency_ms"]))
        elif name == "cell_finished" and cid in self.cells:
            status = str(event.get("status"))
            reasons = [str(r) for r in event.get("reasons") or []]
            self.cells[cid].reasons = reasons
            self._mark_done(cid, status)
            if status in FAILED:
                reason = "; ".join(reasons) or status
                self.failures.append((cid, f"{status}: {reason}"))
                self.note("error", f"{cid} {status}: {reason}")
            else:
                median = self.cells[cid].median_ms
                shown = f"{median:.2f} ms" if median is not None else "n/a"
                self.note("info", f"{cid} {status}, median {shown}")
            if self.current == cid:
                self.current = None
                self.phase = "between cells"
        elif name == "phase":
            self.phase = f"{event.get('phase')} ({float(event.get('ms') or 0):.0f} ms)"
        elif name == "precompile_phase_started":
            self.phase = f"compiling {len(event.get('groups') or [])} group(s) ahead"
            self.note("info", f"compiling ahead, nothing measured meanwhile: {', '.join(event.get('groups') or [])}")  # fmt: skip
        elif name == "group_parked":
            self.note("info", f"group {event.get('group_id')} compiled, waiting its turn ({float(event.get('wall_ms') or 0) / 1000:.1f} s)")  # fmt: skip
        elif name == "group_ended_unparked":
            why = event.get("first_crash") or (
                f"exit {event['returncode']}" if event.get("returncode") is not None else ""
            )
            self.note(
                "warning" if why else "info",
                f"group {event.get('group_id')} ended while compiling ahead"
                f" ({float(event.get('wall_ms') or 0) / 1000:.1f} s){': ' + str(why) if why else ''}"
                "; it is measured first, its other cells in a fresh process",
            )
        elif name == "group_spawned":
            self.phase = "starting the group process"
            self.note("info", f"group {event.get('group_id')} attempt {event.get('attempt')}")
        elif name == "model_prepared":
            self.phase = "model prepared"
        elif name == "log":
            self.note(str(event.get("level") or "info"), str(event.get("message") or ""))
        elif name == "child_exited" and event.get("returncode") not in (0, None):
            self.note(
                "error",
                f"group process exited {event.get('returncode')}: {event.get('detail') or ''}",
            )
        elif name in ("run_finished", "interrupted"):
            self.state = "finished" if name == "run_finished" else "interrupted"
            self.phase = self.state
            self.current = None
