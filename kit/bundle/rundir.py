"""Reading a run directory (docs/FORMATS.md, "Run directory") without loading it whole.

The journal and the telemetry files can be large (10,000+ samples, 100,000+ rows): they are
only ever iterated line by line. The small files (run.json, matrix/cells.json, cells.jsonl)
are read at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.paths import within


@dataclasses.dataclass(frozen=True)
class CellStatus:
    """The final status of one cell (the last `cells.jsonl` line for it wins)."""

    cell: str
    status: str
    reasons: tuple[str, ...]
    n_samples: int | None
    n_ok: int | None
    attempt: int | None


def read_json(path: Path, what: str) -> Any:
    """Parse one JSON file; raise KitError naming the file when it is missing or broken."""
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise KitError(f"{what} not found: {path}", "is this a kit run directory?") from None
    except (OSError, ValueError) as err:
        raise KitError(f"{what} is not readable JSON: {path}: {err}") from None


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory on disk, checked to have the files a bundle needs."""

    path: Path
    run: dict[str, Any]
    cells: list[dict[str, Any]]

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """Open `path`; raise KitError when it is not a run directory."""
        if not path.is_dir():
            raise KitError(f"not a directory: {path}", "give the run directory (it has run.json)")
        run = read_json(path / "run.json", "run.json")
        cells = read_json(path / "matrix" / "cells.json", "matrix/cells.json")
        if not isinstance(run, dict) or not isinstance(cells, list):
            raise KitError(
                f"run.json or matrix/cells.json has the wrong shape in {path}",
                "see docs/FORMATS.md, 'Run directory'",
            )
        if not (path / "journal.jsonl").is_file():
            raise KitError(f"journal.jsonl not found in {path}", "the run never started")
        return cls(path=path, run=run, cells=cells)

    @property
    def journal(self) -> Path:
        return self.path / "journal.jsonl"

    def cell_order(self) -> list[str]:
        """Cell ids in run order (run.json `cell_ids`, else matrix/cells.json order)."""
        ids = self.run.get("cell_ids")
        if isinstance(ids, list) and ids:
            return [str(i) for i in ids]
        return [str(c.get("id")) for c in self.cells]

    def statuses(self) -> dict[str, CellStatus]:
        """Final status per cell id from cells.jsonl (missing file: no statuses yet)."""
        found: dict[str, CellStatus] = {}
        path = self.path / "cells.jsonl"
        if not path.is_file():
            return found
        for row in iter_jsonl(path):
            cell = str(row.get("cell", ""))
            if not cell:
                continue
            found[cell] = CellStatus(
                cell=cell,
                status=str(row.get("status", "unknown")),
                reasons=tuple(str(r) for r in row.get("reasons") or ()),
                n_samples=_opt_int(row.get("n_samples")),
                n_ok=_opt_int(row.get("n_ok")),
                attempt=_opt_int(row.get("attempt")),
            )
        return found

    def placed_cells(self) -> dict[str, dict[str, Any]]:
        """Per cell id, `gpu` and `co_scheduled` of its final cells.jsonl line, when a
        `--gpus` run recorded them (else nothing: older runs' statuses stay as they were)."""
        found: dict[str, dict[str, Any]] = {}
        path = self.path / "cells.jsonl"
        if not path.is_file():
            return found
        for row in iter_jsonl(path):
            cell = str(row.get("cell", ""))
            if cell:
                found[cell] = {k: row[k] for k in ("gpu", "co_scheduled") if k in row}
        return {c: fields for c, fields in found.items() if fields}

    def telemetry_files(self) -> list[Path]:
        """`telemetry/gpuN.csv` files, ordered by N."""
        folder = self.path / "telemetry"
        if not folder.is_dir():
            return []
        return sorted(folder.glob("gpu*.csv"), key=lambda p: (_gpu_index(p.stem), p.name))

    def files_under(self, folder: str) -> list[Path]:
        """Every regular file below `folder` (relative to the run), sorted, links skipped."""
        root = self.path / folder
        if not root.is_dir():
            return []
        return sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and within(self.path, p)
        )


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield each JSON object of a JSONL file; skip blank lines and a torn last line.

    A journal is append-only and fsynced per event, so only its last line can be torn (a
    crash mid-write); a broken line elsewhere is a damaged file and raises KitError.
    """
    with path.open(encoding="utf-8") as fh:
        pending_error: str | None = None
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if pending_error is not None:
                raise KitError(pending_error, "the file is damaged; it cannot be bundled")
            try:
                obj = json.loads(line)
            except ValueError:
                pending_error = f"{path.name} line {number} is not JSON"
                continue
            if isinstance(obj, dict):
                yield obj


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _gpu_index(stem: str) -> int:
    digits = stem[3:]
    return int(digits) if digits.isdigit() else 1_000_000
