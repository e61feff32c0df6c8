"""ONNX Runtime backend, for real on CPU: a synthesized gpt2-25m exported with its KV cache.

The first test goes through the public `kit run`; the integrity tests feed the harness an
input file the sweep wrote, changed the way a user or a broken cache would change it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_runs import kit_run

from kit.runner.journal import read_jsonl

pytest.importorskip(
    "onnxruntime", reason="the onnxruntime backend needs onnxruntime (harness extra)"
)
pytest.importorskip("onnx", reason="the onnxruntime tests edit exported graphs with onnx")

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

MATRIX = """
schema: 1
id: ortcpu
title: onnxruntime on CPU, phase-separated
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 4, seed: 42, sampling: {do_sample: false}}
groups:
  - id: ort
    backends: [{backend: onnxruntime, label: onnxruntime}]
    models: [{model: gpt2-25m, dtype: fp32}]
    scenarios: [single_short]
    modes: [prefill, kv_decode, e2e_kv]
"""


def harness(input_path: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "kit.harness", "--input", str(input_path)],
        capture_output=True, text=True, timeout=600, env=env, cwd=input_path.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def finished(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["cell"]: e for e in events if e["event"] == "cell_finished"}


@pytest.fixture(scope="module")
def ort_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("ort")
    env = {
        **os.environ,
        "KIT_CACHE": str(tmp_path_factory.getbasetemp() / "kit-cache"),
        "KIT_ONNX_CACHE": str(tmp / "onnx-cache"),  # this module's own: tests edit exports
        "PYTHONPATH": str(REPO),
    }
    return kit_run(tmp, MATRIX, env, "ort"), env


def test_prefill_kv_decode_e2e_are_ok_with_exact_lengths(
    ort_run: tuple[Path, dict[str, str]],
) -> None:
    out, _env = ort_run
    events = list(read_jsonl(out / "journal.jsonl"))
    ends = finished(events)
    assert len(ends) == 3 and {e["status"] for e in ends.values()} == {"ok"}, ends
    samples = [e for e in events if e["event"] == "sample"]
    assert {s["phase"] for s in samples} == {"prefill", "kv_decode", "e2e_kv"}
    for s in samples:
        assert s["status"] == "ok" and s["latency_ms"] > 0
        assert s["tokens_out"] == (1 if s["phase"] == "prefill" else 4)
    assert sum(not s["warmup"] for s in samples) == 9
    phases = {e["phase"]: e for e in events if e["event"] == "phase"}
    assert {"load", "export", "session"} <= set(phases)
    assert phases["export"]["detail"]["reused"] is False and phases["export"]["ms"] > 0
    assert phases["session"]["detail"]["used"][0] == "CPUExecutionProvider"
    for end in ends.values():
        ev = end["evidence"]
        assert ev["parity"]["ok"] and ev["parity"]["max_abs_diff"] <= 1e-4
        assert ev["providers_used"][0] == "CPUExecutionProvider" and ev["io_binding"] is True
        assert "past/present" in ev["export"]["kv_cache"]
    # The export really carries the KV cache: past inputs and present outputs per layer.
    import onnx

    onnx_file = Path(phases["load"]["detail"]["onnx_file"])
    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    assert {i.name for i in graph.input} >= {"input_ids", "past.0.key", "past.2.value"}
    assert {o.name for o in graph.output} >= {"logits", "present.0.key", "present.2.value"}


def _input_from_run(out: Path, tmp: Path, **changes: Any) -> Path:
    [original] = sorted((out / "groups").glob("*/input-1.json"))
    spec = json.loads(original.read_text())
    for cell in spec["cells"]:
        cell.update(changes)
    spec["compile_cache_dir"] = str(tmp / "cc")
    path = tmp / "input.json"
    path.write_text(json.dumps(spec))
    return path


def test_second_group_reuses_the_cached_export(
    ort_run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    out, env = ort_run
    events = harness(_input_from_run(out, tmp_path), env)
    export = next(e for e in events if e["event"] == "phase" and e["phase"] == "export")
    assert export["detail"]["reused"] is True and export["detail"]["manifest_ok"] is True
    assert {e["status"] for e in finished(events).values()} == {"ok"}


def test_provider_fallback_is_degraded_with_the_reason(
    ort_run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider: no fallback to force")
    out, env = ort_run
    # A cuda cell on this CPU-only onnxruntime: ORT quietly falls back to the CPU provider.
    events = harness(_input_from_run(out, tmp_path, device="cuda"), env)
    ends = finished(events)
    assert len(ends) == 3
    for end in ends.values():
        assert end["status"] == "degraded"
        assert any(
            "fell back" in r and "CUDAExecutionProvider" in r and "CPUExecutionProvider" in r
            for r in end["reasons"]
        ), end["reasons"]
        assert end["evidence"]["providers_used"][0] == "CPUExecutionProvider"


def test_parity_failure_from_a_perturbed_export_is_degraded(
    ort_run: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import hashlib

    import numpy as np
    import onnx
    from onnx import numpy_helper

    out, env = ort_run
    [folder] = [p for p in Path(env["KIT_ONNX_CACHE"]).iterdir() if p.is_dir()]
    model = onnx.load(str(folder / "model.onnx"))
    # Perturb the largest weight (the tied embedding / LM head) by far more than 1e-4.
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(biggest).copy()
    weights[:, :8] += 0.05
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    onnx.save(model, str(folder / "model.onnx"))
    # Keep the manifest consistent: this is a wrong export, not a corrupted cache file.
    manifest = json.loads((folder / "manifest.json").read_text())
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    manifest["files_sha256"]["model.onnx"] = digest
    (folder / "manifest.json").write_text(json.dumps(manifest))

    events = harness(_input_from_run(out, tmp_path), env)
    for end in finished(events).values():
        assert end["status"] == "degraded"
        assert any("parity with PyTorch failed" in r for r in end["reasons"]), end["reasons"]
        parity = end["evidence"]["parity"]
        assert parity["ok"] is False and parity["max_abs_diff"] > 1e-4
        assert not any("manifest" in r for r in end["reasons"])

    # Now the cached bytes change behind the manifest's back: reported, never trusted quietly.
    weights[:, :8] += 0.05
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    onnx.save(model, str(folder / "model.onnx"))
    events = harness(_input_from_run(out, tmp_path), env)
    for end in finished(events).values():
        assert any("differ from its manifest" in r for r in end["reasons"]), end["reasons"]


def test_a_backends_precheck_degrades_the_cell_before_any_timed_call(
    ort_run: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TR118's trap as the tensorrt backend checks it (tensorrt_plan.trap), run here on the real
    # ORT CPU backend: no TensorRT on this machine. The profile holds the prefill and e2e_kv
    # shapes but not kv_decode's last past length: only that cell is degraded, unmeasured.
    import io

    from kit.harness.backends.onnxruntime_backend import OnnxRuntimeBackend
    from kit.harness.backends.tensorrt_plan import parse_profile, trap
    from kit.harness.events import Emitter
    from kit.harness.group import run_group

    out, env = ort_run
    spec = json.loads(_input_from_run(out, tmp_path).read_text())
    length = len(next(iter(spec["prompts"].values()))[0])
    profile = parse_profile(f"batch=1:1:1,seq=1:{length}:{length},past=0:{length}:{length + 2}")

    class Trapped(OnnxRuntimeBackend):
        def precheck(self, cell: dict[str, Any], prompt_ids: list[list[int]]) -> list[str]:
            found = trap(cell, prompt_ids, profile)
            return [found] if found else []

    monkeypatch.setenv("KIT_CACHE", env["KIT_CACHE"])
    # a fresh export: the integrity tests of this module perturb the shared cached one
    monkeypatch.setenv("KIT_ONNX_CACHE", str(tmp_path / "onnx-cache"))
    stream = io.StringIO()
    assert run_group(Trapped, None, spec, Emitter(stream)) == 0
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    ends = {spec_cell["mode"]: finished(events)[spec_cell["id"]] for spec_cell in spec["cells"]}
    assert ends["prefill"]["status"] == ends["e2e_kv"]["status"] == "ok", ends
    trapped = ends["kv_decode"]
    assert trapped["status"] == "degraded" and trapped["evidence"] == {"measured": False}
    assert f"past {length + 3} not in 0..{length + 2}" in trapped["reasons"][0]
    sampled = {e["cell"] for e in events if e["event"] == "sample"}
    assert trapped["cell"] not in sampled and len(sampled) == 2
