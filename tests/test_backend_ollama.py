"""The ollama backend up to the HTTP boundary: the real `ollama` client against a stand-in
server on 127.0.0.1 (tests/ollama_standin.py; no Ollama server can be installed here).

Through the public `kit run`: the kit's own GGUF of gpt2-25m imported via /api/blobs +
/api/create, fresh prompts per request, phases from the server's duration fields; planted
EOS truncation and a planted prompt-cache hit are detected; with no server, cells are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import exact_gpt2_dir
from ollama_standin import StandIn

from kit.errors import ExitCode
from kit.runner.journal import read_jsonl

pytest.importorskip("ollama", reason="the ollama backend needs the ollama client")
pytest.importorskip("gguf", reason="the kit's GGUF export needs the gguf package")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

MATRIX = """
schema: 1
id: ollamacpu
title: ollama backend against the stand-in
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42, sampling: {do_sample: false}}
groups:
  - id: local
    backends: [{backend: ollama, label: ollama}]
    models: [{model: gpt2-25m, dtype: fp32}]
    scenarios: [single_short]
    modes: [prefill, kv_decode, e2e_kv]
"""

TAG_MATRIX = """
schema: 1
id: ollamatag
title: ollama backend, a published tag
defaults: {device: cpu, repetitions: 2, warmup: 0, max_new_tokens: 4, seed: 42}
groups:
  - id: tags
    backends: [{backend: ollama, label: ollama}]
    models: ["qwen2.5:0.5b", "llama3.2:1b"]
    scenarios: [single_short]
    modes: [e2e_kv]
"""


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    # The stand-in counts tokens with the exact GPT-2 tokenizer (env, else the packaged copy).
    folder = exact_gpt2_dir()
    from kit.models.tokenizer import _load

    return _load("gpt2", str(folder))


def _env(host: str) -> dict[str, str]:
    return {**os.environ, "OLLAMA_HOST": host, "PYTHONPATH": str(REPO)}


def _events(out: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(out / "journal.jsonl"))


def _ends(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["cell"]: e for e in events if e["event"] == "cell_finished"}


def run(tmp: Path, matrix: str, host: str, name: str) -> Path:
    """`kit run` as a person would; a degraded cell's exit code is expected here."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / f"{name}.yaml").write_text(textwrap.dedent(matrix))
    out = tmp / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--matrix", str(tmp / f"{name}.yaml"),
         "--weights", "random", "--select", "prompt_index=0", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=_env(host), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode in (0, int(ExitCode.CELLS_FAILED)), proc.stderr[-3000:]
    return out


