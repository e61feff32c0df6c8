"""Modals over Results: one cell's latency distribution, and depth vs latency for GPT-2."""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Sparkline, Static

from kit.tui.models.results import ResultRow, depth_rows, histogram


class CellDetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, row: ResultRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        row, f = self.row, self.row.fields
        cells = row.cells_text()
        with VerticalScroll(classes="modal-box"):
            yield Static(f"cell {row.cell}  {row.phase}", classes="modal-title")
            yield Static(
                f"{f.get('matrix')} / {f.get('group')} / {f.get('backend')} / {f.get('model')} "
                f"{f.get('dtype')} / {f.get('scenario')} #{f.get('prompt_index')} on {f.get('device')}"
            )
            yield Static(
                f"status {row.status}  n {row.n}  median {cells['median_ms']} ms  "
                f"95% CI {cells['ci']}  mean {row.mean_ms:.3f} ms  tok/s {cells['tok_s']}"
                if not math.isnan(row.mean_ms)
                else f"status {row.status}  n {row.n}: no timed samples"
            )
            if row.reasons:
                yield Static("reasons: " + "; ".join(row.reasons), classes="bad")
            if row.published is not None:
                yield Static(
                    f"published {row.published_statistic} {row.published:.3f} ms "
                    f"({row.published_source}); ours/published {cells['ratio']}"
                )
            yield Static("latency of each timed repetition, in order:")
            yield Sparkline(list(row.latencies), id="detail-spark")
            yield Static("\n".join(histogram(row.latencies, bins=8, width=30)), id="histogram")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss(None)


class DepthScreen(ModalScreen[None]):
    """Median latency against depth (n_layer) and parameters for the GPT-2 family."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, rows: list[ResultRow]) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Static("GPT-2 family: median latency vs depth", classes="modal-title")
            yield Static(self._chart(), id="depth-chart")
        yield Footer()

    def _chart(self) -> Text:
        rows = depth_rows(self.rows)
        if not rows:
            return Text("no GPT-2 family results in this run")
        top = max(r["median_ms"] for r in rows) or 1.0
        text = Text()
        last = None
        for r in rows:
            key = (r["backend"], r["mode"])
            if key != last:
                text.append(f"{r['backend']} / {r['mode']}\n", style="bold")
                last = key
            params = f"{r['params'] / 1e6:.0f}M" if r["params"] else "?"
            bar = "█" * max(1, round(r["median_ms"] / top * 30))
            text.append(f"  {r['model']:<10} L={r['n_layer']:<3} {params:>5} ")
            text.append(bar, style="cyan")
            text.append(f" {r['median_ms']:.3f} ms (n {r['n']})\n")
        return text

    def action_close(self) -> None:
        self.dismiss(None)
