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
from kit.bundle.rundir import RunDir, iter_jsonl
from kit.bundle.telemetry import TIMELINE_FIELDS, TelemetryJoin, join
from kit.paths import inside


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
    path = inside(path.parent, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([fmt(row.get(c)) for c in columns])


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path = inside(path.parent, path.name)
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


def _builtin_claims(header: dict[str, Any]) -> Path | None:
    from kit.claims.spec import claims_path

    matrix = header.get("matrix") if isinstance(header, dict) else None
    matrix_id = matrix.get("id") if isinstance(matrix, dict) else None
    safe = isinstance(matrix_id, str) and matrix_id.replace("-", "").replace("_", "").isalnum()
    path = claims_path(str(matrix_id)) if safe else None
    return path if path is not None and path.is_file() else None


def stage(run: RunDir, work: Path) -> Staged:
    """Stream the run once into `work`; return the member plan (arcname -> source)."""
    facts = scan_journal(run.journal, work)
    statuses = run.statuses()
    placed = run.placed_cells()
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
        row.update(placed.get(cid, {}))  # --gpus runs only: gpu, co_scheduled
        status_rows.append(row)
    _write_jsonl(work / "results" / "statuses.jsonl", status_rows)
    _write_csv(work / "results" / "cell_summary.csv", SUMMARY_COLUMNS, summary_rows(facts))

    files = run.telemetry_files()
    joins = [join(f, facts.windows, facts.span) for f in files]
    in_use = gpus_in_use(run.run, files)
    energy, throttle, energy_total = _cell_energy(facts, joins, in_use)
    _write_telemetry_tables(work, facts, joins, energy)
    if files:
        _write_phase_energy(work, phase_energy_records(run.path, in_use))
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
    for folder in ("env", "matrix", "telemetry", "tasks"):  # tasks/: a merged run's inputs
        for path in run.files_under(folder):
            members[path.relative_to(run.path).as_posix()] = path
    # The claims the run's matrix is judged by travel with it (`kit claims` reads this copy).
    claims = _builtin_claims(run.run)
    if claims is not None and "matrix/claims.yaml" not in members:
        members["matrix/claims.yaml"] = claims
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
            gpu = facts.finished.get(cell, {}).get("gpu")
            if isinstance(gpu, int) and tj.gpu != f"gpu{gpu}":
                continue  # a --gpus run: a cell's window counts on its own GPU only
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
    _write_csv(
        results / "cell_window_energy.csv", ("cell", "energy_j", "tokens", "j_per_token"), rows
    )
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


CELL_ENERGY_COLUMNS = (
    "cell",
    "phase",
    "n_samples",
    "duration_ms",
    "energy_j",
    "energy_method",
    "coverage",
    "tokens_in",
    "tokens_out",
    "tokens",
    "j_per_token",
)
ONEOFF_ENERGY_COLUMNS = ("cell", "phase", "duration_ms", "energy_j", "energy_method", "coverage")


def phase_energy_records(run_dir: Path, in_use: list[str]) -> list[dict[str, Any]]:
    """`cell_phase` and `phase_event` records of kit.gpu.join for the GPUs in use.

    Read from the run's `telemetry/phases.jsonl` when present (streamed; per-sample records
    skipped), else computed by `join_run` without per-sample records.
    """
    path = run_dir / "telemetry" / "phases.jsonl"
    wanted = ("cell_phase", "phase_event")
    records: list[dict[str, Any]] = []
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if '"scope": "sample"' in line:
                    continue  # per-repetition records: not needed, and the bulk of the file
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("scope") in wanted:
                    records.append(rec)
    else:
        from kit.gpu.join import join, spans_from_events
        from kit.gpu.telemetry import read_run_telemetry

        # Spans streamed from the journal (only sample and phase events become spans).
        spans = spans_from_events(iter_jsonl(run_dir / "journal.jsonl"))
        records = join(spans, read_run_telemetry(run_dir), per_sample=False)
        records = [r for r in records if r.get("scope") in wanted]
    return [r for r in records if f"gpu{r.get('gpu')}" in in_use]


def _write_phase_energy(work: Path, records: list[dict[str, Any]]) -> None:
    """results/cell_energy.csv (timed, ok, non-warmup samples of each cell's phase, summed
    over the GPUs in use) and results/oneoff_energy.csv (load, compile, export, ...)."""
    timed: dict[tuple[str, str], dict[str, Any]] = {}
    oneoff: dict[tuple[str, str, int], dict[str, Any]] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for rec in records:
        cell, phase = str(rec.get("cell") or ""), str(rec.get("phase"))
        energy = rec.get("energy_j")
        if rec["scope"] == "cell_phase":
            row = timed.setdefault(
                (cell, phase),
                {"cell": cell, "phase": phase, "energy_j": 0.0, "coverage": 1.0, "methods": set()},
            )
            row["n_samples"] = int(rec.get("n_spans") or 0)
            row["duration_ms"] = float(rec.get("duration_ms") or 0.0)
            row["tokens_in"] = int(rec.get("tokens_in") or 0)
            row["tokens_out"] = int(rec.get("tokens_out") or 0)
        else:
            # Several events of one phase in a cell (retries) stay separate rows.
            key = (cell, phase, str(rec.get("gpu")))
            n = seen[key] = seen.get(key, -1) + 1
            row = oneoff.setdefault(
                (cell, phase, n),
                {"cell": cell, "phase": phase, "energy_j": 0.0, "coverage": 1.0, "methods": set()},
            )
            row["duration_ms"] = float(rec.get("duration_ms") or 0.0)
        row["coverage"] = min(row["coverage"], float(rec.get("coverage") or 0.0))
        if energy is None or row["energy_j"] is None:
            row["energy_j"] = None
        else:
            row["energy_j"] += float(energy)
        if rec.get("energy_method"):
            row["methods"].add(str(rec["energy_method"]))
    rows = []
    for (_, phase), row in sorted(timed.items()):
        tokens = row["tokens_in"] if phase == "prefill" else row["tokens_out"]
        row["tokens"] = tokens
        row["j_per_token"] = (
            row["energy_j"] / tokens if row["energy_j"] is not None and tokens else None
        )
        rows.append(row)
    for row in [*rows, *oneoff.values()]:
        row["energy_method"] = (
            "+".join(sorted(row.pop("methods"))) if row["energy_j"] is not None else ""
        )
    _write_csv(work / "results" / "cell_energy.csv", CELL_ENERGY_COLUMNS, rows)
    once = [oneoff[k] for k in sorted(oneoff)]
    _write_csv(work / "results" / "oneoff_energy.csv", ONEOFF_ENERGY_COLUMNS, once)
