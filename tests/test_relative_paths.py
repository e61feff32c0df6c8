"""Relative paths from a working directory that is not the repository (issue 11): `--out`,
`--resume`, bundle, verify and report paths, on the host runner and the Docker runner.

Before the fix every cell crashed: the group process ran with cwd=<group dir> and was handed
a relative `--input` path, so it found no `input-1.json` (the Docker runner could not even
bind-mount a relative source)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import docker_available
from tests.test_docker_runner import docker_images, no_labelled_containers

__all__ = ["docker_images"]  # the session fixture
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
MATRIX = """
schema: 1
id: tiny
title: tiny CPU matrix for relative paths
defaults: {device: cpu, repetitions: 2, warmup: 1, max_new_tokens: 4, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, generate]
"""


def kit(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """`kit ARGS` as a person types it, from `cwd` (never the repository)."""
    assert cwd.resolve() != REPO and REPO not in cwd.resolve().parents
    return subprocess.run(
        [sys.executable, "-m", "kit", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ},
    )  # fmt: skip


def statuses(run_dir: Path) -> dict[str, str]:
    """cell id -> its last status; every cell of run.json must have one."""
    last = {}
    for line in (run_dir / "cells.jsonl").read_text().splitlines():
        row = json.loads(line)
        last[row["cell"]] = row["status"]
    header = json.loads((run_dir / "run.json").read_text())
    assert set(last) == set(header["cell_ids"])
    return last


def _work(tmp_path: Path) -> Path:
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "tiny.yaml").write_text(textwrap.dedent(MATRIX))
    return work


def test_host_runner_relative_out_resume_bundle_report(tmp_path: Path) -> None:
    work = _work(tmp_path)
    run = kit(work, "run", "--matrix", "tiny.yaml", "--weights", "random", "--out", "results/rel")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert set(statuses(work / "results" / "rel").values()) == {"ok"}

    # interrupt it after the fact: forget the last cell, then resume by a relative path
    cells = work / "results" / "rel" / "cells.jsonl"
    lines = cells.read_text().splitlines(keepends=True)
    cells.write_text("".join(lines[:-1]))
    resumed = kit(work, "run", "--resume", "results/rel")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert len(cells.read_text().splitlines()) == len(lines)
    assert set(statuses(work / "results" / "rel").values()) == {"ok"}

    for args in (
        ("bundle", "results/rel"),
        ("verify", "results/rel.tar.gz"),
        ("report", "results/rel.tar.gz", "-o", "regenerated", "--no-plots"),
        ("summarize", "results/rel"),
    ):
        proc = kit(work, *args)
        assert proc.returncode == 0, (args, proc.stdout[-1000:], proc.stderr[-1000:])
    assert (work / "results" / "rel.tar.gz").is_file()
    assert (work / "regenerated" / "REPORT.md").is_file()


@pytest.mark.docker
@pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")
def test_docker_runner_relative_out_and_resume(
    docker_images: dict[str, str], tmp_path: Path
) -> None:
    work = _work(tmp_path)
    run = kit(
        work, "run", "--matrix", "tiny.yaml", "--weights", "random", "--runner", "docker",
        "--out", "results/rel",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    run_dir = work / "results" / "rel"
    assert set(statuses(run_dir).values()) == {"ok"}
    journal = [json.loads(line) for line in (run_dir / "journal.jsonl").open()]
    (spawned,) = [e for e in journal if e["event"] == "group_spawned"]
    assert spawned["runner"]["runner"] == "docker"
    # the images built from the project's own base are pinned (by layers): no --allow-unpinned
    header = json.loads((run_dir / "run.json").read_text())
    assert header["image_pinning"] == "pinned"
    assert [i["pin"] for i in header["images"]] == ["local-base"]

    cells = run_dir / "cells.jsonl"
    lines = cells.read_text().splitlines(keepends=True)
    cells.write_text("".join(lines[:-1]))
    resumed = kit(work, "run", "--resume", "results/rel")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert set(statuses(run_dir).values()) == {"ok"}
    assert no_labelled_containers() == []
