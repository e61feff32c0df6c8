"""Run: progress of the sweep (overall, per group), ETA, the current cell and phase with its
live median, the GPU's readings, a log tail with failures in red; stop and abort keys."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, ProgressBar, RichLog, Static

from kit.tui.models.gpu import fmt
from kit.tui.models.matrix_tree import fmt_duration
from kit.tui.models.progress import RunProgress
from kit.tui.screens.base import KitScreen

REPAINT_S = 0.1  # coalesce bursts of events into at most 10 updates a second
BAR_WIDTH = 12


def group_lines(progress: RunProgress, limit: int = 6) -> Text:
    """Per-group text bars; groups in progress first, then the others in order."""
    groups = list(progress.groups.values())
    active = [g for g in groups if 0 < g.done < g.total] + [g for g in groups if g.done == 0]
    done = [g for g in groups if g.done >= g.total]
    text = Text()
    for group in (active + done)[:limit]:
        filled = round(BAR_WIDTH * group.done / group.total) if group.total else BAR_WIDTH
        style = "green" if group.done >= group.total else "yellow" if group.done else "dim"
        text.append("█" * filled + "░" * (BAR_WIDTH - filled), style=style)
        text.append(f" {group.done}/{group.total} {group.label}\n")
    if len(groups) > limit:
        text.append(f"... {len(groups) - limit} more groups", style="dim")
    return text


class RunScreen(KitScreen):
    TITLE = "Run"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "stop_after_cell", "Stop after cell"),
        Binding("x", "abort", "Abort now"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._version = -1
        self._log_seen = 0
        self._progress_id = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="run-top"):
            with Horizontal(id="overall-row"):
                yield ProgressBar(total=1, show_eta=False, id="overall")
                yield Static(
                    "no run yet: pick cells in Matrices (2) or resume in Runs (5)",
                    id="overall-text",
                )
            yield Static("", id="groups")
            yield Static("", id="current")
            yield Static("", id="run-gpu")
        yield RichLog(id="run-log", max_lines=500, markup=False, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(REPAINT_S, self._repaint_if_changed)

    def _repaint_if_changed(self) -> None:
        if self.kit.progress_version != self._version:
            self.sync()

    def sync(self) -> None:
        app = self.kit
        self._version = app.progress_version
        progress = app.progress
        if progress is None:
            return
        if id(progress) != self._progress_id:
            self._progress_id = id(progress)
            self._log_seen = 0
            self.query_one(RichLog).clear()
        bar = self.query_one("#overall", ProgressBar)
        bar.update(total=max(progress.total, 1), progress=progress.done)
        elapsed = app.config.clock() - progress.started_at
        eta = progress.eta_s()
        state = progress.state if progress.state != "running" else f"ETA {fmt_duration(eta)}"
        self.query_one("#overall-text", Static).update(
            f"{progress.done}/{progress.total} cells  {state}  elapsed {fmt_duration(elapsed)}"
            f"  {len(progress.failures)} failed"
        )
        self.query_one("#groups", Static).update(group_lines(progress))
        self.query_one("#current", Static).update(self._current_text(progress))
        self.sync_gpu()
        log = self.query_one(RichLog)
        new = min(progress.logged - self._log_seen, len(progress.log))
        for level, message in list(progress.log)[len(progress.log) - new :] if new > 0 else []:
            style = "bold red" if level == "error" else "yellow" if level == "warning" else ""
            log.write(Text(message, style=style))
        self._log_seen = progress.logged

    def _current_text(self, progress: RunProgress) -> Text:
        live = progress.current_cell()
        text = Text()
        if live is None:
            text.append(f"phase: {progress.phase}")
            return text
        c = live.cell
        text.append(f"cell {c.id[:8]} ", style="bold")
        text.append(f"{c.model} {c.backend} {c.scenario}/{c.mode} on {c.device}\n")
        median = live.median_ms
        shown = f"{median:.3f} ms" if median is not None else "--"
        text.append(f"phase: {progress.phase}   samples {len(live.latencies)}/{c.repetitions}")
        text.append(f"   live median {shown}", style="bold cyan")
        return text

    def sync_gpu(self) -> None:
        app = self.kit
        widget = self.query_one("#run-gpu", Static)
        detection = app.detection
        if detection is None or not detection.gpus:
            widget.update("GPU: none visible (CPU cells only)")
            return
        lines = []
        for gpu in detection.gpus:
            row = app.gpu_history.latest(gpu.index)
            if row is None:
                continue
            lines.append(
                f"GPU {gpu.index}: power {fmt(row.get('power_w'), ' W', 1)}  "
                f"SM {fmt(row.get('sm_clock_mhz'), ' MHz')}  temp {fmt(row.get('temp_c'), ' C')}"
            )
        widget.update("\n".join(lines) or "GPU: waiting for readings")

    def action_stop_after_cell(self) -> None:
        controls = self.kit.controls
        if controls is None or not self.kit.sweep_running():
            self.notify("no run in progress")
            return
        controls.stop_after_cell.set()
        self.notify("stopping after the current cell; resume it later from Runs (5)")

    def action_abort(self) -> None:
        controls = self.kit.controls
        if controls is None or not self.kit.sweep_running():
            self.notify("no run in progress")
            return
        controls.abort.set()
        self.notify("aborting now; the run stays resumable from Runs (5)", severity="warning")
