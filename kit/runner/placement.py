"""Which GPU each cell group runs on (`kit run --gpus 0,1 --isolation exclusive|per-gpu`), and
who ran beside whom (the co-scheduling record of the journal and of each cell result).

Placement is static and decided before anything runs: the groups of the whole run, in run
order, go round-robin over the listed GPUs. Static, so that a group's precompile and its
measuring processes (every attempt, after a resume too) land on one GPU, and so that an
exclusive and a per-gpu run of one sweep put each group on the same GPU (their cells compare
GPU for GPU). A GPU whose queue is empty idles: no work stealing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell

ISOLATIONS = ("exclusive", "per-gpu")


def parse_gpus(text: str) -> tuple[int, ...]:
    """`0,1,3` -> (0, 1, 3). Raises KitError for anything else (empty, negative, repeated)."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(p.isdigit() for p in parts):
        raise KitError(
            f"--gpus {text!r} is not a list of GPU indices",
            "give NVML indices separated by commas, e.g. --gpus 0,1 (see `kit gpu`)",
        )
    gpus = tuple(int(p) for p in parts)
    if len(set(gpus)) != len(gpus):
        raise KitError(f"--gpus {text!r} names a GPU twice", "list each GPU once, e.g. --gpus 0,1")
    return gpus


def check_gpus(
    gpus: Sequence[int], isolation: str, detection: Any, order: str
) -> tuple[str, list[str]]:
    """Check `--gpus`/`--isolation` against what NVML sees; return the isolation in effect
    (per-gpu on one GPU is exclusive) and notes for the journal. Raises KitError."""
    if isolation not in ISOLATIONS:
        raise KitError(
            f"--isolation {isolation!r} is not an isolation",
            "use --isolation exclusive (one group at a time) or --isolation per-gpu",
        )
    if not gpus:
        return isolation, []
    seen = {g.index: g for g in detection.gpus}
    if not seen:
        raise KitError(
            f"--gpus {','.join(map(str, gpus))} names GPUs, but NVML sees none: {detection.reason}",
            "drop --gpus to run on the CPU, or check the driver with `kit gpu`",
        )
    unknown = [g for g in gpus if g not in seen]
    if unknown:
        listing = ", ".join(f"{i}: {seen[i].name or 'unnamed'}" for i in sorted(seen))
        raise KitError(
            f"--gpus names GPU {unknown[0]}, which is not on this host: NVML sees "
            f"{len(seen)} GPU{'s' if len(seen) != 1 else ''} ({listing})",
            f"give indices from that list, e.g. --gpus {','.join(str(i) for i in sorted(seen))}",
        )
    if order == "interleaved" and len(gpus) > 1:
        raise KitError(
            "--order interleaved alternates a comparison's groups on one GPU; --gpus lists "
            f"{len(gpus)}",
            "give one GPU (--gpus 0), or use --order listed/shuffled across GPUs",
        )
    notes = []
    if isolation == "per-gpu" and len(gpus) == 1:
        notes.append("--isolation per-gpu on one GPU is exclusive: one group at a time")
        isolation = "exclusive"
    return isolation, notes


def cpu_note(cells: Sequence[Cell]) -> str | None:
    """The journal's explanation when a placed run has CPU cells (`--gpus` with `--device
    cpu`, or a matrix's CPU cells): their processes are placed, not accelerated."""
    n = sum(1 for c in cells if c.device == "cpu")
    if not n:
        return None
    return (
        f"{n} cells run on the CPU: --gpus only places their group processes (one per GPU "
        "slot, CUDA_VISIBLE_DEVICES set to it, its telemetry sampled); they measure the CPU, "
        "which neighbours share"
    )


def check_servers(cells: Sequence[Cell], isolation: str) -> None:
    """Refuse per-gpu isolation for server backends (Ollama): a run has one server, which
    two GPUs' groups would share, measuring each other's requests. Raises KitError."""
    from kit.matrix.backends import backends

    if isolation != "per-gpu":
        return
    known = backends()
    served = sorted({c.backend for c in cells if c.backend in known and known[c.backend].server})
    if served:
        raise KitError(
            f"--isolation per-gpu would run {', '.join(served)} groups against one shared server",
            "use --isolation exclusive for them, or leave them out with --select",
        )


def placement(groups: Sequence[Sequence[Cell]], gpus: Sequence[int]) -> dict[str, int]:
    """group id -> GPU: round-robin over `gpus` in run order (see the module docstring)."""
    return {g[0].group_id(): gpus[i % len(gpus)] for i, g in enumerate(groups)}


class CoSchedule:
    """The group processes running now, and per in-flight cell the other processes that ran
    at any moment of its window (its neighbours). Thread-safe: per-GPU workers share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], dict[str, Any]] = {}
        self._cells: dict[str, tuple[tuple[str, int], dict[tuple[str, int], dict[str, Any]]]] = {}

    def started(self, group_id: str, attempt: int, gpu: int | None) -> list[dict[str, Any]]:
        """Register a process; return the others running at this moment."""
        key = (group_id, attempt)
        me = {"group_id": group_id, "attempt": attempt, "gpu": gpu}
        with self._lock:
            others = [dict(p) for k, p in self._running.items() if k != key]
            self._running[key] = {**me, "since_ns": time.monotonic_ns()}
            for owner, neighbours in self._cells.values():
                if owner != key:
                    neighbours.setdefault(key, me)
        return [_public(p) for p in others]

    def exited(self, group_id: str, attempt: int) -> list[dict[str, Any]]:
        """Forget a process; return the others still running."""
        with self._lock:
            self._running.pop((group_id, attempt), None)
            return [_public(p) for p in self._running.values()]

    def cell_started(self, cell: str, group_id: str, attempt: int) -> None:
        key = (group_id, attempt)
        with self._lock:
            self._cells[cell] = (
                key,
                {k: _public(p) for k, p in self._running.items() if k != key},
            )

    def cell_finished(self, cell: str) -> list[dict[str, Any]]:
        """The processes that ran beside the cell, in (group, attempt) order."""
        with self._lock:
            _, neighbours = self._cells.pop(cell, (None, {}))
        return [neighbours[k] for k in sorted(neighbours)]


def _public(process: dict[str, Any]) -> dict[str, Any]:
    return {k: process[k] for k in ("group_id", "attempt", "gpu")}
