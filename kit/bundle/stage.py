"""Derive a bundle's content from a run directory: the member plan plus facts for the manifest.

Derived files (results/, integrity/) are written to a staging folder; files copied as they are
(env/, telemetry/, matrix/, the journal) are referenced by path and streamed into the archive
later. Nothing large is held in memory.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from kit.bundle import integrity
from kit.bundle.archive import Source
from kit.bundle.results import SUMMARY_COLUMNS, JournalFacts, fmt, scan_journal, summary_rows
from kit.bundle.rundir import RunDir
from kit.bundle.telemetry import TIMELINE_FIELDS, TelemetryJoin, join


@dataclasses.dataclass
class Staged:
    """Everything `build_bundle` needs: members to archive and the facts behind the manifest."""

    run: RunDir
    members: dict[str, Source]
    facts: JournalFacts
    status_counts: Counter[str]
    missing: list[str]
    joins: list[TelemetryJoin]
    gpus_in_use: list[str]
    energy_cells_j: float | None


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([fmt(row.get(c)) for c in columns])


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")


def gpus_in_use(run: dict[str, Any], files: list[Path]) -> list[str]:
    """Telemetry files (stems) of the GPUs the run used: `cuda:N` in run.json, else all."""
    device = run.get("device")
    text = json.dumps(device) if not isinstance(device, str) else device
    match = re.search(r"cuda:(\d+)", text)
    stems = [f.stem for f in files]
    if match and f"gpu{match.group(1)}" in stems:
        return [f"gpu{match.group(1)}"]
    return stems


def stage(run: RunDir, work: Path) -> Staged:
    """Stream the run once into `work`; return the member plan (arcname -> source)."""
    facts = scan_journal(run.journal, work)
    statuses = run.statuses()
    order = run.cell_order()
    known = set(order)
    status_rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    missing: list[str] = []
    for cid in order + sorted(set(statuses) - known):
        st = statuses.get(cid)
        if st is None:
            missing.append(cid)
            status_rows.append({"cell": cid, "status": "missing", "reasons": ["never finished"]})
            counts["missing"] += 1
            continue
        counts[st.status] += 1
        row = dataclasses.asdict(st)
        row["reasons"] = list(st.reasons)
        row["n_sample_events"] = facts.samples_of(cid)
        status_rows.append(row)
    _write_jsonl(work / "results" / "statuses.jsonl", status_rows)
    _write_csv(work / "results" / "cell_summary.csv", SUMMARY_COLUMNS, summary_rows(facts))

    files = run.telemetry_files()
    joins = [join(f, facts.windows, facts.span) for f in files]
    in_use = gpus_in_use(run.run, files)
    energy, throttle, energy_total = _cell_energy(facts, joins, in_use)
    _write_telemetry_tables(work, facts, joins, energy)
    checks = integrity.derive_checks(run.cells, statuses, facts, throttle if files else None)
    _write_jsonl(work / "integrity" / "checks.jsonl", checks)
    _write_csv(work / "integrity" / "checks.csv", integrity.CHECK_COLUMNS, checks)

    members: dict[str, Source] = {}
    for path in sorted(work.rglob("*")):
        if path.is_file():
            members[path.relative_to(work).as_posix()] = path
    members["run.json"] = run.path / "run.json"
    members["results/journal.jsonl"] = run.journal
    for name in ("cells.jsonl", "summary.json", "summary.csv"):
        if (run.path / name).is_file():
            members[f"results/{'cells-raw.jsonl' if name == 'cells.jsonl' else name}"] = (
                run.path / name
            )
    for folder in ("env", "matrix", "telemetry"):
        for path in run.files_under(folder):
            members[path.relative_to(run.path).as_posix()] = path
    # Each group's stderr (crash context). Not the harness inputs (they name machine-local
    # paths; their prompt ids are in the journal's cell_started) nor compiler caches.
    for path in run.files_under("groups"):
        if path.parent.parent == run.path / "groups" and path.suffix == ".log":
            members[path.relative_to(run.path).as_posix()] = path
    return Staged(
        run=run,
        members=members,
        facts=facts,
        status_counts=counts,
        missing=missing,
        joins=joins,
        gpus_in_use=in_use,
        energy_cells_j=energy_total,
    )


def _cell_energy(
    facts: JournalFacts, joins: list[TelemetryJoin], in_use: list[str]
) -> tuple[dict[str, float], dict[str, set[str]], float | None]:
    energy: dict[str, float] = {}
    throttle: dict[str, set[str]] = {}
    for tj in joins:
        if tj.gpu not in in_use:
            continue
        for idx, result in tj.windows.items():
            cell = facts.windows[idx].cell
            throttle.setdefault(cell, set()).update(result.throttle)
            if result.energy_j is not None:
                energy[cell] = energy.get(cell, 0.0) + result.energy_j
    total = sum(energy.values()) if energy else None
    return energy, throttle, total


def _write_telemetry_tables(
    work: Path, facts: JournalFacts, joins: list[TelemetryJoin], energy: dict[str, float]
) -> None:
    results = work / "results"
    windows = [{"cell": w.cell, "start_ns": w.start_ns, "end_ns": w.end_ns} for w in facts.windows]
    _write_csv(results / "cell_windows.csv", ("cell", "start_ns", "end_ns"), windows)
    if not joins:
        return
    per_cell: dict[str, dict[str, int]] = {}
    for (cell, phase), acc in facts.phases.items():
        tokens = acc.tokens_in if phase == "prefill" else acc.tokens_out
        slot = per_cell.setdefault(cell, {"tokens": 0})
        slot["tokens"] += tokens
    rows = []
    for cell in sorted(energy):
        tokens = per_cell.get(cell, {}).get("tokens", 0)
        rows.append(
            {
                "cell": cell,
                "energy_j": energy[cell],
                "tokens": tokens,
                "j_per_token": energy[cell] / tokens if tokens else None,
            }
        )
    _write_csv(results / "cell_energy.csv", ("cell", "energy_j", "tokens", "j_per_token"), rows)
    intervals = [
        {"gpu": tj.gpu, "start_ns": a, "end_ns": b, "reasons": r}
        for tj in joins
        for a, b, r in tj.throttle_intervals
    ]
    _write_csv(
        results / "throttle_intervals.csv", ("gpu", "start_ns", "end_ns", "reasons"), intervals
    )
    timeline = [{"gpu": tj.gpu, "t_ns": t, **values} for tj in joins for t, values in tj.timeline]
    _write_csv(results / "telemetry_timeline.csv", ("gpu", "t_ns", *TIMELINE_FIELDS), timeline)
