"""The ML stack as the measuring process sees it. Call `ml_stack()` INSIDE that process
(the harness does, in `group_started`): it imports torch lazily, so importing this module
stays cheap and the orchestrator never loads torch."""

from __future__ import annotations

import importlib
from typing import Any


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except Exception:  # a broken install must not stop the fingerprint
        return None
    return str(getattr(mod, "__version__", None) or "") or None


def ml_stack() -> dict[str, Any]:
    """Versions and the numerics flags that change results; None where a library is absent."""
    record: dict[str, Any] = {
        "torch": None,
        "cuda_runtime": None,
        "cudnn": None,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "cuda_available": False,
        "device_name": None,
        "flags": {},
    }
    try:
        import torch
    except Exception:
        return record
    record["torch"] = str(torch.__version__)
    record["cuda_runtime"] = torch.version.cuda
    cudnn = torch.backends.cudnn
    try:
        record["cudnn"] = cudnn.version() if cudnn.is_available() else None
    except Exception:
        record["cudnn"] = None
    record["cuda_available"] = bool(torch.cuda.is_available())
    if record["cuda_available"]:
        record["device_name"] = torch.cuda.get_device_name(0)
    record["flags"] = {
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "num_threads": torch.get_num_threads(),
    }
    return record
