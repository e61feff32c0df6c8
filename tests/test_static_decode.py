"""StaticCache decode: a full-length mask from the start (one shape for every step).

The harness's kv_decode on a static cache passes an attention mask as long as the cache, its
future positions 0 and set to 1 as each token arrives, instead of a mask that grows by one
column per step. Same tokens as the dynamic-cache decode; and a compiled forward with
dynamic=False sees one decode shape, not one recompile per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kit.harness.backends.transformers_backend import TransformersBackend
from kit.matrix import load_matrix, parse_selection, select_cells
from kit.models.prepare import prepare
from kit.models.tokenizer import exact_length_ids

pytestmark = pytest.mark.slow


def _cell(cache: str, backend: str, compile_cfg: dict[str, Any] | None, steps: int) -> Any:
    base = select_cells(
        load_matrix("tr147").cells,
        parse_selection("group=v4a-static-default,backend=transformers-eager,mode=kv_decode"),
    )[0]
    return base.replace(
        model="gpt2-25m",
        device="cpu",
        dtype="fp32",
        token_len=7,
        cache=cache,
        backend=backend,
        compile=compile_cfg,
        max_new_tokens=steps,
    )


def _recording_backend(tmp_path: Path, cell_dict: dict[str, Any]) -> tuple[Any, list[int]]:
    """A loaded backend for the cell whose token selection appends each picked token to the
    returned list."""
    spec = {
        "cells": [cell_dict],
        "model_dir": str(prepare("gpt2-25m", "random").path),
        "compile_cache_dir": str(tmp_path / f"cache-{cell_dict['id']}"),
    }
    backend = TransformersBackend(spec)
    backend.load()
    picked: list[int] = []
    select = backend._select

    def recording(logits: Any, c: dict[str, Any], generator: Any) -> Any:
        token = select(logits, c, generator)
        picked.append(int(token[0, 0]))
        return token

    backend._select = recording  # type: ignore[method-assign]
    return backend, picked


def _decode_tokens(tmp_path: Path, cell: Any) -> tuple[list[int], TransformersBackend]:
    """Run one kv_decode call of the cell through the harness's backend; the tokens it picked."""
    cell_dict = cell.to_dict()
    backend, picked = _recording_backend(tmp_path, cell_dict)
    call = backend.call(cell_dict, [exact_length_ids("gpt2-25m", 7)], 0)
    produced = call.run(call.setup())
    assert produced == cell_dict["max_new_tokens"]
    return picked, backend


def test_static_cache_decode_picks_the_same_tokens_as_the_dynamic_cache(tmp_path: Path) -> None:
    static, _ = _decode_tokens(tmp_path, _cell("static", "transformers-eager", None, 12))
    dynamic, _ = _decode_tokens(tmp_path, _cell("dynamic", "transformers-eager", None, 12))
    assert len(static) == 13  # the prefill's token, then 12 steps
    assert static == dynamic


def test_compiled_static_decode_has_one_decode_graph_for_all_steps(tmp_path: Path) -> None:
    # dynamo's "eager" backend: the graph count is dynamo's, whatever compiles the graphs.
    cfg = {"backend": "eager", "mode": "default", "fullgraph": False, "dynamic": False}
    _, backend = _decode_tokens(tmp_path, _cell("static", "transformers-compile", cfg, 10))
    counters = backend.compile_counters()
    assert counters["frames_total"] == counters["frames_ok"]
    assert counters["unique_graphs"] == 2, counters  # the prefill, and one for the 10 steps


def test_a_reused_static_cache_is_reset_between_calls_and_picks_the_same_tokens(
    tmp_path: Path,
) -> None:
    """static_cache: reuse (one StaticCache per shape, reset in each call's setup): the second
    call on a cache the first one filled decodes the same tokens as a fresh cache; "fresh"
    (the default) leaves the cell id and group as they were."""
    fresh = _cell("static", "transformers-eager", None, 8)
    reuse = fresh.replace(static_cache="reuse")
    assert "static_cache" not in fresh.fields() and reuse.id != fresh.id
    assert reuse.group_id() != fresh.group_id()
    want, _ = _decode_tokens(tmp_path, fresh)
    cell = reuse.to_dict()
    backend, picked = _recording_backend(tmp_path, cell)
    ids = [exact_length_ids("gpt2-25m", 7)]
    caches = []
    for rep in range(2):
        picked.clear()
        call = backend.call(cell, ids, rep)
        state = call.setup()
        caches.append(state[0])
        # after the setup's prefill of 7 tokens, the positions past it are empty: the first
        # call's decode steps were wiped by the reset
        assert float(state[0].layers[0].keys[:, :, 7:, :].abs().sum()) == 0.0
        assert call.run(state) == 8
        assert picked == want, f"call {rep}"
    assert caches[0] is caches[1]  # one cache object, reset in the second call's setup


