"""Runs: past run directories under the results folder; open, resume, make a bundle."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from kit.tui.models.runs import RunInfo
from kit.tui.screens.base import KitScreen


class RunsScreen(KitScreen):
    TITLE = "Runs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open", "Open results"),
        Binding("r", "resume", "Resume"),
        Binding("b", "bundle", "Make bundle"),
        Binding("f", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunInfo] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-title")
        table: DataTable[str | Text] = DataTable(
            id="runs-table", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Static("", id="bundle-info")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in ("run", "matrix", "status", "cells", "statuses", "bundle"):
            table.add_column(label, key=label)

    def sync(self) -> None:
        app = self.kit
        self.query_one("#runs-title", Static).update(
            f"results folder: {app.config.results_dir}   (o open, r resume, b bundle)"
        )
        if app.runs is not None and app.runs != self.runs:
            self.runs = list(app.runs)
            table = self.query_one(DataTable)
            table.clear()
            for run in self.runs:
                style = {"finished": "green", "interrupted": "yellow"}.get(run.status, "red")
                table.add_row(
                    run.path.name,
                    run.matrix,
                    Text(run.status, style=style),
                    f"{run.finished}/{run.cells}",
                    run.counts_text(),
                    run.bundle.name if run.bundle else "-",
                    key=str(run.path),
                )
            if not self.runs:
                self.query_one("#bundle-info", Static).update("no runs yet")
        made = app.last_bundle
        if made is not None:
            note = " (INCOMPLETE run)" if made.incomplete else ""
            self.query_one("#bundle-info", Static).update(
                f"bundle{note}: {made.path}\nsha256 {made.sha256}\ncontent hash {made.content_hash}"
            )

    def _selected(self) -> RunInfo | None:
        table = self.query_one(DataTable)
        if not self.runs or table.row_count == 0:
            return None
        return self.runs[table.cursor_row] if table.cursor_row < len(self.runs) else None

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        run = self._selected()
        if run is not None:
            self.kit.open_results(run.path)

    def action_resume(self) -> None:
        run = self._selected()
        if run is None:
            return
        if not run.resumable:
            self.notify(f"{run.path.name} is finished; nothing to resume")
            return
        self.kit.resume_run(run.path)

    def action_bundle(self) -> None:
        run = self._selected()
        if run is None:
            return
        self.query_one("#bundle-info", Static).update(f"making a bundle of {run.path.name}...")
        self.kit.make_bundle(run.path)

    def action_refresh(self) -> None:
        self.kit.list_runs()
