"""The Matrices screen's GPU picker (issue 18): on the fake two-GPU host the user picks both
GPUs and per-gpu isolation, and the run is started with them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input
from tui_support import CELL_SELECT, frozen_app, screen_text, wait_for

from kit.gpu import nvml
from kit.tui.models.placement import gpu_choices, next_choice, placement_lines

pytestmark = [pytest.mark.tui]


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    nvml.shutdown()
    monkeypatch.setenv("KIT_NVML_FAKE", "two-gpus")
    yield
    nvml.shutdown()


def test_the_ui_offers_gpu_sets_only_on_a_host_of_several() -> None:
    assert gpu_choices([0]) == [None] and placement_lines(None, "exclusive", 1) == []
    assert gpu_choices([1, 0]) == [None, (0, 1), (0,), (1,)]
    assert next_choice(None, [0, 1]) == (0, 1) and next_choice((1,), [0, 1]) is None
    assert placement_lines(None, "per-gpu", 2) == ["gpus: default (GPU 0) (u)"]
    assert placement_lines((0, 1), "per-gpu", 2) == ["gpus: 0,1 (u)", "isolation: per-gpu (p)"]
    assert placement_lines((1,), "per-gpu", 2)[1] == "isolation: exclusive (p)"


def test_pick_both_gpus_and_per_gpu_isolation(tmp_path: Path, two_gpus: None) -> None:
    asyncio.run(_pick_both_gpus(tmp_path))


async def _pick_both_gpus(tmp_path: Path) -> None:
    app = frozen_app(tmp_path / "results")
    started: list[Any] = []
    app.start_run = started.append  # type: ignore[method-assign]  # capture, do not run
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.detection is not None and app.matrices is not None)
        assert [g.index for g in app.detection.gpus] == [0, 1]  # type: ignore[union-attr]
        await pilot.press("2")
        app.screen.query_one("#filter", Input).value = CELL_SELECT
        await pilot.press("slash", "enter")
        await pilot.pause(0.1)
        assert "selected: 1 cells (tr126 1)" in screen_text(app)  # a cuda cell: GPUs here
        assert "gpus: default (GPU 0) (u)" in screen_text(app)
        await pilot.press("p")  # isolation needs several GPUs first: a warning, no change
        await pilot.press("u")  # 0,1
        await pilot.pause(0.1)
        assert "gpus: 0,1 (u)" in screen_text(app)
        assert "isolation: exclusive (p)" in screen_text(app)
        await pilot.press("p")
        await pilot.pause(0.1)
        assert "isolation: per-gpu (p)" in screen_text(app)
        await pilot.press("g")
        await pilot.pause(0.1)
    assert len(started) == 1
    request = started[0]
    assert request.gpus == (0, 1) and request.isolation == "per-gpu"
    assert request.device is None and request.runner == "host"
