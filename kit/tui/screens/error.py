"""A modal that shows a failure as one readable message and what to do about it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "dismiss_error", "Close"),
    ]

    def __init__(self, what: str, title: str, hint: str) -> None:
        super().__init__()
        self.what, self.title_text, self.hint = what, title, hint

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box"):
            yield Static(self.what, id="error-what")
            yield Static(self.title_text, id="error-title")
            if self.hint:
                yield Static(f"hint: {self.hint}", id="error-hint")
            yield Button("OK", id="error-ok", variant="error")

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_dismiss_error(self) -> None:
        self.dismiss(None)
