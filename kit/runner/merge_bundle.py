"""A verified bundle as an input of `kit merge`: the run directory it was made from, rebuilt.

A bundle keeps its run's raw records verbatim (`run.json`, `results/journal.jsonl`,
`results/cells-raw.jsonl`, `env/`, `matrix/`, `telemetry/`, `tasks/`, the groups' logs), so
a sweep split over machines that each bring back only a bundle (the device calls of a GPU
campaign) still merges into one run. The bundle is verified first: merge never trusts one
that fails `kit verify`. The merged run records each input's bundle path and content hash.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePosixPath

from kit.errors import KitError
from kit.runner.merge import MergeInput

# bundle member -> run-directory file
RAW = {
    "run.json": "run.json",
    "results/journal.jsonl": "journal.jsonl",
    "results/cells-raw.jsonl": "cells.jsonl",
    "results/summary.json": "summary.json",
    "results/summary.csv": "summary.csv",
}
FOLDERS = ("env/", "matrix/", "telemetry/", "tasks/", "groups/")


def is_bundle(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar.zst", ".tar"))


def from_bundle(path: Path, into: Path, name: str) -> MergeInput:
    """Verify `path`, write its run directory under `into` (empty), open it as input `name`."""
    from kit.bundle.reader import open_verified

    with open_verified(path) as opened:  # KitError with the verifier's reason when it fails
        files = opened.source
        names = set(files.names())
        for needed in ("run.json", "results/journal.jsonl", "results/cells-raw.jsonl"):
            if needed not in names:
                raise KitError(
                    f"{path} has no {needed}: a bundle of an older kit cannot be merged",
                    "merge the run directory it was made from",
                )
        for member in sorted(names):
            target = RAW.get(member) or (member if member.startswith(FOLDERS) else None)
            if target is None:
                continue
            parts = PurePosixPath(target).parts
            if ".." in parts or PurePosixPath(target).is_absolute():
                raise KitError(f"{path}: member {member!r} leaves the run directory")
            dest = into.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(files.read(member))
        manifest = json.loads(files.read("manifest.json"))
    source = MergeInput.open(into, name)
    origin = {"path": str(path), "content_hash": manifest.get("content_hash")}
    return dataclasses.replace(source, origin=origin)
