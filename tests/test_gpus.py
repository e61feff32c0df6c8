"""Several GPUs of one host (issue 18), the parts without a run: parsing and checking --gpus
against the fake two-GPU NVML, placement, the co-scheduling record, the telemetry join by
GPU, the journal analysis, and bad input through the CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.cli import main
from kit.errors import KitError
from kit.gpu import nvml
from kit.gpu.join import join_run
from kit.gpu.snapshot import detect
from kit.gpu.telemetry import format_row, header_line
from kit.runner.placement import CoSchedule, check_gpus, parse_gpus, placement
from kit.stats.coschedule import coschedule_line, coschedule_rows, group_runs


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fake NVML's two-GPU host (NVML is opened once per process: reset it around)."""
    nvml.shutdown()
    monkeypatch.setenv(nvml.FAKE_ENV, "two-gpus")
    yield
    nvml.shutdown()


def test_gpu_lists_parse_or_say_how_to_write_them() -> None:
    assert parse_gpus("0,1") == (0, 1) and parse_gpus(" 3 ") == (3,)
    for bad, words in (("", "not a list"), ("0,a", "not a list"), ("-1", "not a list"),
                       ("1,1", "twice")):  # fmt: skip
        with pytest.raises(KitError) as info:
            parse_gpus(bad)
        assert words in info.value.title and "--gpus 0,1" in info.value.hint


def test_gpus_are_checked_against_what_nvml_sees(two_gpus: None) -> None:
    found = detect()
    assert [g.index for g in found.gpus] == [0, 1]
    assert check_gpus((0, 1), "per-gpu", found, "listed") == ("per-gpu", [])
    with pytest.raises(KitError) as info:
        check_gpus((0, 7), "per-gpu", found, "listed")
    assert "GPU 7, which is not on this host" in info.value.title
    assert "NVML sees 2 GPUs (0: NVIDIA" in info.value.title and "--gpus 0,1" in info.value.hint
    # per-gpu on one GPU is exclusive, and says so
    isolation, notes = check_gpus((1,), "per-gpu", found, "listed")
    assert isolation == "exclusive" and "on one GPU is exclusive" in notes[0]
    with pytest.raises(KitError, match="interleaved"):
        check_gpus((0, 1), "exclusive", found, "interleaved")
    with pytest.raises(KitError, match="not an isolation"):
        check_gpus((0, 1), "shared", found, "listed")


def test_no_gpu_at_all_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml.shutdown()
    monkeypatch.setenv(nvml.FAKE_ENV, "none")
    try:
        with pytest.raises(KitError) as info:
            check_gpus((0,), "exclusive", detect(), "listed")
    finally:
        nvml.shutdown()
    assert "NVML sees none" in info.value.title and "drop --gpus" in info.value.hint


class _G:
    def __init__(self, gid: str) -> None:
        self.gid = gid

    def group_id(self) -> str:
        return self.gid


def test_placement_is_round_robin_in_run_order() -> None:
    groups = [[_G(name)] for name in ("a", "b", "c", "d", "e")]
    assert placement(groups, (0, 1)) == {"a": 0, "b": 1, "c": 0, "d": 1, "e": 0}  # type: ignore[arg-type]
    assert placement(groups[:2], (3,)) == {"a": 3, "b": 3}  # type: ignore[arg-type]


def test_coschedule_records_every_process_alive_during_a_cell() -> None:
    co = CoSchedule()
    assert co.started("a", 1, 0) == []
    co.cell_started("a1", "a", 1)  # alone so far
    assert co.started("b", 1, 1) == [{"group_id": "a", "attempt": 1, "gpu": 0}]
    co.cell_started("b1", "b", 1)  # a is running: a neighbour from the start
    assert co.exited("b", 1) == [{"group_id": "a", "attempt": 1, "gpu": 0}]
    assert co.cell_finished("b1") == [{"group_id": "a", "attempt": 1, "gpu": 0}]
    # b started and ended while a1 ran: still a1's neighbour
    assert co.cell_finished("a1") == [{"group_id": "b", "attempt": 1, "gpu": 1}]
    co.cell_started("a2", "a", 1)
    assert co.cell_finished("a2") == []  # b is gone: measured alone


