"""A live text view of the GPUs (for `kit gpu --watch`): pure rendering plus two row
sources, NVML read in this process or a run's telemetry CSVs tailed as the sampler writes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kit.gpu.nvml import GpuLost
from kit.gpu.snapshot import Detection, device_handles
from kit.gpu.telemetry import Probe, TelemetryTail, decode_reasons

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], width: int = 30) -> str:
    """The last `width` values as bar characters (blank where a value is missing)."""
    tail = list(values)[-width:]
    known = [v for v in tail if v is not None and math.isfinite(v)]
    if not known:
        return " " * len(tail)
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    out = []
    for v in tail:
        if v is None or not math.isfinite(v):
            out.append(" ")
        else:
            out.append(_BARS[min(len(_BARS) - 1, int((v - low) / span * (len(_BARS) - 1)))])
    return "".join(out)


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.{digits}f}{unit}"


def render_frame(
    history: dict[int, list[dict[str, Any]]], names: dict[int, str], note: str | None = None
) -> str:
    """One screen: per GPU the newest row and sparklines of power and SM clock."""
    lines = ["kit gpu --watch   (Ctrl-C to quit)", ""]
    if note:
        lines += [note, ""]
    for gpu in sorted(history):
        rows = history[gpu]
        if not rows:
            continue
        row = rows[-1]
        reasons = ", ".join(decode_reasons(row.get("clock_event_reasons"))) or "none"
        kind = row.get("power_kind") or "?"
        lines += [
            f"GPU {gpu}  {names.get(gpu, '')}",
            f"  power {_fmt(row.get('power_w'), ' W', 1):>9} ({kind})   "
            f"SM {_fmt(row.get('sm_clock_mhz'), ' MHz'):>9}   "
            f"temp {_fmt(row.get('temp_c'), ' C'):>5}   util {_fmt(row.get('util_gpu_pct'), '%')}"
            f"   mem {_fmt(row.get('mem_used_mib'), ' MiB')}   P{_fmt(row.get('pstate'))}",
            f"  power  {sparkline([r.get('power_w') for r in rows])}",
            f"  SM clk {sparkline([r.get('sm_clock_mhz') for r in rows])}",
            f"  clock events: {reasons}",
            "",
        ]
    return "\n".join(lines)


class LiveSource:
    """Rows read through NVML in this process, with a bounded history per GPU."""

    def __init__(self, detection: Detection, keep: int = 60) -> None:
        self.keep = keep
        self.names = {g.index: g.name or "" for g in detection.gpus}
        self.probes = [Probe(i) for i in range(len(device_handles())) if i in self.names]
        self.history: dict[int, list[dict[str, Any]]] = {p.index: [] for p in self.probes}
        self.lost: list[str] = []

    def poll(self) -> dict[int, list[dict[str, Any]]]:
        for probe in list(self.probes):
            try:
                row = probe.read()
            except GpuLost as err:
                self.lost.append(err.title)
                self.probes.remove(probe)
                continue
            rows = self.history[probe.index]
            rows.append(row)
            del rows[: -self.keep]
        return self.history


class RunSource:
    """Rows tailed from RUN_DIR/telemetry/gpuN.csv (the sampler process writes them)."""

    def __init__(self, run_dir: Path, keep: int = 60) -> None:
        self.tail = TelemetryTail(run_dir, keep=keep)
        self.names: dict[int, str] = {}
        self.lost: list[str] = []

    def poll(self) -> dict[int, list[dict[str, Any]]]:
        self.tail.poll()
        return self.tail.history
