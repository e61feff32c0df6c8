"""A run's duration, estimated before it starts (the UI shows it; `kit run` needs --yes
above `LONG_RUN_S`). Guesses per repetition unless a past run measured the same cell kind."""

from __future__ import annotations

from collections.abc import Iterable

from kit.matrix.cell import Cell

PER_REP_GUESS_S = {"prefill": 0.05, "kv_decode": 1.0, "e2e_kv": 1.0, "generate": 1.5}
GROUP_OVERHEAD_S = 8.0  # process start, torch import, model load
LONG_RUN_S = 24 * 3600.0  # a selection estimated longer than this needs confirming


def estimate_s(
    cells: Iterable[Cell],
    device: str | None,
    reps: int | None,
    warmup: int | None,
    past: dict[tuple[str, str, str, str], float],
) -> tuple[float, int]:
    """(estimated seconds, cells whose estimate comes from a past run)."""
    total, from_past, groups = 0.0, 0, set()
    for cell in cells:
        dev = device or cell.device
        n = (reps or cell.repetitions) + (cell.warmup if warmup is None else warmup)
        key = (cell.backend, cell.model, cell.mode, dev)
        if key in past:
            per_rep, from_past = past[key], from_past + 1
        else:
            per_rep = PER_REP_GUESS_S.get(cell.mode, 1.0)
        total += n * per_rep * max(1, cell.concurrency)
        groups.add(cell.replace(device=dev).group_id())
    return total + GROUP_OVERHEAD_S * len(groups), from_past


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
