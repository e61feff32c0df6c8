"""The Matrices screen's GPU picker: which GPU sets to offer, and the lines that show the
choice (plain Python; the screen only cycles through them)."""

from __future__ import annotations

from collections.abc import Sequence

GpuChoice = tuple[int, ...] | None  # None: as `kit run` without --gpus (one GPU, --gpu 0)


def gpu_choices(indices: Sequence[int]) -> list[GpuChoice]:
    """None, then every GPU together, then each one alone; only None on a host with fewer
    than two GPUs (there is nothing to spread, and the screen shows no picker)."""
    if len(indices) < 2:
        return [None]
    ordered = tuple(sorted(indices))
    return [None, ordered, *((i,) for i in ordered)]


def next_choice(current: GpuChoice, indices: Sequence[int]) -> GpuChoice:
    choices = gpu_choices(indices)
    position = choices.index(current) if current in choices else 0
    return choices[(position + 1) % len(choices)]


def placement_lines(gpus: GpuChoice, isolation: str, n_gpus: int) -> list[str]:
    """The picker's lines for the choices panel ([] on a host with fewer than two GPUs)."""
    if n_gpus < 2:
        return []
    shown = "default (GPU 0)" if gpus is None else ",".join(str(g) for g in gpus)
    lines = [f"gpus: {shown} (u)"]
    if gpus is not None:
        effective = isolation if len(gpus) > 1 else "exclusive"
        lines.append(f"isolation: {effective} (p)")
    return lines
