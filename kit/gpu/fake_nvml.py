"""A stand-in for `pynvml` on machines without an NVIDIA GPU (part of the product).

Selected by `KIT_NVML_FAKE=<scenario>` (see `kit.gpu.nvml`); the UI's snapshot tests and the
tmux demo use it. It offers the same function names as pynvml that the kit calls, returns the
same kinds of values (ints in NVML's units, pynvml's ctypes structures where pynvml returns
them) and raises pynvml's REAL error classes, so code tested against it handles the real
library's failures. Values model an H100 SXM5 80GB (driver 580, CUDA 13.0): fan speed is
NotSupported, the instantaneous power field and the energy counter are offered.

Scenarios: h100, two-gpus, throttling, no-instant-power, lost-mid-run, none, no-driver,
no-library, no-permission. Values are a deterministic function of the time since nvmlInit, so
clocks and power move smoothly (sparklines move); `KIT_NVML_FAKE_T=<seconds>` freezes that
time for snapshot tests. In `lost-mid-run` the GPU is lost `KIT_NVML_FAKE_LOST_AFTER_S`
seconds (default 1.0) after init; `lose(index)` loses a GPU at once.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import pynvml
from pynvml import (
    NVML_CLOCK_GRAPHICS,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_DEVICE_ARCH_HOPPER,
    NVML_FI_DEV_ENERGY,
    NVML_FI_DEV_POWER_AVERAGE,
    NVML_FI_DEV_POWER_INSTANT,
    NVML_PERF_POLICY_POWER,
    NVML_PERF_POLICY_THERMAL,
    NVML_SUCCESS,
    NVML_TEMPERATURE_GPU,
    NVML_VALUE_TYPE_UNSIGNED_INT,
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
    NVMLError,
    NVMLError_DriverNotLoaded,
    NVMLError_GpuIsLost,
    NVMLError_InvalidArgument,
    NVMLError_LibraryNotFound,
    NVMLError_NoPermission,
    NVMLError_NotSupported,
    NVMLError_Uninitialized,
)

SCENARIOS = (
    "h100",
    "two-gpus",
    "throttling",
    "no-instant-power",
    "lost-mid-run",
    "none",
    "no-driver",
    "no-library",
    "no-permission",
)

_INIT_ERRORS: dict[str, type[NVMLError]] = {
    "no-driver": NVMLError_DriverNotLoaded,
    "no-library": NVMLError_LibraryNotFound,
    "no-permission": NVMLError_NoPermission,
}


@dataclass
class _Gpu:
    index: int
    name: str = "NVIDIA H100 80GB HBM3"
    phase_s: float = 0.0  # shifts the waveforms so two GPUs differ
    instant_power: bool = True
    throttling: bool = False
    lost: bool = False


@dataclass(frozen=True)
class _Handle:
    index: int


class _State:
    def __init__(self) -> None:
        self.scenario = "h100"
        self.gpus: list[_Gpu] = []
        self.initialized = False
        self.t_init = 0.0
        self.lost_after_s: float | None = None


_state = _State()


def configure(scenario: str) -> Any:
    """Select a scenario (resets the fake) and return this module, ready for nvmlInit."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown fake NVML scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    _state.scenario = scenario
    _state.initialized = False
    _state.lost_after_s = None
    if scenario in ("none", *_INIT_ERRORS):
        _state.gpus = []
    elif scenario == "two-gpus":
        _state.gpus = [_Gpu(0), _Gpu(1, phase_s=2.5)]
    elif scenario == "throttling":
        _state.gpus = [_Gpu(0, throttling=True)]
    elif scenario == "no-instant-power":
        _state.gpus = [_Gpu(0, name="NVIDIA H100 PCIe", instant_power=False)]
    else:
        _state.gpus = [_Gpu(0)]
    if scenario == "lost-mid-run":
        _state.lost_after_s = float(os.environ.get("KIT_NVML_FAKE_LOST_AFTER_S", "1.0"))
    import sys

    return sys.modules[__name__]


def lose(index: int) -> None:
    """Make GPU `index` fall off the bus now (every later call on it raises GpuIsLost)."""
    _state.gpus[index].lost = True


def _now() -> float:
    frozen = os.environ.get("KIT_NVML_FAKE_T")
    if frozen:
        return float(frozen)
    return time.monotonic() - _state.t_init


def _gpu(handle: Any) -> _Gpu:
    if not _state.initialized:
        raise NVMLError_Uninitialized()
    if not isinstance(handle, _Handle) or handle.index >= len(_state.gpus):
        raise NVMLError_InvalidArgument()
    gpu = _state.gpus[handle.index]
    if _state.lost_after_s is not None and _now() >= _state.lost_after_s:
        gpu.lost = True
    if gpu.lost:
        raise NVMLError_GpuIsLost()
    return gpu


def _wave(t: float, period_s: float) -> float:
    return math.sin(2.0 * math.pi * t / period_s)


