"""scripts/tui-demo drives the real UI in tmux (a real terminal) and checks each screen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
