"""Running `kit run` as a person would (a child process), for backend tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def kit_run(tmp: Path, matrix_text: str, env: dict[str, str], name: str = "matrix") -> Path:
    """Write the matrix, run `kit run` on its prompt-0 cells with random weights; the run dir."""
    matrix = tmp / f"{name}.yaml"
    matrix.write_text(textwrap.dedent(matrix_text))
    out = tmp / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--matrix", str(matrix), "--weights", "random",
         "--select", "prompt_index=0", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def tiny_matrix(matrix_id: str, modes: str = "prefill, kv_decode", repetitions: int = 2) -> str:
    """A matrix file's text: one eager tiny-gpt2 group on the CPU, `single_micro` prompts."""
    return textwrap.dedent(f"""
        schema: 1
        id: {matrix_id}
        title: one tiny-gpt2 group on the CPU
        defaults: {{device: cpu, repetitions: {repetitions}, warmup: 1, max_new_tokens: 4, seed: 42}}
        groups:
          - id: eager
            backends: [{{backend: transformers-eager, label: eager}}]
            models: [tiny-gpt2]
            scenarios: [single_micro]
            modes: [{modes}]
        """)