# Power model in watts: P(t) = base + a1 sin(w1 t) + a2 sin(w2 t); the energy counter is its
# exact integral, so counter and power agree the way they do on real hardware.
_ENERGY_AT_INIT_MJ = 48_213_775_000


def _power_terms(gpu: _Gpu) -> tuple[float, tuple[tuple[float, float], ...]]:
    if gpu.throttling:
        return 688.0, ((10.0, 3.0), (4.0, 0.7))
    return 150.0, ((60.0, 7.0), (25.0, 1.3))


def _power_w(gpu: _Gpu, t: float) -> float:
    base, terms = _power_terms(gpu)
    return base + sum(a * _wave(t + gpu.phase_s, p) for a, p in terms)


def _energy_mj(gpu: _Gpu, t: float) -> int:
    base, terms = _power_terms(gpu)
    s = t + gpu.phase_s
    joules = base * t
    for a, p in terms:
        w = 2.0 * math.pi / p
        joules += a / w * (math.cos(w * gpu.phase_s) - math.cos(w * s))
    return _ENERGY_AT_INIT_MJ + int(joules * 1000.0)


def _util(gpu: _Gpu, t: float) -> int:
    return max(0, min(100, round(55 + 45 * _wave(t + gpu.phase_s, 7.0))))


# --- library lifecycle and system queries -------------------------------------------------


def nvmlInit() -> None:
    error = _INIT_ERRORS.get(_state.scenario)
    if error is not None:
        raise error()
    _state.initialized = True
    _state.t_init = time.monotonic()


def nvmlShutdown() -> None:
    if not _state.initialized:
        raise NVMLError_Uninitialized()
    _state.initialized = False


def _require_init() -> None:
    if not _state.initialized:
        raise NVMLError_Uninitialized()


def nvmlSystemGetDriverVersion() -> str:
    _require_init()
    return "580.159.04"


def nvmlSystemGetCudaDriverVersion() -> int:
    _require_init()
    return 13000


def nvmlSystemGetCudaDriverVersion_v2() -> int:
    return nvmlSystemGetCudaDriverVersion()


def nvmlSystemGetNVMLVersion() -> str:
    _require_init()
    return "13.580.159.04"


