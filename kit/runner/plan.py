"""From a request (matrix, selection, overrides, order) to the ordered cells of a run and
their harness inputs (prepared models, exact token ids). No process is started here."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell, Matrix, load_matrix, parse_selection, select_cells
from kit.matrix.cell import RUN_OVERRIDES


@dataclasses.dataclass(frozen=True)
class RunRequest:
    matrix: str
    out: Path
    selection: str | None = None
    runner: str = "host"
    device: str | None = None  # override every cell's device
    repetitions: int | None = None
    warmup: int | None = None
    max_new_tokens: int | None = None
    order: str = "auto"  # auto | listed | shuffled | interleaved (auto: shuffled for long sweeps)
    order_seed: int = 42
    weights: str = "auto"  # auto | hub | random
    group_timeout_s: float = 1800.0
    max_fatal_restarts: int = 3  # on_error: continue: fresh processes continuing one cell
    gpu_index: int = 0
    gpus: tuple[int, ...] | None = None  # --gpus: place groups over these GPUs (placement.py)
    isolation: str = "exclusive"  # exclusive | per-gpu (with gpus: one group per GPU at once)
    telemetry_hz: float = 20.0
    idle_baseline_s: float = 3.0
    thermal_gate_c: float | None = None
    thermal_gate_max_wait_s: float = 120.0
    allow_unpinned: bool = False
    ollama_models: str = "tags"  # tags | local (the ollama groups' local_models: kit GGUF)
    argv: tuple[str, ...] = ()
    yes: bool = False  # run a selection estimated over 24 h (kit.matrix.estimate.LONG_RUN_S)
    start_method: str | None = None  # host runner: forkserver | spawn (None: its default)
    precompile: bool = True  # compile compiled groups' shapes ahead, in parallel
    park_max: int | None = (
        None  # compiled groups parked at once (None: precompile.default_park_max; 0: no parking)
    )
    block_reps: int = 5  # --order interleaved: timed repetitions per block
    until_ci_pct: float | None = None  # adaptive repetitions (see Cell.until_ci_pct)
    max_reps: int | None = None
    # --skip-done: earlier runs or bundles; selected cells with a final result there are not
    # planned (kit.runner.skipdone)
    skip_done: tuple[str, ...] = ()

    def overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in RUN_OVERRIDES if getattr(self, k) is not None}


@dataclasses.dataclass(frozen=True)
class Plan:
    matrix: Matrix
    cells: list[Cell]  # in run order
    skipped_done: list[dict[str, Any]]  # one record per --skip-done source (run.json)


def plan_cells(request: RunRequest) -> tuple[Matrix, list[Cell]]:
    """The selected cells with overrides applied, in run order. Raises KitError when the
    selection matches nothing or an override is invalid."""
    planned = plan(request)
    return planned.matrix, planned.cells


def plan(request: RunRequest) -> Plan:
    """`plan_cells`, and what --skip-done took out."""
    matrix = load_matrix(request.matrix, request.ollama_models)
    cells = select_cells(matrix.cells, parse_selection(request.selection))
    if not cells:
        raise KitError(
            f"the selection {request.selection!r} matches no cell of {matrix.id}",
            f"check it with `kit matrix show {request.matrix} --select '...'`",
        )
    for name, value in request.overrides().items():
        if name == "device" and value not in ("cpu", "cuda"):
            raise KitError(
                f"--device {value!r} is not a device", "use --device cpu or --device cuda"
            )
        if name == "until_ci_pct":
            if not isinstance(value, (int, float)) or not 0 < value < 100:
                raise KitError(
                    f"--until-ci {value!r} is out of range", "give a percent, e.g. --until-ci 2"
                )
            continue
        if name != "device" and (
            not isinstance(value, int) or value < (0 if name == "warmup" else 1)
        ):
            raise KitError(
                f"--{name.replace('_', '-')} {value!r} is out of range", "give a positive integer"
            )
    cells = [cell.replace(**request.overrides()) for cell in cells]

    if request.max_reps is not None and request.until_ci_pct is None:
        raise KitError("--max-reps needs --until-ci PCT", "e.g. --until-ci 2 --max-reps 200")
    if request.until_ci_pct is not None:
        low = [c for c in cells if c.max_reps is not None and c.max_reps < c.repetitions]
        if low:
            raise KitError(
                f"--max-reps {request.max_reps} is below the cells' {low[0].repetitions} repetitions",
                "give --max-reps at least --reps",
            )
        # without --max-reps: up to five times the planned repetitions
        cells = [c if c.max_reps else c.replace(max_reps=5 * c.repetitions) for c in cells]
    skipped: list[dict[str, Any]] = []
    if request.skip_done:  # on the final cells: their ids hash every override
        from kit.runner.skipdone import skip_done

        cells, skipped = skip_done(cells, matrix.id, request.skip_done)
    check_duration(cells, request.yes)
    return Plan(matrix, order_cells(cells, request.order, request.order_seed), skipped)


def check_duration(cells: Sequence[Cell], confirmed: bool) -> float:
    """The selection's estimated seconds; KitError above LONG_RUN_S unless `confirmed`."""
    from kit.matrix.estimate import LONG_RUN_S, estimate_s, fmt_duration

    seconds, _ = estimate_s(cells, None, None, None, {})
    if seconds > LONG_RUN_S and not confirmed:
        raise KitError(
            f"the selection is estimated to take {fmt_duration(seconds)} "
            f"({len(cells)} cells, {sum(c.repetitions + c.warmup for c in cells):,} repetitions), "
            f"over {fmt_duration(LONG_RUN_S)}",
            "narrow --select or lower --reps, or pass --yes to run it anyway",
        )
    return seconds


