"""What a claim rests on, read from a bundle (or a staged run directory): per cell, its final
status, its timed samples in repetition order (last attempt only), and their quality.

Condition: a cell of a `--gpus ... --isolation per-gpu` run whose final result lists
`co_scheduled` processes was measured beside a busy neighbour (kit.stats.coschedule); the
engine never pools such cells with cells measured alone.

Evidence quality: a cell's timed `ok` latencies are split into `WINDOWS` consecutive windows;
the cell is `unstable` when the largest window median exceeds the smallest by more than
`UNSTABLE_PCT` percent (a host that slowed down mid-cell, a launch-bound jittery cell).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import Counter
from typing import Any

from kit.bundle.report_data import CellInputs, Source, cell_inputs, jsonl_rows
from kit.matrix.cell import Cell

CARRIED = "matrix/claims.yaml"  # the claims a bundle carries (kit.bundle.stage adds it)
WINDOWS = 3
UNSTABLE_PCT = 10.0
MIN_PER_WINDOW = 2


@dataclasses.dataclass
class CellEvidence:
    cell: Cell
    status: str  # final cell status: ok, degraded, crash, skipped, missing
    reasons: list[str]
    ok_ms: list[float]  # timed ok latencies of the cell's own mode, in repetition order
    by_status: Counter[str]  # timed samples by status
    first_error: str = ""
    neighbours: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # co_scheduled
    inputs: CellInputs | None = None  # what it was fed (None: the journal does not say)

    @property
    def beside_neighbour(self) -> bool:
        return bool(self.neighbours)

    @property
    def n_timed(self) -> int:
        return sum(self.by_status.values())

    @property
    def on_error(self) -> str:
        return self.cell.on_error

    def windows(self) -> list[list[float]]:
        """The ok latencies split into WINDOWS consecutive windows ([] when too few)."""
        n = len(self.ok_ms)
        if n < WINDOWS * MIN_PER_WINDOW:
            return []
        bounds = [round(i * n / WINDOWS) for i in range(WINDOWS + 1)]
        return [self.ok_ms[bounds[i] : bounds[i + 1]] for i in range(WINDOWS)]

    def window_medians(self) -> list[float]:
        return [statistics.median(w) for w in self.windows()]

    @property
    def unstable(self) -> bool:
        medians = self.window_medians()
        if not medians or min(medians) <= 0:
            return False
        return (max(medians) / min(medians) - 1.0) * 100.0 > UNSTABLE_PCT


@dataclasses.dataclass
class Evidence:
    """Everything the claims engine reads. `planned` is every cell of the run's matrix file
    (None when the bundle's matrix/source.yaml does not load: coverage then counts the run's
    own cells); `gates` maps a matrix id to its recorded gate result."""

    matrix: str
    cells: dict[str, CellEvidence]  # id -> evidence, in run order
    planned: list[Cell] | None
    gates: dict[str, dict[str, Any]]
    notes: list[str]
    claims_yaml: bytes | None = None  # the claims file the bundle carries (matrix/claims.yaml)


def load_evidence(source: Source) -> Evidence:
    """Read a bundle's members into Evidence (raises KeyError/ValueError on a broken bundle)."""
    notes: list[str] = []
    raw_cells = json.loads(source.read("matrix/cells.json"))
    cells = [Cell.from_dict(c) for c in raw_cells]
    inputs = cell_inputs(source, raw_cells)
    statuses = {str(r["cell"]): r for r in jsonl_rows(source, "results/statuses.jsonl")}
    samples = _samples(source, {c.id: c.mode for c in cells})
    out: dict[str, CellEvidence] = {}
    for cell in cells:
        row = statuses.get(cell.id, {})
        ok_ms, by_status, first_error = samples.get(cell.id, ([], Counter(), ""))
        out[cell.id] = CellEvidence(
            cell=cell,
            status=str(row.get("status", "missing")),
            reasons=[str(r) for r in row.get("reasons") or []],
            ok_ms=ok_ms,
            by_status=by_status,
            first_error=first_error,
            neighbours=[n for n in row.get("co_scheduled") or [] if isinstance(n, dict)],
            inputs=inputs.get(cell.id),
        )
    matrix = cells[0].matrix if cells else ""
    gates = {}
    for name in source.names():
        if name.startswith("env/gate-") and name.endswith(".json"):
            record = json.loads(source.read(name))
            gates[str(record.get("matrix", name[len("env/gate-") : -5]))] = record
    carried = source.read(CARRIED) if CARRIED in source else None
    return Evidence(matrix, out, _planned(source, notes), gates, notes, carried)


def _samples(
    source: Source, modes: dict[str, str]
) -> dict[str, tuple[list[float], Counter[str], str]]:
    """cell -> (timed ok latencies, timed samples by status, first error), last attempt."""
    out: dict[str, tuple[list[float], Counter[str], str]] = {}
    attempt_of: dict[str, int] = {}
    if "results/samples.jsonl" not in source:
        return out
    with source.open("results/samples.jsonl") as fh:
        for line in fh:
            row = json.loads(line)
            cell = str(row.get("cell"))
            if row.get("phase") != modes.get(cell) or row.get("warmup"):
                continue
            attempt = int(row.get("attempt", 1))
            if attempt < attempt_of.get(cell, 0):
                continue
            if attempt > attempt_of.get(cell, 0):
                attempt_of[cell] = attempt
                out[cell] = ([], Counter(), "")
            ok_ms, counts, first = out[cell]
            status = str(row.get("status", "unknown"))
            counts[status] += 1
            latency = row.get("latency_ms")
            if status == "ok" and isinstance(latency, (int, float)):
                ok_ms.append(float(latency))
            if status == "error" and not first:
                out[cell] = (ok_ms, counts, str(row.get("error", "")))
    return out


def _planned(source: Source, notes: list[str]) -> list[Cell] | None:
    if "matrix/source.yaml" not in source:
        notes.append("no matrix/source.yaml: coverage counts the run's own cells")
        return None
    import tempfile
    from pathlib import Path

    from kit.matrix.spec import load_matrix

    try:
        with tempfile.TemporaryDirectory(prefix="kit-claims-matrix-") as tmp:
            path = Path(tmp) / "source.yaml"
            path.write_bytes(source.read("matrix/source.yaml"))
            return list(load_matrix(str(path)).cells)
    except Exception as err:  # a bundle from another kit version, a broken file
        notes.append(
            f"matrix/source.yaml does not load ({type(err).__name__}): coverage counts the "
            "run's own cells"
        )
        return None