def test_kit_gguf_through_the_official_client(tokenizer: Any, tmp_path: Path) -> None:
    with StandIn(tokenizer) as server:
        out = run(tmp_path, MATRIX, server.host, "ollama")
        requests = list(server.requests)
        models = dict(server.models)
    events = _events(out)
    ends = _ends(events)
    assert len(ends) == 3 and {e["status"] for e in ends.values()} == {"ok"}, ends
    # The GGUF went up as a blob and became a model with the raw template.
    blob = [r for r in requests if r["path"].startswith("/api/blobs/")]
    assert blob and blob[0]["bytes"] > 10_000_000
    [create] = [r["body"] for r in requests if r["path"] == "/api/create"]
    assert create["template"] == "{{ .Prompt }}" and list(create["files"]) == ["model.gguf"]
    assert create["model"].startswith("llm-repro-kit/gpt2-25m:f32-") and create["model"] in models
    # Every generate: raw, not streamed, greedy, seeded, num_ctx within GPT-2's 1024.
    gens = [r["body"] for r in requests if r["path"] == "/api/generate"]
    assert len(gens) == 3 * 4
    for body in gens:
        assert body["raw"] is True and body["stream"] is False
        assert body["options"]["temperature"] == 0.0 and body["options"]["num_ctx"] <= 1024
    assert {b["options"]["num_predict"] for b in gens} == {1, 5, 4}
    # Fresh prompts: no two requests share a first token, so no cached prefix can match.
    firsts = [tokenizer.encode(b["prompt"], add_special_tokens=False).ids[0] for b in gens]
    assert len(set(firsts)) == len(firsts)
    samples = [e for e in events if e["event"] == "sample"]
    assert {s["status"] for s in samples} == {"ok"}
    for s in samples:
        assert s["tokens_out"] == (1 if s["phase"] == "prefill" else 4)
    by_phase = {s["phase"]: s for s in samples if not s["warmup"]}
    # Phases from the server's fields (the stand-in: 40 us per prompt token + 0.5 ms;
    # eval_duration 3 ms per generated token): prefill = prompt_eval_duration; kv_decode asks
    # 5 tokens: eval_duration / (eval_count - 1) x 4 = 15 ms / 4 x 4.
    n_prompt = by_phase["prefill"]["tokens_in"]
    assert by_phase["prefill"]["latency_ms"] == pytest.approx(0.04 * n_prompt + 0.5)
    assert by_phase["kv_decode"]["latency_ms"] == pytest.approx(15.0)
    for end in ends.values():
        ev = end["evidence"]
        assert ev["server"]["stand_in"] is True and "stand-in" in ev["server"]["note"]
        assert all(r["prompt_eval_count"] == r["expected_prompt_tokens"] for r in ev["replies"])
        # The stand-in omits zero fields (omitempty): read as 0, never a crash.
        assert all(r["prompt_eval_cached_count"] == 0 for r in ev["replies"])
    loads = [r["load_duration"] for e in ends.values() for r in e["evidence"]["replies"]]
    assert loads.count(250_000_000) == 1 and loads.count(0) == len(loads) - 1


def test_planted_eos_truncation_and_cache_hit_are_detected(tokenizer: Any, tmp_path: Path) -> None:
    with StandIn(tokenizer) as server:
        server.eos_after = 2  # every reply stops after 2 tokens (done_reason "stop")
        server.cache_hit_on = 2  # the prefill cell's first timed request: 5 tokens cached
        out = run(tmp_path, MATRIX, server.host, "planted")
    events = _events(out)
    samples = [e for e in events if e["event"] == "sample"]
    ends = _ends(events)
    assert {e["status"] for e in ends.values()} == {"degraded"}
    hit = [s for s in samples if s["status"] == "prompt_cache_hit"]
    assert len(hit) == 1 and hit[0]["phase"] == "prefill" and hit[0]["rep"] == 1
    assert "prompt cache" in hit[0]["flags"][0]
    # kv_decode and e2e_kv asked for 5 and 4 tokens and got 2: eos_truncated, never ok.
    decode = [s for s in samples if s["phase"] != "prefill"]
    assert decode and {s["status"] for s in decode} == {"eos_truncated"}
    assert all("cannot ignore EOS" in s["flags"][0] for s in decode)
    reasons = [r for e in ends.values() for r in e["reasons"]]
    assert any("eos_truncated" in r for r in reasons)
    assert any("prompt_cache_hit" in r for r in reasons)


def test_published_tags_and_no_server(tokenizer: Any, tmp_path: Path) -> None:
    with StandIn(tokenizer, tags=("qwen2.5:0.5b",)) as server:
        out = run(tmp_path / "a", TAG_MATRIX, server.host, "tags")
    ends = _ends(_events(out))
    statuses = sorted(e["status"] for e in ends.values())
    assert statuses == ["ok", "skipped"], ends
    [skipped] = [e for e in ends.values() if e["status"] == "skipped"]
    assert "llama3.2:1b" in skipped["reasons"][0] and "could not be pulled" in skipped["reasons"][0]
    # No server at all: every cell skipped, saying so (port 9 on 127.0.0.1: nothing listens).
    out = run(tmp_path / "b", TAG_MATRIX, "http://127.0.0.1:9", "none")
    ends = _ends(_events(out))
    assert {e["status"] for e in ends.values()} == {"skipped"}
    assert all("no Ollama server answers" in e["reasons"][0] for e in ends.values())