LONG_SWEEP_CELLS = 50  # `auto` shuffles sweeps this long (TR126's run-order pitfall)


def resolved_order(order: str, n_cells: int) -> str:
    """`auto` becomes `shuffled` for a sweep of LONG_SWEEP_CELLS cells or more, else `listed`."""
    if order == "auto":
        return "shuffled" if n_cells >= LONG_SWEEP_CELLS else "listed"
    return order


def order_cells(cells: Sequence[Cell], order: str, seed: int) -> list[Cell]:
    """Listed order, or a seeded shuffle of the cells (and hence of the groups' order);
    `auto` picks one by the sweep's length (resolved_order)."""
    order = resolved_order(order, len(cells))
    if order in ("listed", "interleaved"):  # interleaved: the sweep alternates blocks
        return list(cells)
    if order != "shuffled":
        raise KitError(
            f"--order {order!r} is not an order",
            "use --order auto, listed, shuffled or interleaved",
        )
    shuffled = list(cells)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def groups_in_order(cells: Sequence[Cell]) -> list[list[Cell]]:
    """Cells grouped by their group key, groups in order of first appearance."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group_id(), []).append(cell)
    return list(groups.values())


def prompt_ids(matrix: Matrix, cells: Sequence[Cell]) -> dict[str, dict[str, Any]]:
    """cell id -> {ids: [[...] per sequence], method, source}: the exact token ids each cell
    gets (the same ids for every backend), from the model's own tokenizer when available."""
    from kit.matrix.models import get_model
    from kit.models.tokenizer import exact_length_tokens, tokenize

    book = matrix.prompt_book()
    out: dict[str, dict[str, Any]] = {}
    memo: dict[tuple[str, str], Any] = {}
    for cell in cells:
        if get_model(cell.model).family == "ollama":
            texts = (
                book.texts(cell.scenario, cell.prompt_index, cell.batch_size)
                if cell.token_len is None
                else []
            )
            out[cell.id] = {
                "ids": [[]],
                "texts": texts,
                "method": "server",
                "source": "ollama tokenizes itself",
            }
            continue
        if cell.token_len is not None:
            tok = exact_length_tokens(cell.model, cell.token_len, cell.seed)
            out[cell.id] = {
                "ids": [list(tok.ids)] * cell.batch_size,
                "texts": [],
                "method": tok.method,
                "source": tok.source,
            }
            continue
        texts = book.texts(cell.scenario, cell.prompt_index, cell.batch_size)
        seqs, methods, sources = [], set(), set()
        for text in texts:
            key = (cell.model, text)
            if key not in memo:
                memo[key] = tokenize(cell.model, text)
            tok = memo[key]
            seqs.append(list(tok.ids))
            methods.add(tok.method)
            sources.add(tok.source)
        out[cell.id] = {
            "ids": seqs,
            "texts": texts,
            "method": "approximate" if "approximate" in methods else "exact",
            "source": "; ".join(sorted(sources)),
        }
    return out
