"""Helpers for the TUI tests: a deterministic app, waiting on conditions, the screen as text."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from kit.tui.app import KitApp
from kit.tui.config import TuiConfig

CELL_SELECT = (
    "matrix=tr126,group=phase2-baseline,model=gpt2-25m,scenario=single_micro,prompt_index=0,"
    "backend=transformers-eager,mode=prefill"
)


def frozen_app(results_dir: Path, poll_hz: float = 0.0) -> KitApp:
    """An app whose clocks, stamps and GPU readings do not move (for snapshots and tests)."""
    config = TuiConfig(
        results_dir=results_dir,
        poll_hz=poll_hz,
        clock=lambda: 1000.0,
        stamp=lambda: "test",
    )
    return KitApp(config)


async def wait_for(pilot: object, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Pause the pilot until `condition()` holds; fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def screen_text(app: KitApp) -> str:
    """The current screen as plain text, the way a person would read it."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return console.export_text()
