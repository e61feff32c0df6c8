"""Completeness and internal consistency of a bundle's content (for `kit verify`).

Every cell has a status; the manifest's counts and missing list agree with the statuses; the
sample counts in `samples.jsonl` (last attempt per cell) agree with `cell_summary.csv` and with
the runner's own `n_samples`/`n_ok`; telemetry covers the run's time span.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from kit.bundle.manifest import Manifest

# Telemetry must reach from the first cell's start to the last cell's end, give or take three
# sampling periods or 1% of that span (the sampler starts and stops around the cells).
SLACK_PERIODS = 3
SLACK_SHARE = 0.01


def leading_int(line: bytes) -> int | None:
    head = line.split(b",", 1)[0].strip()
    return int(head) if head.isdigit() else None


@dataclasses.dataclass
class SampleCounts:
    """Counts per (cell, attempt) of the sample lines, built line by line."""

    counts: dict[tuple[str, int], Counter[str]] = dataclasses.field(default_factory=dict)
    bad_lines: int = 0
    first_bad: int | None = None
    lines: int = 0

    def add_line(self, line: bytes) -> None:
        self.lines += 1
        if not line.strip():
            return
        try:
            row = json.loads(line)
            key = (str(row["cell"]), int(row.get("attempt", 1)))
        except (ValueError, KeyError, TypeError):
            self.bad_lines += 1
            self.first_bad = self.first_bad or self.lines
            return
        c = self.counts.setdefault(key, Counter())
        c["all"] += 1
        if row.get("warmup"):
            c["warmup"] += 1
        else:
            c["timed"] += 1
            c["ok"] += row.get("status") == "ok"

    def last_attempt(self) -> dict[str, Counter[str]]:
        best: dict[str, tuple[int, Counter[str]]] = {}
        for (cell, attempt), c in self.counts.items():
            if cell not in best or attempt > best[cell][0]:
                best[cell] = (attempt, c)
        return {cell: c for cell, (_, c) in best.items()}


def _jsonl(data: bytes) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return [r for r in rows if isinstance(r, dict)]


def _summary_counts(data: bytes) -> dict[str, Counter[str]]:
    found: dict[str, Counter[str]] = {}
    for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
        c = found.setdefault(row["cell"], Counter())
        c["timed"] += int(row["n_samples"])
        c["warmup"] += int(row["n_warmup"])
        c["ok"] += int(row["n_ok"])
    return found


def check(
    manifest: Manifest,
    kept: Mapping[str, bytes],
    samples: SampleCounts,
    telemetry: Mapping[str, tuple[int | None, int | None, int]],
) -> list[str]:
    """Problems found, one line each (unparseable members are problems too)."""
    problems: list[str] = []
    try:
        cells = json.loads(kept.get("matrix/cells.json", b"[]"))
        cell_ids = [str(c["id"]) for c in cells]
        statuses = {str(r["cell"]): r for r in _jsonl(kept.get("results/statuses.jsonl", b""))}
        summary = _summary_counts(kept.get("results/cell_summary.csv", b"cell\n"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        return [f"a results or matrix member cannot be parsed: {type(err).__name__}: {err}"]
    if samples.bad_lines:
        problems.append(
            f"results/samples.jsonl has {samples.bad_lines} unreadable lines "
            f"(first: line {samples.first_bad})"
        )
    for cid in cell_ids:
        if cid not in statuses:
            problems.append(f"cell {cid} has no status in results/statuses.jsonl")
    for cid in sorted(set(statuses) - set(cell_ids)):
        problems.append(f"status for a cell that is not in matrix/cells.json: {cid}")
    counted = Counter(str(r.get("status")) for r in statuses.values())
    if dict(counted) != manifest.cell_counts:
        problems.append(
            f"manifest cell counts {manifest.cell_counts} differ from the statuses {dict(counted)}"
        )
    missing = sorted(c for c, r in statuses.items() if r.get("status") == "missing")
    if missing != sorted(manifest.missing_cells) or manifest.incomplete != bool(missing):
        problems.append(
            f"manifest says incomplete={manifest.incomplete} with "
            f"{len(manifest.missing_cells)} missing cells, statuses have {len(missing)} missing"
        )
    problems.extend(_sample_problems(statuses, summary, samples.last_attempt()))
    problems.extend(_telemetry_problems(manifest, telemetry))
    return problems


def _sample_problems(
    statuses: Mapping[str, dict[str, Any]],
    summary: Mapping[str, Counter[str]],
    actual: Mapping[str, Counter[str]],
) -> list[str]:
    problems: list[str] = []
    for cell in sorted(set(summary) | set(actual)):
        got = actual.get(cell, Counter())
        want = summary.get(cell, Counter())
        for key in ("timed", "warmup", "ok"):
            if got[key] != want[key]:
                problems.append(
                    f"sample count mismatch for cell {cell}: cell_summary.csv has {want[key]} "
                    f"{key} samples, samples.jsonl has {got[key]}"
                )
                break
    for cell, row in sorted(statuses.items()):
        got = actual.get(cell, Counter())
        n_samples, n_ok = row.get("n_samples"), row.get("n_ok")
        # The runner's n_samples may or may not count warmups; either reading must agree.
        if isinstance(n_samples, int) and n_samples not in (got["all"], got["timed"]):
            problems.append(
                f"sample count mismatch for cell {cell}: the runner recorded n_samples="
                f"{n_samples}, samples.jsonl has {got['all']} ({got['timed']} timed)"
            )
        elif isinstance(n_ok, int) and n_ok != got["ok"]:
            problems.append(
                f"ok-sample count mismatch for cell {cell}: the runner recorded n_ok={n_ok}, "
                f"samples.jsonl has {got['ok']}"
            )
    return problems


def _telemetry_problems(
    manifest: Manifest, telemetry: Mapping[str, tuple[int | None, int | None, int]]
) -> list[str]:
    span = manifest.cells_span_ns or manifest.run_span_ns
    if not telemetry:
        if manifest.device.startswith("cuda"):
            return ["no telemetry/ files for a CUDA run: clocks, power and throttling unknown"]
        return []
    if span is None:
        return []
    problems = []
    for name, (first, last, rows) in sorted(telemetry.items()):
        if first is None or last is None or rows < 2:
            problems.append(f"{name} has fewer than two telemetry rows")
            continue
        period = (last - first) / (rows - 1)
        slack = max(SLACK_PERIODS * period, SLACK_SHARE * (span[1] - span[0]))
        if first > span[0] + slack or last < span[1] - slack:
            problems.append(
                f"{name} does not cover the run's time span: rows "
                f"{(first - span[0]) / 1e9:+.3f}..{(last - span[0]) / 1e9:+.3f} s, "
                f"cells 0..{(span[1] - span[0]) / 1e9:.3f} s"
            )
    return problems
