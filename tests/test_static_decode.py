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


def _decode_tokens(tmp_path: Path, cell: Any) -> tuple[list[int], TransformersBackend]:
    """Run one kv_decode call of the cell through the harness's backend; the tokens it picked."""
    cell_dict = cell.to_dict()
    spec = {
        "cells": [cell_dict],
        "model_dir": str(prepare("gpt2-25m", "random").path),
        "compile_cache_dir": str(tmp_path / f"cache-{cell.id}"),
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
