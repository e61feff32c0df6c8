#!/usr/bin/env python3
"""How long each NVML query the sampler makes takes on this GPU (median and p99, microseconds).

A query that is slow (a driver or GSP round trip) is the likely way a sampler bends a
launch-bound workload. Run on the GPU machine:  PYTHONPATH=. python scripts/gpu/nvml_call_cost.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    import pynvml as m

    m.nvmlInit()
    h = m.nvmlDeviceGetHandleByIndex(0)
    field = getattr(m, "NVML_FI_DEV_POWER_INSTANT", None)
    calls = {
        "FieldValues(POWER_INSTANT)": (lambda: m.nvmlDeviceGetFieldValues(h, [field]))
        if field
        else None,
        "PowerUsage": lambda: m.nvmlDeviceGetPowerUsage(h),
        "TotalEnergyConsumption": lambda: m.nvmlDeviceGetTotalEnergyConsumption(h),
        "ClockInfo(SM)": lambda: m.nvmlDeviceGetClockInfo(h, m.NVML_CLOCK_SM),
        "ClockInfo(GRAPHICS)": lambda: m.nvmlDeviceGetClockInfo(h, m.NVML_CLOCK_GRAPHICS),
        "ClockInfo(MEM)": lambda: m.nvmlDeviceGetClockInfo(h, m.NVML_CLOCK_MEM),
        "Temperature": lambda: m.nvmlDeviceGetTemperature(h, m.NVML_TEMPERATURE_GPU),
        "CurrentClocksEventReasons": lambda: m.nvmlDeviceGetCurrentClocksEventReasons(h),
        "ViolationStatus(POWER)": lambda: m.nvmlDeviceGetViolationStatus(
            h, m.NVML_PERF_POLICY_POWER
        ),
        "ViolationStatus(THERMAL)": lambda: m.nvmlDeviceGetViolationStatus(
            h, m.NVML_PERF_POLICY_THERMAL
        ),
        "UtilizationRates": lambda: m.nvmlDeviceGetUtilizationRates(h),
        "MemoryInfo": lambda: m.nvmlDeviceGetMemoryInfo(h),
        "PerformanceState": lambda: m.nvmlDeviceGetPerformanceState(h),
    }
    print(f"{'query':<28} {'median us':>10} {'p99 us':>10} {'max us':>10}")
    total = 0.0
    for name, fn in calls.items():
        if fn is None:
            continue
        times = []
        for _ in range(300):
            t0 = time.perf_counter_ns()
            try:
                fn()
            except m.NVMLError as err:
                print(f"{name:<28} {type(err).__name__}")
                break
            times.append((time.perf_counter_ns() - t0) / 1e3)
        if times:
            times.sort()
            med = statistics.median(times)
            total += med
            print(
                f"{name:<28} {med:>10.1f} {times[int(0.99 * len(times)) - 1]:>10.1f} {times[-1]:>10.1f}"
            )
    print(f"{'sum of medians (one tick)':<28} {total:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
