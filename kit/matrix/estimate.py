"""A run's duration, estimated before it starts (the UI shows it; `kit run` needs --yes
above `LONG_RUN_S`). Guesses per repetition unless a past run measured the same cell kind,
plus per group its start and load, and per compiled cell its compile (one per input shape of
each compiled group, two for dynamic shapes), both growing with the model's parameter count.

The compile guess is from the H200 journals (torch 2.11, 16 cores): 3-13 s per compiled
cell for GPT-2 (25-96 M parameters), 33 s per token length for qwen2.5-1.5b (164 s for five)
and over 38 s for qwen2.5-3b (still compiling at 190 s). Compiled groups precompile in
parallel, so a run is often shorter than this serial sum: an upper bound on purpose."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from kit.errors import KitError
from kit.matrix.cell import Cell

PER_REP_GUESS_S = {"prefill": 0.05, "kv_decode": 1.0, "e2e_kv": 1.0, "generate": 1.5}
GROUP_OVERHEAD_S = 8.0  # process start, torch import, model load
LOAD_PER_BPARAM_S = 5.0  # more load per billion parameters
COMPILE_BASE_S = 5.0  # one compile of one input shape (dynamo + Inductor), small model
COMPILE_PER_BPARAM_S = 20.0  # more compile per billion parameters
LONG_RUN_S = 24 * 3600.0  # a selection estimated longer than this needs confirming


def estimate_s(
    cells: Iterable[Cell],
    device: str | None,
    reps: int | None,
    warmup: int | None,
    past: dict[tuple[str, str, str, str], float],
) -> tuple[float, int]:
    """(estimated seconds, cells whose estimate comes from a past run)."""
    total, from_past = 0.0, 0
    billions: dict[str, float] = {}  # group -> its model's parameters, in billions
    shapes: dict[str, set[tuple[object, ...]]] = {}  # compiled group -> its input shapes
    dynamic: dict[str, bool] = {}
    for cell in cells:
        dev = device or cell.device
        n = (reps or cell.repetitions) + (cell.warmup if warmup is None else warmup)
        key = (cell.backend, cell.model, cell.mode, dev)
        if key in past:
            per_rep, from_past = past[key], from_past + 1
        else:
            per_rep = PER_REP_GUESS_S.get(cell.mode, 1.0)
        total += n * per_rep * max(1, cell.concurrency)
        group = cell.replace(device=dev).group_id()
        billions[group] = parameters(cell.model) / 1e9
        if cell.backend == "transformers-compile":
            shape = (cell.mode, cell.token_len, cell.scenario, cell.prompt_index, cell.batch_size)
            shapes.setdefault(group, set()).add(shape)
            dynamic[group] = bool((cell.compile or {}).get("dynamic"))
    for group, seen in shapes.items():
        # one compile per input shape; dynamic shapes: the first, then one symbolic recompile
        count = min(len(seen), 2) if dynamic[group] else len(seen)
        total += count * (COMPILE_BASE_S + COMPILE_PER_BPARAM_S * billions[group])
    starts = sum(GROUP_OVERHEAD_S + LOAD_PER_BPARAM_S * b for b in billions.values())
    return total + starts, from_past


@cache
def parameters(model_id: str) -> int:
    """The model's stored parameter count, from its registry config (0 when unknown: an
    Ollama tag, a model outside the registry)."""
    from kit.matrix.models import get_model
    from kit.models.synth import tensor_plan

    try:
        spec = get_model(model_id)
        return sum(t.size for t in tensor_plan(spec.family, spec.config))
    except (KitError, KeyError, TypeError):
        return 0


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
