"""llama-cpp backend, for real on CPU: the kit's GGUF of a synthesized gpt2-25m through
llama-cpp-python, via the public `kit run`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_runs import kit_run

from kit.runner.journal import read_jsonl

pytest.importorskip("llama_cpp", reason="run ./scripts/setup-llamacpp (the cached wheel)")
pytest.importorskip("gguf", reason="the kit's GGUF export needs the gguf package")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

MATRIX = """
schema: 1
id: llamacpu
title: llama-cpp on CPU, phase-separated
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42, sampling: {do_sample: false}}
groups:
  - id: llama
    backends: [{backend: llama-cpp, label: llama.cpp}]
    models: [{model: gpt2-25m, dtype: fp32}]
    scenarios: [single_short]
    modes: [prefill, kv_decode, e2e_kv]
"""


def test_prefill_kv_decode_e2e_ok_with_exact_lengths(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KIT_LLAMACPP_THREADS": "2"}
    out = kit_run(tmp_path, MATRIX, env, "llama")
    events = list(read_jsonl(out / "journal.jsonl"))
    ends = {e["cell"]: e for e in events if e["event"] == "cell_finished"}
    assert len(ends) == 3 and {e["status"] for e in ends.values()} == {"ok"}, ends
    samples = [e for e in events if e["event"] == "sample"]
    assert {s["phase"] for s in samples} == {"prefill", "kv_decode", "e2e_kv"}
    for s in samples:
        assert s["status"] == "ok" and s["latency_ms"] > 0
        assert s["tokens_out"] == (1 if s["phase"] == "prefill" else 4)
    phases = {e["phase"]: e for e in events if e["event"] == "phase"}
    assert {"load", "export", "context"} <= set(phases)
    assert phases["context"]["detail"]["flash_attn"] is False
    assert phases["export"]["detail"]["path"].endswith("model.gguf")
    n_prompt = samples[0]["tokens_in"]
    for end in ends.values():
        ev = end["evidence"]
        assert ev["parity"]["ok"] is True and ev["parity"]["max_abs_diff"] <= 1e-3
        assert ev["reset_before_each_repetition"] is True
        perf = ev["perf_counters"]["per_rep"]
        assert [p["rep"] for p in perf] == [0, 1, 2, 3]  # one record per repetition
        mode = ev["phase_definition"]
        if mode.startswith("wall clock of eval(prompt)"):  # prefill
            # reset() before each repetition: llama.cpp evaluates the whole prompt every time
            assert all(p["n_p_eval"] == n_prompt and p["t_p_eval_ms"] > 0 for p in perf)
        elif mode.startswith("wall clock of max_new_tokens"):  # kv_decode: 4 single evals
            assert all(p["n_eval"] == 4 for p in perf)
        else:  # e2e_kv: the prompt, then 3 single-token evals
            assert all(p["n_p_eval"] == n_prompt and p["n_eval"] == 3 for p in perf)