def _events(*spans: tuple[str, int, int, int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for gid, gpu, t0, t1 in spans:
        out.append({"event": "group_spawned", "group_id": gid, "attempt": 1, "gpu": gpu,
                    "device": "cuda", "t_ns": t0 * 10**9})  # fmt: skip
        out.append({"event": "child_exited", "group_id": gid, "attempt": 1, "t_ns": t1 * 10**9})
    return sorted(out, key=lambda e: e["t_ns"])


def test_the_journal_says_who_overlapped_on_which_gpu() -> None:
    runs = group_runs(_events(("a", 0, 0, 10), ("b", 1, 4, 12), ("c", 0, 10, 15)))
    beside = {r.group_id: [(g, gpu, round(s, 1)) for g, _, gpu, s in r.beside] for r in runs}
    assert beside == {"a": [("b", 1, 6.0)], "b": [("a", 0, 6.0), ("c", 0, 2.0)], "c": [("b", 1, 2.0)]}  # fmt: skip
    rows = coschedule_rows(runs)
    assert [r["group"] for r in rows] == ["a", "b", "c"] and rows[1]["start_s"] == 4.0
    assert "a (attempt 1) on GPU 0: 6.0 s" in rows[1]["beside"]
    line = coschedule_line({"gpus": [0, 1], "isolation": "per-gpu"}, runs)
    assert line.startswith("isolation per-gpu on GPUs 0, 1") and "3 of 3 group" in line
    alone = group_runs(_events(("a", 0, 0, 10), ("b", 1, 10, 12)))
    assert coschedule_rows(alone) == []
    line = coschedule_line({"gpus": [0, 1], "isolation": "exclusive"}, alone)
    assert line.startswith("exclusive: one group at a time on GPUs 0, 1 (groups placed")
    assert coschedule_line({}, alone).startswith("exclusive: one group at a time;")


def _telemetry(path: Path, gpu: int, watts: float) -> None:
    with open(path, "w") as handle:
        handle.write(header_line())
        for i in range(60):
            row = {"t_ns": 10**9 + i * 5 * 10**7, "gpu": gpu, "power_w": watts,
                   "power_kind": "instant", "energy_mj": int(watts * i * 50)}  # fmt: skip
            handle.write(format_row(row))


def test_phases_join_the_telemetry_of_their_own_gpu(tmp_path: Path) -> None:
    (tmp_path / "telemetry").mkdir()
    _telemetry(tmp_path / "telemetry" / "gpu0.csv", 0, 100.0)
    _telemetry(tmp_path / "telemetry" / "gpu1.csv", 1, 300.0)
    events = [
        {"event": "sample", "cell": f"c{gpu}", "phase": "prefill", "rep": 0, "warmup": False,
         "status": "ok", "tokens_in": 4, "tokens_out": 1, "t0_ns": 12 * 10**8,
         "t1_ns": 22 * 10**8, "gpu": gpu}
        for gpu in (0, 1)
    ]  # fmt: skip
    events.append({"event": "sample", "cell": "old", "phase": "prefill", "rep": 0,
                   "warmup": False, "status": "ok", "t0_ns": 12 * 10**8, "t1_ns": 22 * 10**8})  # fmt: skip
    (tmp_path / "journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    records = [r for r in join_run(tmp_path) if r["scope"] == "cell_phase"]
    where = sorted((r["cell"], r["gpu"], round(r["mean_power_w"])) for r in records)
    # a span without `gpu` (a run without --gpus) is joined to every GPU, as before
    assert where == [("c0", 0, 100), ("c1", 1, 300), ("old", 0, 100), ("old", 1, 300)]


TINY = """
schema: 1
id: tiny
defaults: {device: cpu, repetitions: 2, warmup: 0, max_new_tokens: 2, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
"""


def test_bad_gpu_input_gets_one_line_and_nonzero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], two_gpus: None
) -> None:
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(textwrap.dedent(TINY))
    base = ["run", "--matrix", str(matrix), "--weights", "random"]
    cases = [
        (["--gpus", "0,7"], "GPU 7, which is not on this host"),
        (["--gpus", "zero"], "is not a list of GPU indices"),
        (["--gpus", "0,1", "--gpu", "1"], "--gpu and --gpus both name GPUs"),
        (["--isolation", "per-gpu"], "--isolation per-gpu needs --gpus"),
        (["--gpus", "0,1", "--order", "interleaved"], "interleaved"),
    ]
    for i, (extra, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        assert main([*base, "--out", str(out), *extra]) == 1, extra
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and "Traceback" not in err, err
        assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
        assert not out.exists()  # refused before the run directory exists


def test_per_gpu_refuses_groups_that_share_one_server() -> None:
    from kit.matrix import load_matrix
    from kit.runner.placement import check_servers

    cells = [c for c in load_matrix("tr117").cells if c.backend == "ollama"][:2]
    assert cells, "tr117 has ollama cells"
    check_servers(cells, "exclusive")
    with pytest.raises(KitError, match="one shared server"):
        check_servers(cells, "per-gpu")
