"""The app's blocking work, each in a thread worker that talks back only by messages.

NVML, matrix loading, the sweep (child processes or containers), statistics and bundles
never run on the UI thread. Failures are not handled here: a worker that raises ends in
state ERROR and `KitApp.on_worker_state_changed` shows it (one place).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from textual import work
from textual.app import App
from textual.worker import get_current_worker

from kit.gpu.snapshot import Detection
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


class KitWorkers(App[int]):
    config: TuiConfig
    build_cancel: threading.Event  # set by the Images screen's cancel (KitApp.__init__)

    @work(thread=True, exclusive=True, exit_on_error=False, group="gpu-detect")
    def detect_gpus(self) -> None:
        from kit.gpu.snapshot import detect

        self.post_message(GpusDetected(detect()))

    @work(thread=True, exclusive=True, exit_on_error=False, group="gpu-poll")
    def poll_gpus(self, detection: Detection) -> None:
        from kit.tui.models.gpu import Poller

        if not detection.gpus:
            return
        worker = get_current_worker()
        poller = Poller(detection)
        hz = self.config.poll_hz
        while not worker.is_cancelled and poller.probes:
            began = time.monotonic()
            self.post_message(GpuReadings(poller.read(), list(poller.lost)))
            if hz <= 0:
                return
            time.sleep(max(0.0, 1.0 / hz - (time.monotonic() - began)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="matrix")
    def load_matrices(self) -> None:
        from kit.matrix import BUILTIN_MATRICES, load_matrix
        from kit.tui.models.matrix_tree import past_per_rep_s

        matrices = [load_matrix(name) for name in BUILTIN_MATRICES]
        self.post_message(MatricesLoaded(matrices, past_per_rep_s(self.config.results_dir)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="images")
    def list_images(self) -> None:
        """The daemon's image tags, for the docker runner's "image missing" check."""
        from kit.tui.models.matrix_tree import LocalImages

        try:
            import docker.client

            client = docker.client.from_env(timeout=5)
            tags = frozenset(t for image in client.images.list() for t in image.tags)
            self.post_message(ImagesListed(LocalImages(tags=tags)))
        except Exception as err:  # daemon down, no permission, SDK missing: say why
            reason = f"the daemon cannot be reached ({type(err).__name__}); see `kit doctor`"
            self.post_message(ImagesListed(LocalImages(reason=reason)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="pins")
    def check_pins(self, request: RunRequest) -> None:
        """How the images of a docker run are pinned, asked before the run (issue 11)."""
        from kit.runner.plan import plan_cells
        from kit.runner.service import make_runner

        _matrix, cells = plan_cells(request)
        images = make_runner("docker", request).image_pins(cells)
        self.post_message(PinsChecked(request, images))

    @work(thread=True, exclusive=True, exit_on_error=False, group="run")
    def run_sweep(
        self, request: RunRequest | None, resume: Path | None, controls: Controls
    ) -> None:
        from kit.runner.journal import finished_cells
        from kit.runner.plan import plan_cells
        from kit.runner.service import load_run, resume_run, start_run

        def on_event(event: dict[str, object]) -> None:
            self.post_message(RunEvent(dict(event)))

        if resume is not None:
            _header, cells = load_run(resume)
            self.post_message(RunPlanned(resume, cells, sorted(finished_cells(resume))))
            outcome = resume_run(resume, controls, on_event)
        else:
            assert request is not None
            _matrix, cells = plan_cells(request)
            self.post_message(RunPlanned(request.out, cells, []))
            outcome = start_run(request, controls, on_event)
        self.post_message(
            RunEnded(outcome.run_dir, outcome.counts, outcome.interrupted, outcome.wall_s)
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="results")
    def load_results(self, run_dir: Path) -> None:
        from kit.tui.models.results import load_results

        self.post_message(ResultsLoaded(run_dir, load_results(run_dir)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def list_runs(self) -> None:
        from kit.tui.models.runs import list_runs

        self.post_message(RunsListed(list_runs(self.config.results_dir)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="bundle")
    def make_bundle(self, run_dir: Path) -> None:
        from kit.bundle.build import build_bundle
        from kit.tui.models.runs import sha256_of

        result = build_bundle(run_dir)
        self.post_message(
            BundleMade(
                run_dir, result.path, sha256_of(result.path), result.content_hash, result.incomplete
            )
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="image-rows")
    def list_image_rows(self) -> None:
        """Every image variant with its stack, lock, base and whether it is built here."""
        from kit.images.listing import image_rows

        try:
            import docker.client

            # a daemon busy committing a large layer answers slowly: wait for it a while
            client = docker.client.from_env(timeout=60)
            rows = image_rows(client)
        except Exception as err:  # daemon down or stuck, no permission, SDK missing: say why
            reason = f"docker: the daemon did not answer ({type(err).__name__}); see `kit doctor`"
            rows = image_rows(None, reason)
        self.post_message(ImageRowsListed(rows))

    def _post_build_line(self, image: str, line: str) -> None:
        self.post_message(ImageBuildLine(image, line))

    @work(thread=True, exclusive=True, exit_on_error=False, group="image-build")
    def build_image_variant(self, image: str) -> None:
        """Build "name:variant" with the Docker SDK, streaming its log; cancellable through
        `build_cancel`. Build failures are the screen's to show (ImageBuildEnded), not errors
        of the app."""
        from kit.errors import KitError
        from kit.images.build import BuildOptions, build_image
        from kit.images.registry import image_spec
        from kit.tui.models.images import ui_build_options

        name, _, variant_name = image.partition(":")
        spec = image_spec(name)
        variant = spec.variant(variant_name)
        options = ui_build_options()
        if variant.over:  # layered images build FROM the kit's own image, never another base
            options["base_image"] = None
        self.build_cancel.clear()
        try:
            result = build_image(
                spec,
                variant,
                BuildOptions(**options),  # type: ignore[arg-type]
                progress=lambda line: self._post_build_line(image, line),
                cancelled=self.build_cancel.is_set,
            )
        except KitError as err:
            state = "cancelled" if self.build_cancel.is_set() else "failed"
            self.post_message(ImageBuildEnded(image, state, err.title))
        else:
            self.post_message(ImageBuildEnded(image, "built", result.image_id[:19]))
        self.list_image_rows()
