"""Export a causal LM to ONNX WITH its KV cache, cached by content hash.

One graph serves prefill and decode: inputs `input_ids [B,S]`, `attention_mask [B,P+S]`,
`position_ids [B,S]` and `past.<i>.key|value [B,H,P,D]` (P = 0 for prefill); outputs `logits
[B,S,V]` and `present.<i>.key|value [B,H,P+S,D]`, which the next step feeds back as `past`.
So decode is incremental, never a full recompute.

The cache key hashes what determines the graph: the checkpoint's file hashes, dtype, opset,
exporter, torch and transformers versions and this module's EXPORT_VERSION. A manifest records
the sha256 of the written files; a cached export whose bytes no longer match is reported (the
caller degrades the cell), not silently trusted or silently replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

EXPORT_VERSION = 1
OPSET = 18
ONNX_NAME = "model.onnx"


@dataclasses.dataclass
class Exported:
    path: Path  # the .onnx file
    key: str
    reused: bool  # True: taken from the cache, no export ran
    export_ms: float | None  # None when reused
    files_sha256: dict[str, str]
    manifest_ok: bool  # False: cached bytes differ from the manifest written at export
    detail: dict[str, Any]


def kv_names(n_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return past, present


def kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a GPT-2- or Qwen2/Llama-style config."""
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
    return layers, kv_heads, int(head_dim)


def export_root() -> Path:
    """$KIT_ONNX_CACHE, else `<kit cache>/onnx` (the model cache, see kit.models.cache)."""
    if os.environ.get("KIT_ONNX_CACHE"):
        return Path(os.environ["KIT_ONNX_CACHE"])
    from kit.models.cache import cache_root

    return cache_root() / "onnx"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_hashes(model_dir: Path) -> dict[str, str]:
    """File hashes of the checkpoint: from prepared.json when the kit wrote one, else read."""
    prepared = model_dir / "prepared.json"
    if prepared.exists():
        files = json.loads(prepared.read_text()).get("files")
        if isinstance(files, dict) and files:
            return {str(k): str(v) for k, v in files.items()}
    return {
        p.name: _sha256(p)
        for p in sorted(model_dir.iterdir())
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin")
    }


def cache_key(model_dir: Path, dtype: str) -> tuple[str, dict[str, Any]]:
    import torch
    import transformers

    inputs = {
        "checkpoint": checkpoint_hashes(model_dir),
        "dtype": dtype,
        "opset": OPSET,
        "exporter": "torchscript",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "export_version": EXPORT_VERSION,
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24], inputs


def _wrapper(model: Any, n_layers: int) -> Any:
    import torch
    from transformers import DynamicCache

    class WithCache(torch.nn.Module):
        """Flat tensors in and out, so the ONNX graph has named KV inputs and outputs."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: Any, attention_mask: Any, position_ids: Any, *past: Any
        ) -> Any:
            cache = DynamicCache(config=self.model.config)
            for i in range(n_layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            presents: list[Any] = []
            for layer in out.past_key_values.layers:
                presents += [layer.keys, layer.values]
            return (out.logits, *presents)

    return WithCache().eval()


def export(model: Any, target: Path) -> float:
    """Trace `model` (already in its dtype, on CPU) into `target`; returns milliseconds."""
    import torch

    n_layers, kv_heads, head_dim = kv_shape(model.config)
    past_names, present_names = kv_names(n_layers)
    # Non-trivial example sizes (batch 2, 3 new tokens, 4 cached) so no axis is traced as 1.
    batch, seq, past_len = 2, 3, 4
    dtype = next(model.parameters()).dtype
    ids = torch.randint(0, 100, (batch, seq))
    mask = torch.ones(batch, past_len + seq, dtype=torch.long)
    positions = torch.arange(past_len, past_len + seq).expand(batch, seq).contiguous()
    past = [torch.zeros(batch, kv_heads, past_len, head_dim, dtype=dtype) for _ in past_names]
    axes: dict[str, dict[int, str]] = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "total"},
        "position_ids": {0: "batch", 1: "seq"},
        "logits": {0: "batch", 1: "seq"},
    }
    axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    axes.update({n: {0: "batch", 2: "total"} for n in present_names})
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        # The TorchScript exporter: it handles the DynamicCache wrapper in torch 2.11-2.13
        # (the dynamo exporter is the default since 2.9 and is not needed for this graph).
        torch.onnx.export(
            _wrapper(model, n_layers),
            (ids, mask, positions, *past),
            str(target),
            input_names=["input_ids", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return (time.perf_counter() - t0) * 1000.0


def cached_export(model_dir: Path, dtype: str, load_model: Any) -> Exported:
    """The export for (checkpoint, dtype), from the cache or made now with `load_model()`."""
    key, inputs = cache_key(model_dir, dtype)
    folder = export_root() / key
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        recorded: dict[str, str] = manifest["files_sha256"]
        now = {name: _sha256(folder / name) for name in recorded if (folder / name).exists()}
        return Exported(
            folder / ONNX_NAME, key, True, None, now, now == recorded, {"cache_dir": str(folder)}
        )
    staging = folder.with_name(f"{key}.tmp-{os.getpid()}")
    export_ms = export(load_model(), staging / ONNX_NAME)
    files = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
    manifest = {"key_inputs": inputs, "files_sha256": files, "export_ms": export_ms}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    try:
        staging.rename(folder)  # atomic: a concurrent exporter's folder wins, ours is dropped
    except OSError:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return Exported(
        folder / ONNX_NAME, key, False, export_ms, files, True, {"cache_dir": str(folder)}
    )
