"""The model registry: the published facts, validation of broken files, no ML imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kit.errors import KitError
from kit.matrix.models import BUILTIN_MODELS, get_model, load_models, registry
from kit.models.synth import tensor_plan

GPT2_TABLE = {  # TR-MATRICES.md "Model family": n_embd, n_layer, n_head, n_inner
    "gpt2-25m": (384, 3, 2, 1536),
    "gpt2-50m": (512, 8, 2, 2048),
    "gpt2-100m": (768, 8, 2, 3072),
    "gpt2-5m": (80, 12, 2, None),
    "tiny-gpt2": (2, 2, 2, None),
}
QWEN_CONFIGS = {  # public config.json: hidden, layers, heads, kv heads, intermediate
    "qwen2.5-0.5b": (896, 24, 14, 2, 4864),
    "qwen2.5-1.5b": (1536, 28, 12, 2, 8960),
    "qwen2.5-3b": (2048, 36, 16, 2, 11008),
}
OLLAMA_TAGS = [
    "gemma3:270m",
    "gemma3:1b-it-qat",
    "gemma3:latest",
    "qwen2.5:7b",
    "llama3.1:8b-instruct-q4_0",
    "qwen2.5:0.5b",
    "qwen2.5:1.5b",
    "qwen2.5:3b",
    "llama3.2:1b",
]


def test_registry_holds_every_model_the_matrices_use() -> None:
    assert list(registry()) == [*GPT2_TABLE, *QWEN_CONFIGS, *OLLAMA_TAGS]
    assert all(spec.source for spec in registry().values())


@pytest.mark.parametrize("model_id", list(GPT2_TABLE))
def test_gpt2_family_matches_the_cards(model_id: str) -> None:
    spec = get_model(model_id)
    c = spec.config
    assert (c["n_embd"], c["n_layer"], c["n_head"], c["n_inner"]) == GPT2_TABLE[model_id]
    assert (c["vocab_size"], c["n_positions"], c["resid_pdrop"]) == (50257, 1024, 0.0)
    assert c["architectures"] == ["GPT2LMHeadModel"]
    assert spec.tokenizer == "gpt2" and spec.revision is None
    assert spec.hub_id == (
        "sshleifer/tiny-gpt2" if model_id == "tiny-gpt2" else f"Crusadersk/{model_id}"
    )
    assert spec.n_layer == c["n_layer"]


def test_gpt2_5m_says_its_head_count_is_assumed() -> None:
    assert "n_head 2 is assumed" in get_model("gpt2-5m").notes


@pytest.mark.parametrize("model_id", list(QWEN_CONFIGS))
def test_qwen_configs_match_the_public_ones(model_id: str) -> None:
    spec = get_model(model_id)
    c = spec.config
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    assert (*(c[k] for k in keys), c["intermediate_size"]) == QWEN_CONFIGS[model_id]
    assert c["vocab_size"] == 151936 and c["tie_word_embeddings"] is True
    assert (c["rope_theta"], c["rms_norm_eps"], c["max_position_embeddings"]) == (1e6, 1e-6, 32768)
    assert spec.hub_id == f"Qwen/Qwen2.5-{model_id.split('-')[1].upper()}"
    assert spec.n_layer == c["num_hidden_layers"]


@pytest.mark.parametrize("model_id", [*GPT2_TABLE, *QWEN_CONFIGS])
def test_params_equal_the_synthesized_checkpoint(model_id: str) -> None:
    spec = get_model(model_id)
    assert spec.params == sum(t.size for t in tensor_plan(spec.family, spec.config))


def test_published_parameter_counts() -> None:
    published = {"gpt2-25m": 25.0e6, "gpt2-50m": 51.5e6, "gpt2-100m": 96.1e6}
    published |= {"qwen2.5-0.5b": 0.49e9, "qwen2.5-1.5b": 1.54e9, "qwen2.5-3b": 3.09e9}
    for model_id, count in published.items():
        assert get_model(model_id).params == pytest.approx(count, rel=0.01)


def test_ollama_tags_are_models_with_depth() -> None:
    for tag in OLLAMA_TAGS:
        spec = get_model(tag)
        assert spec.is_ollama and spec.ollama_tag == tag and spec.hub_id is None
        assert spec.n_layer > 0 and spec.tokenizer is None


def test_unknown_model_names_the_valid_ids() -> None:
    with pytest.raises(KitError, match="unknown model 'gpt2-1b'") as err:
        get_model("gpt2-1b")
    assert "gpt2-25m" in err.value.hint and "llama3.2:1b" in err.value.hint


def test_registry_returns_a_copy() -> None:
    registry().pop("gpt2-25m")
    assert "gpt2-25m" in registry()


def _broken(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(BUILTIN_MODELS.read_text())
    mutate(doc)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["models"][0].update(colour="red"),
            r"models\[0\] \(gpt2-25m\)\.colour: unknown key",
        ),
        (
            lambda d: d["models"][1].update(family="llama"),
            r"models\[1\] \(gpt2-50m\)\.family: bad value 'llama'",
        ),
        (lambda d: d["models"][0].pop("hub_id"), "a gpt2 model needs hub_id"),
        (
            lambda d: d["models"][5]["config"].update(hidden_size="896"),
            r"config\.hidden_size: missing or bad value '896'",
        ),
        (lambda d: d["models"][0].update(params=True), r"\.params: bad value True"),
        (lambda d: d["models"][0].update(tokenizer="llama"), r"\.tokenizer: bad value 'llama'"),
        (lambda d: d["models"][8].pop("ollama_tag"), "an ollama model needs ollama_tag"),
        (lambda d: d["models"].append(dict(d["models"][0])), "duplicate id 'gpt2-25m'"),
        (lambda d: d.update(schema=2), "schema: bad value 2"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d["models"][2].pop("source"), "missing key 'source'"),
    ],
)
def test_broken_files_name_the_file_and_field(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _broken(tmp_path, mutate)
    with pytest.raises(KitError, match=message) as err:
        load_models(path)
    assert str(path) in err.value.title
    assert err.value.hint.startswith("valid:")


def test_invalid_yaml_is_a_kit_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [\n")
    with pytest.raises(KitError, match="not valid YAML"):
        load_models(path)


@pytest.mark.parametrize(
    "module",
    ["kit.matrix.models", "kit.models.prepare", "kit.models.tokenizer", "kit.commands.models"],
)
def test_orchestrator_modules_do_not_import_ml_libraries(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'vllm', 'textual') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
