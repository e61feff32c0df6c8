"""scripts/gpu/campaign.sh, the device call of the H200 campaign, run here on the CPU with a
tiny matrix (its cells pass --device cpu in the fourth field): a device call's seconds are
scarce, so its parsing, resume, --skip-done and packing are checked where they cost nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cli_runs import tiny_matrix

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def campaign(
    tmp: Path, out: str, *runs: str, budget: int = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUT": str(tmp / out), "KIT_CAMPAIGN_RUNS": str(tmp / "runs"),
           "KIT_CACHE": str(tmp / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    return subprocess.run(["bash", str(REPO / "scripts/gpu/campaign.sh"), str(budget), *runs],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip


def members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return set(tar.getnames())


def test_campaign_runs_resumes_skips_and_packs(tmp_path: Path) -> None:
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(tiny_matrix("tiny-campaign"))
    first = campaign(tmp_path, "call1", f"pre@{matrix}@prompt_index=0,mode=prefill@--device cpu")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "run pre: --matrix" in first.stdout and "cells: 1 ok (of 1)" in first.stdout
    names = members(tmp_path / "call1" / "runs.tar.gz")
    assert {"pre/run.json", "pre/cells.jsonl", "pre/journal.jsonl"} <= names
    assert not any("compile-cache" in n or "/input-" in n for n in names)

    # The next call on the warm machine: the same NAME resumes (nothing left to do), and a
    # selection asked again with --skip-done of the first run leaves out what it finished.
    runs = tmp_path / "runs"
    second = campaign(tmp_path, "call2", f"pre@{matrix}@prompt_index=0,mode=prefill",
                      f"rest@{matrix}@prompt_index=0@--device cpu --skip-done {runs / 'pre'}",
                      f"none@{matrix}@prompt_index=0,mode=prefill@--device cpu --skip-done {runs / 'pre'}")  # fmt: skip
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert f"resume pre: kit run --resume {runs / 'pre'}" in second.stdout
    assert "already holds a run" not in second.stdout
    assert (
        f"--skip-done {runs / 'pre'}: 1 selected cells already have a final result" in second.stdout
    )
    assert "every one of the 1 selected cells already has a final result" in second.stdout
    assert "packing pre rest" in second.stdout  # `none` planned nothing: no folder to pack
    names = members(tmp_path / "call2" / "runs.tar.gz")
    assert "rest/run.json" in names and not any(n.startswith("none") for n in names)
    merged = subprocess.run([sys.executable, "-m", "kit", "merge", str(runs / "pre"),
                             str(runs / "rest"), "--out", str(tmp_path / "all")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert "cells: 2 ok (of 2)" in merged.stdout

    # A call whose budget is spent starts nothing and packs nothing.
    late = campaign(tmp_path, "call3", f"late@{matrix}@prompt_index=1@--device cpu", budget=40)
    assert late.returncode == 0 and "no time left for late" in late.stdout
    assert "packing nothing" in late.stdout and not (tmp_path / "call3" / "runs.tar.gz").exists()
