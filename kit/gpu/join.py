"""Join GPU telemetry to harness events by time: energy, power, clocks and throttling per
repetition, per cell and phase, and per one-off phase (load, compile, ...).

Writes `telemetry/phases.jsonl`, one JSON record per (scope, cell, phase[, rep], gpu):

- `scope`: `cell_phase` (all measured repetitions of a cell's phase: non-warmup samples
  with status ok, their time intervals merged), `sample` (one repetition, warmups included,
  with `rep` and `warmup`), or `phase_event` (a harness `phase` event: load, compile, ...).
- energy: `energy_j`, `energy_method` (`counter`: NVML's total-energy counter, linearly
  interpolated at each interval's ends, resets survived; `power_integration`: trapezoid of
  the power column when no counter; null when telemetry does not cover the whole span),
  `counter_resets`, `coverage` (share of the span inside the telemetry's time range),
  `j_per_token_out`, `j_per_token_in`, `mean_power_w` (energy / duration, else the rows'
  mean), `power_kind`.
- rows: `telemetry_rows` (rows stamped inside the span) and `stats_from` (`inside`, or
  `bracketing` when no row fell inside: a 2 ms prefill at 20 Hz; then the rows just before
  and after each interval describe it); `max_power_w`, `min_sm_clock_mhz`,
  `mean_sm_clock_mhz`, `max_temp_c`, `clock_event_share` ({reason name: share of rows}),
  `thermal_limited`, `power_limited`.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.gpu.telemetry import CLOCK_EVENT_REASONS, Series, read_run_telemetry

THERMAL_REASONS = ("sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown")
# hw_slowdown is raised for heat, power draw and an external power brake alike: NVML cannot
# tell which, so it counts toward both flags.
POWER_REASONS = ("sw_power_cap", "hw_power_brake_slowdown", "hw_slowdown")


@dataclass(frozen=True)
class Span:
    scope: str
    cell: str | None
    phase: str
    t0_ns: int
    t1_ns: int
    rep: int | None = None
    warmup: bool = False
    ok: bool = True
    tokens_in: int = 0
    tokens_out: int = 0
    gpu: int | None = None  # the GPU its group ran on (`--gpus` runs); None: any GPU

    def on(self, gpu: int) -> bool:
        """Whether this span is joined to GPU `gpu`'s telemetry."""
        return self.gpu is None or self.gpu == gpu


def _gpu_of(event: dict[str, Any]) -> int | None:
    gpu = event.get("gpu")
    return gpu if isinstance(gpu, int) and not isinstance(gpu, bool) else None


def spans_from_events(events: Iterable[dict[str, Any]]) -> list[Span]:
    """Spans of `sample` and `phase` events (FORMATS.md "Harness events")."""
    spans = []
    for ev in events:
        if ev.get("t0_ns") is None or ev.get("t1_ns") is None:
            continue
        if ev.get("event") == "sample":
            spans.append(
                Span(
                    "sample",
                    ev.get("cell"),
                    str(ev.get("phase")),
                    int(ev["t0_ns"]),
                    int(ev["t1_ns"]),
                    rep=ev.get("rep"),
                    warmup=bool(ev.get("warmup")),
                    ok=ev.get("status", "ok") == "ok",
                    tokens_in=int(ev.get("tokens_in") or 0),
                    tokens_out=int(ev.get("tokens_out") or 0),
                    gpu=_gpu_of(ev),
                )
            )
        elif ev.get("event") == "phase":
            spans.append(
                Span(
                    "phase_event",
                    ev.get("cell"),
                    str(ev.get("phase")),
                    int(ev["t0_ns"]),
                    int(ev["t1_ns"]),
                    gpu=_gpu_of(ev),
                )
            )
    return spans


def read_journal(run_dir: Path | str) -> list[dict[str, Any]]:
    events = []
    with open(Path(run_dir) / "journal.jsonl", encoding="utf-8") as handle:
        for line in handle:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a torn last line of a crashed run
    return events


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _integrate(t: np.ndarray, y: np.ndarray, a: float, b: float) -> float:
    """Trapezoid integral of the piecewise-linear y(t) over [a, b] (t sorted, finite y)."""
    inner = t[(t > a) & (t < b)]
    xs = np.concatenate(([a], inner, [b]))
    ys = np.interp(xs, t, y)
    return float(np.sum((ys[1:] + ys[:-1]) * 0.5 * np.diff(xs)))


