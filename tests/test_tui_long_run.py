"""The terminal UI shows a selection's estimate and asks for `g` twice above 24 h (as `kit
run` asks for --yes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import Input, Static
from tui_support import CELL_SELECT, frozen_app, screen_text, wait_for

pytestmark = [pytest.mark.tui, pytest.mark.usefixtures("fake_h100")]


def test_a_selection_over_24_hours_needs_g_twice(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.matrices is not None)
            await pilot.press("2")
            await pilot.pause(0.1)
            screen = app.screen
            box = screen.query_one("#filter", Input)
            box.value = CELL_SELECT
            box.focus()
            await pilot.press("enter")
            await pilot.pause(0.1)
            screen.query_one("#reps", Input).value = "100000000"
            screen.refresh_state()  # type: ignore[attr-defined]
            await pilot.pause(0.1)
            estimate = str(screen.query_one("#estimate", Static).render())
            assert estimate == "estimate: 1388h53m (over 24h00m: g twice to start)"
            assert "estimate: 1388h53m" in screen_text(app)
            screen.action_go()  # type: ignore[attr-defined]
            await pilot.pause(0.1)
            shown = [n.message for n in app._notifications]
            assert any("press g again to start it anyway" in m for m in shown), shown
            assert app.progress is None  # nothing started
            assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())

    asyncio.run(scenario())
