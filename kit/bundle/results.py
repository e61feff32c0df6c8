"""One streamed pass over the journal: raw samples out, per-cell summaries and windows kept.

Only numbers per (cell, phase) stay in memory (the `ok` latencies, for medians); every event
line is written straight through to the output files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import IO, Any

from kit.bundle.rundir import iter_jsonl
from kit.bundle.telemetry import Window

SUMMARY_COLUMNS = (
    "cell",
    "phase",
    "n_samples",
    "n_ok",
    "n_warmup",
    "n_length_mismatch",
    "n_suspicious_fast",
    "mean_ms",
    "median_ms",
    "std_ms",
    "min_ms",
    "p95_ms",
    "max_ms",
    "ci95_low_ms",
    "ci95_high_ms",
    "tokens_in",
    "tokens_out",
)


@dataclasses.dataclass
class PhaseAcc:
    """Counters of one (cell, phase); `ok_ms` holds the timed, ok latencies."""

    n_samples: int = 0  # timed samples (warmups excluded), any status
    n_warmup: int = 0
    by_status: Counter[str] = dataclasses.field(default_factory=Counter)
    ok_ms: list[float] = dataclasses.field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0


@dataclasses.dataclass
class JournalFacts:
    phases: dict[tuple[str, str], PhaseAcc] = dataclasses.field(default_factory=dict)
    windows: list[Window] = dataclasses.field(default_factory=list)
    finished: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # cell -> how its prompt ids were made (cell_started's token_method: exact, approximate,
    # server), from its last attempt
    token_methods: dict[str, str] = dataclasses.field(default_factory=dict)
    images: set[str] = dataclasses.field(default_factory=set)
    samples_by_status: Counter[str] = dataclasses.field(default_factory=Counter)
    n_events: int = 0
    n_samples_all: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    run_finished: bool = False

    @property
    def span(self) -> tuple[int, int] | None:
        if self.first_ns is None or self.last_ns is None:
            return None
        return (self.first_ns, self.last_ns)

    def samples_of(self, cell: str) -> int:
        """Sample events of a cell's last attempt, warmups included."""
        return sum(a.n_samples + a.n_warmup for (c, _), a in self.phases.items() if c == cell)


def _dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n"


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def scan_journal(journal: Path, out_dir: Path) -> JournalFacts:
    """Stream `journal` once; write results/{samples,phases,groups}.jsonl under `out_dir`."""
    facts = JournalFacts()
    started: dict[str, int] = {}
    attempts: dict[str, int] = {}
    results = out_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    with (
        (results / "samples.jsonl").open("w", encoding="utf-8") as samples,
        (results / "phases.jsonl").open("w", encoding="utf-8") as phases,
        (results / "groups.jsonl").open("w", encoding="utf-8") as groups,
    ):
        for event in iter_jsonl(journal):
            facts.n_events += 1
            t_ns = event.get("t_ns")
            if isinstance(t_ns, int) and not isinstance(t_ns, bool):
                facts.first_ns = t_ns if facts.first_ns is None else min(facts.first_ns, t_ns)
                facts.last_ns = t_ns if facts.last_ns is None else max(facts.last_ns, t_ns)
            _route(event, facts, started, attempts, samples, phases, groups)
    facts.windows.sort(key=lambda w: (w.start_ns, w.end_ns, w.cell))
    return facts


def _route(
    event: dict[str, Any],
    facts: JournalFacts,
    started: dict[str, int],
    attempts: dict[str, int],
    samples: IO[str],
    phases: IO[str],
    groups: IO[str],
) -> None:
    kind = event.get("event")
    cell = str(event.get("cell") or "")
    if kind == "sample":
        # An earlier attempt's samples stay in the raw file but not in the statistics.
        samples.write(_dump({**event, "attempt": attempts.get(cell, 1)}))
        facts.n_samples_all += 1
        acc = facts.phases.setdefault((cell, str(event.get("phase", ""))), PhaseAcc())
        status = str(event.get("status", "unknown"))
        facts.samples_by_status[status] += 1
        acc.tokens_in += _int(event.get("tokens_in"))
        acc.tokens_out += _int(event.get("tokens_out"))
        if event.get("warmup"):
            acc.n_warmup += 1
            return
        acc.n_samples += 1
        acc.by_status[status] += 1
        latency = event.get("latency_ms")
        if status == "ok" and isinstance(latency, (int, float)) and math.isfinite(latency):
            acc.ok_ms.append(float(latency))
    elif kind == "phase":
        phases.write(_dump(event))
    elif kind in ("group_started", "group_finished"):
        groups.write(_dump(event))
    elif kind == "group_spawned":
        groups.write(_dump(event))
        facts.images.update(_images_of(event))
    elif kind == "cell_started" and isinstance(event.get("t_ns"), int):
        started[cell] = int(event["t_ns"])
        if isinstance(event.get("token_method"), str):
            facts.token_methods[cell] = event["token_method"]
        if event.get("continues") is True:
            return  # a fresh process continuing a suspended cell: its samples all count
        attempts[cell] = attempts.get(cell, 0) + 1
        for key in [k for k in facts.phases if k[0] == cell]:
            del facts.phases[key]
    elif kind == "cell_suspended":
        # The cell's window in the process a fatal device error ended; the continuing
        # process opens the next one.
        end = event.get("t_ns")
        if cell in started and isinstance(end, int):
            facts.windows.append(Window(cell, started.pop(cell), end))
    elif kind == "cell_finished":
        facts.finished[cell] = event
        end = event.get("t_ns")
        if cell in started and isinstance(end, int):
            facts.windows.append(Window(cell, started.pop(cell), end))
    elif kind == "run_finished":
        facts.run_finished = True


def _images_of(event: dict[str, Any]) -> set[str]:
    """Image references a runner recorded when it spawned a group (Docker runner only)."""
    found: set[str] = set()
    stack: list[Any] = [event]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("image", "image_id", "image_digest", "digest") and isinstance(
                    value, str
                ):
                    found.add(value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def summary_rows(facts: JournalFacts) -> list[dict[str, Any]]:
    """Per (cell, phase) statistics over the timed `ok` samples, sorted by cell then phase."""
    rows = []
    for (cell, phase), acc in sorted(facts.phases.items()):
        values = sorted(acc.ok_ms)
        n = len(values)
        mean = sum(values) / n if n else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
        half = 1.96 * std / math.sqrt(n) if n > 1 else math.nan
        rows.append(
            {
                "cell": cell,
                "phase": phase,
                "n_samples": acc.n_samples,
                "n_ok": acc.by_status.get("ok", 0),
                "n_warmup": acc.n_warmup,
                "n_length_mismatch": acc.by_status.get("length_mismatch", 0),
                "n_suspicious_fast": acc.by_status.get("suspicious_fast", 0),
                "mean_ms": mean,
                "median_ms": _quantile(values, 0.5),
                "std_ms": std,
                "min_ms": values[0] if n else math.nan,
                "p95_ms": _quantile(values, 0.95),
                "max_ms": values[-1] if n else math.nan,
                "ci95_low_ms": mean - half,
                "ci95_high_ms": mean + half,
                "tokens_in": acc.tokens_in,
                "tokens_out": acc.tokens_out,
            }
        )
    return rows


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def fmt(value: Any) -> str:
    """CSV cell text: floats with 6 decimals (stable across runs), NaN/None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6f}"
    return str(value)
