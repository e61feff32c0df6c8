"""The Claims view of the Results screen: `c` shows one verdict per claim of the run's matrix."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runfactory import make_run_dir
from tui_support import frozen_app, wait_for

from kit.tui.models.claims import claims_view
from kit.tui.screens.claims import ClaimsScreen


def test_claims_view_model_and_screen(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "results" / "r1", n_cells=4, n_samples=12).path
    view = claims_view(run)
    assert view.error == "" and "claims of tr126" in view.title
    rows = {r.id: r for r in view.rows}
    assert rows["tr126-phase1-gate"].verdict == "not run"
    assert len(rows) == 11
    assert claims_view(tmp_path / "nothing").error  # a KitError becomes the view's error line

    async def scenario() -> None:
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.detection is not None)
            app.open_results(run)
            await wait_for(pilot, lambda: app.results is not None)
            await pilot.pause(0.2)
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ClaimsScreen))
            screen = app.screen
            assert isinstance(screen, ClaimsScreen)
            await wait_for(pilot, lambda: screen.view is not None, timeout=120)
            assert screen.view is not None and [r.id for r in screen.view.rows] == list(rows)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ClaimsScreen))
            assert app.errors == []

    asyncio.run(scenario())
