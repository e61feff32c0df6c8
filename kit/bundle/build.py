"""`kit bundle`: a run directory in, one deterministic archive out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kit import __version__
from kit.bundle.archive import sha256_source, write_archive
from kit.bundle.manifest import (
    BUNDLE_KIND,
    MANIFEST,
    SCHEMA_VERSION,
    SUMS,
    content_hash,
    dump_manifest,
    sums_text,
)
from kit.bundle.rundir import RunDir, read_json
from kit.bundle.stage import Staged, stage

SUFFIX = {"gz": ".tar.gz", "zst": ".tar.zst"}


@dataclasses.dataclass(frozen=True)
class BundleResult:
    path: Path
    content_hash: str
    members: int
    incomplete: bool
    missing_cells: list[str]
    cell_counts: dict[str, int]


def created_epoch(run: dict[str, Any]) -> int:
    """The run's creation time as epoch seconds (the archive's fixed mtime); 0 if unknown."""
    text = run.get("created_utc")
    if not isinstance(text, str):
        return 0
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return max(0, int(stamp.timestamp()))


def _scalars(obj: Any, limit: int = 24) -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {}
    picked = {k: v for k, v in sorted(obj.items()) if isinstance(v, (str, int, float, bool))}
    return dict(list(picked.items())[:limit])


def _env_summary(run: RunDir, name: str) -> dict[str, Any]:
    """Top-level scalar facts of env/<name>.json plus those of its device list, if any."""
    path = run.path / "env" / f"{name}.json"
    if not path.is_file():
        return {}
    try:
        data = read_json(path, f"env/{name}.json")
    except Exception:
        return {"error": f"env/{name}.json is not readable JSON"}
    summary = _scalars(data)
    for key in ("gpus", "devices"):
        items = data.get(key) if isinstance(data, dict) else None
        if isinstance(items, list):
            summary[key] = [_scalars(item, 40) for item in items if isinstance(item, dict)]
    return summary


def _process_stacks(run: RunDir) -> list[dict[str, Any]]:
    """The distinct `stack` records of env/process-*.json (kit/images/stacks.py), and of a
    merged run's env/tasks/*/process-*.json, in name order."""
    found: list[dict[str, Any]] = []
    env = run.path / "env"
    for path in sorted([*env.glob("process-*.json"), *env.glob("tasks/*/process-*.json")]):
        try:
            stack = json.loads(path.read_text()).get("stack")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(stack, dict) and stack not in found:
            found.append(stack)
    return found


def _matrix_facts(run: RunDir, staged: Staged) -> dict[str, Any]:
    raw = run.run.get("matrix")
    matrix = dict(raw) if isinstance(raw, dict) else {"id": raw}
    source = matrix.get("source") or matrix.get("source_file")
    if isinstance(source, str):
        # Keep the file name only: the archive must not carry machine-local absolute paths.
        matrix["source"] = PurePosixPath(source.replace("\\", "/")).name
        matrix.pop("source_file", None)
    cells = staged.members.get("matrix/cells.json")
    if cells is not None:
        matrix["cells_sha256"] = sha256_source(cells)
    src = staged.members.get("matrix/source.yaml")
    if src is not None:
        matrix["source_yaml_sha256"] = sha256_source(src)
    return matrix


def build_manifest(staged: Staged) -> dict[str, Any]:
    run = staged.run
    r = run.run
    facts = staged.facts
    telemetry = [
        {"gpu": j.gpu, "rows": j.rows, "first_ns": j.first_ns, "last_ns": j.last_ns}
        for j in staged.joins
    ]
    energy_run = [j.energy_j for j in staged.joins if j.gpu in staged.gpus_in_use]
    return {
        "kind": BUNDLE_KIND,
        "schema": SCHEMA_VERSION,
        "bundler_version": __version__,
        "kit_version": r.get("kit_version"),
        "run_schema": r.get("schema"),
        "git_commit": r.get("git_commit") if isinstance(r.get("git_commit"), str) else None,
        "git_dirty": r.get("git_dirty"),
        "created_utc": r.get("created_utc"),
        "argv": r.get("argv"),
        "selection": r.get("selection"),
        "runner": r.get("runner"),
        # the --device override (a string) or JSON null ("as the matrix says"); never "null"
        "device": r.get("device") if isinstance(r.get("device"), str) else None,
        "devices": sorted(
            {str(c["device"]) for c in run.cells if isinstance(c, dict) and c.get("device")}
        ),
        "order": r.get("order"),
        "order_seed": r.get("order_seed"),
        "matrix": _matrix_facts(run, staged),
        "gpu": _env_summary(run, "gpu"),
        "host": _env_summary(run, "host"),
        "images": sorted(facts.images),
        "stacks": _process_stacks(run),
        "cells": {
            "total": sum(staged.status_counts.values()),
            "by_status": dict(sorted(staged.status_counts.items())),
            "missing": staged.missing,
        },
        "samples": {
            "events": facts.n_samples_all,
            "by_status": dict(sorted(facts.samples_by_status.items())),
        },
        "incomplete": bool(staged.missing),
        "run_finished": facts.run_finished,
        "run_span_ns": list(facts.span) if facts.span else None,
        "cells_span_ns": (
            [min(w.start_ns for w in facts.windows), max(w.end_ns for w in facts.windows)]
            if facts.windows
            else None
        ),
        "telemetry": telemetry,
        "energy_j": {
            "gpus": staged.gpus_in_use,
            "telemetry_span": sum(e for e in energy_run if e is not None) if energy_run else None,
            "cells": staged.energy_cells_j,
        },
    }


def build_bundle(
    run_dir: Path,
    out: Path | None = None,
    compression: str = "gz",
    report: bool = True,
    plots: bool = True,
) -> BundleResult:
    """Bundle `run_dir` into `out` (default: beside it). Raises KitError on bad input."""
    run = RunDir.open(run_dir)
    out = out or run_dir.parent / f"{run_dir.resolve().name}{SUFFIX[compression]}"
    with tempfile.TemporaryDirectory(prefix="kit-bundle-") as tmp:
        staged = stage(run, Path(tmp) / "stage")
        manifest = build_manifest(staged)
        if report:
            from kit.bundle.report import write_report_into

            report_dir = Path(tmp) / "stage" / "report"
            write_report_into(staged.members, manifest, report_dir, plots)
            for path in sorted(report_dir.rglob("*")):
                if path.is_file():
                    staged.members[f"report/{path.relative_to(report_dir).as_posix()}"] = path
        hashes = {name: sha256_source(src) for name, src in staged.members.items()}
        manifest["content_hash"] = content_hash(hashes)
        manifest_bytes = dump_manifest(manifest)
        staged.members[MANIFEST] = manifest_bytes
        hashes[MANIFEST] = sha256_source(manifest_bytes)
        staged.members[SUMS] = sums_text(hashes).encode()
        write_archive(out, staged.members, created_epoch(run.run), compression)
    return BundleResult(
        path=out,
        content_hash=manifest["content_hash"],
        members=len(staged.members),
        incomplete=manifest["incomplete"],
        missing_cells=list(staged.missing),
        cell_counts=dict(staged.status_counts),
    )
