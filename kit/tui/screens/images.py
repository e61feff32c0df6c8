"""Images: every backend image with its stack, lock hash, base digest (or "unpinned") and
whether it is built here; build one (b), streaming `docker build` into the screen, cancel (x)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Header, RichLog, Static

from kit.images.listing import ImageRow
from kit.tui.models.images import BuildProgress
from kit.tui.screens.base import KitScreen

COLUMNS = ("image", "built", "stack", "lock sha256", "base digest")


class ImagesScreen(KitScreen):
    TITLE = "Images"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "build", "Build"),
        Binding("x", "cancel", "Cancel build"),
        Binding("f", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[ImageRow] = []
        self.wanted: str | None = None  # a row to put the cursor on (from the Matrices link)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("listing images...", id="images-title")
        table: DataTable[str | Text] = DataTable(
            id="images-table", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Static("", id="image-info")
        yield Static("", id="build-progress")
        yield RichLog(id="build-log", max_lines=2000, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label in COLUMNS:
            table.add_column(label, key=label)
        self.kit.list_image_rows()

    def sync(self) -> None:
        rows = self.kit.image_rows
        if rows is not None and rows != self.rows:
            self.rows = list(rows)
            table = self.query_one(DataTable)
            table.clear()
            for row in self.rows:
                mark = {True: Text("yes", style="green"), False: Text("no", style="yellow"),
                        None: Text("?", style="red")}[row.built]  # fmt: skip
                table.add_row(
                    row.image,
                    mark,
                    row.stack,
                    (row.lock_sha256 or "not locked")[:12],
                    row.base_digest[:19],
                    key=row.image,
                )
            built = sum(1 for r in self.rows if r.built)
            self.query_one("#images-title", Static).update(
                f"{len(self.rows)} images, {built} built here   (b build, x cancel, f refresh)"
            )
        self._goto_wanted()
        self._show_info()
        progress = self.kit.build_progress
        if progress is not None:
            self.query_one("#build-progress", Static).update(progress.text())

    def show_image(self, image: str) -> None:
        """Put the cursor on `image` ("name:variant") once the rows are listed."""
        self.wanted = image
        if self.is_mounted:
            self._goto_wanted()
            self._show_info()

    def _goto_wanted(self) -> None:
        if self.wanted is None or not self.rows:
            return
        names = [r.image for r in self.rows]
        if self.wanted in names:
            self.query_one(DataTable).move_cursor(row=names.index(self.wanted))
        self.wanted = None

    def selected(self) -> ImageRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.row_count == 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def _show_info(self) -> None:
        row = self.selected()
        info = self.query_one("#image-info", Static)
        if row is None:
            info.update("")
            return
        r = row
        lines = [
            f"{r.tag}  base {r.base} = {r.base_digest}",
            f"lock sha256 {r.lock_sha256 or '-'}",
        ]
        if r.lock_note:
            lines.append(r.lock_note)
        if r.built:
            pin = "pinned" if r.pinned else f"NOT pinned: {r.unpinned_reason}"
            lines.append(f"built {(r.image_id or '')[:19]} from {r.built_from} ({pin})")
        info.update("\n".join(lines))

    def on_data_table_row_highlighted(self) -> None:
        self._show_info()

    def add_build_line(self, line: str) -> None:
        self.query_one("#build-log", RichLog).write(line)
        progress = self.kit.build_progress
        if progress is not None:
            self.query_one("#build-progress", Static).update(progress.text())

    # -- actions ----------------------------------------------------------------------------
    def action_build(self) -> None:
        row = self.selected()
        if row is None:
            return
        if self.kit.image_build_running():
            self.notify("a build is already running (x cancels it)", severity="warning")
            return
        if row.lock_sha256 is None:
            self.notify(f"{row.image} is not locked: {row.lock_note}", severity="error")
            return
        self.query_one("#build-log", RichLog).clear()
        self.kit.start_image_build(row.image)

    def action_cancel(self) -> None:
        if not self.kit.image_build_running():
            self.notify("no build is running")
            return
        self.kit.build_cancel.set()
        self.notify("cancelling the build...")

    def action_refresh(self) -> None:
        self.kit.list_image_rows()


__all__ = ["BuildProgress", "ImagesScreen"]
