"""The UI runs real CPU cells on the synthesized tiny model through the host runner, and the
results appear in the Results table; runs are listed, resumable and bundled from Runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input
from tui_support import CELL_SELECT, frozen_app, screen_text, wait_for

from kit.gpu import nvml
from kit.tui.models.results import COLUMNS

pytestmark = [pytest.mark.tui, pytest.mark.slow]


async def _type(pilot: object, text: str) -> None:
    for ch in text:
        await pilot.press(ch if ch != " " else "space")  # type: ignore[attr-defined]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A machine without GPU (NVML is opened once per process: reset it around the test)."""
    nvml.shutdown()
    monkeypatch.setenv("KIT_NVML_FAKE", "none")
    yield
    nvml.shutdown()


def test_select_run_and_see_results(tmp_path: Path, no_gpu: None) -> None:
    asyncio.run(_select_run_and_see_results(tmp_path))


async def _select_run_and_see_results(tmp_path: Path) -> None:
    app = frozen_app(tmp_path / "results")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.detection is not None and app.matrices is not None)
        await pilot.press("2")
        await pilot.press("slash")
        await _type(pilot, CELL_SELECT[:13])  # typed keys reach the filter box...
        app.screen.query_one("#filter", Input).value = CELL_SELECT  # ...the rest at once
        await pilot.press("enter")
        screen = app.screen
        assert "selected: 1 cells" not in screen_text(app)  # tr126 is cuda-only: not runnable
        await pilot.press("d")  # device: cpu
        assert "selected: 1 cells (tr126 1)" in screen_text(app)
        screen.query_one("#reps", Input).value = "2"
        screen.query_one("#warmup", Input).value = "1"
        await pilot.press("g")
        await wait_for(pilot, lambda: app.progress is not None, timeout=30)
        await wait_for(pilot, lambda: app.results is not None, timeout=120)
        assert app.errors == []
        await wait_for(pilot, lambda: app.current_mode == "run")
        assert app.progress is not None and app.progress.done == 1
        # the Run screen repaints on a 10 Hz timer
        await wait_for(pilot, lambda: "1/1 cells  finished" in screen_text(app), timeout=5)
        assert "ok, median" in screen_text(app)  # the log tail names the finished cell
        await pilot.press("4")
        await pilot.pause(0.2)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        row = {key: str(v) for (key, _), v in zip(COLUMNS, table.get_row_at(0), strict=True)}
        assert row["model"] == "gpt2-25m" and row["mode"] == "prefill"
        assert row["backend"] == "eager" and row["status"] == "ok"
        assert row["n"] == "2"  # the timed repetitions asked for; the warmup is not counted
        assert float(row["median_ms"]) > 0
        # the run directory holds what was asked
        run_dir = tmp_path / "results" / "tr126-test"
        assert (run_dir / "run.json").exists() and (run_dir / "summary.json").exists()
        # detail view of the cell
        await pilot.press("enter")
        await pilot.pause(0.2)
        detail = screen_text(app)
        assert "latency of each timed repetition" in detail and "ms |" in detail
        await pilot.press("escape")
        await pilot.press("5")
        await wait_for(pilot, lambda: bool(app.runs))
        await pilot.pause(0.2)
        runs_text = screen_text(app)
        assert "tr126-test" in runs_text and "finished" in runs_text
