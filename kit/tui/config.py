"""What the app is started with (from `kit` arguments, the environment, or a test)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from kit.tui.models.runs import results_dir_default


@dataclasses.dataclass
class TuiConfig:
    """`poll_hz`: live GPU readings per second (0: read once, for stable snapshots).
    `clock`: seconds for ETAs and elapsed times (a constant freezes them in snapshots).
    `stamp`: run directory names (`<matrix>-<stamp>`)."""

    results_dir: Path = dataclasses.field(default_factory=results_dir_default)
    poll_hz: float = 4.0
    runner: str = "host"
    history: int = 60
    clock: Callable[[], float] = time.monotonic
    stamp: Callable[[], str] = lambda: time.strftime("%Y%m%d-%H%M%S")
