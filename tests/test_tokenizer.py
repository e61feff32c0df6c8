"""The kit's tokenization: exact GPT-2 BPE against the published vectors, the registered-folder
path, the documented approximate fallback, and TR147's exact-length prompts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import gpt2_tokenizer_dir

from kit.errors import KitError
from kit.models import tokenizer as tk

GPT2_DIR = gpt2_tokenizer_dir()
needs_gpt2 = pytest.mark.skipif(
    GPT2_DIR is None,
    reason="KIT_GPT2_TOKENIZER_DIR is unset (./scripts/test points it at shared/data/gpt2-tokenizer)",
)
SEPARATOR = "\n__ggml_vocab_test__\n"


@pytest.fixture
def no_tokenizer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env folder, an empty cache, no packaged copy, and the hub offline (conftest sets
    HF_HUB_OFFLINE)."""
    monkeypatch.delenv(tk.GPT2_ENV, raising=False)
    monkeypatch.setattr(tk, "PACKAGED_GPT2", tmp_path / "no-packaged-tokenizer")
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "empty-cache"))


def _vectors() -> list[tuple[str, list[int]]]:
    assert GPT2_DIR is not None
    inputs = (GPT2_DIR / "test-vectors.inp").read_text(encoding="utf-8").split(SEPARATOR)
    outputs = (GPT2_DIR / "test-vectors.out").read_text(encoding="utf-8").split("\n")
    # Both files end with a separator / newline, so each split ends with "" (an empty input
    # whose expected ids are empty): 47 pairs, as the README counts them.
    assert len(inputs) == len(outputs) == 47
    return [
        (text, [int(i) for i in line.split()]) for text, line in zip(inputs, outputs, strict=True)
    ]


@needs_gpt2
def test_gpt2_tokenization_matches_every_vector() -> None:
    mismatches = []
    for text, expected in _vectors():
        result = tk.tokenize("gpt2-25m", text)
        assert result.method == "exact"
        assert result.source.startswith(tk.GPT2_ENV)
        if result.ids != expected:
            mismatches.append((text, result.ids, expected))
    assert mismatches == []


@needs_gpt2
def test_gpt2_decodes_back_to_the_text() -> None:
    tok, _ = tk.find_tokenizer("gpt2")
    assert tok is not None
    for text, ids in _vectors():
        assert tok.decode(ids) == text


@needs_gpt2
def test_readme_token_counts() -> None:
    assert tk.tokenize("tiny-gpt2", "Hello").ids == [15496]
    assert len(tk.tokenize("gpt2-100m", "Summarize RLHF in one sentence.").ids) == 9
    assert len(tk.tokenize("gpt2-5m", tk.STRESS_PROMPT).ids) == 51


@needs_gpt2
def test_registered_folder_is_used_without_the_env_var(no_tokenizer: None, tmp_path: Path) -> None:
    assert GPT2_DIR is not None
    before = tk.tokenize("gpt2-25m", "Hello")
    assert before.method == "approximate"
    source = tmp_path / "tok"
    source.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_DIR / name, source / name)
    registered = tk.register_tokenizer(source)
    assert registered.kind == "gpt2" and registered.vocab_size == 50257
    shutil.rmtree(source)  # the cache holds its own copy
    after = tk.tokenize("gpt2-25m", "Hello")
    assert (after.ids, after.method) == ([15496], "exact")
    assert after.source.startswith("cache:")


def test_register_rejects_folders_that_are_not_tokenizers(tmp_path: Path) -> None:
    with pytest.raises(KitError, match="does not exist"):
        tk.register_tokenizer(tmp_path / "missing")
    with pytest.raises(KitError, match="no tokenizer files"):
        tk.register_tokenizer(tmp_path)


@needs_gpt2
def test_register_rejects_a_tokenizer_of_the_wrong_vocabulary(tmp_path: Path) -> None:
    tok, _ = tk.find_tokenizer("gpt2")
    assert tok is not None
    tok.save(str(tmp_path / "tokenizer.json"))  # a valid tokenizer.json, but GPT-2's vocab
    with pytest.raises(KitError, match="50257 tokens"):
        tk.register_tokenizer(tmp_path, "qwen2")


