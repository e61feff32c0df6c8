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
    # 2026-12-07, prompts from the GPT-2 tokenizer: phase-2 dynamic, padded GPT-2, baseline 25m
    "h100-tr126.tar.gz": "18 crash, 11 degraded, 55 missing, 168 ok",  # phase 3 gpt2-100m in part
    "h100-tr147.tar.gz": "70 ok",  # TR147 v1-prefill, the H100 side of its portability question
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
    # the 2026-11 calls carried no git metadata; the 2026-12-07 ones name their commit
    commit = "`1972261" if name in ("h100-tr126.tar.gz", "h100-tr147.tar.gz") else "`unknown`"
    assert f"commit {commit}" in header and "None" not in header and "null" not in header
    assert "- device: cuda (as the matrix says; cells: " in header
    if "baseline" in name:
        assert "CUDAGraphs" in report  # the compiled decode crashes are listed with their reason


CLAIMS_FILES = sorted(p.name for p in VALIDATION.glob("h200-*.claims.txt"))
OTHER_CLAIMS = {  # a run of a matrix without built-in claims: the claims file it was judged by
    "h200-tr121-inversion": "kit/matrix/builtin/claims/tr126.yaml",
    "h200-tr147-v4a-cache": "scripts/gpu/matrices/tr147-v4a-reuse.claims.yaml",
    "h200-tr126-baseline-cache": "scripts/gpu/matrices/tr126-baseline-cache.claims.yaml",
}


@pytest.mark.parametrize("name", CLAIMS_FILES)
def test_committed_h200_claims_regenerate_byte_for_byte(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each committed `kit claims` table is what the current kit prints from its bundle alone
    (the reviewer's check): a change to the claims engine that moves a verdict fails here."""
    stem = name.removesuffix(".claims.txt")
    argv = ["claims", str(VALIDATION / f"{stem}.tar.gz")]
    if stem in OTHER_CLAIMS:
        argv += ["--claims", str(VALIDATION.parent.parent / OTHER_CLAIMS[stem])]
    main(argv)
    assert capsys.readouterr().out == (VALIDATION / name).read_text()


COMPARE_FILES = sorted(p.name for p in VALIDATION.glob("*.compare.txt"))


@pytest.mark.parametrize("name", COMPARE_FILES)
def test_committed_compare_tables_regenerate_byte_for_byte(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each committed `kit compare` table (H100 -> H200 portability) is what the current kit
    prints from the two bundles named in its first lines, run from docs/validation/ as the
    README says."""
    text = (VALIDATION / name).read_text()
    a, b = (line.split(": ", 1)[1] for line in text.splitlines()[:2])
    monkeypatch.chdir(VALIDATION)
    assert main(["compare", a, b]) == 0
    assert capsys.readouterr().out == text
