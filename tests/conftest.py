"""Shared fixtures and tier detection for the test suite."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the developer's own model cache out of tests; share one cache per session."""
    monkeypatch.setenv("KIT_CACHE", str(tmp_path_factory.getbasetemp() / "kit-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def fake_h100(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """NVML's fake H100 for this test (NVML is opened once per process: close it around)."""
    from kit.gpu import nvml

    nvml.shutdown()
    monkeypatch.setenv("KIT_NVML_FAKE", "h100")
    yield
    nvml.shutdown()


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def gpt2_tokenizer_dir() -> Path | None:
    value = os.environ.get("KIT_GPT2_TOKENIZER_DIR")
    if value and (Path(value) / "vocab.json").exists():
        return Path(value)
    return None


def exact_gpt2_dir() -> Path:
    """The exact GPT-2 tokenizer's files: $KIT_GPT2_TOKENIZER_DIR, else the copy the kit ships
    as package data (the same vocab and merges; only the test vectors live outside)."""
    from kit.models.tokenizer import PACKAGED_GPT2

    return gpt2_tokenizer_dir() or PACKAGED_GPT2
