"""Detection and the per-GPU snapshot record that the CLI, the UI and the bundle share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kit.gpu import nvml
from kit.gpu.nvml import GpuLost, GpuUnavailable

ARCHITECTURES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
    13: "rubin",
}
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


@dataclass(frozen=True)
class GpuSnapshot:
    """What one GPU was, read once. `None` means NVML does not offer the value on this GPU.

    Units: memory in MiB, clocks in MHz, power in watts. The key list is fixed
    (`GpuSnapshot.keys()`); the UI and the bundle read the same record.
    """

    index: int
    name: str | None
    uuid: str | None
    pci_bus_id: str | None
    architecture: str | None
    compute_capability: str | None
    memory_total_mib: int | None
    driver_version: str | None
    cuda_driver_version: str | None
    nvml_version: str | None
    vbios_version: str | None
    max_graphics_clock_mhz: int | None
    max_sm_clock_mhz: int | None
    max_mem_clock_mhz: int | None
    app_graphics_clock_mhz: int | None
    app_mem_clock_mhz: int | None
    power_limit_w: float | None
    persistence_mode: bool | None
    compute_mode: str | None
    mig_mode: bool | None
    ecc_mode: bool | None
    pcie_gen: int | None
    pcie_width: int | None
    pstate: str | None
    fan_speed_pct: int | None
    temperature_c: int | None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.keys()}


@dataclass(frozen=True)
class Detection:
    """All GPUs NVML sees, or an empty list and `reason` (one sentence with the fix)."""

    gpus: list[GpuSnapshot] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": [g.to_dict() for g in self.gpus], "reason": self.reason}


def _cuda_version(value: Any) -> str | None:
    if value is None:
        return None
    return f"{int(value) // 1000}.{(int(value) % 1000) // 10}"


def _first_of_pair(value: Any) -> bool | None:
    """NVML answers MIG and ECC modes as [current, pending]; keep the current one."""
    if value is None:
        return None
    current = value[0] if isinstance(value, (list, tuple)) else value
    return bool(current)


def device_handles() -> list[Any]:
    """Handles of all GPUs, by NVML index. Raises GpuUnavailable."""
    count = nvml.query("nvmlDeviceGetCount") or 0
    return [nvml.query("nvmlDeviceGetHandleByIndex", i, index=i) for i in range(int(count))]


def read_snapshot(index: int, handle: Any) -> GpuSnapshot:
    """Read one GPU's record. Raises GpuLost if the GPU stops answering meanwhile."""
    mod = nvml.library()

    def q(fn: str, *args: Any) -> Any:
        return nvml.query(fn, handle, *args, index=index)

    pci = q("nvmlDeviceGetPciInfo")
    arch = q("nvmlDeviceGetArchitecture")
    cc = q("nvmlDeviceGetCudaComputeCapability")
    mem = q("nvmlDeviceGetMemoryInfo")
    limit_mw = q("nvmlDeviceGetEnforcedPowerLimit")
    persistence = q("nvmlDeviceGetPersistenceMode")
    compute_mode = q("nvmlDeviceGetComputeMode")
    pstate = q("nvmlDeviceGetPerformanceState")
    return GpuSnapshot(
        index=index,
        name=nvml.text(q("nvmlDeviceGetName")),
        uuid=nvml.text(q("nvmlDeviceGetUUID")),
        pci_bus_id=nvml.text(pci.busId) if pci is not None else None,
        architecture=ARCHITECTURES.get(int(arch), f"unknown({arch})") if arch is not None else None,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else None,
        memory_total_mib=int(mem.total) // (1024 * 1024) if mem is not None else None,
        driver_version=nvml.text(nvml.query("nvmlSystemGetDriverVersion")),
        cuda_driver_version=_cuda_version(nvml.query("nvmlSystemGetCudaDriverVersion")),
        nvml_version=nvml.text(nvml.query("nvmlSystemGetNVMLVersion")),
        vbios_version=nvml.text(q("nvmlDeviceGetVbiosVersion")),
        max_graphics_clock_mhz=q("nvmlDeviceGetMaxClockInfo", mod.NVML_CLOCK_GRAPHICS),
        max_sm_clock_mhz=q("nvmlDeviceGetMaxClockInfo", mod.NVML_CLOCK_SM),
        max_mem_clock_mhz=q("nvmlDeviceGetMaxClockInfo", mod.NVML_CLOCK_MEM),
        app_graphics_clock_mhz=q("nvmlDeviceGetApplicationsClock", mod.NVML_CLOCK_GRAPHICS),
        app_mem_clock_mhz=q("nvmlDeviceGetApplicationsClock", mod.NVML_CLOCK_MEM),
        power_limit_w=round(limit_mw / 1000.0, 3) if limit_mw is not None else None,
        persistence_mode=bool(persistence) if persistence is not None else None,
        compute_mode=COMPUTE_MODES.get(compute_mode) if compute_mode is not None else None,
        mig_mode=_first_of_pair(q("nvmlDeviceGetMigMode")),
        ecc_mode=_first_of_pair(q("nvmlDeviceGetEccMode")),
        pcie_gen=q("nvmlDeviceGetCurrPcieLinkGeneration"),
        pcie_width=q("nvmlDeviceGetCurrPcieLinkWidth"),
        pstate=f"P{pstate}" if pstate is not None and int(pstate) < 32 else None,
        fan_speed_pct=q("nvmlDeviceGetFanSpeed"),
        temperature_c=q("nvmlDeviceGetTemperature", mod.NVML_TEMPERATURE_GPU),
    )


def detect() -> Detection:
    """Every GPU NVML sees. Never raises for a missing GPU, driver or library: the list is
    empty and `reason` says, in one sentence, what to install or check. A GPU lost while
    reading is left out and named in `reason`."""
    try:
        handles = device_handles()
    except GpuUnavailable as err:
        return Detection([], f"{err.title}: {err.hint}." if err.hint else f"{err.title}.")
    except GpuLost as err:
        return Detection([], f"{err.title}.")
    if not handles:
        return Detection(
            [],
            "NVML works but reports no GPU: check `nvidia-smi` and CUDA_VISIBLE_DEVICES "
            "or the container's GPU access.",
        )
    gpus: list[GpuSnapshot] = []
    lost: list[str] = []
    for index, handle in enumerate(handles):
        try:
            gpus.append(read_snapshot(index, handle))
        except GpuLost as err:
            lost.append(err.title)
        except GpuUnavailable as err:
            return Detection(gpus, f"{err.title}: {err.hint}.")
    return Detection(gpus, "; ".join(lost) + "." if lost else None)
