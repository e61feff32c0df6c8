"""Worker failures become a modal (never a crash); Runs makes a bundle and shows its checksum;
a bad filter is reported, not raised."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfactory import make_run_dir
from textual.widgets import Input
from tui_support import frozen_app, screen_text, wait_for

from kit.gpu import nvml
from kit.runner.plan import RunRequest
from kit.tui.screens.error import ErrorScreen

pytestmark = pytest.mark.tui


@pytest.fixture(autouse=True)
def _fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    nvml.shutdown()  # NVML is opened once per process: each test picks its scenario
    monkeypatch.setenv("KIT_NVML_FAKE", "h100")
    monkeypatch.setenv("KIT_NVML_FAKE_T", "3")
    yield
    nvml.shutdown()


def test_a_failing_run_shows_a_modal_and_the_app_lives_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        existing = make_run_dir(tmp_path / "results" / "taken", n_cells=1).path
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.detection is not None)
            app.start_run(
                RunRequest(matrix="tr126", out=existing, selection="model=gpt2-25m", device="cpu")
            )
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen))
            await wait_for(pilot, lambda: "already holds a run" in screen_text(app))
            assert "run failed" in screen_text(app)
            assert app.errors and app.errors[0].startswith("run:")
            assert app.progress is not None and app.progress.state == "failed"
            await pilot.press("escape")
            await pilot.press("1")
            await pilot.pause(0.1)
            assert "NVIDIA H100" in screen_text(app)

    asyncio.run(scenario())


def test_runs_screen_makes_a_bundle_with_its_checksum(tmp_path: Path) -> None:
    async def scenario() -> None:
        make_run_dir(tmp_path / "results" / "r1", n_cells=2)
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.detection is not None)
            await pilot.press("5")
            await wait_for(pilot, lambda: bool(app.runs))
            await pilot.press("b")
            await wait_for(pilot, lambda: app.last_bundle is not None, timeout=120)
            assert app.errors == []
            made = app.last_bundle
            assert made is not None and made.path.exists()
            assert made.sha256 == hashlib.sha256(made.path.read_bytes()).hexdigest()
            await wait_for(pilot, lambda: made.sha256 in screen_text(app).replace("\n", ""))
            await wait_for(pilot, lambda: made.path.name in screen_text(app))

    asyncio.run(scenario())


def test_a_bad_filter_is_reported_not_raised(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.matrices is not None)
            await pilot.press("2")
            await pilot.pause(0.1)
            box = app.screen.query_one("#filter", Input)
            box.value = "nosuchkey=1"
            box.focus()
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert box.has_class("invalid")
            shown = [n.message for n in app._notifications]  # the toast's text
            assert any("unknown selection key 'nosuchkey'" in m for m in shown)
            assert app.errors == []

    asyncio.run(scenario())
