"""Joining telemetry to harness events: energy by counter, resets, fallback, throttling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kit.gpu.join import join_run, write_phases
from kit.gpu.telemetry import decode_reasons, format_row, header_line

MS = 1_000_000
T0 = 5_000 * MS  # monotonic ns of the first telemetry row
STEP = 50 * MS  # 20 Hz


def _rows(n: int = 41, watts: float = 100.0, **overrides: Any) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append(
            {
                "t_ns": T0 + i * STEP,
                "gpu": 0,
                "sm_clock_mhz": 1980 - (i % 2) * 30,
                "graphics_clock_mhz": 1980,
                "mem_clock_mhz": 2619,
                "power_w": watts,
                "power_kind": "instant",
                "energy_mj": 1_000_000 + int(watts * i * 50),
                "temp_c": 40 + i // 10,
                "clock_event_reasons": 0,
                "power_violation_ns": 0,
                "thermal_violation_ns": 0,
                "util_gpu_pct": 90,
                "util_mem_pct": 30,
                "mem_used_mib": 1000,
                "pstate": 0,
            }
        )
        for key, fn in overrides.items():
            rows[-1][key] = fn(i)
    return rows


def _run(tmp_path: Path, rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> Path:
    (tmp_path / "telemetry").mkdir()
    with open(tmp_path / "telemetry" / "gpu0.csv", "w") as handle:
        handle.write(header_line())
        for row in rows:
            handle.write(format_row(row))
    with open(tmp_path / "journal.jsonl", "w") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
    return tmp_path


def _sample(t0_ms: float, dur_ms: float, rep: int, phase: str = "kv_decode", **kw: Any) -> dict:
    event = {
        "event": "sample",
        "t_ns": 0,
        "cell": "c1",
        "phase": phase,
        "rep": rep,
        "warmup": False,
        "latency_ms": dur_ms,
        "tokens_in": 64,
        "tokens_out": 32,
        "t0_ns": T0 + int(t0_ms * MS),
        "t1_ns": T0 + int((t0_ms + dur_ms) * MS),
        "status": "ok",
    }
    event.update(kw)
    return event


def _one(records: list[dict], scope: str, **match: Any) -> dict:
    found = [
        r for r in records if r["scope"] == scope and all(r.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, found
    return found[0]


def test_energy_from_the_counter_over_a_long_sample(tmp_path: Path) -> None:
    run = _run(tmp_path, _rows(), [_sample(100, 500, 0), _sample(700, 500, 1)])
    records = join_run(run)
    rep0 = _one(records, "sample", rep=0)
    assert rep0["energy_method"] == "counter"
    assert rep0["energy_j"] == pytest.approx(50.0)  # 100 W for 0.5 s
    assert rep0["j_per_token_out"] == pytest.approx(50.0 / 32)
    assert rep0["telemetry_rows"] == 11 and rep0["stats_from"] == "inside"
    agg = _one(records, "cell_phase", cell="c1", phase="kv_decode")
    assert agg["n_spans"] == 2 and agg["tokens_out"] == 64
    assert agg["energy_j"] == pytest.approx(100.0)
    assert agg["mean_power_w"] == pytest.approx(100.0)
    assert agg["min_sm_clock_mhz"] == 1950 and agg["max_temp_c"] == 42


def test_counter_interpolates_inside_a_short_phase(tmp_path: Path) -> None:
    # three 2 ms prefills between rows: no row inside, energy from the interpolated counter
    events = [_sample(10 + 100 * r, 2, r, phase="prefill", tokens_out=1) for r in range(3)]
    records = join_run(_run(tmp_path, _rows(), events))
    agg = _one(records, "cell_phase", phase="prefill")
    assert agg["telemetry_rows"] == 0 and agg["stats_from"] == "bracketing"
    assert agg["n_intervals"] == 3 and agg["duration_ms"] == pytest.approx(6.0)
    assert agg["energy_j"] == pytest.approx(0.6)
    assert agg["j_per_token_out"] == pytest.approx(0.2)
    assert agg["max_power_w"] == 100.0


def test_counter_reset_is_survived(tmp_path: Path) -> None:
    # the counter restarts from 0 at row 20 (driver reload) and keeps counting
    def energy(i: int) -> int:
        return 1_000_000 + 5_000 * i if i < 20 else 5_000 * (i - 20)

    records = join_run(_run(tmp_path, _rows(energy_mj=energy), [_sample(500, 1000, 0)]))
    rep = _one(records, "sample", rep=0)
    assert rep["counter_resets"] == 1 and rep["energy_method"] == "counter"
    assert rep["energy_j"] == pytest.approx(100.0)


def test_falls_back_to_integrating_power(tmp_path: Path) -> None:
    # no energy counter; power ramps 100 -> 300 W over the 2 s trace
    rows = _rows(energy_mj=lambda i: None, power_w=lambda i: 100.0 + 5.0 * i)
    records = join_run(_run(tmp_path, rows, [_sample(0, 1000, 0)]))
    rep = _one(records, "sample", rep=0)
    assert rep["energy_method"] == "power_integration"
    assert rep["energy_j"] == pytest.approx(150.0)  # mean 150 W (100..200) for 1 s


def test_throttle_shares_and_flags(tmp_path: Path) -> None:
    # rows 0..40: sw_power_cap on even rows, hw_thermal_slowdown on every 4th
    def reasons(i: int) -> int:
        return (0x4 if i % 2 == 0 else 0) | (0x40 if i % 4 == 0 else 0)

    records = join_run(_run(tmp_path, _rows(clock_event_reasons=reasons), [_sample(0, 2000, 0)]))
    rep = _one(records, "sample", rep=0)
    share = rep["clock_event_share"]
    assert share["sw_power_cap"] == pytest.approx(21 / 41, abs=1e-3)
    assert share["hw_thermal_slowdown"] == pytest.approx(11 / 41, abs=1e-3)
    assert share["gpu_idle"] == 0
    assert rep["power_limited"] and rep["thermal_limited"]


def test_no_throttle_means_no_flags(tmp_path: Path) -> None:
    rows = _rows(clock_event_reasons=lambda i: 0x1)  # idle only
    rep = _one(join_run(_run(tmp_path, rows, [_sample(0, 500, 0)])), "sample", rep=0)
    assert rep["clock_event_share"]["gpu_idle"] == 1.0
    assert not rep["power_limited"] and not rep["thermal_limited"]


def test_span_outside_the_trace_has_no_energy(tmp_path: Path) -> None:
    rep = _one(join_run(_run(tmp_path, _rows(), [_sample(5000, 10, 0)])), "sample", rep=0)
    assert rep["energy_j"] is None and rep["energy_method"] is None
    assert rep["coverage"] == 0.0


def test_warmups_and_bad_samples_stay_out_of_the_aggregate(tmp_path: Path) -> None:
    events = [
        _sample(0, 100, 0, warmup=True),
        _sample(200, 100, 1),
        _sample(400, 100, 2, status="suspicious_fast"),
        {
            "event": "phase",
            "t_ns": 0,
            "phase": "load",
            "cell": None,
            "t0_ns": T0,
            "t1_ns": T0 + 1000 * MS,
            "ms": 1000.0,
            "detail": {},
        },
    ]
    path = write_phases(_run(tmp_path, _rows(), events))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    agg = _one(records, "cell_phase", phase="kv_decode")
    assert agg["n_spans"] == 1 and agg["energy_j"] == pytest.approx(10.0)
    assert len([r for r in records if r["scope"] == "sample"]) == 3
    load = _one(records, "phase_event", phase="load")
    assert load["energy_j"] == pytest.approx(100.0)


def test_decode_reasons_names_bits() -> None:
    assert decode_reasons(0x4 | 0x40 | 0x100) == [
        "sw_power_cap",
        "hw_thermal_slowdown",
        "display_clock_setting",
    ]
    assert decode_reasons(None) == [] and decode_reasons(0) == []
