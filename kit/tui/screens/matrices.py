"""Matrices: pick cells in the TR117 / TR126 / TR147 tree or by a `--select` filter, choose
runner, device (and on a host of several GPUs: which GPUs, and the isolation), repetitions,
and start the run."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Input, Label, Static

from kit.errors import KitError
from kit.matrix import Cell, Matrix, parse_selection
from kit.matrix.estimate import LONG_RUN_S
from kit.runner.plan import RunRequest
from kit.tui.models.images import image_for_problem
from kit.tui.models.matrix_tree import build_tree, cell_problem, estimate_s, fmt_duration
from kit.tui.models.placement import GpuChoice, next_choice, placement_lines
from kit.tui.models.runs import next_run_dir
from kit.tui.screens.base import KitScreen
from kit.tui.widgets.matrix_tree import MatrixTree

DEVICES = (None, "cpu", "cuda")


class MatricesScreen(KitScreen):
    TITLE = "Matrices"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("d", "cycle_device", "Device"),
        Binding("r", "toggle_runner", "Runner"),
        # Named in the choices panel, only on a host of several GPUs.
        Binding("u", "cycle_gpus", "GPUs", show=False),
        Binding("p", "toggle_isolation", "Isolation", show=False),
        Binding("c", "clear", "Clear"),
        Binding("g", "go", "Run"),
        Binding("i", "open_image", "Image", show=False),  # named in the node info instead
    ]

    def __init__(self) -> None:
        super().__init__()
        self.matrices: list[Matrix] = []
        self.cells: dict[str, Cell] = {}
        self.matrix_of: dict[str, str] = {}
        self.selected: set[str] = set()
        self.device: str | None = None
        self.runner = "host"
        self.gpus: GpuChoice = None
        self.isolation = "exclusive"
        self._problems: dict[str, str | None] = {}
        self._long_run_seen = False  # `g` once showed that the selection runs over 24 h

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="filter, e.g. matrix=tr126,model=gpt2-25m,mode=prefill (enter selects)",
            id="filter",
            compact=True,
        )
        with Horizontal(id="matrix-body"):
            yield MatrixTree()
            with Vertical(id="matrix-side"):
                yield Static("loading matrices...", id="counts")
                yield Static("", id="estimate")
                yield Static("", id="choices")
                with Horizontal(classes="field"):
                    yield Label("reps", classes="field-label")
                    yield Input(placeholder="matrix", id="reps", type="integer", compact=True)
                with Horizontal(classes="field"):
                    yield Label("warmup", classes="field-label")
                    yield Input(placeholder="matrix", id="warmup", type="integer", compact=True)
                yield Static("", id="node-info")
        yield Footer()

    def on_mount(self) -> None:
        self.runner = self.kit.config.runner
        self.query_one(MatrixTree).focus()

    # -- state ------------------------------------------------------------------------------
    def sync(self) -> None:
        loaded = self.kit.matrices
        if loaded is not None and not self.matrices:
            self.matrices = loaded
            tree = self.query_one(MatrixTree)
            for matrix in loaded:
                for cell in matrix.cells:
                    self.cells[cell.id] = cell
                    self.matrix_of[cell.id] = matrix.id
                tree.add_matrix(build_tree(matrix.id, matrix.cells))
        self.refresh_state()

    def problem(self, cell_id: str) -> str | None:
        if cell_id not in self._problems:
            detection = self.kit.detection
            has_gpu = bool(detection and detection.gpus)
            self._problems[cell_id] = cell_problem(
                self.cells[cell_id], has_gpu, self.device, self.runner, self.kit.images
            )
        return self._problems[cell_id]

    def chosen(self) -> list[Cell]:
        """Selected cells that can run here, in matrix order."""
        return [
            c for cid, c in self.cells.items() if cid in self.selected and self.problem(cid) is None
        ]

    def refresh_state(self) -> None:
        self._problems.clear()
        self._long_run_seen = False
        if not self.matrices:
            return
        self.query_one(MatrixTree).relabel(self.selected, self.problem)
        chosen = self.chosen()
        by_matrix: dict[str, int] = {}
        for cell in chosen:
            by_matrix[cell.matrix] = by_matrix.get(cell.matrix, 0) + 1
        per = ", ".join(f"{m} {n}" for m, n in sorted(by_matrix.items()))
        self.query_one("#counts", Static).update(
            f"selected: {len(chosen)} cells" + (f" ({per})" if per else "")
        )
        seconds, from_past = estimate_s(
            chosen, self.device, self._int("#reps"), self._int("#warmup"), self.kit.past_per_rep_s
        )
        basis = f", {from_past} from past runs" if from_past else ""
        if seconds > LONG_RUN_S:
            basis += f" (over {fmt_duration(LONG_RUN_S)}: g twice to start)"
        self.query_one("#estimate", Static).update(
            f"estimate: {fmt_duration(seconds) if chosen else '--'}{basis}"
        )
        lines = [f"device: {self.device or 'as matrix'} (d)", f"runner: {self.runner} (r)"]
        lines += placement_lines(self.gpus, self.isolation, len(self._gpu_indices()))
        self.query_one("#choices", Static).update("\n".join(lines))
        self._show_node_info()

    def _int(self, selector: str) -> int | None:
        text = self.query_one(selector, Input).value.strip()
        return int(text) if text.isdigit() and int(text) >= 0 else None

    def _show_node_info(self) -> None:
        node = self.query_one(MatrixTree).cursor_node
        info = self.query_one("#node-info", Static)
        if node is None or node.data is None:
            info.update("")
            return
        reasons = {self.problem(c) for c in node.data.cell_ids} - {None}
        text = f"{node.data.label}: {len(node.data.cell_ids)} cells"
        if reasons:
            text += "\ncan't run: " + "; ".join(sorted(r for r in reasons if r))
            needed = self.images_needed(node.data.cell_ids)
            if needed:
                text += f"\nimage: {', '.join(needed)} (i: Images screen)"
        info.update(text)

    def images_needed(self, cell_ids: tuple[str, ...]) -> list[str]:
        """The images ("name:variant") the disabled cells among `cell_ids` run in."""
        found = {
            image_for_problem(self.cells[c].backend, self.device or self.cells[c].device)
            for c in cell_ids
            if self.problem(c)
        }
        return sorted(i for i in found if i)

    # -- events -----------------------------------------------------------------------------
    def on_matrix_tree_toggled(self, message: MatrixTree.Toggled) -> None:
        ids = [c for c in message.node.cell_ids if self.problem(c) is None]
        if not ids:
            self.notify("these cells cannot run here", severity="warning")
            return
        if all(c in self.selected for c in ids):
            self.selected.difference_update(ids)
        else:
            self.selected.update(ids)
        self.refresh_state()

    def on_tree_node_highlighted(self) -> None:
        if self.matrices:
            self._show_node_info()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in ("reps", "warmup") and self.matrices:
            self.refresh_state()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            self.query_one(MatrixTree).focus()
            return
        try:
            selection = parse_selection(event.value)
            keys = {k for c in self.cells.values() for k in c.flat()}
            selection.check_keys(keys)
        except KitError as err:
            self.notify(f"{err.title}. {err.hint}", title="filter", severity="error")
            event.input.add_class("invalid")
            return
        event.input.remove_class("invalid")
        self.selected = {cid for cid, c in self.cells.items() if selection.matches(c)}
        self.refresh_state()
        self.query_one(MatrixTree).focus()

    # -- actions ----------------------------------------------------------------------------
    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_cycle_device(self) -> None:
        self.device = DEVICES[(DEVICES.index(self.device) + 1) % len(DEVICES)]
        self.refresh_state()

    def _gpu_indices(self) -> list[int]:
        detection = self.kit.detection
        return [g.index for g in detection.gpus] if detection else []

    def action_cycle_gpus(self) -> None:
        indices = self._gpu_indices()
        if len(indices) < 2:
            self.notify("this host has fewer than two GPUs: nothing to spread", severity="warning")
            return
        self.gpus = next_choice(self.gpus, indices)
        self.refresh_state()

    def action_toggle_isolation(self) -> None:
        if self.gpus is None or len(self.gpus) < 2:
            self.notify("choose several GPUs first (u)", severity="warning")
            return
        self.isolation = "per-gpu" if self.isolation == "exclusive" else "exclusive"
        self.refresh_state()

    def action_toggle_runner(self) -> None:
        self.runner = "docker" if self.runner == "host" else "host"
        if self.runner == "docker":
            self.kit.list_images()  # refreshes the "image missing" marks when it answers
        self.refresh_state()

    def action_open_image(self) -> None:
        """The link from a disabled cell to the image it needs, on the Images screen."""
        node = self.query_one(MatrixTree).cursor_node
        needed = self.images_needed(node.data.cell_ids) if node and node.data else []
        if not needed:
            self.notify("no disabled cell here needs an image", severity="warning")
            return
        self.kit.show_image(needed[0])

    def action_clear(self) -> None:
        self.selected.clear()
        self.refresh_state()

    def action_go(self) -> None:
        chosen = self.chosen()
        if not chosen:
            self.notify("select cells first (space in the tree, or a filter)", severity="warning")
            return
        matrices = sorted({c.matrix for c in chosen})
        if len(matrices) > 1:
            self.notify(
                f"a run measures one matrix; the selection spans {', '.join(matrices)}",
                severity="error",
            )
            return
        # The same rule as `kit run` (kit.runner.plan.check_duration): guesses, no past runs.
        seconds, _ = estimate_s(chosen, self.device, self._int("#reps"), self._int("#warmup"), {})
        if seconds > LONG_RUN_S and not self._long_run_seen:
            self._long_run_seen = True
            self.notify(
                f"estimated {fmt_duration(seconds)}, over {fmt_duration(LONG_RUN_S)}: "
                "press g again to start it anyway",
                severity="warning",
            )
            return
        config = self.kit.config
        request = RunRequest(
            matrix=matrices[0],
            out=next_run_dir(config.results_dir, matrices[0], config.stamp()),
            selection="id=" + "|".join(c.id for c in chosen),
            runner=self.runner,
            device=self.device,
            gpus=self.gpus,
            isolation=self.isolation if self.gpus and len(self.gpus) > 1 else "exclusive",
            repetitions=self._int("#reps") or None,
            warmup=self._int("#warmup"),
            argv=("kit", "tui"),
            yes=seconds > LONG_RUN_S,
        )
        self.kit.start_run(request)
