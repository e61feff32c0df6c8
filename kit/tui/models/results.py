"""Result rows for the Results screen: one per cell and phase of a run directory, with the
statistics (kit.stats), energy and throttling (telemetry/phases.jsonl, when present) and the
published value the matrix file gives for the cell, if any."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

# (key, heading): the most read columns first, so they show at 80 columns.
COLUMNS = (
    ("model", "model"),
    ("backend", "backend"),
    ("mode", "mode"),
    ("median_ms", "median ms"),
    ("ci", "95% CI"),
    ("n", "n"),
    ("status", "status"),
    ("published", "published"),
    ("ratio", "ratio"),
    ("tok_s", "tok/s"),
    ("j_per_token", "J/tok"),
    ("throttled", "thr"),
    ("cell", "cell"),
)


def short_backend(backend: str) -> str:
    return backend.removeprefix("transformers-")


@dataclasses.dataclass(frozen=True)
class ResultRow:
    cell: str
    phase: str
    fields: dict[str, Any]
    status: str
    reasons: tuple[str, ...]
    n: int
    median_ms: float
    mean_ms: float
    ci_low: float
    ci_high: float
    tok_s: float
    j_per_token: float | None
    throttled: bool | None
    published: float | None
    published_statistic: str | None
    published_source: str
    ratio: float | None
    latencies: tuple[float, ...]

    def sort_key(self, column: str) -> Any:
        value = getattr(self, column, None) if column != "ci" else self.ci_low
        if column in ("model", "backend", "mode", "status", "cell"):
            return (0, str(self.fields.get(column, value) if column != "cell" else self.cell))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0.0)
        return (0, float(value))

    def cells_text(self) -> dict[str, str]:
        def num(value: float | None, digits: int = 2) -> str:
            if value is None or math.isnan(value):
                return "-"
            return f"{value:.{digits}f}"

        ci = f"{num(self.ci_low)}-{num(self.ci_high)}" if not math.isnan(self.ci_low) else "-"
        throttle = "-" if self.throttled is None else ("YES" if self.throttled else "no")
        return {
            "cell": self.cell[:8],
            "model": str(self.fields.get("model", "?")),
            "backend": short_backend(str(self.fields.get("backend", "?"))),
            "mode": self.phase,
            "median_ms": num(self.median_ms),
            "ci": ci,
            "n": str(self.n),
            "status": self.status,
            "tok_s": num(self.tok_s, 1),
            "j_per_token": num(self.j_per_token, 4),
            "throttled": throttle,
            "published": num(self.published),
            "ratio": num(self.ratio),
        }


def _phases(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = run_dir / "telemetry" / "phases.jsonl"
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("scope") == "cell_phase":
            out[(str(record.get("cell")), str(record.get("phase")))] = record
    return out


def _published(run_dir: Path) -> list[Any]:
    source = run_dir / "matrix" / "source.yaml"
    if not source.exists():
        return []
    try:
        from kit.matrix import load_matrix

        return list(load_matrix(str(source)).published)
    except Exception:  # a matrix that no longer loads just has no published values here
        return []


def _match(fields: dict[str, Any], phase: str, entries: list[Any]) -> Any:
    """The first mean/median published entry of the cell's group whose `match` fits."""
    for entry in entries:
        if entry.group != fields.get("group") or entry.statistic not in ("mean", "median"):
            continue
        wanted = entry.match.items()
        if all(str(fields.get(k, phase if k == "mode" else None)) == str(v) for k, v in wanted):
            return entry
    return None


def _latencies(run_dir: Path) -> dict[tuple[str, str], tuple[float, ...]]:
    from kit.stats.journal_scan import scan_journal

    path = run_dir / "journal.jsonl"
    if not path.exists():
        return {}
    scan = scan_journal(path)
    return {
        (cid, phase): tuple(samples.latency_ms)
        for cid, cell in scan.cells.items()
        for phase, samples in cell.phases.items()
    }


def load_results(run_dir: Path) -> list[ResultRow]:
    """Rows of `run_dir` in run order. Raises KitError for a damaged run directory."""
    from kit.stats import summarize_run

    summary = summarize_run(run_dir)
    phases = _phases(run_dir)
    published = _published(run_dir)
    latencies = _latencies(run_dir)
    rows = []
    for row in summary.rows:
        energy = phases.get((row.cell, row.phase), {})
        per_token = energy.get("j_per_token_in" if row.phase == "prefill" else "j_per_token_out")
        throttled = (
            bool(energy.get("thermal_limited") or energy.get("power_limited")) if energy else None
        )
        entry = _match(row.fields, row.phase, published)
        ours = row.latency.mean if entry and entry.statistic == "mean" else row.latency.median
        ratio = ours / entry.value if entry and entry.value and not math.isnan(ours) else None
        ci = row.latency.ci_median_bootstrap
        rows.append(
            ResultRow(
                cell=row.cell,
                phase=row.phase,
                fields=row.fields,
                status=row.status,
                reasons=row.reasons,
                n=row.latency.n,
                median_ms=row.latency.median,
                mean_ms=row.latency.mean,
                ci_low=ci.low,
                ci_high=ci.high,
                tok_s=row.throughput.tokens_per_s_median,
                j_per_token=per_token,
                throttled=throttled,
                published=entry.value if entry else None,
                published_statistic=entry.statistic if entry else None,
                published_source=entry.source if entry else "",
                ratio=ratio,
                latencies=latencies.get((row.cell, row.phase), ()),
            )
        )
    return rows


def depth_rows(rows: list[ResultRow]) -> list[dict[str, Any]]:
    """GPT-2 family: median latency against depth and parameters, per backend and mode."""
    from kit.matrix.models import registry

    models = registry()
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        spec = models.get(str(row.fields.get("model")))
        if spec is None or spec.family != "gpt2" or not row.latencies:
            continue
        key = (spec.id, str(row.fields.get("backend")), row.phase)
        grouped.setdefault(key, []).extend(row.latencies)
    out = []
    for (model, backend, mode), values in grouped.items():
        values = sorted(values)
        mid = len(values) // 2
        median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        spec = models[model]
        out.append(
            {
                "model": model,
                "n_layer": spec.n_layer,
                "params": spec.params,
                "backend": backend,
                "mode": mode,
                "median_ms": median,
                "n": len(values),
            }
        )
    return sorted(out, key=lambda r: (r["backend"], r["mode"], r["n_layer"], r["params"] or 0))


def histogram(
    values: tuple[float, ...] | list[float], bins: int = 10, width: int = 40
) -> list[str]:
    """A text histogram of latencies: one line per bin, `low-high ms |#### count`."""
    if not values:
        return ["no timed samples"]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / span * bins))] += 1
    top = max(counts)
    lines = []
    for i, count in enumerate(counts):
        a = low + span * i / bins
        b = low + span * (i + 1) / bins
        bar = "#" * max(1 if count else 0, round(count / top * width))
        lines.append(f"{a:9.3f}-{b:9.3f} ms |{bar} {count}")
    return lines
