"""`python -m kit.harness --self-check`: does this interpreter hold a working backend stack?

Run inside a backend image (scripts/build-cuda-images does, after each build) or on a host.
Checks, in order: the ML libraries import; the CUDA libraries that PyPI's `nvidia-*` wheels
carry are present and load (dlopen, no GPU needed); torch names its CUDA and cuDNN; Triton
imports and finds the C compiler and Python headers it compiles its launchers with. No GPU (or
no driver) is a fact reported in `gpu`, never a failure: the images are built on machines
without one.

Returns one JSON object on stdout; the exit status is 1 when a check that must pass failed.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

# Libraries whose absence makes the image useless for its backend, by top-level module.
_REQUIRED = {
    "torch": ("torch", "transformers", "triton"),
    "onnxruntime": ("onnxruntime", "onnx", "torch"),
    "tensorrt": ("tensorrt", "onnx", "torch"),
    "vllm": ("vllm", "torch"),
}
# sonames torch's CUDA wheels dlopen; one present file per pattern must load.
_CUDA_LIBRARIES = (
    "libcudart.so.*",
    "libcublas.so.*",
    "libcublasLt.so.*",
    "libcudnn.so.*",
    "libnccl.so.*",
    "libnvrtc.so.*",
    "libcusparse.so.*",
    "libcufft.so.*",
    "libnvJitLink.so.*",
)


def _import(name: str) -> dict[str, Any]:
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # any import failure is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "version": str(getattr(module, "__version__", "") or "") or None}


def _library_dirs() -> list[Path]:
    """Where PyPI's nvidia-* / cuda-toolkit wheels put their shared libraries."""
    roots = {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}
    roots |= {Path(entry) for entry in sys.path if entry and Path(entry).is_dir()}  # layers
    found: list[Path] = []
    for root in sorted(roots):
        for pattern in ("nvidia/*/lib", "nvidia/cu*/lib", "nvidia/*/*/lib", "tensorrt_libs"):
            found += sorted(p for p in root.glob(pattern) if p.is_dir())
    return found


def cuda_libraries() -> dict[str, dict[str, Any]]:
    """Per soname pattern: the file found and whether it loads ({} entries: not present)."""
    dirs = _library_dirs()
    result: dict[str, dict[str, Any]] = {}
    for pattern in _CUDA_LIBRARIES:
        files = sorted(f for d in dirs for f in d.glob(pattern))
        if not files:
            result[pattern] = {"present": False, "loads": False}
            continue
        path = files[0]
        try:
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            result[pattern] = {"present": True, "file": str(path), "loads": False,
                               "error": str(exc)}  # fmt: skip
        else:
            result[pattern] = {"present": True, "file": path.name, "loads": True}
    return result


def _gpu(torch: Any) -> dict[str, Any]:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return {"available": False, "reason": "no NVIDIA driver (libcuda.so.1) in this container"}
    if not torch.cuda.is_available():
        return {"available": False, "reason": "driver present but torch sees no CUDA device"}
    return {"available": True, "device": torch.cuda.get_device_name(0)}


def _torch_facts() -> dict[str, Any]:
    try:
        import torch
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    cudnn = None
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # cuDNN that does not load is reported as None, beside the dlopen check
        cudnn = None
    return {
        "ok": True,
        "version": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "gpu": _gpu(torch),
    }


def _triton_toolchain() -> dict[str, Any]:
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return {"cc": shutil.which("gcc") or shutil.which("cc"), "python_h": include.is_file()}


def self_check(backend: str | None = None) -> dict[str, Any]:
    """The check record; `ok` is False when a required import or CUDA library failed."""
    modules = sorted({m for names in _REQUIRED.values() for m in names})
    imports = {name: _import(name) for name in modules}
    present = {name for name, found in imports.items() if found["ok"]}
    family = backend or next((b for b in ("vllm", "tensorrt", "onnxruntime") if b in present),
                             "torch")  # fmt: skip
    required = _REQUIRED.get(family, ())
    torch = _torch_facts()
    needs_cuda = bool(torch.get("cuda"))  # a CUDA build of torch: its libraries must load
    libraries = cuda_libraries() if needs_cuda else {}
    # Triton ships with (and is needed by) torch's CUDA builds only.
    required = tuple(m for m in required if m != "triton" or needs_cuda)
    failures = [f"import {m}" for m in required if not imports[m]["ok"]]
    failures += [f"load {p}" for p, found in libraries.items() if not found["loads"]]
    toolchain = _triton_toolchain()
    if "triton" in required and needs_cuda and not (toolchain["cc"] and toolchain["python_h"]):
        failures.append("triton toolchain (gcc and Python.h)")
    return {
        "ok": not failures,
        "failures": failures,
        "backend_family": family,
        "python": sys.version.split()[0],
        "imports": imports,
        "torch": torch,
        "cuda_libraries": libraries,
        "triton_toolchain": toolchain,
    }


def main(backend: str | None = None) -> int:
    record = self_check(backend)
    print(json.dumps(record, indent=1, sort_keys=True))
    return 0 if record["ok"] else 1
