"""Interleaved order on the harness side: a measuring process that pauses between short
blocks of repetitions until the runner says `go` on stdin (kit/runner/interleave.py).

The pauses sit between repetitions, outside every timed region: after each `block_reps`
timed (non-warmup) samples of a cell that has more to come, and after each cell but the
last. The first wait is before the model loads, so that loading never overlaps another
group's block. A `block` event marks each pause (the runner journals the schedule).
"""

from __future__ import annotations

import sys
from typing import Any

from kit.harness.events import Emitter


class BlockEmitter(Emitter):
    def __init__(self, inner: Emitter, spec: dict[str, Any], block_reps: int) -> None:
        self._inner = inner
        self._block_reps = block_reps
        self._reps = {c["id"]: int(c["repetitions"]) for c in spec["cells"]}
        self._last_cell = spec["cells"][-1]["id"]
        self._timed = 0  # timed samples of the current cell so far
        self._in_block = 0
        self._block = 0
        self._first_rep: int | None = None

    def emit(self, event: str, **fields: Any) -> None:
        self._inner.emit(event, **fields)
        cell = fields.get("cell")
        if event == "cell_started":
            self._timed, self._in_block, self._first_rep = 0, 0, None
        elif event == "sample" and not fields.get("warmup"):
            self._timed += 1
            self._in_block += 1
            if self._first_rep is None:
                self._first_rep = int(fields.get("rep", 0))
            more = self._timed < self._reps.get(str(cell), 0)
            if more and self._in_block >= self._block_reps:
                self._pause(str(cell), int(fields.get("rep", 0)))
        elif event == "cell_finished" and cell != self._last_cell:
            self._pause(str(cell), None)

    def _pause(self, cell: str | None, last_rep: int | None) -> None:
        self._block += 1
        self._inner.emit(
            "block",
            cell=cell,
            block=self._block,
            timed_reps=self._in_block,
            first_rep=self._first_rep,
            last_rep=last_rep,
        )
        self._in_block, self._first_rep = 0, None
        wait_for_go()


def wait_for_go() -> None:
    """Block until the runner writes `go`; any other line or EOF ends the process."""
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(0)


def install_blocks(out: Emitter, spec: dict[str, Any], block_reps: int) -> BlockEmitter:
    """Wait for the first `go` (before loading), then return the pausing emitter."""
    out.emit("block", cell=None, block=0, timed_reps=0, first_rep=None, last_rep=None)
    wait_for_go()
    return BlockEmitter(out, spec, block_reps)
