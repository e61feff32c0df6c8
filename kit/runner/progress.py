"""A terminal progress line for `kit run` (cells done / total, current cell, ETA)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class ProgressLine:
    def __init__(self, total: int = 0, already_done: int = 0, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = already_done
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.done_here = 0
        self.current = ""
        self.failures: list[str] = []
        self._last_print = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name in ("run_started", "run_resumed"):
            self.total = int(event.get("cells", self.total))
            self.done = int(event.get("finished", self.done))
            if event.get("estimate_s") is not None:
                from kit.matrix.estimate import fmt_duration

                self._emit(
                    f"estimate for the run's {self.total} cells: "
                    f"{fmt_duration(float(event['estimate_s']))} (a guess: per repetition, group start and compile)",
                    force=True,
                    newline=True,
                )
            return
        if name == "cell_started":
            self.current = str(event.get("cell"))
        elif name == "precompile_phase_started":
            self.current = f"compiling {len(event.get('groups') or [])} group(s) ahead"
        elif name == "phase" and event.get("phase") in ("load", "compile"):
            self.current = (
                f"{event.get('cell') or 'group'} ({event.get('phase')} {event.get('ms', 0):.0f} ms)"
            )
        elif name == "cell_suspended":
            self._emit(
                f"  suspended: {event.get('cell')}: {str(event.get('fatal_error'))[:200]}; "
                "a fresh process continues it",
                force=True,
                newline=True,
            )
        elif name == "log" and event.get("level") == "warning" and event.get("plan"):
            # the plan's warnings (kit.matrix.estimate.recompile_storms), said before cells run
            self._emit(f"warning: {event.get('message')}", force=True, newline=True)
            return
        elif name == "cell_finished":
            self.done += 1
            self.done_here += 1
            status = event.get("status")
            if status in ("crash", "degraded"):
                reasons = "; ".join(event.get("reasons") or [])
                self.failures.append(f"{event.get('cell')}: {status}: {reasons}")
                self._emit(
                    f"  {status}: {event.get('cell')}: {reasons[:200]}", force=True, newline=True
                )
        else:
            return
        self._emit(self._line(), force=name == "cell_finished")

    def _line(self) -> str:
        width = 24
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.monotonic() - self.started
        eta = "?"
        if self.done_here:
            left = (self.total - self.done) * elapsed / self.done_here
            eta = f"{int(left // 60)}m{int(left % 60):02d}s"
        return f"[{bar}] {self.done}/{self.total} cells  ETA {eta}  {self.current}"

    def _emit(self, text: str, force: bool = False, newline: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < 0.2:
            return
        self._last_print = now
        if self.tty and not newline:
            self.stream.write("\r\x1b[K" + text[:150])
        else:
            if self.tty:
                self.stream.write("\r\x1b[K")
            if newline or force:
                self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
