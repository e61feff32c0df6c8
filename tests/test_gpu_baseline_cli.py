"""Idle baseline, thermal gate and the `kit gpu` command, on the fake NVML."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.cli import main
from kit.gpu import nvml
from kit.gpu.baseline import idle_baseline, wait_for_thermal_gate


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def select(scenario: str) -> None:
        nvml.shutdown()
        monkeypatch.setenv(nvml.FAKE_ENV, scenario)

    yield select
    nvml.shutdown()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_idle_baseline_per_gpu(use_fake) -> None:
    use_fake("two-gpus")
    records = idle_baseline(seconds=1.0, hz=10, sleep=lambda s: None)
    assert [r.gpu for r in records] == [0, 1]
    for record in records:
        assert record.samples == 10 and record.power_kind == "instant"
        assert record.mean_power_w is not None and record.max_power_w >= record.mean_power_w
        assert record.max_temp_c is not None
        assert set(record.to_dict()) >= {"mean_power_w", "mean_temp_c", "seconds"}


def test_idle_baseline_without_gpu_is_empty(use_fake) -> None:
    use_fake("no-library")
    assert idle_baseline(seconds=0.1, sleep=lambda s: None) == []


def test_gate_passes_when_cool(use_fake) -> None:
    use_fake("h100")  # about 38 C
    clock = FakeClock()
    gate = wait_for_thermal_gate(60, 30, sleep=clock.sleep, clock=clock)
    assert gate.outcome == "passed" and gate.waited_s == 0
    assert gate.start_temp_c == gate.end_temp_c and gate.gpus == [0]


def test_gate_times_out_on_a_hot_gpu(use_fake) -> None:
    use_fake("throttling")  # 84-90 C
    clock = FakeClock()
    gate = wait_for_thermal_gate(70, 5, poll_s=1.0, sleep=clock.sleep, clock=clock)
    assert gate.outcome == "timeout" and gate.waited_s == pytest.approx(5.0)
    assert gate.end_temp_c is not None and gate.end_temp_c > 70
    assert json.loads(json.dumps(gate.to_dict()))["outcome"] == "timeout"


def test_gate_without_gpu_is_recorded(use_fake) -> None:
    use_fake("no-driver")
    gate = wait_for_thermal_gate(60, 5, sleep=lambda s: None)
    assert gate.outcome == "unavailable" and "driver" in (gate.detail or "")


def test_kit_gpu_json(use_fake, capsys) -> None:
    use_fake("two-gpus")
    assert main(["gpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["gpus"]) == 2 and data["reason"] is None
    assert data["gpus"][0]["fan_speed_pct"] is None


def test_kit_gpu_without_gpu_explains(use_fake, capsys) -> None:
    use_fake("no-driver")
    assert main(["gpu"]) == 0
    assert "no GPU: the NVIDIA kernel driver is not loaded" in capsys.readouterr().out


def test_kit_gpu_table_and_watch(use_fake, capsys) -> None:
    use_fake("throttling")
    assert main(["gpu"]) == 0
    table = capsys.readouterr().out
    assert "hopper" in table and "fan (%)" in table and "n/a" in table
    assert main(["gpu", "--watch", "--count", "3", "--interval", "0.01"]) == 0
    frames = capsys.readouterr().out
    assert frames.count("GPU 0") == 3 and "sw_power_cap" in frames


def test_kit_gpu_trace_then_join_then_watch_the_run(use_fake, tmp_path: Path, capsys) -> None:
    use_fake("h100")
    assert main(["gpu", "--trace", str(tmp_path), "--seconds", "0.5", "--hz", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "stopped"
    rows = (tmp_path / "telemetry" / "gpu0.csv").read_text().splitlines()
    t_mid = int(rows[len(rows) // 2].split(",")[0])
    event = {
        "event": "sample",
        "t_ns": t_mid,
        "cell": "c",
        "phase": "prefill",
        "rep": 0,
        "warmup": False,
        "tokens_in": 64,
        "tokens_out": 1,
        "status": "ok",
        "t0_ns": t_mid - 2_000_000,
        "t1_ns": t_mid,
    }
    (tmp_path / "journal.jsonl").write_text(json.dumps(event) + "\n")
    assert main(["gpu", "--join", str(tmp_path)]) == 0
    phases = (tmp_path / "telemetry" / "phases.jsonl").read_text().splitlines()
    agg = next(json.loads(p) for p in phases if '"cell_phase"' in p)
    assert agg["energy_method"] == "counter" and agg["energy_j"] > 0
    capsys.readouterr()
    assert main(["gpu", "--watch", "--run-dir", str(tmp_path), "--count", "1"]) == 0
    assert "W (instant)" in capsys.readouterr().out
