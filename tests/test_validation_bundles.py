"""The H100 validation bundles committed under docs/validation/ stay verifiable and readable
by this kit (old bundles must keep verifying as the code changes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.cli import main

VALIDATION = Path(__file__).resolve().parent.parent / "docs" / "validation"
BUNDLES = {
    "h100-tr126-dynamic.tar.gz": "54 ok",
    "h100-tr126-baseline.tar.gz": "18 crash, 18 ok",
    "h100-tr126-dynamic-qwen.tar.gz": "INCOMPLETE run (9 cells missing)",  # stopped by a time limit
}


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_committed_h100_bundle_verifies_and_reports(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = VALIDATION / name
    assert main(["verify", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and BUNDLES[name] in out
    assert main(["report", str(bundle), "-o", str(tmp_path / "report"), "--no-plots"]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "Published values vs ours" in report
    header = report.split("## ")[0]
    assert "- verification: verified" in header
    assert "- GPU: NVIDIA H100 80GB HBM3; driver 580.159.04; CUDA 13.0" in header
    assert "commit `unknown`" in header and "None" not in header and "null" not in header
    assert "- device: cuda (as the matrix says; cells: " in header
    if "baseline" in name:
        assert "CUDAGraphs" in report  # the compiled decode crashes are listed with their reason
