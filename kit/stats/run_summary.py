"""Summarize a run directory: per cell and phase statistics, joined with the cells as run.

`summarize_run(run_dir)` streams `journal.jsonl`, joins it with `matrix/cells.json` (cell
fields), `cells.jsonl` (final statuses, last line per cell wins) and `run.json` (run order),
and returns a `RunSummary`. `write_summary(run_dir)` also writes `summary.json` and
`summary.csv` (see kit.stats.summary_files). Only ok, non-warmup samples with a latency enter
the statistics; the primary metric is `latency_ms`, and `cuda_event_ms` is summarised too
when present.

A cell's status is its `cells.jsonl` status; else its last `cell_finished` in the journal;
else `incomplete` (started or has samples, never finished) or `not_run` (nothing at all). Every cell gets at
least one row: a cell without samples has a row for its mode with n = 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import KitError
from kit.stats.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED
from kit.stats.describe import Description, describe
from kit.stats.journal_scan import (
    FinalStatus,
    JournalScan,
    PhaseSamples,
    read_final_statuses,
    scan_journal,
)
from kit.stats.summary_files import write_summary_files

PREFILL_PHASES = frozenset({"prefill"})
NOT_RUN = "not_run"
INCOMPLETE = "incomplete"


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Per-sample rates over the kept samples, summarised by median and mean.

    `tokens_per_s` uses `basis`: `tokens_in/latency` for prefill, `tokens_out/latency` for
    every decode-type phase (kv_decode, e2e_kv, generate), counts as the harness reported
    them. `ms_per_token` (latency / tokens_out) is set for kv_decode only. NaN when no kept
    sample has a positive token count.
    """

    basis: str
    tokens_per_s_median: float
    tokens_per_s_mean: float
    ms_per_token_median: float
    ms_per_token_mean: float


@dataclasses.dataclass(frozen=True)
class PhaseSummary:
    """One row of the summary: one cell and one phase (mode)."""

    cell: str
    phase: str
    fields: dict[str, Any]  # the cell as in matrix/cells.json (without id); {} if unknown
    status: str
    reasons: tuple[str, ...]
    attempts: int
    n_samples: int  # sample events of the latest attempt
    n_warmup: int
    not_ok: dict[str, int]  # non-warmup samples by status other than ok
    n_invalid: int  # ok samples without a usable latency
    n_superseded: int  # samples of earlier attempts
    n_excluded: int  # everything above that did not enter the statistics
    latency: Description
    cuda_event: Description | None  # None when no kept sample had a CUDA-event time
    throughput: Throughput


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """Everything `kit summarize` shows and writes."""

    run_dir: Path
    run: dict[str, Any]  # run.json, or {} when missing
    rows: list[PhaseSummary]
    cells_by_status: dict[str, int]
    unknown_cells: list[str]  # in the journal or cells.jsonl, not in matrix/cells.json
    complete: bool  # the journal has run_finished and every cell has a final status
    journal_lines: int
    journal_bad_lines: int
    journal_truncated_tail: bool
    cells_jsonl_bad_lines: int
    resamples: int
    seed: int
    confidence: float


def _load_json(path: Path, what: str) -> Any:
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except ValueError as err:
        raise KitError(
            f"{what} is not valid JSON: {path} ({err})",
            "the run directory is damaged; restore the file from the bundle or rerun",
        ) from err


def _load_cells(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "matrix" / "cells.json"
    if not path.exists():
        return []
    cells = _load_json(path, "matrix/cells.json")
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) for c in cells
    ):
        raise KitError(
            f"matrix/cells.json is not a list of cells with ids: {path}",
            "see docs/FORMATS.md for the cell format",
        )
    return cells