def test_a_preallocated_static_cache_exists_before_the_first_forward_and_keeps_its_tensors(
    tmp_path: Path,
) -> None:
    """static_cache: preallocated: the cache's tensors are allocated in the call's setup, before
    the model's forward (transformers would otherwise allocate them inside the first forward,
    inside the compiled region); the same tensors serve every call; same tokens as fresh."""
    fresh = _cell("static", "transformers-eager", None, 6)
    pre = fresh.replace(static_cache="preallocated")
    assert pre.id not in (fresh.id, fresh.replace(static_cache="reuse").id)
    want, _ = _decode_tokens(tmp_path, fresh)
    cell = pre.to_dict()
    backend, picked = _recording_backend(tmp_path, cell)
    cache = backend._new_cache(1, 7 + 6 + 1)
    layer = cache.layers[0]
    config = backend.model.config
    shape = (1, config.n_head, 14, config.n_embd // config.n_head)
    assert layer.is_initialized and tuple(layer.keys.shape) == shape, layer.keys.shape
    address = layer.keys.data_ptr()
    ids = [exact_length_ids("gpt2-25m", 7)]
    for rep in range(2):
        picked.clear()
        call = backend.call(cell, ids, rep)
        state = call.setup()
        assert state[0] is cache and state[0].layers[0].keys.data_ptr() == address
        assert call.run(state) == 6
        assert picked == want, f"call {rep}"


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_preallocated_tensors_have_the_shapes_the_first_forward_would_give(family: str) -> None:
    """early_initialization needs the KV heads and head size per layer: for GPT-2 (heads =
    attention heads) and Qwen2 (grouped-query: fewer KV heads), the preallocated cache has
    the shapes, dtype and device of the cache a forward allocates lazily."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM, StaticCache

    torch.manual_seed(0)
    if family == "gpt2":
        model: Any = GPT2LMHeadModel(GPT2Config(n_embd=64, n_head=4, n_layer=2, vocab_size=97))
    else:
        config = Qwen2Config(hidden_size=64, num_attention_heads=8, num_key_value_heads=2,
                             intermediate_size=96, num_hidden_layers=2, vocab_size=97)  # fmt: skip
        model = Qwen2ForCausalLM(config)
    model.eval()
    cell = _cell("static", "transformers-eager", None, 4).replace(static_cache="preallocated")
    backend = TransformersBackend({"cells": [cell.to_dict()]})
    backend.model = model
    pre = backend._new_cache(2, 12)
    lazy = StaticCache(config=model.config, max_cache_len=12)
    with torch.no_grad():
        ids = torch.randint(0, 97, (2, 5))
        model(input_ids=ids, past_key_values=lazy, use_cache=True,
              cache_position=torch.arange(5))  # fmt: skip
    assert len(pre.layers) == len(lazy.layers) == 2
    for a, b in zip(pre.layers, lazy.layers, strict=True):
        for x, y in ((a.keys, b.keys), (a.values, b.values)):
            assert (tuple(x.shape), x.dtype, x.device) == (tuple(y.shape), y.dtype, y.device)


def _forward_inputs(backend: TransformersBackend) -> list[dict[str, int]]:
    """Every forward's input tensors, as name -> data_ptr, in call order."""
    seen: list[dict[str, int]] = []

    def hook(_module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        tensors = {"input_ids": kwargs.get("input_ids", args[0] if args else None), **kwargs}
        seen.append({k: v.data_ptr() for k, v in tensors.items() if hasattr(v, "data_ptr")})

    backend.model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


@pytest.mark.parametrize("cache", ["static", "dynamic"])
def test_every_repetition_of_a_cell_gets_the_same_input_tensors(tmp_path: Path, cache: str) -> None:
    """A cell's input ids, mask and positions are built once (its first call, untimed) and every
    repetition passes the very same tensors, as a bare loop on a pre-tokenized prompt does: a
    fresh copy per call costs a CUDA graph replay an extra input copy. Another prompt gets
    its own tensors, and the tokens picked are the same in every call."""
    cell = _cell(cache, "transformers-eager", None, 5).to_dict()
    backend, picked = _recording_backend(tmp_path, cell)
    seen = _forward_inputs(backend)
    ids = [exact_length_ids("gpt2-25m", 7)]
    per_call, tokens = [], []
    for rep in range(3):
        seen.clear(), picked.clear()
        call = backend.call(cell, ids, rep)
        assert call.run(call.setup()) == 5
        per_call.append(list(seen))
        tokens.append(list(picked))
    assert len(per_call[0]) == 6  # the prefill and 5 steps
    assert per_call[0][0] == per_call[1][0] == per_call[2][0]  # the prefill's inputs
    # each step's positions (a step's token and a grown mask are the call's own work)
    fixed = ("position_ids", "cache_position")
    steps = [[{k: s[k] for k in fixed if k in s} for s in calls[1:]] for calls in per_call]
    assert steps[0] == steps[1] == steps[2] and all("position_ids" in s for s in steps[0])
    assert tokens[0] == tokens[1] == tokens[2]
    prefill = per_call[0][0]
    seen.clear()
    other = backend.call(cell, [exact_length_ids("gpt2-25m", 9)], 0)
    other.run(other.setup())
    assert seen[0]["input_ids"] != prefill["input_ids"]
    assert seen[0]["attention_mask"] != prefill["attention_mask"]


def test_the_timed_decode_steps_copy_nothing_from_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kv_decode on a static cache: no tensor is built from Python values inside the timed
    steps (each step's position ids and cache position were a torch.tensor(...) per step, a
    host-to-device copy in the window on CUDA); the step positions still advance one by one."""
    import torch

    cell = _cell("static", "transformers-eager", None, 6).to_dict()
    backend, _ = _recording_backend(tmp_path, cell)
    seen: list[dict[str, Any]] = []
    backend.model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(
            {k: kw[k].flatten().tolist() for k in ("position_ids", "cache_position")}
        ),
        with_kwargs=True,
    )
    call = backend.call(cell, [exact_length_ids("gpt2-25m", 7)], 0)
    state = call.setup()
    seen.clear()
    built: list[Any] = []
    real = torch.tensor

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[:1])
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting)
    assert call.run(state) == 6
    monkeypatch.undo()
    assert built == [], built
    assert [s["cache_position"] for s in seen] == [[7 + i] for i in range(6)]
    assert [s["position_ids"] for s in seen] == [[7 + i] for i in range(6)]
