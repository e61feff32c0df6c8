"""Results: a sortable table of a run's cells; enter opens a cell's latency distribution,
`v` the GPT-2 depth-vs-latency view, `c` the Claims view (one verdict per published claim)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, Static

from kit.tui.models.results import COLUMNS, ResultRow
from kit.tui.screens.base import KitScreen
from kit.tui.screens.detail import CellDetailScreen, DepthScreen

BAD = ("crash", "skipped", "degraded", "incomplete")


class ResultsScreen(KitScreen):
    TITLE = "Results"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "Sort by column"),
        Binding("enter", "detail", "Detail", show=True, priority=False),
        Binding("v", "depth", "Depth view"),
        Binding("c", "claims", "Claims"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ResultRow] = []
        self.run_dir: Path | None = None
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._shown_version = -1

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("no results yet: run cells, or open a run from Runs (5)", id="results-title")
        table: DataTable[str | Text] = DataTable(id="results-table", zebra_stripes=True)
        table.cursor_type = "cell"
        yield table
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)

    def sync(self) -> None:
        loaded = self.kit.results
        if loaded is None or loaded[2] == self._shown_version:
            return
        self.run_dir, self.rows, self._shown_version = loaded
        ok = sum(1 for r in self.rows if r.status == "ok")
        self.query_one("#results-title", Static).update(
            f"{self.run_dir.name}: {len(self.rows)} rows, {ok} ok   (s sort, enter detail, v depth, c claims)"
        )
        self._fill()

    def _fill(self) -> None:
        rows = list(self.rows)
        if self.sort_column is not None:
            column = self.sort_column
            rows.sort(key=lambda r: r.sort_key(column), reverse=self.sort_reverse)
        table = self.query_one(DataTable)
        texts = [row.cells_text() for row in rows]
        # Columns get explicit widths (label or widest cell): DataTable's own content sizing
        # runs when the widget is next idle, and in about one of three tmux demos on a loaded
        # machine it never did, leaving every column at its label's width ("gpt2-", "pref").
        widths = {
            key: max([cell_len(label)] + [cell_len(cells[key]) for cells in texts])
            for key, label in COLUMNS
        }
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key, width=widths[key])
        for row, cells in zip(rows, texts, strict=True):
            style = "bold red" if row.status in BAD else ""
            values: list[str | Text] = [
                Text(cells[key], style=style if key == "status" else "") for key, _ in COLUMNS
            ]
            table.add_row(*values, key=f"{row.cell}:{row.phase}")
        if rows:
            table.move_cursor(row=min(cursor.row, len(rows) - 1), column=cursor.column)

    def action_sort(self) -> None:
        table = self.query_one(DataTable)
        if not self.rows:
            return
        column = COLUMNS[table.cursor_column][0]
        if self.sort_column == column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        self._fill()
        self.notify(
            f"sorted by {dict(COLUMNS)[column]}{' (descending)' if self.sort_reverse else ''}"
        )

    def _row_at_cursor(self) -> ResultRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.rows if f"{r.cell}:{r.phase}" == key), None)

    def on_data_table_cell_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        row = self._row_at_cursor()
        if row is not None:
            self.app.push_screen(CellDetailScreen(row))

    def action_depth(self) -> None:
        if not self.rows:
            self.notify("no results loaded")
            return
        self.app.push_screen(DepthScreen(self.rows))

    def action_claims(self) -> None:
        if self.run_dir is None:
            self.notify("no results loaded")
            return
        from kit.tui.screens.claims import ClaimsScreen

        self.app.push_screen(ClaimsScreen(self.run_dir))

    def action_reload(self) -> None:
        if self.run_dir is not None:
            self.kit.load_results(self.run_dir)
