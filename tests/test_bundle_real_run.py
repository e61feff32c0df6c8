"""A real CPU run (tiny GPT-2, eager, host runner) bundles, verifies and reports."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kit.bundle.build import build_bundle
from kit.bundle.report import report_from_path
from kit.bundle.verify import verify_bundle


@pytest.mark.slow
def test_real_cpu_run_bundles_and_verifies(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    select = "group=phase2-dynamic,model=gpt2-25m,scenario=single_micro,backend=transformers-eager"
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--matrix", "tr126", "--select", select,
         "--device", "cpu", "--reps", "3", "--warmup", "1", "--weights", "random",
         "--out", str(run_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = build_bundle(run_dir, tmp_path / "a.tar.gz", plots=False)
    b = build_bundle(run_dir, tmp_path / "b.tar.gz", plots=False)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert verify_bundle(a.path).problems == []
    with tarfile.open(a.path) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        checks = tar.extractfile("integrity/checks.csv").read().decode()  # type: ignore[union-attr]
    assert list(manifest["cells"]["by_status"]) == ["ok"]
    assert "fail" not in checks
    out = report_from_path(a.path, tmp_path / "report", with_plots=False)
    assert "## Published values vs ours" in (out / "REPORT.md").read_text()
