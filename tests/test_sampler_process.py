"""The sampler PROCESS with the fake NVML: CSV contract, rate, crashes, lost GPUs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.gpu import nvml
from kit.gpu.process import start_sampler
from kit.gpu.sampler import read_status
from kit.gpu.telemetry import COLUMNS, TelemetryTail, read_series


@pytest.fixture(autouse=True)
def _fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nvml.FAKE_ENV, "h100")
    monkeypatch.delenv("KIT_NVML_FAKE_T", raising=False)


def _csv_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_writes_csv_at_the_requested_rate(tmp_path: Path) -> None:
    with start_sampler(tmp_path, hz=20) as sampler:
        assert sampler.available and sampler.alive()
        time.sleep(1.0)
    result = sampler.result
    assert result is not None and result.status == "stopped" and result.returncode == 0
    header, *rows = _csv_rows(tmp_path / "telemetry" / "gpu0.csv")
    assert tuple(header) == COLUMNS
    assert 10 <= len(rows) <= 40  # about 20 in one second; a broad band, not a timing test
    assert result.rows == {"0": len(rows)}
    series = read_series(tmp_path / "telemetry" / "gpu0.csv")
    assert series.power_kind == "instant"
    assert (series.columns["t_ns"][1:] > series.columns["t_ns"][:-1]).all()
    assert all(row[COLUMNS.index("gpu")] == "0" for row in rows)


def test_two_gpus_get_two_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(nvml.FAKE_ENV, "two-gpus")
    with start_sampler(tmp_path, hz=50, gpus=[1]):
        time.sleep(0.3)
    assert sorted(p.name for p in (tmp_path / "telemetry").glob("gpu*.csv")) == ["gpu1.csv"]
    with start_sampler(tmp_path / "both", hz=50):
        time.sleep(0.3)
    assert len(list((tmp_path / "both" / "telemetry").glob("gpu*.csv"))) == 2


@pytest.mark.parametrize("hz", [0, -5, 100.5, 1000])
def test_rejects_rates_outside_the_limit(tmp_path: Path, hz: float) -> None:
    with pytest.raises(KitError) as info:
        start_sampler(tmp_path, hz=hz)
    assert "100" in info.value.title and info.value.hint


def test_no_gpu_is_recorded_not_raised(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(nvml.FAKE_ENV, "no-driver")
    sampler = start_sampler(tmp_path, hz=20)
    assert not sampler.available and "driver" in (sampler.reason or "")
    result = sampler.stop()
    assert result.status == "unavailable"
    assert not list((tmp_path / "telemetry").glob("gpu*.csv"))


def test_gpu_lost_mid_run_ends_sampling_cleanly(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(nvml.FAKE_ENV, "lost-mid-run")
    monkeypatch.setenv("KIT_NVML_FAKE_LOST_AFTER_S", "0.4")
    sampler = start_sampler(tmp_path, hz=20)
    deadline = time.monotonic() + 10
    while sampler.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = sampler.stop()
    assert result.status == "lost" and "GPU 0" in result.lost["0"]
    rows = _csv_rows(tmp_path / "telemetry" / "gpu0.csv")[1:]
    assert 2 <= len(rows) <= 20


def test_a_crashed_sampler_is_recorded(tmp_path: Path) -> None:
    sampler = start_sampler(tmp_path, hz=20)
    time.sleep(0.4)
    os.kill(sampler.proc.pid, signal.SIGKILL)
    sampler.proc.wait()
    result = sampler.stop()
    assert result.status == "crashed" and "-9" in (result.detail or "")
    assert read_status(tmp_path / "telemetry")["status"] == "crashed"
    # rows flushed before the crash survive and parse
    assert len(read_series(tmp_path / "telemetry" / "gpu0.csv")) >= 1


def test_no_instant_power_falls_back_to_average(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(nvml.FAKE_ENV, "no-instant-power")
    with start_sampler(tmp_path, hz=20):
        time.sleep(0.3)
    assert read_series(tmp_path / "telemetry" / "gpu0.csv").power_kind == "average"
    assert read_status(tmp_path / "telemetry")["power_kind"] == {"0": "average"}


def test_tail_reads_new_rows_and_waits_for_torn_lines(tmp_path: Path) -> None:
    folder = tmp_path / "telemetry"
    folder.mkdir()
    path = folder / "gpu0.csv"
    row = "1000,0,1755,1755,2619,150.5,instant,42,38,0,0,0,50,16,1000,0\n"
    path.write_text(",".join(COLUMNS) + "\n" + row)
    tail = TelemetryTail(tmp_path)
    assert tail.poll()[0]["power_w"] == 150.5
    with open(path, "a") as handle:
        handle.write(row.replace("1000,0,", "2000,0,", 1)[:20])  # a half-written line
    assert tail.poll()[0]["t_ns"] == 1000
    with open(path, "a") as handle:
        handle.write(row.replace("1000,0,", "2000,0,", 1)[20:])
    assert tail.poll()[0]["t_ns"] == 2000
    assert len(tail.history[0]) == 2
