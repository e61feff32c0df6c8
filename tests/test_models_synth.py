"""Synthesized checkpoints: byte-deterministic, valid safetensors, loadable by transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from kit.errors import KitError
from kit.matrix.models import get_model
from kit.models.synth import synthesize, synthesize_config, tensor_plan, write_safetensors

# Pinned: a change here means every checkpoint the kit ever made changes (numpy's PCG64 and
# SeedSequence are fixed algorithms; nothing else random is involved).
TINY_GPT2_SHA256 = "cd45119ce6ba282a416967a9d97523a3923850e0833ed6470ce28cf87d45f9ac"
GPT2_25M_SHA256 = "11bd634f99673ce4172998f42eba95518e079dc2319f309b2aba56d6b1d60b27"


def _small_qwen(tie: bool = True) -> dict:  # type: ignore[type-arg]
    config = dict(get_model("qwen2.5-0.5b").config)
    config.update(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        vocab_size=512,
        max_window_layers=2,
        bos_token_id=None,
        eos_token_id=None,
        tie_word_embeddings=tie,
    )
    return config


def test_pinned_sha256_and_same_bytes_on_every_run(tmp_path: Path) -> None:
    first = synthesize(get_model("tiny-gpt2"), tmp_path / "a")
    second = synthesize(get_model("tiny-gpt2"), tmp_path / "b")
    assert first.sha256 == second.sha256 == TINY_GPT2_SHA256
    assert first.weights_file.read_bytes() == second.weights_file.read_bytes()
    assert first.config_file.read_bytes() == second.config_file.read_bytes()
    assert synthesize(get_model("gpt2-25m"), tmp_path / "c").sha256 == GPT2_25M_SHA256


@pytest.mark.parametrize(("chunk", "threads"), [(777, 3), (1 << 16, 1)])
def test_the_bytes_do_not_depend_on_chunk_size_or_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, threads: int
) -> None:
    """Chunks jump ahead in their tensor's stream and are written in file order: any chunk
    size (777 splits every tensor of tiny-gpt2 into many) and any number of workers give the
    pinned file."""
    from kit.models import synth

    monkeypatch.setattr(synth, "_CHUNK", chunk)
    monkeypatch.setattr(synth, "_THREADS", threads)
    assert synthesize(get_model("tiny-gpt2"), tmp_path / "a").sha256 == TINY_GPT2_SHA256


def test_seed_changes_the_weights(tmp_path: Path) -> None:
    a = synthesize(get_model("tiny-gpt2"), tmp_path / "a", seed=42)
    b = synthesize(get_model("tiny-gpt2"), tmp_path / "b", seed=43)
    assert a.sha256 != b.sha256
    assert json.loads(b.config_file.read_text())["kit_seed"] == 43


def test_values_follow_the_documented_init(tmp_path: Path) -> None:
    result = synthesize(get_model("gpt2-5m"), tmp_path)
    tensors = load_file(str(result.weights_file))
    assert sum(t.size for t in tensors.values()) == get_model("gpt2-5m").params
    assert "lm_head.weight" not in tensors  # tied to wte at load
    wte = tensors["transformer.wte.weight"]
    assert wte.dtype == np.float32 and wte.shape == (50257, 80)
    assert abs(float(wte.mean())) < 1e-4 and float(wte.std()) == pytest.approx(0.02, rel=0.01)
    assert float(np.abs(wte).max()) <= 0.02 * 3.4642
    assert tensors["transformer.h.0.attn.c_attn.weight"].shape == (80, 240)  # Conv1D [in, out]
    assert not tensors["transformer.h.11.mlp.c_fc.bias"].any()
    assert (tensors["transformer.ln_f.weight"] == 1).all()
    with safe_open(str(result.weights_file), "np") as handle:
        meta = handle.metadata()
    assert meta["kit_weights"] == "random" and meta["kit_seed"] == "42"
    config = json.loads(result.config_file.read_text())
    assert config["kit_weights"] == "random" and config["dtype"] == "float32"


def test_writer_matches_safetensors_own_bytes(tmp_path: Path) -> None:
    plan = tensor_plan("gpt2", get_model("tiny-gpt2").config)
    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, plan, "float16", 1, {"format": "pt"})
    theirs = tmp_path / "theirs.safetensors"
    save_file(load_file(str(ours)), str(theirs), metadata={"format": "pt"})
    assert ours.read_bytes() == theirs.read_bytes()


def test_unknown_family_or_dtype_is_a_kit_error(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="family 'llama'"):
        synthesize_config("llama", {}, tmp_path)
    with pytest.raises(KitError, match="dtype 'int8'"):
        synthesize_config("gpt2", get_model("tiny-gpt2").config, tmp_path, dtype="int8")
    with pytest.raises(KitError, match="Ollama tag"):
        synthesize(get_model("qwen2.5:3b"), tmp_path)


def test_gpt2_loads_into_transformers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    result = synthesize(get_model("gpt2-25m"), tmp_path)
    model, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    stored = load_file(str(result.weights_file))
    state = model.state_dict()
    for name, value in stored.items():
        assert np.array_equal(state[name].numpy(), value), name
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert (model.config.n_layer, model.config.n_inner, model.dtype) == (3, 1536, torch.float32)
    ids = torch.tensor([[15496, 995]])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 2, 50257) and torch.isfinite(logits).all()
    out = model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, 6)


@pytest.mark.parametrize("tie", [True, False])
def test_qwen2_loads_into_transformers(tmp_path: Path, tie: bool) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    result = synthesize_config("qwen2", _small_qwen(tie), tmp_path, model_id="qwen-small")
    assert result.dtype == "float16"
    stored = load_file(str(result.weights_file))
    assert ("lm_head.weight" in stored) is not tie
    assert stored["model.layers.0.self_attn.k_proj.weight"].shape == (32, 64)  # 2 kv heads x 16
    assert stored["model.layers.0.self_attn.q_proj.bias"].dtype == np.float16
    model, info = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.dtype == torch.float16
    state = model.state_dict()
    for name, value in stored.items():
        assert np.array_equal(state[name].numpy(), value), name
    with torch.no_grad():
        logits = model.float()(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 512) and torch.isfinite(logits).all()
