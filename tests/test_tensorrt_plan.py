"""The TensorRT backend's plan on CPU: shapes from real cells, the optimization profile, the
engine cache key and TR118's trap. No engine is built here (no GPU, no TensorRT)."""

from __future__ import annotations

import dataclasses

import pytest

from kit.harness.backends.tensorrt_plan import (
    Dim,
    Profile,
    Shape,
    cell_shapes,
    engine_key,
    group_profile,
    parse_profile,
    profile_from_shapes,
    trap,
)


def cell(cid: str, mode: str, n_new: int = 8, pad: int | None = None) -> dict[str, object]:
    return {"id": cid, "mode": mode, "max_new_tokens": n_new, "pad_to_multiple": pad}


def test_cell_shapes_follow_the_mode_and_the_left_padded_batch() -> None:
    ids = [[1] * 5, [2] * 3]  # batch 2, padded to 5
    assert cell_shapes(cell("a", "prefill"), ids) == [Shape(2, 5, 0)]
    # kv_decode: 8 one-token steps after the prefill, past 5..12; e2e_kv: 7 steps, past 5..11
    assert cell_shapes(cell("b", "kv_decode"), ids) == [Shape(2, 5, 0), Shape(2, 1, 5),
                                                         Shape(2, 1, 12)]  # fmt: skip
    assert cell_shapes(cell("c", "e2e_kv"), ids)[-1] == Shape(2, 1, 11)
    assert cell_shapes(cell("d", "prefill", pad=8), ids) == [Shape(2, 8, 0)]


def test_profile_spans_the_groups_real_prompt_lengths() -> None:
    cells = [cell("s", "prefill"), cell("m", "kv_decode", 16), cell("l", "prefill")]
    prompts = {"s": [[1] * 4], "m": [[1] * 9], "l": [[1] * 30]}
    profile = group_profile(cells, prompts, max_positions=1024)
    assert profile.batch == Dim(1, 1, 1)
    assert profile.seq == Dim(1, 9, 30)  # decode steps are seq 1; opt: median prefill length
    assert profile.past == Dim(0, 9, 9 + 16 - 1)
    assert profile.source == "cells"
    for c in cells:  # a profile built from the cells holds every one of them
        assert trap(c, prompts[c["id"]], profile) is None


def test_a_shape_outside_the_profile_is_named_with_the_profile() -> None:
    profile = parse_profile("batch=1:1:1,seq=1:8:16,past=0:8:32")
    long_prompt = [[7] * 20]
    found = trap(cell("x", "prefill"), long_prompt, profile)
    assert found is not None
    assert "batch 1, seq 20, past 0" in found and "seq 20 not in 1..16 (opt 8)" in found
    assert "batch 1..1 (opt 1), seq 1..16 (opt 8), past 0..32 (opt 8)" in found
    assert "no latency was recorded" in found
    # decode past beyond the profile: a 10-token prompt decoding 30 tokens reaches past 39
    found = trap(cell("y", "kv_decode", 30), [[7] * 10], profile)
    assert found is not None and "past 39 not in 0..32" in found
    assert trap(cell("z", "kv_decode", 4), [[7] * 10], profile) is None


def test_model_context_caps_the_profile_and_the_trap_reports_what_exceeds_it() -> None:
    shapes = [Shape(1, 60, 0), Shape(1, 1, 60), Shape(1, 1, 60 + 100)]
    profile = profile_from_shapes(shapes, max_positions=128)
    assert profile.seq.max == 60 and profile.past.max == 127
    assert trap(cell("c", "kv_decode", 101), [[1] * 60], profile) is not None


def test_fixed_profile_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_TRT_PROFILE", "batch=1:2:4,seq=1:16:64,past=0:16:128")
    profile = group_profile([cell("a", "prefill")], {"a": [[1] * 3]}, None)
    assert profile.seq == Dim(1, 16, 64) and profile.source.startswith("batch=1:2:4")
    for bad in ("batch=1:2,seq=1:1:1,past=0:0:0", "batch=4:2:1,seq=1:1:1,past=0:0:0",
                "seq=1:1:1,past=0:0:0"):  # fmt: skip
        with pytest.raises(ValueError, match="KIT_TRT_PROFILE"):
            parse_profile(bad)


def test_profile_input_shapes_cover_every_graph_input() -> None:
    profile = Profile(Dim(1, 1, 4), Dim(1, 8, 16), Dim(0, 8, 32), "cells")
    shapes = profile.input_shapes(layers=2, heads=3, head_dim=5)
    assert shapes["input_ids"] == ((1, 1), (1, 8), (4, 16))
    assert shapes["attention_mask"] == ((1, 1), (1, 16), (4, 48))  # past + seq
    assert shapes["past.1.value"] == ((1, 3, 0, 5), (1, 3, 8, 5), (4, 3, 32, 5))
    assert len(shapes) == 3 + 2 * 2


def test_engine_key_changes_with_what_changes_the_plan() -> None:
    profile = Profile(Dim(1, 1, 1), Dim(1, 8, 16), Dim(0, 8, 32), "cells")
    base = ({"model.onnx": "aa"}, profile, "fp16", "11.4.0.106", "NVIDIA H200 sm_90")
    key = engine_key(*base)
    assert key == engine_key(*base) and len(key) == 32
    other_profile = dataclasses.replace(profile, seq=Dim(1, 8, 17))
    variants = [
        ({"model.onnx": "ab"}, *base[1:]),
        (base[0], other_profile, *base[2:]),
        (*base[:2], "fp32", *base[3:]),
        (*base[:3], "11.3.0.99", base[4]),
        (*base[:4], "NVIDIA H100 sm_90"),
    ]
    assert len({engine_key(*v) for v in variants} | {key}) == 6
    # the profile's source (cells vs an env text) does not change the engine
    assert engine_key(base[0], dataclasses.replace(profile, source="env"), *base[2:]) == key
