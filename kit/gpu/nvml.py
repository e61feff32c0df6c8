"""The one door to NVML (see STYLE.md, "From nvitop: one careful door to NVML").

Every NVML call in the kit goes through this module. It loads the library lazily (the real
`pynvml` from nvidia-ml-py, or the fake in `kit.gpu.fake_nvml` when the environment variable
`KIT_NVML_FAKE` names a scenario), initializes it once under a lock, registers one shutdown
at exit, and turns NVML's errors into three outcomes:

- a value NVML does not offer on this GPU (`NotSupported` and friends) -> `None`;
- a GPU that fell off the bus (`GpuIsLost`) -> `GpuLost`, which callers report and survive;
- no library, no driver, no permission -> `GpuUnavailable`, whose hint says what to fix.
"""

from __future__ import annotations

import atexit
import os
import threading
from types import ModuleType
from typing import Any

from kit.errors import KitError

FAKE_ENV = "KIT_NVML_FAKE"


class GpuUnavailable(KitError):
    """NVML cannot be used on this machine (no library, no driver, no permission)."""


class GpuLost(KitError):
    """A GPU stopped answering (NVML_ERROR_GPU_IS_LOST); the others may still work."""

    def __init__(self, index: int | None, title: str, hint: str = "") -> None:
        super().__init__(title, hint)
        self.index = index


_lock = threading.RLock()
_module: ModuleType | None = None
_initialized = False
_atexit_registered = False


def _select_module() -> ModuleType:
    scenario = os.environ.get(FAKE_ENV, "").strip()
    if scenario:
        from kit.gpu import fake_nvml

        return fake_nvml.configure(scenario)
    try:
        import pynvml
    except ImportError as err:
        raise GpuUnavailable(
            "the NVML Python bindings are not installed",
            "install them with `pip install nvidia-ml-py` (imported as pynvml)",
        ) from err
    return pynvml


def _unavailable(mod: ModuleType, err: Exception) -> GpuUnavailable:
    """Map an NVML initialization error to one message that names the fix."""
    if isinstance(err, mod.NVMLError_LibraryNotFound):
        return GpuUnavailable(
            "the NVIDIA driver library libnvidia-ml.so.1 was not found",
            "install the NVIDIA driver; in a container, run it with GPU access "
            "(--gpus all, or the compose file's GPU reservation)",
        )
    if isinstance(err, mod.NVMLError_DriverNotLoaded):
        return GpuUnavailable(
            "the NVIDIA kernel driver is not loaded",
            "check `nvidia-smi` and `lsmod | grep nvidia`; reboot after a driver update",
        )
    if isinstance(err, mod.NVMLError_NoPermission):
        return GpuUnavailable(
            "no permission to open the NVIDIA devices",
            "check the permissions of /dev/nvidia* (or the container's device access)",
        )
    return GpuUnavailable(
        f"NVML could not start: {err}", "check `nvidia-smi`; it uses the same library"
    )


def library() -> ModuleType:
    """Return the initialized NVML module (pynvml or the fake). Raises GpuUnavailable."""
    global _module, _initialized, _atexit_registered
    with _lock:
        if _initialized and _module is not None:
            return _module
        mod = _select_module()
        try:
            mod.nvmlInit()
        except mod.NVMLError as err:
            raise _unavailable(mod, err) from err
        _module = mod
        _initialized = True
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return mod


def shutdown() -> None:
    """Shut NVML down if it was started; safe to call any number of times."""
    global _module, _initialized
    with _lock:
        if _initialized and _module is not None:
            try:
                _module.nvmlShutdown()
            except _module.NVMLError:
                pass
        _module = None
        _initialized = False


def query(fn_name: str, *args: Any, index: int | None = None) -> Any:
    """Call `pynvml.<fn_name>(*args)`; return None where NVML does not offer the value.

    `index` names the GPU in a GpuLost error. Raises GpuLost when the GPU stopped
    answering, GpuUnavailable when NVML as a whole went away.
    """
    mod = library()
    try:
        return getattr(mod, fn_name)(*args)
    except mod.NVMLError_GpuIsLost as err:
        where = f"GPU {index}" if index is not None else "a GPU"
        raise GpuLost(
            index,
            f"{where} stopped answering (NVML: GPU is lost)",
            "check `nvidia-smi` and the kernel log (dmesg) for Xid errors",
        ) from err
    except (
        mod.NVMLError_Uninitialized,
        mod.NVMLError_DriverNotLoaded,
        mod.NVMLError_LibraryNotFound,
    ) as err:
        raise _unavailable(mod, err) from err
    except mod.NVMLError:
        # NotSupported, FunctionNotFound (older driver), NoPermission on one query,
        # InvalidArgument (e.g. a clock type this GPU lacks): the value is not available.
        return None


def text(value: Any) -> str | None:
    """NVML strings arrive as str or bytes depending on the binding; normalize to str."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").rstrip("\x00")
    return str(value)
