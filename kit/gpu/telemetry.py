"""One telemetry row per GPU per tick: reading it through NVML, the CSV it goes to, and
reading CSVs back (whole, or tailing the newest rows for a live view).

The CSV columns are the contract of docs/FORMATS.md ("Telemetry CSV"); an empty field means
the GPU does not offer the value.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.gpu import nvml

COLUMNS = (
    "t_ns",
    "gpu",
    "sm_clock_mhz",
    "graphics_clock_mhz",
    "mem_clock_mhz",
    "power_w",
    "power_kind",
    "energy_mj",
    "temp_c",
    "clock_event_reasons",
    "power_violation_ns",
    "thermal_violation_ns",
    "util_gpu_pct",
    "util_mem_pct",
    "mem_used_mib",
    "pstate",
)
NUMERIC = tuple(c for c in COLUMNS if c != "power_kind")

# Clock event ("throttle") reason bits, as NVML defines them (nvmlClocksEventReason*).
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)


def decode_reasons(bitmask: int | None) -> list[str]:
    """Names of the clock event reasons set in an NVML bitmask ([] for None or 0)."""
    if not bitmask:
        return []
    return [name for bit, name in CLOCK_EVENT_REASONS if bitmask & bit]


def telemetry_path(run_dir: Path | str, gpu: int) -> Path:
    return Path(run_dir) / "telemetry" / f"gpu{gpu}.csv"


class Probe:
    """Reads telemetry rows for one GPU; decides once whether instantaneous power exists."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.mod = nvml.library()
        self.handle = nvml.query("nvmlDeviceGetHandleByIndex", index, index=index)
        self._reasons_fn = (
            "nvmlDeviceGetCurrentClocksEventReasons"
            if hasattr(self.mod, "nvmlDeviceGetCurrentClocksEventReasons")
            else "nvmlDeviceGetCurrentClocksThrottleReasons"
        )
        field_id = getattr(self.mod, "NVML_FI_DEV_POWER_INSTANT", None)
        self._instant_field: int | None = field_id
        self.power_kind = "instant" if self._instant_power_mw() is not None else "average"

    def _q(self, fn: str, *args: Any) -> Any:
        return nvml.query(fn, self.handle, *args, index=self.index)

    def _instant_power_mw(self) -> float | None:
        if self._instant_field is None:
            return None
        values = self._q("nvmlDeviceGetFieldValues", [self._instant_field])
        if values is None or values[0].nvmlReturn != self.mod.NVML_SUCCESS:
            return None
        return float(_field_value(self.mod, values[0]))

    def read(self) -> dict[str, Any]:
        """One row (COLUMNS keys; None where unavailable). Raises GpuLost."""
        mod, q = self.mod, self._q
        start = time.monotonic_ns()
        if self.power_kind == "instant":
            power_mw = self._instant_power_mw()
        else:
            power_mw = q("nvmlDeviceGetPowerUsage")
        energy = q("nvmlDeviceGetTotalEnergyConsumption")
        sm = q("nvmlDeviceGetClockInfo", mod.NVML_CLOCK_SM)
        graphics = q("nvmlDeviceGetClockInfo", mod.NVML_CLOCK_GRAPHICS)
        mem_clock = q("nvmlDeviceGetClockInfo", mod.NVML_CLOCK_MEM)
        temp = q("nvmlDeviceGetTemperature", mod.NVML_TEMPERATURE_GPU)
        reasons = q(self._reasons_fn)
        power_violation = q("nvmlDeviceGetViolationStatus", mod.NVML_PERF_POLICY_POWER)
        thermal_violation = q("nvmlDeviceGetViolationStatus", mod.NVML_PERF_POLICY_THERMAL)
        util = q("nvmlDeviceGetUtilizationRates")
        mem = q("nvmlDeviceGetMemoryInfo")
        pstate = q("nvmlDeviceGetPerformanceState")
        end = time.monotonic_ns()
        return {
            "t_ns": (start + end) // 2,
            "gpu": self.index,
            "sm_clock_mhz": sm,
            "graphics_clock_mhz": graphics,
            "mem_clock_mhz": mem_clock,
            "power_w": round(power_mw / 1000.0, 3) if power_mw is not None else None,
            "power_kind": self.power_kind if power_mw is not None else None,
            "energy_mj": energy,
            "temp_c": temp,
            "clock_event_reasons": reasons,
            "power_violation_ns": power_violation.violationTime if power_violation else None,
            "thermal_violation_ns": thermal_violation.violationTime if thermal_violation else None,
            "util_gpu_pct": util.gpu if util is not None else None,
            "util_mem_pct": util.memory if util is not None else None,
            "mem_used_mib": int(mem.used) // (1024 * 1024) if mem is not None else None,
            "pstate": pstate if pstate is not None and int(pstate) < 32 else None,
        }


