"""`kit run --skip-done RUN_OR_BUNDLE`: a selection asked again on a fresh machine runs only
what earlier runs (or their bundles, verified first) did not finish; `kit merge` joins them.
Typed as a person types it: relative paths, from a folder that is not the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import tiny_matrix

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def kit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert REPO not in cwd.resolve().parents
    return subprocess.run([sys.executable, "-m", "kit", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ})  # fmt: skip


def _finals(run_dir: Path) -> dict[str, str]:
    last = {}
    for line in (run_dir / "cells.jsonl").read_text().splitlines():
        rec = json.loads(line)
        last[rec["cell"]] = rec["status"]
    return last


def test_skip_done_runs_what_is_left_and_the_pieces_merge(tmp_path: Path) -> None:
    work = tmp_path / "campaign"
    work.mkdir()
    (work / "tiny.yaml").write_text(tiny_matrix("tiny-skip"))
    run = ("run", "--matrix", "tiny.yaml", "--weights", "random")
    first = kit(work, *run, "--select", "prompt_index=0,mode=prefill", "--out", "first")
    assert first.returncode == 0, first.stderr[-2000:]
    assert kit(work, "bundle", "first", "-o", "first.tar.gz", "--no-plots").returncode == 0

    # Asked with other options (--reps 3), the done cell is another cell: said, not skipped.
    other = kit(work, *run, "--select", "prompt_index=0", "--reps", "3",
                "--skip-done", "first.tar.gz", "--dry-run")  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert "2 cells of tiny-skip in 1 groups" in other.stdout
    assert ("first.tar.gz: 0 selected cells already have a final result there; 1 more ran "
            "there with other options") in other.stdout  # fmt: skip

    rest = kit(work, *run, "--select", "prompt_index=0", "--skip-done", "first.tar.gz",
               "--out", "rest")  # fmt: skip
    assert rest.returncode == 0, rest.stderr[-2000:]
    assert "cells: 1 ok (of 1)" in rest.stdout
    assert "first.tar.gz: 1 selected cells already have a final result there" in rest.stdout
    header = json.loads((work / "rest" / "run.json").read_text())
    cells = json.loads((work / "rest" / "matrix" / "cells.json").read_text())
    assert [c["mode"] for c in cells] == ["kv_decode"]  # the prefill cell was done
    (record,) = header["skip_done"]
    assert record["cells_skipped"] == 1 and record["content_hash"].startswith("sha256:")
    assert record["path"] == str((work / "first.tar.gz").resolve())
    assert set(_finals(work / "first")).isdisjoint(_finals(work / "rest"))

    merged = kit(work, "merge", "first.tar.gz", "rest", "--out", "all")
    assert merged.returncode == 0, merged.stderr
    assert "cells: 2 ok (of 2)" in merged.stdout
    assert "note:" not in rest.stdout  # both measured on this machine

    # A source measured on another GPU model: said, since kit merge would refuse the pieces.
    import shutil

    shutil.copytree(work / "first", work / "elsewhere")
    gpus = [{"index": 0, "name": "NVIDIA H200", "uuid": "GPU-x"}]
    (work / "elsewhere" / "env" / "gpu.json").write_text(json.dumps({"schema": 1, "gpus": gpus}))
    told = kit(work, *run, "--select", "prompt_index=0", "--skip-done", "elsewhere", "--dry-run")
    assert told.returncode == 0, told.stderr
    assert "elsewhere was measured on NVIDIA H200, this machine has " in told.stdout
    assert "`kit merge` refuses to join runs of two GPU models" in told.stdout

    # Nothing left: one message, no run directory, no traceback.
    nothing = kit(work, *run, "--select", "prompt_index=0", "--skip-done", "first",
                  "--skip-done", "rest", "--out", "none")  # fmt: skip
    assert nothing.returncode != 0 and "Traceback" not in nothing.stderr
    assert "every one of the 2 selected cells already has a final result" in nothing.stderr
    assert not (work / "none").exists()

    # A bundle that fails verification is not trusted; another matrix's run is refused.
    data = bytearray((work / "first.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (work / "bad.tar.gz").write_bytes(bytes(data))
    bad = kit(work, *run, "--select", "prompt_index=0", "--skip-done", "bad.tar.gz",
              "--out", "bad")  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and not (work / "bad").exists()
    assert "--skip-done: bad.tar.gz fails verification" in bad.stderr
    assert "only a verified bundle is trusted" in bad.stderr
    other = kit(work, "run", "--matrix", "tr126", "--select", "group=phase2-dynamic,model=gpt2-25m",
                "--skip-done", "first", "--out", "other")  # fmt: skip
    assert other.returncode != 0
    assert "is a run of matrix 'tiny-skip', not 'tr126'" in other.stderr
    resume = kit(work, "run", "--resume", "rest", "--skip-done", "first")
    assert resume.returncode != 0 and "--resume takes the run directory alone" in resume.stderr

    # The joined run's report says how much of the matrix it covers, per group.
    assert kit(work, "bundle", "all", "-o", "all.tar.gz", "--no-plots").returncode == 0
    report = kit(work, "report", "all.tar.gz", "-o", "report", "--no-plots")
    assert report.returncode == 0, report.stderr
    text = (work / "report" / "REPORT.md").read_text()
    assert "## Coverage of the matrix" in text
    assert "2 of the matrix's 4 cells in this run, 2 ok." in text
    rows = (work / "report" / "coverage.csv").read_text().splitlines()
    assert rows[0].startswith("group,matrix_cells,run,ok,degraded,crash,skipped,missing,not_in_run")
    assert rows[1].startswith("eager,4,2,2,0,0,0,0,2,")
    # ... and names each matrix cell it does not cover, by the id `kit matrix show` prints.
    shown = kit(work, "matrix", "show", "tiny.yaml", "--select", "prompt_index=1", "--json")
    assert shown.returncode == 0, shown.stderr
    left = sorted(c["id"] for c in json.loads(shown.stdout))
    lines = (work / "report" / "not_in_run.csv").read_text().splitlines()
    assert lines[0] == ("matrix_cell,group,model,backend,mode,scenario,dtype,quantization,"
                        "batch_size,token_len,prompt_index")  # fmt: skip
    assert sorted(line.split(",")[0] for line in lines[1:]) == left and len(left) == 2
    assert all(line.split(",")[-1] == "1" for line in lines[1:])

    # --until-ci gives the cells a max_reps (part of their ids): a cell run that way is found.
    args = ("--select", "prompt_index=0,mode=prefill", "--until-ci", "50")
    assert kit(work, *run, *args, "--out", "adaptive").returncode == 0
    again = kit(work, *run, *args, "--skip-done", "adaptive", "--out", "adaptive-again")
    assert again.returncode != 0 and "every one of the 1 selected cells" in again.stderr
