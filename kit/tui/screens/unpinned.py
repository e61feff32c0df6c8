"""Asked before a docker run whose images are not pinned: run anyway (recorded as
"unpinned" in run.json, like `kit run --allow-unpinned`) or cancel."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def unpinned_lines(images: list[dict[str, Any]]) -> list[str]:
    """One line per unpinned image: its tag and why it is not pinned."""
    return [
        f"{i['image']}: {i.get('unpinned_reason') or 'unpinned'}" for i in images if not i["pinned"]
    ]


class UnpinnedScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    UnpinnedScreen { align: center middle; }
    #unpinned-box { width: 90%; height: auto; border: thick $warning; padding: 1 2;
                    background: $surface; }
    #unpinned-buttons { height: auto; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Run unpinned"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, images: list[dict[str, Any]]) -> None:
        super().__init__()
        self.lines = unpinned_lines(images)

    def compose(self) -> ComposeResult:
        with Vertical(id="unpinned-box"):
            yield Static("Images not pinned", id="unpinned-title")
            yield Static("\n".join(self.lines), id="unpinned-list")
            yield Static(
                "Run anyway? run.json and the report will say the images were unpinned "
                "(as kit run --allow-unpinned does).",
                id="unpinned-question",
            )
            with Horizontal(id="unpinned-buttons"):
                yield Button("Run unpinned (y)", id="unpinned-yes", variant="warning")
                yield Button("Cancel (n)", id="unpinned-no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "unpinned-yes")

    def action_answer(self, accept: bool) -> None:
        self.dismiss(accept)