def _median_mean(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    return float(np.median(values)), float(values.mean())


def _throughput(phase: str, acc: PhaseSamples) -> Throughput:
    latency = np.asarray(acc.latency_ms, dtype=np.float64)
    is_prefill = phase in PREFILL_PHASES
    tokens = np.asarray(acc.tokens_in if is_prefill else acc.tokens_out, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(tokens > 0, tokens / (latency / 1000.0), np.nan)
        out = np.asarray(acc.tokens_out, dtype=np.float64)
        per_token = np.where(out > 0, latency / out, np.nan)
    tps_median, tps_mean = _median_mean(rates)
    mpt_median, mpt_mean = _median_mean(per_token) if phase == "kv_decode" else (math.nan, math.nan)
    basis = "tokens_in/latency" if is_prefill else "tokens_out/latency"
    return Throughput(basis, tps_median, tps_mean, mpt_median, mpt_mean)


def _cell_order(run: dict[str, Any], cells: list[dict[str, Any]], scan: JournalScan,
                finals: dict[str, FinalStatus]) -> list[str]:  # fmt: skip
    order: list[str] = []
    seen: set[str] = set()
    listed = run.get("cell_ids")
    candidates = [*(listed if isinstance(listed, list) else []), *(c["id"] for c in cells)]
    for cell_id in [*candidates, *scan.cells, *finals]:
        if isinstance(cell_id, str) and cell_id not in seen:
            seen.add(cell_id)
            order.append(cell_id)
    return order


def summarize_run(
    run_dir: Path,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RunSummary:
    """Summarize the run directory `run_dir` (see the module docstring).

    Raises KitError when `run_dir` does not exist, is not a directory, holds neither
    `journal.jsonl` nor `matrix/cells.json`, or holds a cells/run file that is not valid JSON.
    A partial run (cut journal, cells without samples, crashed cells) summarises normally.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise KitError(f"no such run directory: {run_dir}", "check the path (kit run --out DIR)")
    if not run_dir.is_dir():
        raise KitError(f"not a directory: {run_dir}", "give the run DIRECTORY, not a file")
    journal = run_dir / "journal.jsonl"
    if not journal.exists() and not (run_dir / "matrix" / "cells.json").exists():
        raise KitError(
            f"not a run directory: {run_dir} (no journal.jsonl or matrix/cells.json)",
            "give a folder written by `kit run --out DIR`",
        )
    run_path = run_dir / "run.json"
    run = _load_json(run_path, "run.json") if run_path.exists() else {}
    run = run if isinstance(run, dict) else {}
    cells = _load_cells(run_dir)
    by_id = {c["id"]: c for c in cells}
    scan = scan_journal(journal)
    finals, finals_bad = read_final_statuses(run_dir / "cells.jsonl")

    rows: list[PhaseSummary] = []
    statuses: Counter[str] = Counter()
    for cell_id in _cell_order(run, cells, scan, finals):
        fields = {k: v for k, v in by_id.get(cell_id, {}).items() if k != "id"}
        cell_scan = scan.cells.get(cell_id)
        final = finals.get(cell_id)
        if final is not None:
            status, reasons = final.status, final.reasons
        elif cell_scan is not None and cell_scan.finished_status is not None:
            status, reasons = cell_scan.finished_status, tuple(cell_scan.finished_reasons)
        elif cell_scan is not None and (cell_scan.attempts > 0 or cell_scan.phases):
            status, reasons = INCOMPLETE, ("started but never finished",)
        else:
            status, reasons = NOT_RUN, ()
        statuses[status] += 1
        phases = dict(cell_scan.phases) if cell_scan else {}
        if not phases:
            phases[str(fields.get("mode", ""))] = PhaseSamples()
        for phase, acc in phases.items():
            rows.append(
                PhaseSummary(
                    cell=cell_id,
                    phase=phase,
                    fields=fields,
                    status=status,
                    reasons=tuple(reasons),
                    attempts=cell_scan.attempts if cell_scan else 0,
                    n_samples=acc.n_samples,
                    n_warmup=acc.n_warmup,
                    not_ok=dict(sorted(acc.not_ok.items())),
                    n_invalid=acc.n_invalid,
                    n_superseded=acc.n_superseded,
                    n_excluded=acc.n_excluded,
                    latency=describe(acc.latency_ms, resamples, seed, confidence),
                    cuda_event=(
                        describe(acc.cuda_event_ms, resamples, seed, confidence)
                        if len(acc.cuda_event_ms)
                        else None
                    ),
                    throughput=_throughput(phase, acc),
                )
            )
    unknown = [c for c in _cell_order({}, [], scan, finals) if c not in by_id] if cells else []
    all_final = all(c["id"] in finals for c in cells)
    return RunSummary(
        run_dir=run_dir,
        run=run,
        rows=rows,
        cells_by_status=dict(sorted(statuses.items())),
        unknown_cells=unknown,
        complete=scan.run_finished and all_final,
        journal_lines=scan.lines,
        journal_bad_lines=scan.bad_lines,
        journal_truncated_tail=scan.truncated_tail,
        cells_jsonl_bad_lines=finals_bad,
        resamples=resamples,
        seed=seed,
        confidence=confidence,
    )


def write_summary(
    run_dir: Path,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> RunSummary:
    """Summarize `run_dir` and write `summary.json` and `summary.csv` into it (atomically).

    Returns the summary. Raises KitError as summarize_run does, and when the files cannot be
    written (read-only directory).
    """
    summary = summarize_run(run_dir, resamples, seed, confidence)
    write_summary_files(summary, Path(run_dir))
    return summary
