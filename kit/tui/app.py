"""The kit's terminal UI: `kit` with no command opens it (`main(args)`).

Six screens (modes), switched with keys 1-6: GPUs, Matrices, Run, Results, Runs, Images. The app
holds the shared state (detection, GPU history, the run's progress) and owns every worker
(see `kit.tui.workers`), so worker failures reach one handler: `on_worker_state_changed`.
"""

from __future__ import annotations

import argparse
import dataclasses
import threading
from pathlib import Path
from typing import Any, ClassVar

from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState

from kit.errors import KitError
from kit.gpu.snapshot import Detection
from kit.matrix import Matrix
from kit.runner.plan import RunRequest
from kit.runner.sweep import Controls
from kit.tui.config import TuiConfig
from kit.tui.messages import (
    BundleMade,
    GpuReadings,
    GpusDetected,
    ImageBuildEnded,
    ImageBuildLine,
    ImageRowsListed,
    ImagesListed,
    MatricesLoaded,
    PinsChecked,
    ResultsLoaded,
    RunEnded,
    RunEvent,
    RunPlanned,
    RunsListed,
)
from kit.tui.models.gpu import GpuHistory
from kit.tui.models.images import BuildProgress
from kit.tui.models.matrix_tree import LocalImages
from kit.tui.models.progress import RunProgress
from kit.tui.models.results import ResultRow
from kit.tui.models.runs import RunInfo
from kit.tui.screens.base import KitScreen
from kit.tui.screens.error import ErrorScreen
from kit.tui.workers import KitWorkers

SCREENS_IN_ORDER = ("gpus", "matrices", "run", "results", "runs", "images")


