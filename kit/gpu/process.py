"""Starting and stopping the sampler process from the orchestrator (`start_sampler`)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kit.gpu.sampler import DEFAULT_HZ, check_rate, read_status, write_status

_KIT_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class SamplerResult:
    """How the sampler ended: `status` is stopped, lost (every GPU fell off), unavailable
    (no GPU/driver: nothing sampled), orphaned, or crashed (with `detail`)."""

    status: str
    returncode: int | None
    rows: dict[str, int] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)
    detail: str | None = None


class SamplerHandle:
    """A running sampler process. Context manager; `stop()` flushes and ends it.

    A crash of the sampler is recorded (in `result` and `telemetry/sampler.json`), never
    raised: a sweep goes on without telemetry rather than stop."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        folder: Path,
        first_line: str,
        name: str = "sampler",
        gpus: Sequence[int] | None = None,
    ) -> None:
        self.proc = proc
        self.folder = folder
        self.first_line = first_line
        self.name = name  # status and log file stem in `folder`
        self.gpus = list(gpus) if gpus is not None else []  # [] : every GPU NVML sees
        self.result: SamplerResult | None = None

    @property
    def available(self) -> bool:
        return self.first_line == "ready"

    @property
    def reason(self) -> str | None:
        """Why nothing is sampled (no GPU, crash at start), or None while sampling."""
        if self.available:
            return None
        return self.first_line.removeprefix("unavailable: ") or "the sampler did not start"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> SamplerResult:
        """Ask the sampler to flush and exit (SIGTERM), kill it if it hangs; idempotent."""
        if self.result is not None:
            return self.result
        if not self.available:  # it reported why it will not sample and is exiting
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        status = read_status(self.folder, self.name)
        code = self.proc.returncode
        ended = status.get("status") in ("stopped", "lost", "unavailable", "orphaned")
        result = SamplerResult(
            status=str(status.get("status")) if ended else "crashed",
            returncode=code,
            rows={str(k): int(v) for k, v in status.get("rows", {}).items()},
            lost={str(k): str(v) for k, v in status.get("lost", {}).items()},
        )
        # SIGTERM landing while Python finalizes (handlers reset) ends it with -SIGTERM
        # after it wrote its final status: that is a clean stop, not a crash.
        if not ended or code not in (0, -signal.SIGTERM):
            result.status = "crashed"
            log = _log_tail(self.folder, self.name)
            result.detail = f"sampler exited with code {code}: {log}"
            status.update(status="crashed", returncode=code, detail=result.detail)
            write_status(self.folder, status, self.name)
        self.result = result
        return result

    def __enter__(self) -> SamplerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _log_tail(folder: Path, name: str = "sampler", limit: int = 600) -> str:
    try:
        text = (folder / f"{name}.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text.strip()[-limit:] or "(empty log)"


def start_sampler(
    run_dir: Path | str,
    hz: float = DEFAULT_HZ,
    gpus: Sequence[int] | None = None,
    ready_timeout_s: float = 20.0,
    python: str | None = None,
    name: str = "sampler",
) -> SamplerHandle:
    """Start `python -m kit.gpu.sampler` writing RUN_DIR/telemetry; return once it wrote its
    first row, reported that no GPU is available, or failed (see `SamplerHandle.reason`).
    `name` is the stem of its status and log files (several samplers share one folder).
    Raises KitError only for a rate above 100 Hz or below zero."""
    check_rate(hz)
    folder = Path(run_dir) / "telemetry"
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_KIT_ROOT, env.get("PYTHONPATH")) if p)
    cmd = [
        python or sys.executable,
        "-m",
        "kit.gpu.sampler",
        "--out",
        str(folder),
        "--hz",
        f"{hz:g}",
        "--parent-pid",
        str(os.getpid()),
        "--name",
        name,
    ]
    if gpus is not None:
        cmd += ["--gpus", ",".join(str(g) for g in gpus)]
    with open(folder / f"{name}.log", "ab") as log:
        proc: subprocess.Popen[str] = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the orchestrator, which stops us
        )
    return SamplerHandle(proc, folder, _first_line(proc, ready_timeout_s), name, gpus)


def _first_line(proc: subprocess.Popen[Any], timeout_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return str(proc.stdout.readline()).strip()
        if proc.poll() is not None:
            return ""
    return ""
