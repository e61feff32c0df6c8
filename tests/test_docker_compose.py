"""`docker-compose run kit run ... --runner docker` for real: the kit container starts the
backend container as a sibling, and results come back through HOST paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.test_docker_runner import RUN_LABEL, docker_images, no_labelled_containers

REPO = Path(__file__).resolve().parent.parent
__all__ = ["docker_images"]  # the session fixture, shared with test_docker_runner

MATRIX = """
schema: 1
id: tiny
title: tiny CPU matrix for the compose test
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, generate]
"""


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose v1 missing")
def test_compose_run_kit_runs_a_sweep_in_sibling_containers(
    docker_images: dict[str, str], tmp_path: Path
) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    results.mkdir()
    cache.mkdir()
    (results / "tiny.yaml").write_text(textwrap.dedent(MATRIX))
    env = {**os.environ, "KIT_HOST_RESULTS": str(results), "KIT_HOST_CACHE": str(cache)}
    proc = subprocess.run(
        ["docker-compose", "-f", "compose.cpu.yaml", "run", "--rm", "-T", "kit",
         "run", "--matrix", "/results/tiny.yaml", "--runner", "docker",
         "--weights", "random", "--idle-baseline", "0", "--out", "/results/run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cells = [json.loads(line) for line in (results / "run" / "cells.jsonl").read_text().split()]
    assert cells and {c["status"] for c in cells} == {"ok"}
    journal = [json.loads(line) for line in (results / "run" / "journal.jsonl").open()]
    (spawned,) = [e for e in journal if e["event"] == "group_spawned"]
    assert spawned["runner"]["runner"] == "docker"
    assert [str(results), "/results"][::-1] in spawned["runner"]["path_map"]
    assert spawned["runner"]["image"] == "llm-repro-kit/torch:cpu"
    assert any(e["event"] == "sample" for e in journal)
    # issue 11: pinned without --allow-unpinned (the project's own base, by layers), and the
    # kit image carries the GPT-2 tokenizer (no "token ids are approximate" warning)
    header = json.loads((results / "run" / "run.json").read_text())
    assert header["image_pinning"] == "pinned"
    assert not [e for e in journal if "approximate" in str(e.get("message", ""))]
    assert no_labelled_containers() == [], RUN_LABEL
