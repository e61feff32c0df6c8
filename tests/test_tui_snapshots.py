"""Snapshots of every screen at a fixed size, fed by the NVML fake with its clock frozen.

Update them with `pytest tests/test_tui_snapshots.py --snapshot-update` after a deliberate
change, and look at the SVGs in the report before committing.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runfactory import make_run_dir
from textual.pilot import Pilot
from textual.widgets import Input
from tui_support import CELL_SELECT, frozen_app, wait_for

from kit.gpu import nvml
from kit.matrix.spec import BUILTIN_DIR
from kit.tui.app import KitApp
from kit.tui.models.progress import RunProgress
from kit.tui.screens.error import ErrorScreen

pytestmark = pytest.mark.tui
SMALL = (80, 24)
WIDE = (100, 30)


@pytest.fixture(autouse=True)
def _stable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Frozen fake GPU, no blinking cursor, a results folder with a fixed relative name."""
    nvml.shutdown()  # NVML is opened once per process: let each test pick its scenario
    monkeypatch.setenv("KIT_NVML_FAKE", "h100")
    monkeypatch.setenv("KIT_NVML_FAKE_T", "12.5")
    # whether .venv-vllm exists must not change the picture: point at an interpreter that does
    monkeypatch.setenv("KIT_VLLM_PYTHON", sys.executable)
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.chdir(tmp_path)
    yield
    nvml.shutdown()


def _results_with_a_run() -> Path:
    results = Path("results")
    run = make_run_dir(
        results / "tr126-demo",
        n_cells=4,
        n_samples=12,
        statuses=["ok", "ok", "ok", "crash"],
        base_latency_ms=2.0,
        seed=3,
    )
    shutil.copyfile(BUILTIN_DIR / "tr126.yaml", run.path / "matrix" / "source.yaml")
    make_run_dir(results / "tr126-stopped", n_cells=3, statuses=["ok", "ok", "not_run"],
                 finished=False)  # fmt: skip
    return results


def _ready(app: KitApp) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.detection is not None and app.matrices is not None)
        await wait_for(pilot, lambda: bool(app.gpu_history.rows) or not app.detection.gpus)  # type: ignore[union-attr]
        await pilot.pause(0.2)

    return run_before


def test_gpus_screen(snap_compare: Any) -> None:
    app = frozen_app(Path("results"))
    assert snap_compare(app, terminal_size=SMALL, run_before=_ready(app))


def test_gpus_screen_throttling(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_NVML_FAKE", "throttling")
    app = frozen_app(Path("results"))
    assert snap_compare(app, terminal_size=SMALL, run_before=_ready(app))


def test_gpus_screen_without_gpu(snap_compare: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_NVML_FAKE", "no-driver")
    app = frozen_app(Path("results"))
    assert snap_compare(app, terminal_size=SMALL, run_before=_ready(app))


def test_matrices_screen_with_a_filtered_cpu_selection(snap_compare: Any) -> None:
    app = frozen_app(Path("results"))
    ready = _ready(app)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("2", "d", "d", "slash")  # device: cpu, then cuda; focus the filter
        app.screen.query_one("#filter", Input).value = CELL_SELECT
        await pilot.press("enter")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_run_screen_mid_sweep(snap_compare: Any) -> None:
    app = frozen_app(Path("results"))
    ready = _ready(app)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        matrix = next(m for m in app.matrices or [] if m.id == "tr126")
        cells = [c.replace(device="cpu", repetitions=5) for c in matrix.cells[:4]]
        progress = RunProgress(cells, clock=lambda: 1000.0)
        events: list[dict[str, Any]] = [
            {"event": "group_spawned", "group_id": cells[0].group_id(), "attempt": 1},
            {"event": "cell_started", "cell": cells[0].id},
            *[
                {
                    "event": "sample",
                    "cell": cells[0].id,
                    "phase": cells[0].mode,
                    "rep": r,
                    "warmup": False,
                    "status": "ok",
                    "latency_ms": 10.0 + r,
                }
                for r in range(5)
            ],
            {"event": "cell_finished", "cell": cells[0].id, "status": "ok", "reasons": []},
            {"event": "cell_started", "cell": cells[1].id},
            {
                "event": "cell_finished",
                "cell": cells[1].id,
                "status": "crash",
                "reasons": ["out of memory: the process was OOM-killed"],
            },
            {"event": "cell_started", "cell": cells[2].id},
            {
                "event": "sample",
                "cell": cells[2].id,
                "phase": cells[2].mode,
                "rep": 0,
                "warmup": True,
                "status": "ok",
                "latency_ms": 30.0,
            },
            {
                "event": "sample",
                "cell": cells[2].id,
                "phase": cells[2].mode,
                "rep": 1,
                "warmup": False,
                "status": "ok",
                "latency_ms": 12.5,
            },
        ]
        for event in events:
            progress.apply(event)
        app.progress = progress
        app.progress_version += 1
        await pilot.press("3")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def _open_demo_results(app: KitApp) -> Callable[[Pilot[Any]], Any]:
    ready = _ready(app)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        app.open_results(Path("results") / "tr126-demo")
        await wait_for(pilot, lambda: app.results is not None)
        await pilot.pause(0.3)

    return run_before


def test_results_screen(snap_compare: Any) -> None:
    _results_with_a_run()
    app = frozen_app(Path("results"))
    assert snap_compare(app, terminal_size=WIDE, run_before=_open_demo_results(app))


def test_results_cell_detail(snap_compare: Any) -> None:
    _results_with_a_run()
    app = frozen_app(Path("results"))
    assert snap_compare(
        app, terminal_size=WIDE, run_before=_open_demo_results(app), press=["enter"]
    )


def test_results_depth_view(snap_compare: Any) -> None:
    _results_with_a_run()
    app = frozen_app(Path("results"))
    assert snap_compare(app, terminal_size=WIDE, run_before=_open_demo_results(app), press=["v"])


def test_runs_screen(snap_compare: Any) -> None:
    _results_with_a_run()
    app = frozen_app(Path("results"))
    ready = _ready(app)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("5")
        await wait_for(pilot, lambda: bool(app.runs))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_error_modal(snap_compare: Any) -> None:
    app = frozen_app(Path("results"))
    ready = _ready(app)

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        app.push_screen(
            ErrorScreen("run failed", "out/ already holds a run", "resume it from Runs (5)")
        )
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)
