"""Streaming join of a telemetry CSV (docs/FORMATS.md) to cell windows, in one pass.

For each cell window `[start_ns, end_ns]` it finds the energy spent (NVML's energy counter
difference, interpolated at the window's edges; the trapezoid integral of power where the
counter is not available) and the throttle reasons seen. It also collects throttle intervals
(contiguous throttled rows) and a timeline averaged into a fixed number of time bins, so that
memory stays flat however many rows the file has.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

# NVML clocks-event reasons that mean "slowed down" (idle, app clocks and sync boost do not).
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
}
TIMELINE_FIELDS = ("sm_clock_mhz", "power_w", "temp_c")


@dataclasses.dataclass(frozen=True)
class Window:
    cell: str
    start_ns: int
    end_ns: int


@dataclasses.dataclass
class WindowResult:
    energy_j: float | None = None
    throttle: set[str] = dataclasses.field(default_factory=set)
    rows: int = 0


@dataclasses.dataclass(slots=True)
class Row:
    t_ns: int
    values: tuple[float | None, ...]  # TIMELINE_FIELDS, in order
    reasons: frozenset[str]
    counter_j: float | None  # NVML energy counter, joules
    integral_j: float  # running trapezoid integral of power, joules


@dataclasses.dataclass
class TelemetryJoin:
    gpu: str
    rows: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    energy_j: float | None = None  # over the whole file
    windows: dict[int, WindowResult] = dataclasses.field(default_factory=dict)
    throttle_intervals: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    timeline: list[tuple[int, dict[str, float | None]]] = dataclasses.field(default_factory=list)


def throttle_reasons(field: str) -> frozenset[str]:
    """Names of the throttle bits set in a `clock_event_reasons` field (int or 0x-hex)."""
    text = field.strip()
    if not text:
        return frozenset()
    try:
        mask = int(text, 0)
    except ValueError:
        try:
            mask = int(float(text))
        except ValueError:
            return frozenset()
    return frozenset(name for bit, name in THROTTLE_BITS.items() if mask & bit)


def _float(text: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def iter_rows(path: Path) -> Iterator[Row]:
    """Yield parsed rows of one telemetry CSV in file order (rows without t_ns skipped)."""
    integral = 0.0
    prev_t: int | None = None
    prev_power: float | None = None
    reasons_seen: dict[str, frozenset[str]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        where = {name: i for i, name in enumerate(header)}
        i_t = where.get("t_ns", 0)
        i_values = [where.get(name, -1) for name in TIMELINE_FIELDS]
        i_power = where.get("power_w", -1)
        i_energy = where.get("energy_mj", -1)
        i_reasons = where.get("clock_event_reasons", -1)
        width = len(header)
        for raw in reader:
            if len(raw) < width:
                continue
            try:
                t_ns = int(raw[i_t])
            except ValueError:
                continue
            values = tuple(_float(raw[i]) if i >= 0 else None for i in i_values)
            power = _float(raw[i_power]) if i_power >= 0 else None
            if prev_t is not None and power is not None and prev_power is not None:
                integral += (power + prev_power) / 2.0 * max(0, t_ns - prev_t) / 1e9
            prev_t, prev_power = t_ns, power
            energy_mj = _float(raw[i_energy]) if i_energy >= 0 else None
            text = raw[i_reasons] if i_reasons >= 0 else ""
            reasons = reasons_seen.get(text)
            if reasons is None:
                reasons = reasons_seen[text] = throttle_reasons(text)
            yield Row(
                t_ns=t_ns,
                values=values,
                reasons=reasons,
                counter_j=None if energy_mj is None else energy_mj / 1000.0,
                integral_j=integral,
            )


def _interp(a: Row, b: Row, t_ns: int) -> tuple[float | None, float]:
    span = b.t_ns - a.t_ns
    frac = 0.0 if span <= 0 else min(1.0, max(0.0, (t_ns - a.t_ns) / span))
    counter = None
    if a.counter_j is not None and b.counter_j is not None:
        counter = a.counter_j + frac * (b.counter_j - a.counter_j)
    return counter, a.integral_j + frac * (b.integral_j - a.integral_j)


def join(
    path: Path,
    windows: Sequence[Window],
    span: tuple[int, int] | None,
    bins: int = 1000,
) -> TelemetryJoin:
    """Join one telemetry file to `windows` (sorted by start; may not overlap) in one pass.

    `span` is the run's time span for the binned timeline (None: no timeline).
    """
    out = TelemetryJoin(gpu=path.stem)
    edges = sorted(
        [(w.start_ns, 0, i) for i, w in enumerate(windows)]
        + [(w.end_ns, 1, i) for i, w in enumerate(windows)]
    )
    at_start: dict[int, tuple[float | None, float]] = {}
    next_edge = 0
    sums: list[list[float]] = []
    counts: list[list[int]] = []
    if span is not None and span[1] > span[0]:
        sums = [[0.0] * len(TIMELINE_FIELDS) for _ in range(bins)]
        counts = [[0] * len(TIMELINE_FIELDS) for _ in range(bins)]
    first: Row | None = None
    prev: Row | None = None
    open_windows: set[int] = set()
    throttle_start: Row | None = None
    throttle_names: set[str] = set()
    for row in iter_rows(path):
        out.rows += 1
        if first is None:
            first = row
        anchor = prev or row
        while next_edge < len(edges) and edges[next_edge][0] <= row.t_ns:
            t_edge, kind, idx = edges[next_edge]
            next_edge += 1
            value = _interp(anchor, row, t_edge)
            if kind == 0:
                at_start[idx] = value
                open_windows.add(idx)
            else:
                _close(out, idx, at_start.get(idx, value), value, row)
                open_windows.discard(idx)
        for idx in open_windows:
            result = out.windows.setdefault(idx, WindowResult())
            result.rows += 1
            result.throttle |= row.reasons
        if row.reasons:
            throttle_start = throttle_start or row
            throttle_names |= row.reasons
        elif throttle_start is not None:
            out.throttle_intervals.append(
                (throttle_start.t_ns, anchor.t_ns, "+".join(sorted(throttle_names)))
            )
            throttle_start, throttle_names = None, set()
        if sums and span is not None:
            b = (row.t_ns - span[0]) * bins // (span[1] - span[0])
            if 0 <= b < bins:
                for k, v in enumerate(row.values):
                    if v is not None:
                        sums[b][k] += v
                        counts[b][k] += 1
        prev = row
    if prev is not None and first is not None:
        if throttle_start is not None:
            out.throttle_intervals.append(
                (throttle_start.t_ns, prev.t_ns, "+".join(sorted(throttle_names)))
            )
        out.first_ns, out.last_ns = first.t_ns, prev.t_ns
        if first.counter_j is not None and prev.counter_j is not None:
            out.energy_j = prev.counter_j - first.counter_j
        else:
            out.energy_j = prev.integral_j
    if span is not None and sums:
        width = (span[1] - span[0]) / bins
        for b in range(bins):
            if any(counts[b]):
                mean = {
                    name: (sums[b][k] / counts[b][k]) if counts[b][k] else None
                    for k, name in enumerate(TIMELINE_FIELDS)
                }
                out.timeline.append((int(span[0] + (b + 0.5) * width), mean))
    return out


def _close(
    out: TelemetryJoin,
    idx: int,
    start: tuple[float | None, float],
    end: tuple[float | None, float],
    row_after: Row,
) -> None:
    result = out.windows.setdefault(idx, WindowResult())
    if start[0] is not None and end[0] is not None:
        result.energy_j = max(0.0, end[0] - start[0])
    else:
        result.energy_j = max(0.0, end[1] - start[1])
    if result.rows == 0:
        # A window shorter than the sampling period: the next row is the one that saw it.
        result.throttle |= row_after.reasons
