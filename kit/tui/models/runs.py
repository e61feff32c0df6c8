"""Past run directories under the results folder, with their status."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path


def results_dir_default() -> Path:
    """`KIT_RESULTS` when set, else `KIT_RESULTS_DIR` (the compose files' results volume,
    /results: the kit container's working directory is that volume, so ./results would nest
    a second folder in it), else ./results of the working directory."""
    return Path(os.environ.get("KIT_RESULTS") or os.environ.get("KIT_RESULTS_DIR") or "results")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    path: Path
    matrix: str
    created: str
    cells: int
    finished: int
    status: str  # finished | interrupted | running? | empty
    counts: dict[str, int]
    bundle: Path | None

    @property
    def resumable(self) -> bool:
        return self.status != "finished" and self.finished < self.cells

    def counts_text(self) -> str:
        return " ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "-"


def _last_status(run_dir: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    path = run_dir / "cells.jsonl"
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("cell"):
            found[str(row["cell"])] = str(row.get("status"))
    return found


def _journal_end(run_dir: Path) -> str | None:
    """The last run-level event of the journal (`run_finished`, `interrupted`, ...)."""
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return None
    last = None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if (
                '"run_finished"' in line
                or '"interrupted"' in line
                or '"run_started"' in line
                or '"run_resumed"' in line
            ):
                try:
                    last = json.loads(line).get("event")
                except ValueError:
                    continue
    return last


def read_run(run_dir: Path) -> RunInfo | None:
    try:
        header = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    ids = list(header.get("cell_ids") or [])
    statuses = _last_status(run_dir)
    counts: dict[str, int] = {}
    for cid in ids:
        if cid in statuses:
            counts[statuses[cid]] = counts.get(statuses[cid], 0) + 1
    end = _journal_end(run_dir)
    finished = sum(counts.values())
    if end == "run_finished" and finished >= len(ids):
        status = "finished"
    elif end in ("run_started", "run_resumed"):
        status = "incomplete"
    else:
        status = "interrupted"
    bundles = sorted(run_dir.parent.glob(f"{run_dir.name}.tar.*"))
    return RunInfo(
        path=run_dir,
        matrix=str((header.get("matrix") or {}).get("id", "?")),
        created=str(header.get("created_utc", "?")),
        cells=len(ids),
        finished=finished,
        status=status,
        counts=counts,
        bundle=bundles[0] if bundles else None,
    )


def list_runs(results_dir: Path) -> list[RunInfo]:
    """Run directories directly under `results_dir`, newest first (by run.json time)."""
    if not results_dir.is_dir():
        return []
    runs = [read_run(p) for p in results_dir.iterdir() if (p / "run.json").is_file()]
    return sorted((r for r in runs if r), key=lambda r: (r.created, r.path.name), reverse=True)


def next_run_dir(results_dir: Path, matrix_id: str, stamp: str) -> Path:
    """A fresh run directory name: `<matrix>-<stamp>` (suffixed if taken)."""
    base = results_dir / f"{matrix_id}-{stamp}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
