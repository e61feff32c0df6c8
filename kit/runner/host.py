"""The host runner: each cell group in a fresh child process of this machine's Python."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.runner.base import ExitInfo, GroupJob

# Backends that pin their own torch run in their own venv (scripts/setup-<backend>).
OWN_VENV = {"vllm": ("KIT_VLLM_PYTHON", ".venv-vllm")}


def python_for(backend: str, default: str) -> tuple[str, str | None]:
    """The interpreter for a backend's groups, and a note when its own one is missing.

    vllm: $KIT_VLLM_PYTHON, else .venv-vllm/bin/python of the kit's checkout, else `default`
    (whose harness then reports the cells skipped, saying what to install)."""
    if backend not in OWN_VENV:
        return default, None
    variable, venv = OWN_VENV[backend]
    chosen = os.environ.get(variable)
    if chosen:
        if Path(chosen).exists():
            return chosen, None
        return default, f"{variable}={chosen} does not exist"
    own = Path(__file__).resolve().parents[2] / venv / "bin" / "python"
    if own.exists():
        return str(own), None
    return default, f"no {venv} in {own.parents[2]} and {variable} is not set"


class HostProcess:
    def __init__(self, job: GroupJob, python: str) -> None:
        env = {**os.environ, **job.env}
        python, note = python_for(job.backend, python)
        if note:
            env["KIT_INTERPRETER_NOTE"] = note
        env["PYTHONUNBUFFERED"] = "1"
        # A fresh compiler cache per group (TR126's pitfall: kernels warmed by the last model).
        env["TORCHINDUCTOR_CACHE_DIR"] = str(job.compile_cache_dir / "inductor")
        env["TRITON_CACHE_DIR"] = str(job.compile_cache_dir / "triton")
        if job.device == "cuda" and job.gpu_index is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(job.gpu_index)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._stderr_path = job.group_dir / "stderr.log"
        self._stderr_file = open(self._stderr_path, "ab")  # noqa: SIM115 - closed in wait/stop
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self.proc = subprocess.Popen(
            [python, "-m", "kit.harness", "--input", str(job.input_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(job.group_dir),
            start_new_session=True,  # Ctrl-C reaches the kit, which ends the child itself
        )
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr_thread.start()
        self._timed_out = False

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr_file.write(raw)
            self._stderr_file.flush()
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self._tail.append(text)

    def lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\n")

    def _exit_info(self, code: int | None) -> ExitInfo:
        self._stderr_thread.join(timeout=5)
        self._stderr_file.close()
        if code is None:
            return ExitInfo(None, detail="still running")
        sig = -code if code < 0 else None
        detail = ""
        if self._timed_out:
            detail = "timeout: the group exceeded its time limit and was stopped"
        elif sig is not None:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            detail = f"killed by signal {name}" + (
                " (possibly the kernel's OOM killer)" if sig == signal.SIGKILL else ""
            )
        elif code != 0:
            detail = f"exited with code {code}: {self.stderr_tail(3)}"
        return ExitInfo(code, signal=sig, timed_out=self._timed_out, detail=detail)

    def wait(self, timeout_s: float | None = None) -> ExitInfo:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            return self.stop()
        return self._exit_info(code)

    def mark_timed_out(self) -> None:
        self._timed_out = True

    def stop(self, grace_s: float = 5.0) -> ExitInfo:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace_s)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self._stderr_file.closed:
            return ExitInfo(self.proc.returncode, timed_out=self._timed_out)
        return self._exit_info(self.proc.returncode)

    def stderr_tail(self, lines: int = 5) -> str:
        return " | ".join(list(self._tail)[-lines:])


class HostRunner:
    """Runs `python -m kit.harness` in a child process on this machine."""

    name = "host"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def preflight(self, jobs: list[GroupJob]) -> None:
        if not Path(self.python).exists():
            raise KitError(
                f"the Python interpreter {self.python} does not exist", "run ./scripts/setup"
            )

    def start(self, job: GroupJob) -> HostProcess:
        return HostProcess(job, self.python)

    def describe(self, job: GroupJob) -> dict[str, Any]:
        python, note = python_for(job.backend, self.python)
        described = {"runner": "host", "python": python, "pid_of_kit": os.getpid()}
        return described | ({"interpreter_note": note} if note else {})
