"""`kit run --skip-done RUN_OR_BUNDLE`: plan only the selected cells that have no final result
in earlier runs (run directories, or bundles verified first), so that a sweep split over
machines that each start bare (a GPU campaign's device calls) can always ask for a whole
selection and get what is left of it; `kit merge` then joins the pieces.

A cell counts as done when its last record in the earlier run has a final status (ok,
degraded, crash, skipped: what `kit merge` would refuse to find twice). Cell ids hash every
field of a cell, overrides included, so `--reps 30` cells are not the default-reps cells."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell
from kit.matrix.cell import matrix_key
from kit.runner.journal import finished_cells, jsonl_objects
from kit.runner.merge import FINAL_STATUSES, gpu_models_at, gpu_models_in


def _done(last: dict[str, dict[str, Any]]) -> set[str]:
    """The cells whose last record (cell id -> record) has a final status."""
    return {str(cell) for cell, rec in last.items() if rec.get("status") in FINAL_STATUSES}


def _keys(cells_json: str, done: set[str]) -> set[str]:
    """The matrix keys (kit.matrix.cell.matrix_key) of the done cells in a cells.json."""
    keys = set()
    for fields in json.loads(cells_json):
        if isinstance(fields, dict) and fields.get("id") in done:
            try:
                keys.add(matrix_key(dataclasses.asdict(Cell.from_dict(fields))))
            except (TypeError, ValueError, KeyError):  # a cell of another kit version
                continue
    return keys


def _read(path: Path) -> tuple[dict[str, Any], set[str], set[str], str | None, str | None]:
    """(run.json, ids of cells with a final result, their matrix keys, the bundle's content
    hash or None, the GPU models it ran on or None)."""
    if path.is_dir():
        run_json = path / "run.json"
        if not run_json.is_file():
            raise KitError(
                f"--skip-done {path}: not a run directory (no run.json)",
                "give the --out folder of an earlier `kit run`, or its bundle",
            )
        done = _done(finished_cells(path))
        cells = path / "matrix" / "cells.json"
        keys = _keys(cells.read_text(encoding="utf-8"), done) if cells.is_file() else set()
        header = json.loads(run_json.read_text(encoding="utf-8"))
        return header, done, keys, None, gpu_models_at(path)
    from kit.bundle.reader import open_verified

    try:
        with open_verified(path) as opened:  # a bundle failing `kit verify` raises here
            names = set(opened.source.names())
            if "results/cells-raw.jsonl" not in names or "run.json" not in names:
                raise KitError(
                    "the bundle has no results/cells-raw.jsonl or run.json (an older kit's)",
                    "give the run directory it was made from",
                )
            header = json.loads(opened.source.read("run.json"))
            text = opened.source.read("results/cells-raw.jsonl").decode("utf-8", "replace")
            records = jsonl_objects(text.splitlines())
            done = _done({r["cell"]: r for r in records if "cell" in r})
            keys = _keys(opened.source.read("matrix/cells.json").decode("utf-8"), done)
            manifest = json.loads(opened.source.read("manifest.json"))
            gpu_text = opened.source.read("env/gpu.json") if "env/gpu.json" in names else None
    except KitError as err:
        hint = err.hint
        if "fails verification" in err.title:  # --unverified is not offered here
            hint = f"`kit verify {path}` lists every problem; only a verified bundle is trusted"
        raise KitError(f"--skip-done: {err.title}", hint) from None
    return header, done, keys, manifest.get("content_hash"), gpu_models_in(gpu_text)


def skip_done(
    cells: Sequence[Cell], matrix_id: str, sources: Sequence[str]
) -> tuple[list[Cell], list[dict[str, Any]]]:
    """The cells without a final result in any of `sources`, and one record per source (its
    path, content hash, and how many selected cells it had finished) for run.json."""
    kept = list(cells)
    records = []
    for source in sources:
        path = Path(source).expanduser()
        if not path.exists():
            raise KitError(
                f"--skip-done {source}: not found",
                "give an earlier run directory or a bundle (.tar.gz/.tar.zst) of it",
            )
        header, done, keys, content_hash, models = _read(path)
        their = (header.get("matrix") or {}).get("id")
        if their != matrix_id:
            raise KitError(
                f"--skip-done {source} is a run of matrix {their!r}, not {matrix_id!r}",
                "give a run or bundle of the same matrix",
            )
        before = len(kept)
        kept = [c for c in kept if c.id not in done]
        # the same matrix cells, done there with other --reps/--device/...: not skipped
        other = sum(matrix_key(dataclasses.asdict(c)) in keys for c in kept)
        records.append(
            {
                "path": str(path.resolve()),
                "content_hash": content_hash,
                "cells_skipped": before - len(kept),
                "other_overrides": other,
                "gpu_models": models,
            }
        )
    if not kept:
        raise KitError(
            f"every one of the {len(cells)} selected cells already has a final result in "
            + ", ".join(sources),
            "nothing is left to run: `kit merge` the earlier runs, or select other cells",
        )
    return kept, records
