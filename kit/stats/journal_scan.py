"""Stream a run's `journal.jsonl` and `cells.jsonl` into per-cell, per-phase sample arrays.

Files are read line by line, never whole, so memory grows with the number of samples kept
(8 bytes per value in `array('d')`), not with the journal's size. A run cut mid-write is
expected: a last line without its newline that does not parse is counted as a truncated
tail; any other line that does not parse, or is not a JSON object, is counted as bad and
skipped. Nothing here raises for bad content; only unreadable files raise OSError.

A `cell_started` event begins a new attempt at that cell (a resumed run reruns a half-done
cell from its start): samples of earlier attempts are counted as superseded, not kept. A
`cell_started` with `continues: true` (a fresh process continuing a cell suspended after a
fatal device error) is counted as an attempt but keeps the earlier samples: the cell's
samples from all its processes enter the statistics (warmups never do).
"""

from __future__ import annotations

import dataclasses
import json
import math
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class PhaseSamples:
    """What one cell's phase produced in its latest attempt (mutable while scanning).

    `latency_ms`, `tokens_in`, `tokens_out` are aligned: one entry per kept sample (an ok,
    non-warmup sample with a finite positive latency); missing token counts are NaN.
    `cuda_event_ms` holds the kept samples' CUDA-event times that are present (maybe fewer).
    """

    latency_ms: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    cuda_event_ms: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    tokens_in: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    tokens_out: array[float] = dataclasses.field(default_factory=lambda: array("d"))
    n_samples: int = 0  # every sample event of the latest attempt
    n_warmup: int = 0  # warmup samples (whatever their status)
    not_ok: Counter[str] = dataclasses.field(default_factory=Counter)  # non-warmup, by status
    n_invalid: int = 0  # ok, non-warmup, but latency missing, not finite or <= 0
    n_superseded: int = 0  # samples of earlier attempts at the cell

    @property
    def n_excluded(self) -> int:
        """Samples of this phase (all attempts) that did not enter the statistics."""
        return self.n_samples + self.n_superseded - len(self.latency_ms)


@dataclasses.dataclass
class CellScan:
    """One cell as the journal saw it."""

    phases: dict[str, PhaseSamples] = dataclasses.field(default_factory=dict)
    attempts: int = 0  # cell_started events
    finished_status: str | None = None  # the last cell_finished status in the journal
    finished_reasons: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class JournalScan:
    """The whole journal, cell by cell in order of first appearance."""

    cells: dict[str, CellScan] = dataclasses.field(default_factory=dict)
    lines: int = 0
    bad_lines: int = 0
    truncated_tail: bool = False
    run_finished: bool = False
    interrupted: int = 0
    resumed: int = 0

    def cell(self, cell_id: str) -> CellScan:
        if cell_id not in self.cells:
            self.cells[cell_id] = CellScan()
        return self.cells[cell_id]


def iter_json_lines(path: Path) -> Iterator[tuple[dict[str, Any] | None, bool]]:
    """Yield (object or None if unparseable/not an object, is_last_unterminated_line)."""
    with path.open("rb") as handle:
        for raw in handle:
            unterminated = not raw.endswith(b"\n")
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            yield (obj if isinstance(obj, dict) else None), unterminated


def _number(value: Any) -> float:
    """A JSON number as float, or NaN for null, bools, strings and non-finite numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    result = float(value)
    return result if math.isfinite(result) else math.nan


def _add_sample(scan: JournalScan, event: dict[str, Any]) -> None:
    cell_id, phase = event.get("cell"), event.get("phase")
    if not isinstance(cell_id, str) or not isinstance(phase, str):
        scan.bad_lines += 1
        return
    cell = scan.cell(cell_id)
    acc = cell.phases.setdefault(phase, PhaseSamples())
    acc.n_samples += 1
    if event.get("warmup") is True:
        acc.n_warmup += 1
        return
    status = event.get("status")
    if status != "ok":
        acc.not_ok[str(status)] += 1
        return
    latency = _number(event.get("latency_ms"))
    if math.isnan(latency) or latency <= 0.0:
        acc.n_invalid += 1
        return
    acc.latency_ms.append(latency)
    acc.tokens_in.append(_number(event.get("tokens_in")))
    acc.tokens_out.append(_number(event.get("tokens_out")))
    cuda = _number(event.get("cuda_event_ms"))
    if not math.isnan(cuda) and cuda > 0.0:
        acc.cuda_event_ms.append(cuda)


def _start_attempt(scan: JournalScan, cell_id: str, continues: bool = False) -> None:
    cell = scan.cell(cell_id)
    cell.attempts += 1
    if continues:
        return
    cell.phases = {
        name: PhaseSamples(n_superseded=old.n_superseded + old.n_samples)
        for name, old in cell.phases.items()
    }
    cell.finished_status = None
    cell.finished_reasons = []


def scan_journal(path: Path) -> JournalScan:
    """Read `journal.jsonl` (see docs/FORMATS.md); a missing file gives an empty scan."""
    scan = JournalScan()
    if not path.exists():
        return scan
    for event, unterminated in iter_json_lines(path):
        scan.lines += 1
        if event is None:
            if unterminated:
                scan.truncated_tail = True
            else:
                scan.bad_lines += 1
            continue
        kind = event.get("event")
        cell_id = event.get("cell")
        if kind == "sample":
            _add_sample(scan, event)
        elif kind == "cell_started" and isinstance(cell_id, str):
            _start_attempt(scan, cell_id, event.get("continues") is True)
        elif kind == "cell_finished" and isinstance(cell_id, str):
            cell = scan.cell(cell_id)
            cell.finished_status = str(event.get("status"))
            reasons = event.get("reasons")
            cell.finished_reasons = [str(r) for r in reasons] if isinstance(reasons, list) else []
        elif kind == "run_finished":
            scan.run_finished = True
        elif kind == "run_resumed":
            scan.resumed += 1
        elif kind == "interrupted":
            scan.interrupted += 1
    return scan


@dataclasses.dataclass(frozen=True)
class FinalStatus:
    """A cell's line of `cells.jsonl` (the last one for the cell)."""

    status: str
    reasons: tuple[str, ...]
    n_samples: int | None
    n_ok: int | None
    attempt: int | None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_final_statuses(path: Path) -> tuple[dict[str, FinalStatus], int]:
    """Read `cells.jsonl`: the last line per cell wins. Returns (statuses, unreadable lines)."""
    found: dict[str, FinalStatus] = {}
    bad = 0
    if not path.exists():
        return found, bad
    for obj, _unterminated in iter_json_lines(path):
        if obj is None or not isinstance(obj.get("cell"), str):
            bad += 1
            continue
        reasons = obj.get("reasons")
        found[obj["cell"]] = FinalStatus(
            status=str(obj.get("status")),
            reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
            n_samples=_int_or_none(obj.get("n_samples")),
            n_ok=_int_or_none(obj.get("n_ok")),
            attempt=_int_or_none(obj.get("attempt")),
        )
    return found, bad
