"""Backends as data (kit/matrix/builtin/backends.yaml): the harness agrees with it, the UI and
runner read it, and a bad file is one clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.harness.backends import REGISTRY
from kit.matrix.backends import backends, load_backends
from kit.matrix.cell import BACKENDS

REPO = Path(__file__).resolve().parent.parent


def test_the_harness_registry_agrees_with_the_data() -> None:
    data = backends()
    assert tuple(data) == BACKENDS and set(data) == set(REGISTRY)
    for backend_id, spec in data.items():
        assert spec.implemented == (REGISTRY[backend_id] is not None), backend_id
    assert data["llama-cpp"].artifact == "gguf" and data["ollama"].server == "ollama"
    assert (data["vllm"].interpreter_env, data["vllm"].interpreter_venv) == (
        "KIT_VLLM_PYTHON",
        ".venv-vllm",
    )


def test_runner_and_images_read_the_data() -> None:
    from kit.images.registry import BACKEND_IMAGES
    from kit.runner.host import OWN_VENV

    assert OWN_VENV == {"vllm": ("KIT_VLLM_PYTHON", ".venv-vllm")}
    assert BACKEND_IMAGES["transformers-eager"] == "torch" and BACKEND_IMAGES["vllm"] == "vllm"


def test_the_ui_never_imports_the_harness() -> None:
    code = (
        "import sys; import kit.tui.models.matrix_tree as m; from kit.matrix import load_matrix;"
        "[m.cell_problem(c, False, 'cpu', 'host') for c in load_matrix('tr117').cells];"
        "print(sorted(n for n in sys.modules if n.startswith('kit.harness')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "kit.harness" not in (REPO / "kit/tui/models/matrix_tree.py").read_text()


def test_a_bad_backends_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "backends.yaml"
    path.write_text("schema: 1\nbackends:\n  - {id: x, implemented: yes-ish}\n")
    with pytest.raises(KitError, match=r"backends\[0\] \(x\)\.implemented"):
        load_backends(path)
    path.write_text("schema: 1\nbackends:\n  - {id: x, implemented: true, needs: {gpu: 1}}\n")
    with pytest.raises(KitError, match="needs"):
        load_backends(path)


def test_matrix_coverage_llamacpp_extensions_and_local_ollama_models(tmp_path: Path) -> None:
    from kit.matrix import load_matrix
    from kit.matrix.models import get_model
    from kit.matrix.validate import MatrixError

    tr126 = load_matrix("tr126")
    llama = [c for c in tr126.cells if c.backend == "llama-cpp"]
    assert llama and all(c.extension and c.group == "ext-llamacpp" for c in llama)
    assert {c.model for c in llama} == {"gpt2-25m", "gpt2-50m", "gpt2-100m"}
    assert {c.mode for c in llama} == {"prefill", "kv_decode", "e2e_kv"}
    tr117 = [c for c in load_matrix("tr117").cells if c.backend == "llama-cpp"]
    assert tr117 and all(c.extension and c.model == "tiny-gpt2" for c in tr117)
    # Ollama groups: published tags by default, the kit's own models with "local".
    tags = [c for c in tr126.cells if c.backend == "ollama"]
    assert tags and all(get_model(c.model).is_ollama for c in tags)
    local = [c for c in load_matrix("tr126", "local").cells if c.backend == "ollama"]
    assert {(c.model, c.dtype) for c in local} == {
        ("gpt2-100m", "fp32"), ("qwen2.5-0.5b", "fp16"), ("qwen2.5-1.5b", "fp16"),
        ("qwen2.5-3b", "fp16"),
    }  # fmt: skip
    local117 = [c for c in load_matrix("tr117", "local").cells if c.backend == "ollama"]
    assert {c.model for c in local117} == {"tiny-gpt2"}
    with pytest.raises(KitError, match="ollama-models"):
        load_matrix("tr126", "mine")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "schema: 1\nid: bad\ngroups:\n  - id: o\n    backends: [{backend: ollama}]\n"
        "    models: ['qwen2.5:0.5b']\n    local_models: ['llama3.2:1b']\n"
        "    scenarios: [single_micro]\n"
    )
    with pytest.raises(MatrixError, match="a kit model"):
        load_matrix(str(bad))
