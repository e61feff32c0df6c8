"""Backends by name: each is a small module loaded lazily (adding one touches this registry
and its own module). A backend whose implementation is not in the kit yet is listed with
`None` and its cells are reported `skipped` with that reason, never faked."""

from __future__ import annotations

import importlib
from typing import Any

# backend id -> "module:Class" (or None: not implemented in this kit version)
REGISTRY: dict[str, str | None] = {
    "transformers-eager": "kit.harness.backends.transformers_backend:TransformersBackend",
    "transformers-compile": "kit.harness.backends.transformers_backend:TransformersBackend",
    "onnxruntime": "kit.harness.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "vllm": "kit.harness.backends.vllm_backend:VllmBackend",
    "tensorrt": "kit.harness.backends.tensorrt_backend:TensorRTBackend",
    "ollama": None,
}


def backend_class(name: str) -> tuple[type[Any] | None, str | None]:
    """(class, None) or (None, reason the backend cannot run here)."""
    target = REGISTRY.get(name)
    if target is None:
        return None, f"backend {name} is not implemented in this kit version"
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        return None, f"backend {name} is unavailable here: missing Python module {err.name!r}"
    return getattr(module, cls_name), None
