"""GPUs: one panel per GPU with live sparklines, or a banner saying why none is visible."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from kit.tui.models.gpu import no_gpu_banner
from kit.tui.screens.base import KitScreen
from kit.tui.widgets.gpu_panel import GpuPanel


class GpusScreen(KitScreen):
    TITLE = "GPUs"

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[int, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Detecting GPUs through NVML...", id="gpu-banner")
        yield VerticalScroll(id="gpu-panels")
        yield Static("", id="gpu-lost")
        yield Footer()

    def sync(self) -> None:
        detection = self.kit.detection
        banner = self.query_one("#gpu-banner", Static)
        if detection is None:
            return
        if not detection.gpus:
            banner.update(no_gpu_banner(detection))
            banner.add_class("no-gpu")
        else:
            note = f" ({detection.reason})" if detection.reason else ""
            count = len(detection.gpus)
            banner.update(f"{count} NVIDIA GPU{'s' if count > 1 else ''} visible{note}")
            banner.remove_class("no-gpu")
        indexes = tuple(g.index for g in detection.gpus)
        if indexes != self._shown:
            self._shown = indexes
            panels = self.query_one("#gpu-panels", VerticalScroll)
            panels.remove_children()
            panels.mount_all([GpuPanel(g) for g in detection.gpus])
        self.sync_gpu()

    def sync_gpu(self) -> None:
        history = self.kit.gpu_history
        for panel in self.query(GpuPanel):
            panel.update_from(history)
        lost = self.query_one("#gpu-lost", Static)
        lost.update("lost: " + "; ".join(history.lost) if history.lost else "")
