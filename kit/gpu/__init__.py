"""What the GPU did: NVML detection and snapshot, the sampler process, telemetry joins.

Importing this package loads neither NVML nor torch; NVML is opened on first use
(see `kit.gpu.nvml`).
"""

from __future__ import annotations

from kit.gpu.nvml import GpuLost, GpuUnavailable
from kit.gpu.snapshot import Detection, GpuSnapshot, detect

__all__ = ["Detection", "GpuLost", "GpuSnapshot", "GpuUnavailable", "detect"]
