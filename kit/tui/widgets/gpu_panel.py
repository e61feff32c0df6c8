"""One GPU's panel: static facts, the newest reading, sparklines and throttle reasons."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from kit.gpu.snapshot import GpuSnapshot
from kit.tui.models.gpu import SERIES, GpuHistory, describe_gpu, fmt, reasons_in_words

LABELS = {"sm_clock_mhz": "SM clock", "power_w": "power   ", "temp_c": "temp    "}


def reading_line(row: dict[str, Any] | None) -> str:
    if row is None:
        return "waiting for the first reading"
    return (
        f"SM {fmt(row.get('sm_clock_mhz'), ' MHz')}  power {fmt(row.get('power_w'), ' W', 1)}"
        f"  temp {fmt(row.get('temp_c'), ' C')}  util {fmt(row.get('util_gpu_pct'), '%')}"
        f"  mem {fmt(row.get('mem_used_mib'), ' MiB')}"
    )


def throttle_line(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    words = reasons_in_words(row.get("clock_event_reasons"))
    return "throttling: " + ", ".join(words) if words else "no throttling"


class GpuPanel(Vertical):
    DEFAULT_CSS = """
    GpuPanel { height: auto; border: round $primary; padding: 0 1; margin-bottom: 1; }
    GpuPanel .gpu-title { text-style: bold; }
    GpuPanel .spark-row { height: 1; }
    GpuPanel .spark-label { width: 10; }
    GpuPanel .spark-value { width: 12; text-align: right; }
    GpuPanel Sparkline { width: 1fr; }
    GpuPanel .throttled { color: $error; text-style: bold; }
    """

    def __init__(self, gpu: GpuSnapshot) -> None:
        super().__init__(id=f"gpu-{gpu.index}")
        self.gpu = gpu
        self.history: GpuHistory | None = None
        self._composed = False

    def compose(self) -> ComposeResult:
        yield Static(f"GPU {self.gpu.index}  {self.gpu.name or '?'}", classes="gpu-title")
        for line in describe_gpu(self.gpu):
            yield Static(line)
        yield Static(reading_line(None), classes="reading")
        for column in SERIES:
            with Horizontal(classes="spark-row"):
                yield Static(LABELS[column], classes="spark-label")
                yield Sparkline([], id=f"spark-{column}")
                yield Static("", classes="spark-value", id=f"value-{column}")
        yield Static("", classes="throttle")

    def on_mount(self) -> None:
        self._composed = True
        if self.history is not None:
            self.update_from(self.history)

    def update_from(self, history: GpuHistory) -> None:
        """Show the newest readings (before mounting: remember them for on_mount)."""
        self.history = history
        if not self._composed:
            return
        index = self.gpu.index
        row = history.latest(index)
        self.query_one(".reading", Static).update(reading_line(row))
        units = {"sm_clock_mhz": (" MHz", 0), "power_w": (" W", 1), "temp_c": (" C", 0)}
        for column in SERIES:
            self.query_one(f"#spark-{column}", Sparkline).data = history.series(index, column)
            unit, digits = units[column]
            value = row.get(column) if row else None
            self.query_one(f"#value-{column}", Static).update(fmt(value, unit, digits))
        throttle = self.query_one(".throttle", Static)
        text = throttle_line(row)
        throttle.update(text)
        throttle.set_class(text.startswith("throttling"), "throttled")