class EnergyModel:
    """A GPU's cumulative energy E(t) in joules, from the counter (reset-safe) or by
    integrating power. Times are seconds since the series' first row."""

    def __init__(self, series: Series) -> None:
        cols = series.columns
        self.origin = int(cols["t_ns"][0]) if len(series) else 0
        t = (cols["t_ns"] - self.origin).astype(float) / 1e9
        power, energy = cols["power_w"], cols["energy_mj"]
        has_power = np.isfinite(power)
        self.t_power, self.power = t[has_power], power[has_power]
        has_energy = np.isfinite(energy)
        self.method: str | None = None
        self.resets = 0
        if int(has_energy.sum()) >= 2:
            self.method = "counter"
            self.t, joules = t[has_energy], energy[has_energy] / 1000.0
            steps = np.diff(joules)
            for i in np.nonzero(steps < 0)[0]:  # counter reset (driver reload) or wrap
                self.resets += 1
                steps[i] = self._power_integral(self.t[i], self.t[i + 1])
            self.cumulative = np.concatenate(([0.0], np.cumsum(steps)))
        elif self.t_power.size >= 2:
            self.method = "power_integration"
            self.t = self.t_power
            self.cumulative = np.array([0.0])  # unused
        else:
            self.t = t[:0]

    def _power_integral(self, a: float, b: float) -> float:
        if self.t_power.size < 2:
            return 0.0
        return _integrate(self.t_power, self.power, a, b)

    def seconds(self, t_ns: int) -> float:
        return (t_ns - self.origin) / 1e9

    def covered(self, a: float, b: float) -> float:
        """Seconds of [a, b] inside the time range this model can answer for."""
        if self.t.size < 2:
            return 0.0
        return max(0.0, min(b, float(self.t[-1])) - max(a, float(self.t[0])))

    def energy(self, a: float, b: float) -> float:
        if self.method == "counter":
            ends = np.interp([a, b], self.t, self.cumulative)
            return float(ends[1] - ends[0])
        return self._power_integral(a, b)


def _row_indices(t_ns: np.ndarray, intervals: list[tuple[int, int]]) -> tuple[np.ndarray, bool]:
    """Rows stamped inside any interval, else the rows bracketing each interval."""
    inside: list[int] = []
    around: list[int] = []
    for a, b in intervals:
        lo = int(np.searchsorted(t_ns, a, "left"))
        hi = int(np.searchsorted(t_ns, b, "right"))
        inside.extend(range(lo, hi))
        around.extend(i for i in (lo - 1, hi) if 0 <= i < t_ns.size)
    if inside:
        return np.unique(np.array(inside, dtype=int)), True
    return np.unique(np.array(around, dtype=int)), False


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def aggregate(series: Series, model: EnergyModel, intervals: list[tuple[int, int]]) -> dict:
    """Telemetry over the union of `intervals` (monotonic ns) for one GPU."""
    intervals = merge_intervals(intervals)
    duration_s = sum(b - a for a, b in intervals) / 1e9
    covered_s = sum(model.covered(model.seconds(a), model.seconds(b)) for a, b in intervals)
    coverage = covered_s / duration_s if duration_s > 0 else 0.0
    energy_j: float | None = None
    if model.method and duration_s > 0 and coverage >= 0.999:
        energy_j = sum(model.energy(model.seconds(a), model.seconds(b)) for a, b in intervals)
    cols = series.columns
    rows, from_inside = _row_indices(cols["t_ns"], intervals)
    power = _finite(cols["power_w"][rows])
    sm = _finite(cols["sm_clock_mhz"][rows])
    temp = _finite(cols["temp_c"][rows])
    masks = _finite(cols["clock_event_reasons"][rows]).astype(np.int64)
    share = {
        name: round(float(np.mean((masks & bit) != 0)), 4) if masks.size else None
        for bit, name in CLOCK_EVENT_REASONS
    }
    mean_power = energy_j / duration_s if energy_j is not None and duration_s > 0 else None
    if mean_power is None and power.size:
        mean_power = float(power.mean())
    return {
        "n_intervals": len(intervals),
        "duration_ms": round(duration_s * 1000.0, 4),
        "telemetry_rows": int(rows.size) if from_inside else 0,
        "stats_from": ("inside" if from_inside else "bracketing") if rows.size else None,
        "coverage": round(min(coverage, 1.0), 4),
        "energy_j": _round(energy_j, 6),
        "energy_method": model.method if energy_j is not None else None,
        "counter_resets": model.resets,
        "power_kind": series.power_kind,
        "mean_power_w": _round(mean_power, 3),
        "max_power_w": _round(power.max(), 3) if power.size else None,
        "min_sm_clock_mhz": _round(sm.min(), 1) if sm.size else None,
        "mean_sm_clock_mhz": _round(sm.mean(), 1) if sm.size else None,
        "max_temp_c": _round(temp.max(), 1) if temp.size else None,
        "clock_event_share": share,
        "thermal_limited": any((share[n] or 0) > 0 for n in THERMAL_REASONS),
        "power_limited": any((share[n] or 0) > 0 for n in POWER_REASONS),
    }