class KitApp(KitWorkers):
    TITLE = "llm-repro-kit"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show('gpus')", "GPUs"),
        Binding("2", "show('matrices')", "Matrices"),
        Binding("3", "show('run')", "Run"),
        Binding("4", "show('results')", "Results"),
        Binding("5", "show('runs')", "Runs"),
        Binding("6", "show('images')", "Images", show=False),  # off the footer: snapshots stay
        Binding("ctrl+t", "toggle_theme", "Theme"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, config: TuiConfig | None = None) -> None:
        super().__init__()
        self.config = config or TuiConfig()
        self.detection: Detection | None = None
        self.gpu_history = GpuHistory(keep=self.config.history)
        self.progress: RunProgress | None = None
        self.progress_version = 0
        self.run_dir: Path | None = None
        self.controls: Controls | None = None
        self.errors: list[str] = []  # every worker failure shown, for tests and the log
        self.matrices: list[Matrix] | None = None
        self.past_per_rep_s: dict[tuple[str, str, str, str], float] = {}
        self.results: tuple[Path, list[ResultRow], int] | None = None  # dir, rows, version
        self.runs: list[RunInfo] | None = None
        self.last_bundle: BundleMade | None = None
        self.images: LocalImages | None = None  # listed when the docker runner is chosen
        self.image_rows: list[Any] | None = None  # the Images screen's rows (ImageRow)
        self.build_progress: BuildProgress | None = None
        self.build_cancel = threading.Event()

    def on_mount(self) -> None:
        from kit.tui.screens.gpus import GpusScreen
        from kit.tui.screens.images import ImagesScreen
        from kit.tui.screens.matrices import MatricesScreen
        from kit.tui.screens.results import ResultsScreen
        from kit.tui.screens.run import RunScreen
        from kit.tui.screens.runs import RunsScreen

        classes = (GpusScreen, MatricesScreen, RunScreen, ResultsScreen, RunsScreen, ImagesScreen)
        for name, cls in zip(SCREENS_IN_ORDER, classes, strict=True):
            self.install_screen(cls(), name)
            self.add_mode(name, name)
        self.switch_mode("gpus")
        self.detect_gpus()
        # parsing three matrices holds the GIL for a while: let the first frame paint first
        self.call_after_refresh(self.load_matrices)
        self.call_after_refresh(self.list_runs)

    # -- navigation -------------------------------------------------------------------------
    def action_show(self, name: str) -> None:
        if name == "runs":
            self.list_runs()
        self.switch_mode(name)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def _sync(self, *names: str) -> None:
        """Let the named screens re-render from the app's state (only if they were shown)."""
        for name in names:
            screen = self.get_screen(name)
            if isinstance(screen, KitScreen) and screen.is_mounted:
                screen.sync()

    # -- messages from workers --------------------------------------------------------------
    def on_gpus_detected(self, message: GpusDetected) -> None:
        self.detection = message.detection
        self._sync("gpus", "matrices")
        self.poll_gpus(message.detection)

    def on_gpu_readings(self, message: GpuReadings) -> None:
        self.gpu_history.add(message.readings)
        self.gpu_history.lost = message.lost
        screen = self.screen
        if isinstance(screen, KitScreen) and screen.is_mounted:
            try:
                screen.sync_gpu()
            except NoMatches:
                pass  # switched to but not composed yet: on_screen_resume paints it

    def on_images_listed(self, message: ImagesListed) -> None:
        self.images = message.images
        self._sync("matrices")

    def on_image_rows_listed(self, message: ImageRowsListed) -> None:
        self.image_rows = message.rows
        self._sync("images")

    def on_image_build_line(self, message: ImageBuildLine) -> None:
        if self.build_progress is not None:
            self.build_progress.feed(message.line)
        screen = self.get_screen("images")
        if isinstance(screen, KitScreen) and screen.is_mounted:
            screen.add_build_line(message.line)  # type: ignore[attr-defined]

    def on_image_build_ended(self, message: ImageBuildEnded) -> None:
        if self.build_progress is not None:
            self.build_progress.state, self.build_progress.message = message.state, message.message
        self.notify(
            f"{message.image}: {message.state} {message.message}",
            severity="information" if message.state == "built" else "warning",
        )
        self._sync("images")
        self.images = None  # the docker runner's "image missing" marks: list again
        self.list_images()

    def on_matrices_loaded(self, message: MatricesLoaded) -> None:
        self.matrices = message.matrices
        self.past_per_rep_s = message.past_per_rep_s
        self._sync("matrices")

    def on_run_planned(self, message: RunPlanned) -> None:
        self.run_dir = message.run_dir
        self.progress = RunProgress(message.cells, message.finished, clock=self.config.clock)
        self.progress_version += 1

    def on_run_event(self, message: RunEvent) -> None:
        if self.progress is not None:
            self.progress.apply(message.event)
            self.progress_version += 1

    def on_run_ended(self, message: RunEnded) -> None:
        if self.progress is not None and self.progress.state == "running":
            self.progress.state = "interrupted" if message.interrupted else "finished"
        self.progress_version += 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(message.counts.items()))
        word = "stopped (resumable)" if message.interrupted else "finished"
        self.notify(f"run {word}: {counts}", title=message.run_dir.name)
        self.load_results(message.run_dir)
        self.list_runs()

    def on_results_loaded(self, message: ResultsLoaded) -> None:
        version = self.results[2] + 1 if self.results else 0
        self.results = (message.run_dir, message.rows, version)
        self._sync("results")

    def on_runs_listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        self._sync("runs")

    def on_bundle_made(self, message: BundleMade) -> None:
        self.last_bundle = message
        self.notify(f"bundle written: {message.path.name}", title="bundle")
        self.list_runs()

    # -- the one place worker failures are handled --------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, KitError):
            title, hint = error.title, error.hint
        else:
            title, hint = (
                f"{type(error).__name__}: {error}",
                "this is a bug in the kit; please report it",
            )
        what = event.worker.group
        self.errors.append(f"{what}: {title}")
        if what == "run" and self.progress is not None:
            self.progress.state = "failed"
            self.progress.note("error", f"run failed: {title}")
            self.progress_version += 1
        if what in ("gpu-poll",):
            self.notify(f"{title}. {hint}", title="GPU readings stopped", severity="warning")
            return
        self.push_screen(ErrorScreen(f"{what} failed", title, hint))

    # -- actions the screens call ----------------------------------------------------------
    def start_run(self, request: RunRequest) -> None:
        """A docker run first checks how its images are pinned (`on_pins_checked`)."""
        if request.runner == "docker" and not request.allow_unpinned:
            self.check_pins(request)
            return
        self._start_sweep(request, None)

    def on_pins_checked(self, message: PinsChecked) -> None:
        from kit.tui.screens.unpinned import UnpinnedScreen

        request = message.request
        if all(image["pinned"] for image in message.images):
            self._start_sweep(request, None)
            return

        def answered(accept: bool | None) -> None:
            if accept:
                self._start_sweep(dataclasses.replace(request, allow_unpinned=True), None)
            else:
                self.notify("run cancelled: its images are not pinned", severity="warning")

        self.push_screen(UnpinnedScreen(message.images), answered)

    def resume_run(self, run_dir: Path) -> None:
        self._start_sweep(None, run_dir)

    def _start_sweep(self, request: RunRequest | None, resume: Path | None) -> None:
        if self.sweep_running():
            self.notify("a run is already in progress", severity="warning")
            return
        self.controls = Controls()
        self.progress = None
        self.progress_version += 1
        self.switch_mode("run")
        self.run_sweep(request, resume, self.controls)

    def sweep_running(self) -> bool:
        return any(w.group == "run" and w.is_running for w in self.workers)

    def start_image_build(self, image: str) -> None:
        self.build_progress = BuildProgress(image)
        self.build_image_variant(image)

    def image_build_running(self) -> bool:
        return any(w.group == "image-build" and w.is_running for w in self.workers)

    def show_image(self, image: str) -> None:
        """The Images screen, cursor on `image` ("name:variant"): the Matrices screen's link."""
        self.switch_mode("images")
        screen = self.get_screen("images")
        screen.show_image(image)  # type: ignore[attr-defined]

    def open_results(self, run_dir: Path) -> None:
        self.switch_mode("results")
        self.load_results(run_dir)


def main(args: argparse.Namespace | None = None) -> int:
    """Run the UI until the person quits; returns the exit code."""
    results = getattr(args, "results", None)
    config = TuiConfig(results_dir=Path(results)) if results else TuiConfig()
    app = KitApp(config)
    code: Any = app.run()
    return int(code or 0)