def _field_value(mod: Any, value: Any) -> float:
    kinds = {
        getattr(mod, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(mod, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(mod, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(mod, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(mod, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(mod, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
    }
    return float(getattr(value.value, kinds.get(value.valueType, "uiVal")))


def format_row(row: dict[str, Any]) -> str:
    """The CSV line for a row (with its newline); None becomes an empty field."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        "" if row.get(c) is None else row[c] for c in COLUMNS
    )
    return out.getvalue()


def header_line() -> str:
    return ",".join(COLUMNS) + "\n"


def parse_line(line: str) -> dict[str, Any] | None:
    """Parse one CSV data line; None for a header, blank or torn (partially written) line."""
    parts = line.rstrip("\n").split(",")
    if len(parts) != len(COLUMNS) or parts[0] == "t_ns" or not line.endswith("\n"):
        return None
    row: dict[str, Any] = {}
    for name, raw in zip(COLUMNS, parts, strict=True):
        if name == "power_kind":
            row[name] = raw or None
        elif raw == "":
            row[name] = None
        else:
            try:
                number = float(raw)
            except ValueError:
                return None
            row[name] = int(number) if number.is_integer() and name != "power_w" else number
    return row


@dataclass
class Series:
    """One GPU's telemetry as arrays (NaN where a value was unavailable), sorted by time."""

    gpu: int
    columns: dict[str, np.ndarray]
    power_kind: str | None

    def __len__(self) -> int:
        return int(self.columns["t_ns"].size)


def read_series(path: Path | str) -> Series:
    """Read a whole telemetry CSV. Torn last lines (a crashed sampler) are skipped."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = parse_line(line)
            if row is not None:
                rows.append(row)
    rows.sort(key=lambda r: r["t_ns"])
    columns = {
        name: np.array([math.nan if r[name] is None else r[name] for r in rows], dtype=float)
        for name in NUMERIC
    }
    # t_ns must stay exact: float64 cannot hold monotonic_ns() values to the nanosecond.
    columns["t_ns"] = np.array([r["t_ns"] for r in rows], dtype=np.int64)
    kinds = {r["power_kind"] for r in rows if r["power_kind"]}
    gpu = int(rows[0]["gpu"]) if rows else int(Path(path).stem.removeprefix("gpu") or 0)
    return Series(gpu, columns, kinds.pop() if len(kinds) == 1 else None)


def read_run_telemetry(run_dir: Path | str) -> list[Series]:
    folder = Path(run_dir) / "telemetry"
    paths = sorted(folder.glob("gpu*.csv"), key=lambda p: int(p.stem[3:] or 0))
    return [read_series(p) for p in paths if p.stem[3:].isdigit()]


@dataclass
class TelemetryTail:
    """Follows a run's telemetry CSVs as the sampler writes them (for the live views).

    `poll()` reads whatever complete lines were appended since the last call and returns the
    newest row per GPU; `history` keeps the last `keep` rows per GPU for sparklines."""

    run_dir: Path
    keep: int = 120
    history: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _offsets: dict[Path, int] = field(default_factory=dict)

    def poll(self) -> dict[int, dict[str, Any]]:
        folder = Path(self.run_dir) / "telemetry"
        for path in sorted(folder.glob("gpu*.csv")):
            offset = self._offsets.get(path, 0)
            with open(path, encoding="utf-8") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind("\n") + 1]  # leave a torn line for next time
            self._offsets[path] = offset + len(complete.encode("utf-8"))
            for line in complete.splitlines(keepends=True):
                row = parse_line(line)
                if row is not None:
                    rows = self.history.setdefault(int(row["gpu"]), [])
                    rows.append(row)
                    del rows[: -self.keep]
        return {gpu: rows[-1] for gpu, rows in self.history.items() if rows}


def iter_latest(
    run_dir: Path | str, interval_s: float = 0.5, keep: int = 120
) -> Iterator[dict[int, dict[str, Any]]]:
    """Yield the newest row per GPU every `interval_s` seconds, forever (the caller stops)."""
    tail = TelemetryTail(Path(run_dir), keep=keep)
    while True:
        yield tail.poll()
        time.sleep(interval_s)
