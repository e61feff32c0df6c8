"""Claims over Results: one verdict per published claim of the run's matrix (kit.claims)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from kit.tui.models.claims import COLUMNS, ClaimsView, claims_view

STYLE = {"reproduced": "bold green", "not reproduced": "bold red", "direction only": "yellow"}


class ClaimsScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.view: ClaimsView | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Static(f"{self.run_dir.name}: evaluating claims...", id="claims-title")
            table: DataTable[str | Text] = DataTable(id="claims-table", zebra_stripes=True)
            table.cursor_type = "row"
            yield table
            yield Static("", id="claims-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self._evaluate()

    @work(thread=True, exclusive=True, exit_on_error=False, group="claims")
    def _evaluate(self) -> None:
        view = claims_view(self.run_dir)
        self.app.call_from_thread(self._show, view)

    def _show(self, view: ClaimsView) -> None:
        self.view = view
        self.query_one("#claims-title", Static).update(view.title)
        if view.error:
            self.query_one("#claims-detail", Static).update(view.error)
        table = self.query_one(DataTable)
        table.clear()
        for row in view.rows:
            style = STYLE.get(row.verdict, "")
            table.add_row(
                *[Text(row.text(k), style=style if k == "verdict" else "") for k, _ in COLUMNS],
                key=row.id,
            )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.view is None or event.row_key.value is None:
            return
        row = next((r for r in self.view.rows if r.id == event.row_key.value), None)
        if row is not None:
            self.query_one("#claims-detail", Static).update(f"{row.statement} ({row.source})")

    def action_close(self) -> None:
        self.dismiss(None)
