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
