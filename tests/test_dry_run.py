"""`kit run --dry-run`: the plan `kit run` would make (its groups in run order, their cells and
estimates, what --skip-done leaves out), typed as a person types it, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VALIDATION = REPO / "docs" / "validation"


def kit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ})  # fmt: skip


def test_dry_run_prints_the_groups_and_writes_nothing(tmp_path: Path) -> None:
    select = "group=phase2-padded,model=gpt2-*"
    shown = kit(tmp_path, "matrix", "show", "tr126", "--select", select, "--json")
    cells = json.loads(shown.stdout)
    groups = {(c["backend"], c["model"]) for c in cells}
    dry = kit(tmp_path, "run", "--matrix", "tr126", "--select", select, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split() == ["group", "cells", "backend", "model", "device", "compile",
                                "estimate"]  # fmt: skip
    table = lines[1 : lines.index("")]
    assert len(table) == len(groups) == 6
    assert sum(int(row.split()[1]) for row in table) == len(cells) == 54
    assert {tuple(row.split()[2:4]) for row in table} == groups
    compiled = [row.split() for row in table if row.split()[2] == "transformers-compile"]
    assert compiled and all(row[5] == "reduce-overhead" for row in compiled)
    assert "54 cells of tr126 in 6 groups; estimate " in dry.stdout
    assert "dry run: nothing was started" in dry.stdout
    assert list(tmp_path.iterdir()) == []


def test_dry_run_with_skip_done_of_a_committed_bundle(tmp_path: Path) -> None:
    """From docs/validation, with a relative path: the bundle's gpt2-25m padded cells (ok on
    the H200) are left out, the rest of the selection is planned; a bare --resume is refused."""
    select = "group=phase2-padded,model=gpt2-*"
    before = sorted(VALIDATION.iterdir())
    dry = kit(VALIDATION, "run", "--matrix", "tr126", "--select", select,
              "--skip-done", "h200-tr126.tar.gz", "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "36 cells of tr126 in 4 groups" in dry.stdout
    assert f"--skip-done {VALIDATION / 'h200-tr126.tar.gz'}: 18 selected cells" in dry.stdout
    assert "gpt2-25m" not in dry.stdout
    assert sorted(VALIDATION.iterdir()) == before
    resume = kit(tmp_path, "run", "--resume", "somewhere", "--dry-run")
    assert resume.returncode != 0 and "Traceback" not in resume.stderr
    assert "--dry-run plans a new run" in resume.stderr
    bare = kit(tmp_path, "run", "--dry-run")
    assert bare.returncode != 0 and "Traceback" not in bare.stderr
    assert "kit run --dry-run needs --matrix" in bare.stderr and "--out" not in bare.stderr
    assert list(tmp_path.iterdir()) == []
