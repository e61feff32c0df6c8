"""`python -m kit.harness --self-check` on this machine's CPU torch: what it reports and when it
fails (the CUDA images run the same check after their build: docs/validation/images.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def self_check(*args: str) -> tuple[int, dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-m", "kit.harness", "--self-check", *args],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def test_cpu_torch_passes_and_reports_no_gpu_without_failing() -> None:
    code, record = self_check("torch")
    assert code == 0 and record["ok"] is True and record["failures"] == []
    torch = record["torch"]
    assert isinstance(torch, dict) and str(torch["version"]).endswith("+cpu")
    assert torch["cuda"] is None and torch["gpu"]["available"] is False  # type: ignore[index]
    assert record["cuda_libraries"] == {}  # a CPU torch needs none


def test_a_family_whose_library_is_missing_fails_naming_the_import() -> None:
    code, record = self_check("vllm")  # the dev venv has no vllm (it lives in .venv-vllm)
    assert code == 1 and "import vllm" in record["failures"]  # type: ignore[operator]
