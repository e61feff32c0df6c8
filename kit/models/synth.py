"""Synthesize a checkpoint (model.safetensors + config.json) from a registry config.

Deterministic to the byte on every run and machine, without torch:

- Values come from numpy's PCG64 *bit generator* (a fixed algorithm), one stream per tensor
  seeded with (seed, sha256 of the tensor name), so a tensor does not depend on the order or
  presence of the others. We do not use `Generator.normal`: its ziggurat calls libm's expf/logf
  (which may differ by an ulp between platforms) and numpy does not promise to keep its stream.
- Each value is an Irwin-Hall sum of the four 16-bit lanes of one 64-bit draw, centred and
  scaled to standard deviation 0.02: approximately normal(0, 0.02), bounded at +-3.46 sd. The
  lane sum is exact in float32 and independent of byte order; the one multiply is IEEE-rounded.
- The safetensors file is written by `write_safetensors` below, streaming one chunk at a time
  (Qwen2.5-3B is 6 GB in fp16), with sorted metadata keys: safetensors' own writer emits
  metadata in hash-map order, which changes between runs.

Weights: matrices and embeddings random, biases 0, norm weights 1; tied output embeddings are
not stored (transformers ties them at load). GPT-2 Conv1D weights are stored [in, out].
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from kit.errors import KitError
from kit.matrix.models import ModelSpec

INIT_STD = 0.02
INIT_DESCRIPTION = "irwin-hall(4 x 16-bit) approx normal(0, 0.02); biases 0; norms 1"
_CHUNK = 1 << 22  # values per generated chunk: bounds memory, not the result
_THREADS = 8  # chunk workers at most (fewer on a smaller host)
_LANE_MEAN = 4 * 32767.5
_SCALE = np.float32(INIT_STD / math.sqrt(4 * (65536.0**2 - 1) / 12))
_DTYPES: dict[str, tuple[str, np.dtype]] = {
    "float32": ("F32", np.dtype("<f4")),
    "float16": ("F16", np.dtype("<f2")),
}
DEFAULT_DTYPE = {"gpt2": "float32", "qwen2": "float16"}


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    init: str  # "random", "zeros" or "ones"

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SynthResult:
    weights_file: Path
    config_file: Path
    sha256: str
    n_params: int
    dtype: str


def gpt2_plan(config: dict[str, Any]) -> list[TensorPlan]:
    d, vocab, ctx = config["n_embd"], config["vocab_size"], config["n_positions"]
    inner = config.get("n_inner") or 4 * d
    plan = [
        TensorPlan("transformer.wte.weight", (vocab, d), "random"),
        TensorPlan("transformer.wpe.weight", (ctx, d), "random"),
        TensorPlan("transformer.ln_f.weight", (d,), "ones"),
        TensorPlan("transformer.ln_f.bias", (d,), "zeros"),
    ]
    for i in range(config["n_layer"]):
        p = f"transformer.h.{i}."
        plan += [
            TensorPlan(p + "ln_1.weight", (d,), "ones"),
            TensorPlan(p + "ln_1.bias", (d,), "zeros"),
            TensorPlan(p + "attn.c_attn.weight", (d, 3 * d), "random"),
            TensorPlan(p + "attn.c_attn.bias", (3 * d,), "zeros"),
            TensorPlan(p + "attn.c_proj.weight", (d, d), "random"),
            TensorPlan(p + "attn.c_proj.bias", (d,), "zeros"),
            TensorPlan(p + "ln_2.weight", (d,), "ones"),
            TensorPlan(p + "ln_2.bias", (d,), "zeros"),
            TensorPlan(p + "mlp.c_fc.weight", (d, inner), "random"),
            TensorPlan(p + "mlp.c_fc.bias", (inner,), "zeros"),
            TensorPlan(p + "mlp.c_proj.weight", (inner, d), "random"),
            TensorPlan(p + "mlp.c_proj.bias", (d,), "zeros"),
        ]
    if not config.get("tie_word_embeddings", True):
        plan.append(TensorPlan("lm_head.weight", (vocab, d), "random"))
    return plan


def qwen2_plan(config: dict[str, Any]) -> list[TensorPlan]:
    d, vocab = config["hidden_size"], config["vocab_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or d // heads
    q_out, kv_out, inner = heads * head_dim, kv_heads * head_dim, config["intermediate_size"]
    plan = [
        TensorPlan("model.embed_tokens.weight", (vocab, d), "random"),
        TensorPlan("model.norm.weight", (d,), "ones"),
    ]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        plan += [
            TensorPlan(p + "input_layernorm.weight", (d,), "ones"),
            TensorPlan(p + "self_attn.q_proj.weight", (q_out, d), "random"),
            TensorPlan(p + "self_attn.q_proj.bias", (q_out,), "zeros"),
            TensorPlan(p + "self_attn.k_proj.weight", (kv_out, d), "random"),
            TensorPlan(p + "self_attn.k_proj.bias", (kv_out,), "zeros"),
            TensorPlan(p + "self_attn.v_proj.weight", (kv_out, d), "random"),
            TensorPlan(p + "self_attn.v_proj.bias", (kv_out,), "zeros"),
            TensorPlan(p + "self_attn.o_proj.weight", (d, q_out), "random"),
            TensorPlan(p + "post_attention_layernorm.weight", (d,), "ones"),
            TensorPlan(p + "mlp.gate_proj.weight", (inner, d), "random"),
            TensorPlan(p + "mlp.up_proj.weight", (inner, d), "random"),
            TensorPlan(p + "mlp.down_proj.weight", (d, inner), "random"),
        ]
    if not config.get("tie_word_embeddings", True):
        plan.append(TensorPlan("lm_head.weight", (vocab, d), "random"))
    return plan


_PLANS = {"gpt2": gpt2_plan, "qwen2": qwen2_plan}


def tensor_plan(family: str, config: dict[str, Any]) -> list[TensorPlan]:
    """The stored tensors of a `family` checkpoint, sorted by name (the file's order)."""
    if family not in _PLANS:
        raise KitError(f"cannot synthesize weights for family {family!r}", "gpt2 or qwen2")
    return sorted(_PLANS[family](config), key=lambda t: t.name)


def _random_chunk(seed: int, name: str, start: int, count: int, dtype: np.dtype) -> np.ndarray:
    """Values `start` to `start + count` of the tensor's stream: the generator jumps ahead by
    `start` draws (PCG64.advance), so chunks are independent and computed in any order."""
    words = np.frombuffer(hashlib.sha256(name.encode()).digest()[:16], dtype="<u4")
    bits = np.random.PCG64(np.random.SeedSequence([seed, *map(int, words)]))
    if start:
        bits.advance(start)
    lanes = bits.random_raw(count).view(np.uint16)
    values = lanes[0::4].astype(np.float32)
    for lane in (1, 2, 3):
        values += lanes[lane::4]
    values -= np.float32(_LANE_MEAN)
    values *= _SCALE
    return values.astype(dtype)


def _chunk_tasks(
    seed: int, plan: list[TensorPlan], dtype: np.dtype
) -> Iterator[Callable[[], bytes]]:
    """One task per chunk of the file's data, in file order."""

    def filled(size: int, value: int) -> bytes:
        return np.full(size, value, dtype=dtype).tobytes()

    def random(name: str, start: int, count: int) -> bytes:
        return _random_chunk(seed, name, start, count, dtype).tobytes()

    for tensor in plan:
        if tensor.init != "random":
            yield functools.partial(filled, tensor.size, 0 if tensor.init == "zeros" else 1)
            continue
        for start in range(0, tensor.size, _CHUNK):
            count = min(_CHUNK, tensor.size - start)
            yield functools.partial(random, tensor.name, start, count)


def _header(plan: list[TensorPlan], tag: str, itemsize: int, metadata: dict[str, str]) -> bytes:
    entries: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for tensor in plan:
        end = offset + tensor.size * itemsize
        entries[tensor.name] = {
            "dtype": tag,
            "shape": list(tensor.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    raw = json.dumps(entries, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes


def write_safetensors(
    path: Path, plan: list[TensorPlan], dtype: str, seed: int, metadata: dict[str, str]
) -> str:
    """Write the planned tensors to `path` (streaming) and return the file's sha256. Chunks
    are computed on a few threads (numpy's generator and ufuncs release the GIL), at most
    `2 x threads` ahead of the writer, and written in file order: the same bytes as one
    thread."""
    tag, np_dtype = _DTYPES[dtype]
    header = _header(plan, tag, np_dtype.itemsize, metadata)
    digest = hashlib.sha256()
    threads = max(1, min(_THREADS, os.cpu_count() or 1))
    with path.open("wb") as handle, ThreadPoolExecutor(threads) as pool:
        _write(handle, digest, struct.pack("<Q", len(header)) + header)
        pending: deque[Future[bytes]] = deque()
        for task in _chunk_tasks(seed, plan, np_dtype):
            pending.append(pool.submit(task))
            if len(pending) >= 2 * threads:
                _write(handle, digest, pending.popleft().result())
        while pending:
            _write(handle, digest, pending.popleft().result())
    return digest.hexdigest()


def _write(handle: BinaryIO, digest: Any, data: bytes) -> None:
    handle.write(data)
    digest.update(data)


def synthesize_config(
    family: str,
    config: dict[str, Any],
    dest: Path,
    *,
    seed: int = 42,
    dtype: str | None = None,
    model_id: str = "",
) -> SynthResult:
    """Write `model.safetensors` and `config.json` for `config` into `dest` (created).

    `dtype` defaults to float32 for gpt2 and float16 for qwen2. Raises KitError for an
    unknown family or dtype.
    """
    dtype = dtype or DEFAULT_DTYPE.get(family, "float32")
    if dtype not in _DTYPES:
        raise KitError(f"cannot synthesize dtype {dtype!r}", f"valid: {', '.join(_DTYPES)}")
    plan = tensor_plan(family, config)
    dest.mkdir(parents=True, exist_ok=True)
    marks = {"kit_weights": "random", "kit_seed": str(seed), "kit_init": INIT_DESCRIPTION}
    weights = dest / "model.safetensors"
    sha = write_safetensors(weights, plan, dtype, seed, {"format": "pt", **marks})
    hf_config = {**config, "dtype": dtype, **marks, "kit_seed": seed, "kit_model_id": model_id}
    config_file = dest / "config.json"
    config_file.write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    return SynthResult(weights, config_file, sha, sum(t.size for t in plan), dtype)


def synthesize(spec: ModelSpec, dest: Path, *, seed: int = 42) -> SynthResult:
    """Synthesize the registry model `spec` into `dest` (see `synthesize_config`)."""
    if spec.is_ollama:
        raise KitError(f"{spec.id} is an Ollama tag: there are no weights to synthesize")
    return synthesize_config(spec.family, spec.config, dest, seed=seed, model_id=spec.id)
