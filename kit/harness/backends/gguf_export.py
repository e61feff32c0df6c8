"""Export a kit checkpoint (safetensors) to GGUF with the `gguf` package, cached by content hash.

No torch and no llama.cpp checkout: the safetensors files are memory-mapped and converted with
numpy, so `kit models export-gguf` runs on the orchestrator side too. Architectures:

- `gpt2`: Conv1D weights are stored [in, out] and transposed to [out, in]; the feed-forward
  length is `n_inner` (4 x n_embd when null); the output matrix is the tied token embedding.
- `qwen2`: q/k/v with biases, SwiGLU; rotary NEOX layout, so q/k are not permuted; a tied
  output reuses the token embedding (llama.cpp falls back to it when `output.weight` is absent).

The tokenizer is the real one (tokens, merges, pre-tokenizer name, bos/eos, `add_bos_token`
false): the checkpoint's own files, else the kit's registered tokenizer (kit.models.tokenizer).
dtype f32 writes every tensor f32; f16 writes matrices f16 and keeps norms and biases (1-D) f32.

Cache: `<model_dir>/gguf/<key>/model.gguf` beside the safetensors (or under $KIT_GGUF_CACHE /
`<kit cache>/gguf` when the model folder is read-only, e.g. mounted into a container). The key
hashes the checkpoint's file hashes, the tokenizer files' hashes, dtype, the gguf package version
and EXPORT_VERSION. A manifest records the sha256 of the written file; a cached export whose
bytes no longer match is reported (`manifest_ok` false), never silently trusted or replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import KitError

EXPORT_VERSION = 1
GGUF_NAME = "model.gguf"
GGUF_DTYPES = ("f32", "f16")
ARCHITECTURES = {"gpt2": "gpt2", "qwen2": "qwen2"}
PRE_TOKENIZERS = {"gpt2": "gpt-2", "qwen2": "qwen2"}
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


@dataclasses.dataclass
class GgufExport:
    path: Path  # the .gguf file
    key: str
    reused: bool
    export_ms: float | None  # None when reused
    sha256: str
    manifest_ok: bool
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        return data


def gguf_dtype(cell_dtype: str) -> str:
    """The GGUF dtype for a cell dtype (fp32 -> f32, fp16 -> f16); KitError otherwise."""
    mapped = {"fp32": "f32", "fp16": "f16", "f32": "f32", "f16": "f16"}.get(cell_dtype)
    if mapped is None:
        raise KitError(
            f"dtype {cell_dtype} has no GGUF export in this kit", "use fp32 or fp16 (f32, f16)"
        )
    return mapped


# -- reading the checkpoint -------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def safetensors_arrays(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for every tensor of the checkpoint's *.safetensors, memory-mapped.
    bf16 is widened to f32 (numpy has no bf16). Raises KitError when there are no files."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise KitError(f"{model_dir} holds no .safetensors file", "run `kit models prepare MODEL`")
    for path in files:
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        base = 8 + size
        for name, info in sorted(header.items()):
            if name == "__metadata__":
                continue
            kind = info["dtype"]
            if kind not in _NUMPY:
                raise KitError(f"{path}: tensor {name} has dtype {kind}", "f32, f16 or bf16 only")
            start, end = info["data_offsets"]
            array = raw[base + start : base + end].view(_NUMPY[kind]).reshape(info["shape"])
            if kind == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            yield name, array


def _config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise KitError(f"{model_dir} has no config.json", "run `kit models prepare MODEL`")
    config: dict[str, Any] = json.loads(path.read_text())
    if config.get("model_type") not in ARCHITECTURES:
        raise KitError(
            f"{model_dir}: model_type {config.get('model_type')!r} has no GGUF export",
            "the kit exports gpt2 and qwen2 checkpoints",
        )
    return config


# -- the tokenizer ----------------------------------------------------------------------------
def tokenizer_files(model_dir: Path, kind: str) -> tuple[list[Path], str]:
    """The real tokenizer's files for `kind` and where they came from: the checkpoint's own,
    else the kit's tokenizer folder. Raises KitError when there is none (an export with an
    invented vocabulary would tokenize differently from every other backend)."""
    names = ["vocab.json", "merges.txt"] if kind == "gpt2" else ["tokenizer.json"]
    if all((model_dir / n).is_file() for n in names):
        return [model_dir / n for n in names], f"checkpoint:{model_dir}"
    from kit.models.tokenizer import tokenizer_folder

    found = tokenizer_folder(kind)
    if found is None:
        hint = "set KIT_GPT2_TOKENIZER_DIR or " if kind == "gpt2" else ""
        raise KitError(
            f"the GGUF export needs the real {kind} tokenizer and none was found",
            f"{hint}run `kit models prepare --tokenizer DIR`",
        )
    return [found[0] / n for n in names], found[1]


def _gpt2_vocab(files: list[Path], n_vocab: int) -> tuple[tuple[list[str], list[int]], list[str]]:
    from gguf import TokenType

    vocab: dict[str, int] = json.loads(files[0].read_text(encoding="utf-8"))
    lines = files[1].read_text(encoding="utf-8").splitlines()
    merges = [m for m in lines if m and not m.startswith("#version")]
    return _token_table(vocab, {"<|endoftext|>"}, n_vocab, TokenType), merges


def _token_table(
    vocab: dict[str, int], special: set[str], n_vocab: int, types: Any
) -> tuple[list[str], list[int]]:
    by_id = {i: t for t, i in vocab.items()}
    if max(by_id) >= n_vocab:
        raise KitError(
            f"the tokenizer has ids up to {max(by_id)} but the model's vocab_size is {n_vocab}",
            "is this the model's own tokenizer?",
        )
    tokens, kinds = [], []
    for i in range(n_vocab):
        token = by_id.get(i)
        if token is None:  # the embedding is padded past the tokenizer (Qwen2: 151936)
            tokens.append(f"[PAD{i}]")
            kinds.append(int(types.UNUSED))
        else:
            tokens.append(token)
            kinds.append(int(types.CONTROL if token in special else types.NORMAL))
    return tokens, kinds


def _qwen2_vocab(files: list[Path], n_vocab: int) -> tuple[tuple[list[str], list[int]], list[str]]:
    from gguf import TokenType

    data = json.loads(files[0].read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(data["model"]["vocab"])
    special: set[str] = set()
    for added in data.get("added_tokens") or []:
        vocab[added["content"]] = int(added["id"])
        if added.get("special"):
            special.add(added["content"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    return _token_table(vocab, special, n_vocab, TokenType), merges


# -- the key and the cache --------------------------------------------------------------------
def cache_key(model_dir: Path, dtype: str) -> tuple[str, dict[str, Any]]:
    import gguf

    from kit.harness.backends.onnx_export import checkpoint_hashes

    kind = _config(model_dir)["model_type"]
    files, source = tokenizer_files(model_dir, kind)
    inputs = {
        "checkpoint": checkpoint_hashes(model_dir),
        "tokenizer": {p.name: _sha256(p) for p in files},
        "dtype": dtype,
        "gguf": getattr(gguf, "__version__", None) or _package_version("gguf"),
        "export_version": EXPORT_VERSION,
    }
    blob = json.dumps(inputs, sort_keys=True).encode()
    inputs["tokenizer_source"] = source
    return hashlib.sha256(blob).hexdigest()[:24], inputs


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _writable(folder: Path) -> bool:
    probe = folder if folder.exists() else folder.parent
    return os.access(probe, os.W_OK)


def export_folder(model_dir: Path, key: str) -> Path:
    """`<model_dir>/gguf/<key>` when the model folder is writable, else the fallback cache."""
    beside = model_dir / "gguf"
    if (beside / key / "manifest.json").is_file() or _writable(model_dir):
        return beside / key
    if os.environ.get("KIT_GGUF_CACHE"):
        return Path(os.environ["KIT_GGUF_CACHE"]) / key
    from kit.models.cache import cache_root

    return cache_root() / "gguf" / key


def cached_gguf(model_dir: Path, dtype: str) -> GgufExport:
    """The GGUF of (checkpoint, dtype) from the cache, or written now. Raises KitError."""
    dtype = gguf_dtype(dtype)
    model_dir = Path(model_dir)
    key, inputs = cache_key(model_dir, dtype)
    folder = export_folder(model_dir, key)
    manifest_path = folder / "manifest.json"
    detail = {"cache_dir": str(folder), "tokenizer_source": inputs["tokenizer_source"]}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        recorded = manifest["files_sha256"][GGUF_NAME]
        path = folder / GGUF_NAME
        now = _sha256(path) if path.is_file() else ""
        return GgufExport(path, key, True, None, now, now == recorded, detail)
    staging = folder.with_name(f"{key}.tmp-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = write_gguf(model_dir, staging / GGUF_NAME, dtype)
    export_ms = (time.perf_counter() - t0) * 1000.0
    digest = _sha256(staging / GGUF_NAME)
    manifest = {
        "key_inputs": inputs,
        "files_sha256": {GGUF_NAME: digest},
        "export_ms": export_ms,
        "summary": summary,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    try:
        staging.rename(folder)  # atomic: a concurrent exporter's folder wins, ours is dropped
    except OSError:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return GgufExport(folder / GGUF_NAME, key, False, export_ms, digest, True, detail | summary)


# -- writing ----------------------------------------------------------------------------------
def _gpt2_tensors(
    arrays: Iterator[tuple[str, np.ndarray]], n_layer: int
) -> Iterator[tuple[str, np.ndarray]]:
    blocks = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn_qkv",
        "attn.c_proj": "attn_output",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn_up",
        "mlp.c_proj": "ffn_down",
    }
    conv1d = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}
    for name, array in arrays:
        name = name.removeprefix("transformer.")
        if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue  # causal-mask buffers of old checkpoints, not weights
        if name == "wte.weight":
            yield "token_embd.weight", array
            yield "output.weight", array  # tied: llama.cpp's gpt2 graph reads output.weight
        elif name == "wpe.weight":
            yield "position_embd.weight", array
        elif name.startswith("ln_f."):
            yield "output_norm." + name.split(".")[-1], array
        elif name == "lm_head.weight":
            continue  # tied to wte (GPT-2 always is)
        elif name.startswith("h."):
            _, index, rest = name.split(".", 2)
            part, _, leaf = rest.rpartition(".")
            if part not in blocks or int(index) >= n_layer:
                raise KitError(f"unexpected GPT-2 tensor {name}", "is this a GPT-2 checkpoint?")
            if part in conv1d and leaf == "weight":
                array = array.T  # Conv1D stores [in, out]; GGUF wants [out, in] rows
            yield f"blk.{index}.{blocks[part]}.{leaf}", array
        else:
            raise KitError(f"unexpected GPT-2 tensor {name}", "is this a GPT-2 checkpoint?")


def _qwen2_tensors(arrays: Iterator[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray]]:
    blocks = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, array in arrays:
        if name == "model.embed_tokens.weight":
            yield "token_embd.weight", array
        elif name == "model.norm.weight":
            yield "output_norm.weight", array
        elif name == "lm_head.weight":
            yield "output.weight", array
        elif name.startswith("model.layers."):
            _, _, index, rest = name.split(".", 3)
            part, _, leaf = rest.rpartition(".")
            if part not in blocks:
                raise KitError(f"unexpected Qwen2 tensor {name}", "is this a Qwen2 checkpoint?")
            yield f"blk.{index}.{blocks[part]}.{leaf}", array
        elif name.endswith("rotary_emb.inv_freq"):
            continue
        else:
            raise KitError(f"unexpected Qwen2 tensor {name}", "is this a Qwen2 checkpoint?")


def write_gguf(model_dir: Path, target: Path, dtype: str) -> dict[str, Any]:
    """Write the GGUF of the checkpoint in `model_dir` to `target`; returns a summary."""
    try:
        import gguf
    except ModuleNotFoundError as err:
        raise KitError(
            "the GGUF export needs the Python package gguf", "pip install gguf (0.19)"
        ) from err
    config = _config(model_dir)
    kind = config["model_type"]
    files, _source = tokenizer_files(model_dir, kind)
    n_vocab = int(config["vocab_size"])
    writer = gguf.GGUFWriter(str(target), ARCHITECTURES[kind])
    writer.add_name(model_dir.parent.name if model_dir.name in ("hub",) else model_dir.name)
    writer.add_file_type(
        int(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    )
    if kind == "gpt2":
        n_embd = int(config["n_embd"])
        n_layer = int(config["n_layer"])
        writer.add_context_length(int(config["n_positions"]))
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(int(config.get("n_inner") or 4 * n_embd))
        writer.add_block_count(n_layer)
        writer.add_head_count(int(config["n_head"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_epsilon", 1e-5)))
        (tokens, kinds), merges = _gpt2_vocab(files, n_vocab)
        tensors = _gpt2_tensors(safetensors_arrays(model_dir), n_layer)
    else:
        heads = int(config["num_attention_heads"])
        writer.add_context_length(int(config.get("max_position_embeddings", 32768)))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(int(config["num_hidden_layers"]))
        writer.add_head_count(heads)
        writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
        writer.add_rope_freq_base(float(config.get("rope_theta", 1e6)))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
        (tokens, kinds), merges = _qwen2_vocab(files, n_vocab)
        tensors = _qwen2_tensors(safetensors_arrays(model_dir))
    writer.add_tokenizer_model("gpt2")  # byte-level BPE, as llama.cpp names it
    writer.add_tokenizer_pre(PRE_TOKENIZERS[kind])
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges(merges)
    bos = config.get("bos_token_id")
    eos = config.get("eos_token_id")
    if isinstance(bos, int):
        writer.add_bos_token_id(bos)
    if isinstance(eos, int):
        writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)  # the harness's ids are the whole prompt
    counts = {"f32": 0, "f16": 0}
    for name, array in tensors:
        keep_f32 = dtype == "f32" or array.ndim == 1  # norms and biases stay f32
        out = np.ascontiguousarray(array, dtype=np.float32 if keep_f32 else np.float16)
        counts["f32" if keep_f32 else "f16"] += 1
        writer.add_tensor(name, out)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {
        "architecture": ARCHITECTURES[kind],
        "dtype": dtype,
        "tensors": counts,
        "n_vocab": n_vocab,
        "merges": len(merges),
        "pre_tokenizer": PRE_TOKENIZERS[kind],
        "bytes": target.stat().st_size,
    }
