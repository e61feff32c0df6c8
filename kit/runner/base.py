"""The contract every runner (host subprocess, Docker container) fulfils.

The sweep loop (`kit.runner.sweep`) is runner-agnostic: it writes a harness input file, asks a
runner to `start` a group process, reads its events line by line, and asks how it ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class GroupJob:
    """One cell group to run in one fresh process or container.

    Paths are as the ORCHESTRATOR sees them; a runner that starts containers maps them
    (for the kit's own container, to host paths) itself.
    """

    group_id: str  # a short, filesystem-safe id of the group key
    input_path: Path  # harness input JSON (see docs/FORMATS.md), inside group_dir
    group_dir: Path  # the group's own output folder (writable)
    model_dir: Path  # the prepared model checkpoint (read-only for the harness)
    compile_cache_dir: Path  # fresh Inductor/Triton cache for this group (writable)
    backend: str
    device: str  # cpu | cuda
    gpu_index: int | None  # which GPU, when device is cuda
    timeout_s: float  # the whole group's wall-clock limit
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    harness_args: tuple[str, ...] = ()  # extra `python -m kit.harness` arguments
    interactive: bool = False  # stdin is a pipe the runner writes commands to (blocks)


@dataclasses.dataclass(frozen=True)
class ExitInfo:
    """How a group process ended."""

    returncode: int | None  # None: still running or unknown
    signal: int | None = None  # killed by this signal
    oom_killed: bool = False
    timed_out: bool = False
    detail: str = ""  # one sentence for the cell's crash reason (stderr tail, OOM, ...)

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and not (self.oom_killed or self.timed_out)


class GroupProcess(Protocol):
    def lines(self) -> Iterator[str]:
        """Yield the process's stdout lines as they come (without newline); ends at EOF."""
        ...

    def wait(self, timeout_s: float | None = None) -> ExitInfo:
        """Wait for the end; on timeout stop, then kill, and report timed_out."""
        ...

    def stop(self, grace_s: float = 5.0) -> ExitInfo:
        """End the process now (terminate, then kill after grace_s); idempotent."""
        ...

    def stderr_tail(self) -> str:
        """The last lines of stderr (for crash reasons)."""
        ...


class Runner(Protocol):
    name: str

    def preflight(self, jobs: list[GroupJob]) -> None:
        """Raise KitError (one sentence, with a hint) when these jobs cannot run here."""
        ...

    def start(self, job: GroupJob) -> GroupProcess: ...

    def describe(self, job: GroupJob) -> dict[str, Any]:
        """What really ran, for the journal: interpreter, image id and digest, ..."""
        ...
