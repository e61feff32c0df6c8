"""`summary.json` and `summary.csv`: the files a run summary is written to.

The output is deterministic for a given run directory and bootstrap settings (no clock
values, sorted keys), so a bundle of the same run stays byte-identical. NaN is written as
JSON `null` and as an empty CSV field. Floats are written with repr precision.

summary.json: `schema`, `kit_version`, `run` (a few fields of run.json), `complete`,
`journal` (lines, bad lines, truncated tail), `cells_by_status`, `unknown_cells`,
`bootstrap` (resamples, seed, confidence), `rows` (one object per cell and phase:
`row_to_dict`). summary.csv: one row per cell and phase, the columns of `CSV_COLUMNS`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit import __version__
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.stats.run_summary import PhaseSummary, RunSummary

SUMMARY_SCHEMA = 1
RUN_FIELDS = ("kit_version", "git_commit", "git_dirty", "created_utc", "matrix", "device",
              "runner", "order", "order_seed")  # fmt: skip
CELL_COLUMNS = ("matrix", "group", "backend", "device", "model", "dtype", "quantization",
                "scenario", "mode", "token_len", "batch_size")  # fmt: skip
CSV_COLUMNS = (
    "cell", *CELL_COLUMNS, "phase", "status", "n", "n_samples", "n_warmup", "n_not_ok",
    "n_invalid", "n_superseded", "n_excluded", "mean_ms", "median_ms", "std_ms", "min_ms",
    "max_ms", "p5_ms", "p95_ms", "p99_ms", "cv", "trimmed_mean_ms", "outliers",
    "ci_mean_low_ms", "ci_mean_high_ms", "ci_median_low_ms", "ci_median_high_ms",
    "ci_normal_low_ms", "ci_normal_high_ms", "tokens_per_s_median", "tokens_per_s_mean",
    "tokens_per_s_basis", "ms_per_token_median", "ms_per_token_mean", "cuda_n",
    "cuda_mean_ms", "cuda_median_ms", "cuda_ci_median_low_ms", "cuda_ci_median_high_ms",
    "not_ok_by_status", "reasons",
)  # fmt: skip


def _clean(value: Any) -> Any:
    """Replace NaN by None, recursively, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def row_to_dict(row: PhaseSummary) -> dict[str, Any]:
    """The JSON object of one row (NaN already replaced by None)."""
    t = row.throughput
    return _clean(
        {
            "cell": row.cell,
            "phase": row.phase,
            "fields": row.fields,
            "status": row.status,
            "reasons": list(row.reasons),
            "attempts": row.attempts,
            "counts": {
                "n": row.latency.n,
                "samples": row.n_samples,
                "warmup": row.n_warmup,
                "not_ok": row.not_ok,
                "invalid": row.n_invalid,
                "superseded": row.n_superseded,
                "excluded": row.n_excluded,
            },
            "latency_ms": row.latency.to_dict(),
            "cuda_event_ms": row.cuda_event.to_dict() if row.cuda_event else None,
            "throughput": {
                "basis": t.basis,
                "tokens_per_s_median": t.tokens_per_s_median,
                "tokens_per_s_mean": t.tokens_per_s_mean,
                "ms_per_token_median": t.ms_per_token_median,
                "ms_per_token_mean": t.ms_per_token_mean,
            },
        }
    )


def summary_to_dict(summary: RunSummary) -> dict[str, Any]:
    """The whole summary.json object."""
    return _clean(
        {
            "schema": SUMMARY_SCHEMA,
            "kit_version": __version__,
            "run": {k: summary.run[k] for k in RUN_FIELDS if k in summary.run},
            "complete": summary.complete,
            "journal": {
                "lines": summary.journal_lines,
                "bad_lines": summary.journal_bad_lines,
                "truncated_tail": summary.journal_truncated_tail,
                "cells_jsonl_bad_lines": summary.cells_jsonl_bad_lines,
            },
            "cells_by_status": summary.cells_by_status,
            "unknown_cells": summary.unknown_cells,
            "bootstrap": {
                "method": "percentile",
                "resamples": summary.resamples,
                "seed": summary.seed,
                "confidence": summary.confidence,
            },
            "rows": [row_to_dict(r) for r in summary.rows],
        }
    )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def row_to_csv(row: PhaseSummary) -> dict[str, str]:
    """One CSV row (every column of CSV_COLUMNS, as text)."""
    d, t, c = row.latency, row.throughput, row.cuda_event
    values: dict[str, Any] = {"cell": row.cell, "phase": row.phase, "status": row.status}
    values.update({k: row.fields.get(k) for k in CELL_COLUMNS})
    values.update(
        n=d.n, n_samples=row.n_samples, n_warmup=row.n_warmup,
        n_not_ok=sum(row.not_ok.values()), n_invalid=row.n_invalid,
        n_superseded=row.n_superseded, n_excluded=row.n_excluded, mean_ms=d.mean,
        median_ms=d.median, std_ms=d.std, min_ms=d.min, max_ms=d.max, p5_ms=d.p5,
        p95_ms=d.p95, p99_ms=d.p99, cv=d.cv, trimmed_mean_ms=d.trimmed_mean,
        outliers=d.outliers, ci_mean_low_ms=d.ci_mean_bootstrap.low,
        ci_mean_high_ms=d.ci_mean_bootstrap.high, ci_median_low_ms=d.ci_median_bootstrap.low,
        ci_median_high_ms=d.ci_median_bootstrap.high, ci_normal_low_ms=d.ci_mean_normal.low,
        ci_normal_high_ms=d.ci_mean_normal.high, tokens_per_s_median=t.tokens_per_s_median,
        tokens_per_s_mean=t.tokens_per_s_mean, tokens_per_s_basis=t.basis,
        ms_per_token_median=t.ms_per_token_median, ms_per_token_mean=t.ms_per_token_mean,
        cuda_n=c.n if c else 0, cuda_mean_ms=c.mean if c else None,
        cuda_median_ms=c.median if c else None,
        cuda_ci_median_low_ms=c.ci_median_bootstrap.low if c else None,
        cuda_ci_median_high_ms=c.ci_median_bootstrap.high if c else None,
        not_ok_by_status=";".join(f"{k}={v}" for k, v in row.not_ok.items()),
        reasons=" | ".join(row.reasons),
    )  # fmt: skip
    return {k: _cell(values[k]) for k in CSV_COLUMNS}


def summary_json_text(summary: RunSummary) -> str:
    return json.dumps(summary_to_dict(summary), indent=2, sort_keys=True) + "\n"


def summary_csv_text(summary: RunSummary) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summary.rows:
        writer.writerow(row_to_csv(row))
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_summary_files(summary: RunSummary, run_dir: Path) -> tuple[Path, Path]:
    """Write `summary.json` and `summary.csv` into `run_dir`; return their paths.

    Raises KitError when the directory is not writable.
    """
    json_path, csv_path = run_dir / "summary.json", run_dir / "summary.csv"
    try:
        _write_atomic(json_path, summary_json_text(summary))
        _write_atomic(csv_path, summary_csv_text(summary))
    except OSError as err:
        raise KitError(
            f"cannot write the summary into {run_dir}: {err.strerror or err}",
            "make the run directory writable, or use `kit summarize --no-write`",
        ) from err
    return json_path, csv_path
