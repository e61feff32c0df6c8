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