def _per_token(energy_j: float | None, tokens: int) -> float | None:
    return _round(energy_j / tokens, 8) if energy_j is not None and tokens > 0 else None


def join(spans: list[Span], telemetry: list[Series], per_sample: bool = True) -> list[dict]:
    """Records (see the module docstring) for every span group and every GPU; a span that
    names its GPU (a `--gpus` run's events carry `gpu`) is joined to that GPU only."""
    groups: dict[tuple[str | None, str], list[Span]] = defaultdict(list)
    for span in spans:
        if span.scope == "sample" and span.ok and not span.warmup:
            groups[(span.cell, span.phase)].append(span)
    records: list[dict[str, Any]] = []
    for series in telemetry:
        if not len(series):
            continue
        model = EnergyModel(series)
        for (cell, phase), all_members in groups.items():
            members = [s for s in all_members if s.on(series.gpu)]
            if members:
                records.append(_record("cell_phase", cell, phase, None, members, series, model))
        for span in spans:
            if not span.on(series.gpu):
                continue
            if span.scope == "phase_event" or (span.scope == "sample" and per_sample):
                records.append(
                    _record(span.scope, span.cell, span.phase, span, [span], series, model)
                )
    return records


def _record(
    scope: str,
    cell: str | None,
    phase: str,
    span: Span | None,
    members: list[Span],
    series: Series,
    model: EnergyModel,
) -> dict[str, Any]:
    tokens_out = sum(s.tokens_out for s in members)
    tokens_in = sum(s.tokens_in for s in members)
    stats = aggregate(series, model, [(s.t0_ns, s.t1_ns) for s in members])
    record: dict[str, Any] = {"schema": 1, "scope": scope, "cell": cell, "phase": phase}
    if span is not None and scope == "sample":
        record.update(rep=span.rep, warmup=span.warmup, ok=span.ok)
    record.update(gpu=series.gpu, n_spans=len(members), tokens_in=tokens_in, tokens_out=tokens_out)
    record.update(stats)
    record["j_per_token_out"] = _per_token(stats["energy_j"], tokens_out)
    record["j_per_token_in"] = _per_token(stats["energy_j"], tokens_in)
    return record


def join_run(run_dir: Path | str, per_sample: bool = True) -> list[dict[str, Any]]:
    """Records for a run directory (journal.jsonl + telemetry/gpuN.csv)."""
    return join(spans_from_events(read_journal(run_dir)), read_run_telemetry(run_dir), per_sample)


def write_phases(run_dir: Path | str, per_sample: bool = True) -> Path:
    """Write `telemetry/phases.jsonl` for a run directory and return its path."""
    path = Path(run_dir) / "telemetry" / "phases.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = join_run(run_dir, per_sample)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    return path
