"""Backends by name: each is a small module loaded lazily (adding one touches this registry,
its own module and its entry in kit/matrix/builtin/backends.yaml, the backends' data that the
orchestrator reads; a test checks the two agree). A backend whose implementation is not in the
kit yet is listed with `None` and its cells are reported `skipped` with that reason, never
faked."""

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
    "llama-cpp": "kit.harness.backends.llamacpp_backend:LlamaCppBackend",
    "ollama": "kit.harness.backends.ollama_backend:OllamaBackend",
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
