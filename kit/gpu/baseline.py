"""Before a sweep: the idle baseline (power and temperature while nothing runs) and the
thermal gate before each cell group (wait until cool enough, or until the wait ran out).

Both read NVML in the orchestrator process (nothing is being measured then) and return
records for the run directory; neither raises when there is no GPU."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kit.gpu import nvml
from kit.gpu.nvml import GpuLost, GpuUnavailable
from kit.gpu.snapshot import device_handles
from kit.gpu.telemetry import Probe


@dataclass(frozen=True)
class IdleBaseline:
    gpu: int
    seconds: float
    samples: int
    power_kind: str | None
    mean_power_w: float | None
    max_power_w: float | None
    mean_temp_c: float | None
    max_temp_c: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateRecord:
    """The thermal gate's outcome: `passed` (at or below the threshold), `timeout` (the
    cool-down time passed first) or `unavailable` (no GPU or no temperature reading)."""

    threshold_c: float
    max_wait_s: float
    outcome: str
    waited_s: float
    start_temp_c: float | None
    end_temp_c: float | None
    gpus: list[int] = field(default_factory=list)
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def idle_baseline(
    seconds: float = 5.0,
    hz: float = 10.0,
    gpus: Sequence[int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[IdleBaseline]:
    """Sample power and temperature for `seconds`; one record per GPU ([] without GPUs)."""
    try:
        indices = list(gpus) if gpus is not None else list(range(len(device_handles())))
        probes = [Probe(i) for i in indices]
    except (GpuUnavailable, GpuLost):
        return []
    power: dict[int, list[float]] = {p.index: [] for p in probes}
    temp: dict[int, list[float]] = {p.index: [] for p in probes}
    ticks = max(1, round(seconds * hz))
    for tick in range(ticks):
        for probe in list(probes):
            try:
                row = probe.read()
            except GpuLost:
                probes.remove(probe)
                continue
            if row["power_w"] is not None:
                power[probe.index].append(float(row["power_w"]))
            if row["temp_c"] is not None:
                temp[probe.index].append(float(row["temp_c"]))
        if tick < ticks - 1:
            sleep(1.0 / hz)
    kinds = {p.index: p.power_kind for p in probes}
    return [
        IdleBaseline(
            gpu=i,
            seconds=seconds,
            samples=len(power[i]),
            power_kind=kinds.get(i),
            mean_power_w=_mean(power[i]),
            max_power_w=max(power[i], default=None),
            mean_temp_c=_mean(temp[i]),
            max_temp_c=max(temp[i], default=None),
        )
        for i in indices
    ]


def _hottest(gpus: Sequence[int] | None) -> tuple[float | None, list[int]]:
    handles = device_handles()
    indices = list(gpus) if gpus is not None else list(range(len(handles)))
    mod = nvml.library()
    temps = [
        nvml.query("nvmlDeviceGetTemperature", handles[i], mod.NVML_TEMPERATURE_GPU, index=i)
        for i in indices
    ]
    known = [float(t) for t in temps if t is not None]
    return (max(known) if known else None), indices


def wait_for_thermal_gate(
    threshold_c: float,
    max_wait_s: float,
    gpus: Sequence[int] | None = None,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> GateRecord:
    """Wait until the hottest selected GPU is at or below `threshold_c`, or `max_wait_s`
    passed. Never raises for a missing or lost GPU: the record says `unavailable`."""
    start = clock()
    try:
        temp, indices = _hottest(gpus)
    except (GpuUnavailable, GpuLost) as err:
        return GateRecord(threshold_c, max_wait_s, "unavailable", 0.0, None, None, [], err.title)
    if temp is None:
        return GateRecord(
            threshold_c,
            max_wait_s,
            "unavailable",
            0.0,
            None,
            None,
            indices,
            "the GPU offers no temperature reading",
        )
    first = temp
    while temp is not None and temp > threshold_c and clock() - start < max_wait_s:
        sleep(min(poll_s, max(0.0, max_wait_s - (clock() - start))))
        try:
            temp, _ = _hottest(indices)
        except (GpuUnavailable, GpuLost) as err:
            return GateRecord(
                threshold_c,
                max_wait_s,
                "unavailable",
                round(clock() - start, 3),
                first,
                None,
                indices,
                err.title,
            )
    outcome = "passed" if temp is not None and temp <= threshold_c else "timeout"
    return GateRecord(
        threshold_c, max_wait_s, outcome, round(clock() - start, 3), first, temp, indices
    )
