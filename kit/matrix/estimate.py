"""A run's duration, estimated before it starts (the UI shows it; `kit run` needs --yes
above `LONG_RUN_S`). Guesses per repetition unless a past run measured the same cell kind,
plus per group its start and load, and per compiled cell its compile (one per input shape of
each compiled group, two for dynamic shapes), both growing with the model's parameter count.

The compile guess is from the H200 journals (torch 2.11, 16 cores): 3-13 s per compiled
cell for GPT-2 (25-96 M parameters), 33 s per token length for qwen2.5-1.5b (164 s for five)
and over 38 s for qwen2.5-3b (still compiling at 190 s). Compiled groups precompile in
parallel, so a run is often shorter than this serial sum: an upper bound on purpose."""

from __future__ import annotations

import dataclasses
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
    cells_seen: list[Cell] = []
    total, from_past = 0.0, 0
    billions: dict[str, float] = {}  # group -> its model's parameters, in billions
    shapes: dict[str, set[tuple[object, ...]]] = {}  # compiled group -> its input shapes
    dynamic: dict[str, bool] = {}
    for cell in cells:
        dev = device or cell.device
        cells_seen.append(cell.replace(device=dev))
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
    storms = {s.group: s for s in recompile_storms(cells_seen)}
    for group, seen in shapes.items():
        # one compile per input shape; dynamic shapes: the first, then one symbolic recompile;
        # a static-shape decode: one per cache length, up to dynamo's limit (see below)
        count = min(len(seen), 2) if dynamic[group] else len(seen)
        if group in storms:
            count = max(count, storms[group].limit)
        total += count * (COMPILE_BASE_S + COMPILE_PER_BPARAM_S * billions[group])
    starts = sum(GROUP_OVERHEAD_S + LOAD_PER_BPARAM_S * b for b in billions.values())
    return total + starts, from_past


DECODE_MODES = ("kv_decode", "e2e_kv", "generate")
DEFAULT_RECOMPILE_LIMIT = 64  # the kit's (transformers_backend); dynamo's own is 8


@dataclasses.dataclass(frozen=True)
class Storm:
    """A compiled group whose decode frames will outrun dynamo's recompile limit."""

    group: str  # the group id
    limit: int
    new_tokens: int  # the decode cells' max_new_tokens
    cells: int  # the group's cells, all of which run after the limit is reached

    def warning(self) -> str:
        return (
            f"group {self.group}: compile dynamic: false with a dynamic KV cache and "
            f"{self.new_tokens} new tokens: every decode step is a new cache length, so one "
            f"cell needs more compiles than dynamo's recompile limit ({self.limit}); past it "
            "the frame runs eager under the compiled label, and the group's cells measured "
            f"from then on (of its {self.cells}) are `degraded`. Use compile.dynamic: true (or "
            "leave it unset), cache: static, or a compile.recompile_limit above the new tokens"
        )


def recompile_storms(cells: Iterable[Cell]) -> list[Storm]:
    """Compiled groups certain to hit dynamo's recompile limit: static shapes (`dynamic:
    false`), a dynamic cache, and a decode cell whose new tokens alone exceed the limit
    (its prefill and each later step: one cache length per token). A lower bound: prompts of other lengths add
    shapes, so a group below it may still reach the limit (the run's verdict says so)."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.backend == "transformers-compile":
            groups.setdefault(cell.group_id(), []).append(cell)
    out = []
    for gid, members in groups.items():
        cfg = members[0].compile or {}
        if cfg.get("dynamic") is not False or members[0].cache != "dynamic":
            continue
        limit = int(cfg.get("recompile_limit") or DEFAULT_RECOMPILE_LIMIT)
        decode = [c.max_new_tokens for c in members if c.mode in DECODE_MODES]
        if decode and max(decode) > limit:
            out.append(Storm(gid, limit, max(decode), len(members)))
    return out


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
