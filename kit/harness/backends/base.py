"""What a harness backend provides to the generic cell loop (kit.harness.group)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from kit.harness.timing import Timer


@dataclasses.dataclass
class Call:
    """One repetition of a mode: `setup()` runs untimed and returns state; `run(state)` is the
    timed work and returns whatever `count(result)` turns into tokens produced per sequence."""

    setup: Callable[[], Any]
    run: Callable[[Any], Any]
    count: Callable[[Any], list[int]]


@dataclasses.dataclass
class Verdict:
    """A backend's word on a finished cell: reasons make it degraded; evidence is kept."""

    reasons: list[str] = dataclasses.field(default_factory=list)
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


def left_pad(
    prompt_ids: list[list[int]], pad_to: int | None, pad_id: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Rows of token ids left-padded to one length (rounded up to a multiple of `pad_to`
    when given) and their attention masks (0 on padding). Position ids follow from the mask:
    `cumsum(mask) - 1`, clipped at 0, so each row's real tokens start at position 0."""
    longest = max(len(ids) for ids in prompt_ids)
    if pad_to:
        longest = -(-longest // pad_to) * pad_to
    rows = [[pad_id] * (longest - len(ids)) + list(ids) for ids in prompt_ids]
    masks = [[0] * (longest - len(ids)) + [1] * len(ids) for ids in prompt_ids]
    return rows, masks


class Backend(Protocol):
    timer: Timer
    compiles: bool  # True: the first call of each cell is reported as the compile phase

    def unavailable(self) -> str | None:
        """A reason every cell of the group must be skipped (device missing, ...), or None."""
        ...

    def load(self) -> dict[str, Any]:
        """Load the model (timed by the caller as phase `load`); returns details."""
        ...

    def skip_reason(self, cell: dict[str, Any]) -> str | None: ...

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call: ...

    def compile_counters(self) -> dict[str, Any]:
        """Counters to diff around the compile call (empty for eager backends)."""
        ...

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict: ...

    def is_fatal(self, error: BaseException) -> bool:
        """True when the process must end after this error (a poisoned CUDA context)."""
        ...
