"""Live GPU readings for the UI: bounded histories per GPU, fed by one poller."""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from kit.gpu.snapshot import Detection, GpuSnapshot

# NVML's clock event reason names, in words a researcher reads without the NVML docs.
REASON_WORDS = {
    "gpu_idle": "idle",
    "applications_clocks_setting": "application clocks setting",
    "sw_power_cap": "power cap (software)",
    "hw_slowdown": "hardware slowdown",
    "sync_boost": "sync boost",
    "sw_thermal_slowdown": "thermal slowdown (software)",
    "hw_thermal_slowdown": "thermal slowdown (hardware)",
    "hw_power_brake_slowdown": "power brake (hardware)",
    "display_clock_setting": "display clock setting",
}
SERIES = ("sm_clock_mhz", "power_w", "temp_c")


def reasons_in_words(bitmask: int | None) -> list[str]:
    """Active clock event reasons as words; `idle` alone is not a throttle and is dropped."""
    from kit.gpu.telemetry import decode_reasons

    names = [n for n in decode_reasons(bitmask) if n != "gpu_idle"]
    return [REASON_WORDS.get(n, n) for n in names]


@dataclasses.dataclass
class GpuHistory:
    """The newest `keep` rows per GPU (telemetry row dicts, docs/FORMATS.md columns)."""

    keep: int = 60
    rows: dict[int, deque[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    lost: list[str] = dataclasses.field(default_factory=list)

    def add(self, readings: dict[int, dict[str, Any]]) -> None:
        for gpu, row in readings.items():
            self.rows.setdefault(gpu, deque(maxlen=self.keep)).append(row)

    def latest(self, gpu: int) -> dict[str, Any] | None:
        rows = self.rows.get(gpu)
        return rows[-1] if rows else None

    def series(self, gpu: int, column: str) -> list[float]:
        return [float(r[column]) for r in self.rows.get(gpu, ()) if r.get(column) is not None]


def fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return f"{float(value):.{digits}f}{unit}"
    return f"{value}{unit}"


def describe_gpu(gpu: GpuSnapshot) -> list[str]:
    """The static facts of one GPU, as short lines for its panel."""
    memory = f"{gpu.memory_total_mib / 1024:.0f} GiB" if gpu.memory_total_mib else "n/a"
    return [
        f"driver {fmt(gpu.driver_version)}  CUDA {fmt(gpu.cuda_driver_version)}  "
        f"memory {memory}  power limit {fmt(gpu.power_limit_w, ' W')}",
        f"persistence {fmt(gpu.persistence_mode)}  MIG {fmt(gpu.mig_mode)}  "
        f"ECC {fmt(gpu.ecc_mode)}  {fmt(gpu.architecture)} cc {fmt(gpu.compute_capability)}",
    ]


def no_gpu_banner(detection: Detection) -> str:
    reason = detection.reason or "NVML reports no GPU."
    return (
        f"No NVIDIA GPU is visible: {reason}\n"
        "CPU cells still run: in Matrices choose device cpu (key d) to run any cell on the CPU."
    )


class Poller:
    """Reads one row per GPU through NVML (in a worker thread). Lost GPUs are dropped and
    named in `lost`; a machine without NVML yields nothing."""

    def __init__(self, detection: Detection) -> None:
        from kit.gpu.telemetry import Probe

        self.lost: list[str] = []
        self.probes = []
        for gpu in detection.gpus:
            try:
                self.probes.append(Probe(gpu.index))
            except Exception as err:  # a GPU that fails here is reported, not fatal
                self.lost.append(f"GPU {gpu.index}: {err}")

    def read(self) -> dict[int, dict[str, Any]]:
        from kit.gpu.nvml import GpuLost

        out: dict[int, dict[str, Any]] = {}
        for probe in list(self.probes):
            try:
                out[probe.index] = probe.read()
            except GpuLost as err:
                self.lost.append(err.title)
                self.probes.remove(probe)
        return out