def nvmlDeviceGetCount() -> int:
    _require_init()
    return len(_state.gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    _require_init()
    if not 0 <= index < len(_state.gpus):
        raise NVMLError_InvalidArgument()
    return _Handle(index)


# --- static device properties -------------------------------------------------------------


def nvmlDeviceGetName(handle: Any) -> str:
    return _gpu(handle).name


def nvmlDeviceGetUUID(handle: Any) -> str:
    return f"GPU-5f1c2e0a-7d3b-4c1e-9a2f-00000000000{_gpu(handle).index}"


def nvmlDeviceGetPciInfo(handle: Any) -> Any:
    gpu = _gpu(handle)
    info = pynvml.nvmlPciInfo_t()
    info.busId = f"00000000:{0x18 + gpu.index * 0x10:02X}:00.0".encode()
    info.domain, info.bus, info.device = 0, 0x18 + gpu.index * 0x10, 0
    info.pciDeviceId = 0x233010DE
    return info


def nvmlDeviceGetArchitecture(handle: Any) -> int:
    _gpu(handle)
    return int(NVML_DEVICE_ARCH_HOPPER)


def nvmlDeviceGetCudaComputeCapability(handle: Any) -> tuple[int, int]:
    _gpu(handle)
    return (9, 0)


def nvmlDeviceGetMemoryInfo(handle: Any, version: Any = None) -> Any:
    gpu = _gpu(handle)
    mem = pynvml.c_nvmlMemory_t()
    mem.total = 81_559 * 1024 * 1024
    used_mib = 521 + int(30_000 * (0.5 + 0.5 * _wave(_now() + gpu.phase_s, 11.0)))
    mem.used = used_mib * 1024 * 1024
    mem.free = mem.total - mem.used
    return mem


def nvmlDeviceGetVbiosVersion(handle: Any) -> str:
    _gpu(handle)
    return "96.00.99.00.01"


_MAX_CLOCKS = {NVML_CLOCK_GRAPHICS: 1980, NVML_CLOCK_SM: 1980, NVML_CLOCK_MEM: 2619}
_APP_CLOCKS = {NVML_CLOCK_GRAPHICS: 1755, NVML_CLOCK_SM: 1755, NVML_CLOCK_MEM: 2619}


def nvmlDeviceGetMaxClockInfo(handle: Any, clock_type: int) -> int:
    _gpu(handle)
    if clock_type not in _MAX_CLOCKS:
        raise NVMLError_InvalidArgument()
    return _MAX_CLOCKS[clock_type]


def nvmlDeviceGetApplicationsClock(handle: Any, clock_type: int) -> int:
    _gpu(handle)
    if clock_type not in _APP_CLOCKS:
        raise NVMLError_InvalidArgument()
    return _APP_CLOCKS[clock_type]


def nvmlDeviceGetEnforcedPowerLimit(handle: Any) -> int:
    _gpu(handle)
    return 700_000  # milliwatts


def nvmlDeviceGetPersistenceMode(handle: Any) -> int:
    _gpu(handle)
    return 1


def nvmlDeviceGetComputeMode(handle: Any) -> int:
    _gpu(handle)
    return 0  # NVML_COMPUTEMODE_DEFAULT


def nvmlDeviceGetMigMode(handle: Any) -> list[int]:
    _gpu(handle)
    return [0, 0]


def nvmlDeviceGetEccMode(handle: Any) -> list[int]:
    _gpu(handle)
    return [1, 1]


def nvmlDeviceGetCurrPcieLinkGeneration(handle: Any) -> int:
    _gpu(handle)
    return 5


def nvmlDeviceGetCurrPcieLinkWidth(handle: Any) -> int:
    _gpu(handle)
    return 16


def nvmlDeviceGetFanSpeed(handle: Any) -> int:
    _gpu(handle)
    raise NVMLError_NotSupported()  # SXM boards have no fan of their own


# --- dynamic readings ---------------------------------------------------------------------


def nvmlDeviceGetPerformanceState(handle: Any) -> int:
    gpu = _gpu(handle)
    return 0 if _util(gpu, _now()) > 5 else 2


def nvmlDeviceGetClockInfo(handle: Any, clock_type: int) -> int:
    gpu = _gpu(handle)
    if clock_type == NVML_CLOCK_MEM:
        return 2619
    if clock_type not in (NVML_CLOCK_SM, NVML_CLOCK_GRAPHICS):
        raise NVMLError_InvalidArgument()
    t = _now() + gpu.phase_s
    if gpu.throttling:
        return 1305 + 15 * round(6 * _wave(t, 4.0))
    return 1755 + 15 * round(15 * (0.5 + 0.5 * _wave(t, 5.0)))


def nvmlDeviceGetTemperature(handle: Any, sensor: int) -> int:
    gpu = _gpu(handle)
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError_NotSupported()
    t = _now() + gpu.phase_s
    return round((87 + 3 * _wave(t, 6.0)) if gpu.throttling else (38 + 5 * _wave(t, 20.0)))


def nvmlDeviceGetPowerUsage(handle: Any) -> int:
    gpu = _gpu(handle)
    # NVML's "power usage" on Hopper is a one-second average: lag the model by half a second.
    return int(_power_w(gpu, _now() - 0.5) * 1000.0)


def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
    gpu = _gpu(handle)
    return _energy_mj(gpu, _now())


def nvmlDeviceGetFieldValues(handle: Any, field_ids: list[int]) -> Any:
    gpu = _gpu(handle)
    values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
    t = _now()
    for i, field_id in enumerate(field_ids):
        values[i].fieldId = field_id
        values[i].timestamp = int(time.time() * 1e6)
        values[i].nvmlReturn = NVML_SUCCESS
        values[i].valueType = NVML_VALUE_TYPE_UNSIGNED_INT
        if field_id == NVML_FI_DEV_POWER_INSTANT and gpu.instant_power:
            values[i].value.uiVal = int(_power_w(gpu, t) * 1000.0)
        elif field_id == NVML_FI_DEV_POWER_AVERAGE:
            values[i].value.uiVal = int(_power_w(gpu, t - 0.5) * 1000.0)
        elif field_id == NVML_FI_DEV_ENERGY:
            values[i].valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            values[i].value.ullVal = _energy_mj(gpu, t)
        else:
            values[i].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
    return values


_SW_POWER_CAP = 0x4
_HW_THERMAL = 0x40
_GPU_IDLE = 0x1


def nvmlDeviceGetCurrentClocksEventReasons(handle: Any) -> int:
    gpu = _gpu(handle)
    t = _now() + gpu.phase_s
    if gpu.throttling:
        return _SW_POWER_CAP if t % 4.0 < 3.0 else _SW_POWER_CAP | _HW_THERMAL
    return _GPU_IDLE if _util(gpu, t - gpu.phase_s) <= 12 else 0


def nvmlDeviceGetCurrentClocksThrottleReasons(handle: Any) -> int:
    return nvmlDeviceGetCurrentClocksEventReasons(handle)


def nvmlDeviceGetViolationStatus(handle: Any, policy: int) -> Any:
    gpu = _gpu(handle)
    out = pynvml.c_nvmlViolationTime_t()
    out.referenceTime = int(time.time() * 1e6)
    t = max(0.0, _now())
    if not gpu.throttling:
        out.violationTime = 0
    elif policy == NVML_PERF_POLICY_POWER:
        out.violationTime = int(t * 1e9)  # power-capped the whole time
    elif policy == NVML_PERF_POLICY_THERMAL:
        out.violationTime = int(t * 0.25e9)
    else:
        raise NVMLError_NotSupported()
    return out


def nvmlDeviceGetUtilizationRates(handle: Any) -> Any:
    gpu = _gpu(handle)
    util = pynvml.c_nvmlUtilization_t()
    util.gpu = _util(gpu, _now())
    util.memory = util.gpu // 3
    return util
