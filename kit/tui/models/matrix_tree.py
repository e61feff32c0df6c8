"""The Matrices screen's logic: the tree of a matrix, which cells can run here, and how
long a selection will take."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

from kit.matrix import Cell
from kit.matrix.estimate import (  # noqa: F401 - re-exported for the screens
    GROUP_OVERHEAD_S,
    PER_REP_GUESS_S,
    estimate_s,
    fmt_duration,
)

# A guess of one repetition's seconds per mode (CPU-tiny to GPU-small models), used until a
# past run in the results folder measured the same backend, model, mode and device.


@dataclasses.dataclass
class Node:
    label: str
    cell_ids: tuple[str, ...]
    children: list[Node] = dataclasses.field(default_factory=list)


def build_tree(matrix_id: str, cells: Sequence[Cell]) -> Node:
    """matrix -> groups -> backends -> models -> `scenario / mode` leaves (cells in order)."""
    root = Node(matrix_id.upper(), tuple(c.id for c in cells))
    index: dict[tuple[str, ...], Node] = {}
    for cell in cells:
        path = (
            cell.group,
            f"{cell.backend} ({cell.backend_label})",
            f"{cell.model} {cell.dtype}",
            f"{cell.scenario} / {cell.mode}",
        )
        parent = root
        for depth in range(len(path)):
            key = path[: depth + 1]
            node = index.get(key)
            if node is None:
                node = Node(path[depth], ())
                index[key] = node
                parent.children.append(node)
            node.cell_ids = (*node.cell_ids, cell.id)
            parent = node
    return root


def _module_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def backend_problem(backend: str, runner: str) -> str | None:
    """Why `backend` cannot run with `runner` on this machine, or None (the backends' data,
    kit/matrix/builtin/backends.yaml, says what each needs)."""
    from kit.matrix.backends import backend_spec

    spec = backend_spec(backend)
    if not spec.implemented:
        return f"backend {backend} is not implemented in this kit version"
    if runner == "docker":
        if not _module_present("kit.runner.docker") or not _module_present("docker"):
            return "the docker runner is not available in this kit"
        return None
    if spec.interpreter_env:
        # It pins its own torch: the host runner starts it with its own interpreter.
        from kit.runner.host import python_for

        _python, note = python_for(backend, "")
        if note:
            return f"backend {backend} needs its own environment ({note}): run ./scripts/setup-{backend}"
        return None
    for module in spec.python_modules:
        if module not in ("torch", "transformers") and not _module_present(module):
            return (
                f"backend {backend} needs Python module {module!r} on the host (or runner docker)"
            )
    return None


@dataclasses.dataclass(frozen=True)
class LocalImages:
    """The image tags the Docker daemon holds, or why they could not be listed."""

    tags: frozenset[str] | None = None
    reason: str | None = None


def image_problem(backend: str, device: str, images: LocalImages | None) -> str | None:
    """Why the docker runner cannot run `backend` on `device` (no image, image not built)."""
    from kit.errors import KitError
    from kit.images.registry import image_for_backend

    try:
        spec, variant = image_for_backend(backend, device)
    except KitError as err:
        return err.title
    if images is None:
        return None  # not listed yet: the run's preflight checks again
    if images.tags is None:
        return f"docker: {images.reason}"
    tag = spec.tag(variant)
    if tag not in images.tags:
        return f"image {tag} is missing: build it with `kit images build {spec.name}`"
    return None


def cell_problem(
    cell: Cell, has_gpu: bool, device: str | None, runner: str, images: LocalImages | None = None
) -> str | None:
    """Why `cell` cannot run here with the chosen device override and runner, or None."""
    effective = device or cell.device
    if effective == "cuda" and not has_gpu:
        return "needs a GPU, none visible (device cpu: d)"
    if effective == "cpu" and cell.backend == "tensorrt" and cell.device == "cuda":
        return f"backend {cell.backend} has no CPU path in this matrix"
    problem = backend_problem(cell.backend, runner)
    if problem is None and runner == "docker":
        problem = image_problem(cell.backend, effective, images)
    return problem


def past_per_rep_s(results_dir: Path) -> dict[tuple[str, str, str, str], float]:
    """(backend, model, mode, device) -> median seconds per repetition, from past summaries."""
    found: dict[tuple[str, str, str, str], float] = {}
    if not results_dir.is_dir():
        return found
    for path in sorted(results_dir.glob("*/summary.json")):
        try:
            rows = json.loads(path.read_text()).get("rows", [])
        except (OSError, ValueError, AttributeError):
            continue
        for row in rows:
            fields = row.get("fields") or {}
            median = (row.get("latency_ms") or {}).get("median")
            if median is None:
                continue
            key = (
                str(fields.get("backend")),
                str(fields.get("model")),
                str(row.get("phase")),
                str(fields.get("device")),
            )
            found[key] = float(median) / 1000.0
    return found
