"""The base of the app's screens: they render from the app's shared state on `sync()`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from kit.tui.app import KitApp


class KitScreen(Screen[None]):
    @property
    def kit(self) -> KitApp:
        from kit.tui.app import KitApp

        app = self.app
        assert isinstance(app, KitApp)
        return app

    def sync(self) -> None:
        """Re-render from the app's state (called when the state changes)."""

    def sync_gpu(self) -> None:
        """New GPU readings arrived (called only for the screen on display)."""

    def on_screen_resume(self) -> None:
        self.sync()