def test_env_var_pointing_at_a_wrong_folder_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(tk.GPT2_ENV, str(tmp_path))
    with pytest.raises(KitError, match=r"does not hold vocab\.json"):
        tk.tokenize("gpt2-25m", "Hello")


def test_fallback_is_deterministic_flagged_and_never_special(no_tokenizer: None) -> None:
    first = tk.tokenize("gpt2-25m", "Summarize RLHF in one sentence.")
    again = tk.tokenize("gpt2-50m", "Summarize RLHF in one sentence.")
    assert first == again
    assert first.method == "approximate"
    assert tk.GPT2_ENV in first.source and "--tokenizer" in first.source
    assert len(first.ids) == 8  # the exact count is 9 (see the module docstring)
    stress = tk.tokenize("gpt2-25m", tk.STRESS_PROMPT).ids
    assert len(stress) == 50 and len(set(stress)) == 2  # "latency" and " latency"
    assert all(0 <= i < 50256 for i in first.ids + stress)


def test_qwen_and_ollama_fall_back_with_a_clear_source(no_tokenizer: None) -> None:
    qwen = tk.tokenize("qwen2.5-1.5b", "Hello world, 123!")
    assert qwen.method == "approximate" and "qwen2" in qwen.source
    assert all(0 <= i < 151643 for i in qwen.ids)
    ollama = tk.tokenize("gemma3:270m", "Hello")
    assert ollama.method == "approximate" and "Ollama" in ollama.source


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(KitError, match="unknown model 'gpt9'") as err:
        tk.tokenize("gpt9", "Hello")
    assert "gpt2-25m" in err.value.hint


@pytest.mark.parametrize("exact", [True, False])
def test_exact_length_ids_have_exactly_n_tokens(
    exact: bool, no_tokenizer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if exact:
        if GPT2_DIR is None:
            pytest.skip("KIT_GPT2_TOKENIZER_DIR is unset")
        monkeypatch.setenv(tk.GPT2_ENV, str(GPT2_DIR))
    for n in (1, 8, 32, 128, 512):
        ids = tk.exact_length_ids("gpt2-100m", n)
        assert len(ids) == n
        assert 50256 not in ids
        assert ids == tk.exact_length_ids("gpt2-100m", n, seed=7)
    if exact:
        assert tk.exact_length_ids("gpt2-25m", 3) == [
            15460,
            1387,
            24812,
        ]  # "lat", "ency", " latency"
    record = tk.exact_length_tokens("qwen2.5-0.5b", 32)
    assert len(record.ids) == 32 and record.method == "approximate"


def test_exact_length_rejects_non_positive_lengths() -> None:
    with pytest.raises(KitError, match="at least 1"):
        tk.exact_length_ids("gpt2-25m", 0)


def test_gpt2_is_exact_with_no_setup_at_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No env folder, an empty cache, the hub offline: the copy shipped with the kit is used
    (issue 11: every containerized run warned "token ids are approximate")."""
    monkeypatch.delenv(tk.GPT2_ENV, raising=False)
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "empty-cache"))
    hello = tk.tokenize("gpt2-25m", "Hello")
    assert (hello.ids, hello.method) == ([15496], "exact")
    assert hello.source == f"package:{tk.PACKAGED_GPT2}"
    assert len(tk.tokenize("gpt2-100m", "Summarize RLHF in one sentence.").ids) == 9
    assert tk.exact_length_tokens("gpt2-25m", 3).ids == [15460, 1387, 24812]


@needs_gpt2
def test_the_packaged_copy_is_the_reference_data(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GPT2_DIR is not None
    for name in tk.GPT2_FILES:
        assert (tk.PACKAGED_GPT2 / name).read_bytes() == (GPT2_DIR / name).read_bytes()
    monkeypatch.delenv(tk.GPT2_ENV, raising=False)
    tok, source = tk.find_tokenizer("gpt2")
    assert tok is not None and source.startswith("package:")
    assert [tok.encode(t, add_special_tokens=False).ids for t, _ in _vectors()] == [
        ids for _, ids in _vectors()
    ]


def test_the_wheel_ships_the_tokenizer(tmp_path: Path) -> None:
    """Package data, not a file that only a checkout has: the built wheel carries it."""
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(repo)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("vocab.json", "merges.txt", "README.md"):
        assert f"kit/models/data/gpt2/{name}" in names
