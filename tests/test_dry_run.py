"""`kit run --dry-run`: the plan `kit run` would make (its groups in run order, their cells and
estimates, what --skip-done leaves out), typed as a person types it, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


STORM = """
schema: 1
id: storm
defaults: {device: cpu, repetitions: 2, warmup: 0, max_new_tokens: 8, seed: 42}
groups:
  - id: static
    backends:
      - backend: transformers-compile
        label: compiled
        compile: {backend: inductor, mode: default, dynamic: false, recompile_limit: 4}
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [kv_decode]
"""


def test_dry_run_warns_of_a_recompile_storm_in_tr126_phase3(tmp_path: Path) -> None:
    """TR126 phase 3's compiled groups (dynamic: false, 128 new tokens) outrun the kit's
    recompile limit of 64 in one decode cell (on the H100, 2026-12-08: the default group's 11
    measured cells came out degraded); phase 2's 64 new tokens do not by themselves."""
    dry = kit(tmp_path, "run", "--matrix", "tr126", "--select", "group=phase3-*,model=gpt2-*",
              "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    warned = [line for line in dry.stdout.splitlines() if line.startswith("warning: group ")]
    assert len(warned) == 2
    assert {w.split()[2].split(".")[0] for w in warned} == {"phase3-default", "phase3-reduce-overhead"}  # fmt: skip
    assert all("recompile limit (64)" in w and "128 new tokens" in w for w in warned)
    padded = kit(tmp_path, "run", "--matrix", "tr126", "--select", "group=phase2-*,model=gpt2-25m",
                 "--dry-run")  # fmt: skip
    assert padded.returncode == 0 and "warning:" not in padded.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_predicted_storm_happens_and_its_cell_is_degraded(tmp_path: Path) -> None:
    """The warning's prediction, checked by a real CPU run: 8 new tokens under a recompile
    limit of 4 (so the frame falls back to eager); with limit 16 neither warning nor degrade."""
    (tmp_path / "storm.yaml").write_text(STORM)
    run = kit(tmp_path, "run", "--matrix", "storm.yaml", "--weights", "random", "--out", "run")
    assert run.returncode == 3, run.stderr[-2000:]  # degraded cells
    assert "warning: group static.transformers-compile" in run.stderr
    assert "recompile limit (4)" in run.stderr
    rows = [json.loads(x) for x in (tmp_path / "run" / "cells.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["degraded", "degraded"]  # its two prompts
    assert all("dynamo hit its recompile limit (4) on 1 frame(s)" in r["reasons"][0] for r in rows)
    journal = [json.loads(x) for x in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    assert [e for e in journal if e["event"] == "log" and e.get("plan")]
    (tmp_path / "calm.yaml").write_text(STORM.replace("recompile_limit: 4", "recompile_limit: 16"))
    calm = kit(tmp_path, "run", "--matrix", "calm.yaml", "--weights", "random", "--out", "calm")
    assert calm.returncode == 0, calm.stderr[-2000:]
    assert "warning:" not in calm.stderr
    rows = [json.loads(x) for x in (tmp_path / "calm" / "cells.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
