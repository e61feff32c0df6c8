"""scripts/tui-demo drives the real UI in tmux (a real terminal) and checks each screen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_docker_runner import docker_images

__all__ = ["docker_images"]  # the session fixture
REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.tui, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tui_demo_in_tmux(tmp_path: Path) -> None:
    # the demo starts `kit` with its defaults in this working directory: ./results
    env = {
        **os.environ,
        "KIT_PYTHON": sys.executable,
        "KIT_DEMO_DIR": str(tmp_path / "work"),
        "KIT_NVML_FAKE": "h100",
    }
    env.pop("KIT_RESULTS", None)
    out = subprocess.run(
        [str(REPO / "scripts" / "tui-demo"), str(tmp_path / "screens")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    screens = tmp_path / "screens"
    gpus = (screens / "gpus.txt").read_text()
    assert "NVIDIA H100 80GB HBM3" in gpus and "SM clock" in gpus
    results = (screens / "results.txt").read_text()
    assert "gpt2-25m" in results and " ok " in results
    assert list((tmp_path / "work" / "results").glob("tr126-*/summary.json"))
    assert "bundle written" in (screens / "bundle.txt").read_text()
    assert "OK" in (screens / "verify.txt").read_text()
    statuses = {json.loads(line)["status"] for line in (screens / "cells.jsonl").open()}
    assert statuses == {"ok"}


@pytest.mark.docker
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose v1 missing")
def test_tui_demo_through_compose_with_the_docker_runner(
    docker_images: dict[str, str], tmp_path: Path
) -> None:
    """The product's main command on a machine without NVIDIA GPUs: `docker-compose -f
    compose.cpu.yaml run kit`, the UI in tmux, runner docker, two CPU cells in sibling
    containers (images pinned by the project's own base: no question asked), a bundle, and
    `kit verify` on the host and in the container (issue 11)."""
    env = {**os.environ, "KIT_PYTHON": sys.executable, "KIT_DEMO_DIR": str(tmp_path / "work")}
    out = subprocess.run(
        [str(REPO / "scripts" / "tui-demo"), "--compose", str(tmp_path / "screens")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr + out.stdout
    screens = tmp_path / "screens"
    assert "runner: docker (r)" in (screens / "matrices-two-cells.txt").read_text()
    assert not (screens / "unpinned.txt").exists()  # pinned: the UI had nothing to ask
    assert (screens / "verify.txt").read_text().count(": OK (") == 2
    (run_json,) = (tmp_path / "work" / "results").glob("tr126-*/run.json")
    header = json.loads(run_json.read_text())
    assert header["runner"] == "docker" and header["image_pinning"] == "pinned"
    journal = (run_json.parent / "journal.jsonl").read_text()
    assert "token ids are approximate" not in journal
