"""The host runner: each cell group in a fresh child process of this machine's Python."""

from __future__ import annotations

import collections
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from kit.errors import KitError
from kit.runner.base import ExitInfo, GroupJob


def _own_venvs() -> dict[str, tuple[str, str]]:
    """Backends that pin their own torch run in their own venv (scripts/setup-<backend>):
    `needs.interpreter` in kit/matrix/builtin/backends.yaml."""
    from kit.matrix.backends import backends

    return {
        b.id: (b.interpreter_env, b.interpreter_venv)
        for b in backends().values()
        if b.interpreter_env and b.interpreter_venv
    }


OWN_VENV = _own_venvs()


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


class StderrPump:
    """Copies a child's stderr to its group's stderr.log and keeps the last lines (for crash
    reasons); turns a return code into the ExitInfo every runner reports."""

    def __init__(self, stream: IO[bytes], path: Path) -> None:
        self._stream = stream
        self._file = open(path, "ab")  # noqa: SIM115 - closed in exit_info
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._fatal: list[str] = []  # faulthandler's report, when the child died of a signal
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for raw in self._stream:
            self._file.write(raw)
            self._file.flush()
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self._tail.append(text)
                if text.startswith("Fatal Python error:"):
                    self._fatal = [text]
                elif self._fatal and len(self._fatal) < 2000:
                    self._fatal.append(text)
        self._stream.close()

    def fatal_frame(self) -> str:
        """'Segmentation fault in File "x.py", line 9 in f': the innermost Python frame of the
        crashing thread, from the report faulthandler (enabled in every group process) writes
        when a signal kills the interpreter; "" when there is none."""
        if not self._fatal:
            return ""
        what = self._fatal[0].removeprefix("Fatal Python error:").strip()
        current = False
        for line in self._fatal[1:]:
            if line.startswith("Current thread"):
                current = True
            elif current and line.lstrip().startswith("File "):
                return f"{what} in {line.strip()}"
        return what

    def tail(self, lines: int = 5) -> str:
        return " | ".join(list(self._tail)[-lines:])

    def exit_info(self, code: int | None, timed_out: bool) -> ExitInfo:
        if self._file.closed:
            return ExitInfo(code, timed_out=timed_out)
        self._thread.join(timeout=5)
        self._file.close()
        if code is None:
            return ExitInfo(None, detail="still running")
        sig = -code if code < 0 else None
        detail = ""
        if timed_out:
            detail = "timeout: the group exceeded its time limit and was stopped"
        elif sig is not None:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            detail = f"killed by signal {name}" + (
                " (possibly the kernel's OOM killer)" if sig == signal.SIGKILL else ""
            )
            frame = self.fatal_frame()
            if frame:
                detail += f": {frame}"
        elif code != 0:
            detail = f"exited with code {code}: {self.tail(3)}"
        return ExitInfo(code, signal=sig, timed_out=timed_out, detail=detail)


def child_env(job: GroupJob) -> dict[str, str]:
    """The environment of a group's measuring process (spawned or forked alike)."""
    env = {**os.environ, **job.env}
    env["PYTHONUNBUFFERED"] = "1"
    # A fresh compiler cache per group (TR126's pitfall: kernels warmed by the last model).
    env["TORCHINDUCTOR_CACHE_DIR"] = str(job.compile_cache_dir / "inductor")
    env["TRITON_CACHE_DIR"] = str(job.compile_cache_dir / "triton")
    # A placed CPU group (--gpus) gets it too: it cannot touch another group's GPU.
    if job.gpu_index is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(job.gpu_index)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def harness_argv(job: GroupJob) -> list[str]:
    return ["--input", str(job.input_path), *job.harness_args]


class HostProcess:
    start_method = "spawn"

    def __init__(self, job: GroupJob, python: str) -> None:
        env = child_env(job)
        python, note = python_for(job.backend, python)
        if note:
            env["KIT_INTERPRETER_NOTE"] = note
        self.requested_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(
            [python, "-m", "kit.harness", *harness_argv(job)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if job.interactive else subprocess.DEVNULL,
            env=env,
            cwd=str(job.group_dir),
            start_new_session=True,  # Ctrl-C reaches the kit, which ends the child itself
        )
        self.pid = self.proc.pid
        self.stdin: IO[str] | None = None
        if job.interactive:
            assert self.proc.stdin is not None
            self.stdin = io.TextIOWrapper(self.proc.stdin, encoding="utf-8", line_buffering=True)
        assert self.proc.stderr is not None
        self._pump = StderrPump(self.proc.stderr, job.group_dir / "stderr.log")
        self._timed_out = False

    def lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\n")

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout_s: float | None = None) -> ExitInfo:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            return self.stop()
        return self._pump.exit_info(code, self._timed_out)

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
        return self._pump.exit_info(self.proc.returncode, self._timed_out)

    def stderr_tail(self, lines: int = 5) -> str:
        return self._pump.tail(lines)


START_METHODS = ("forkserver", "spawn")
# Backends whose harness runs in the kit's own interpreter and gains from preloaded torch.
FORK_BACKENDS = ("transformers-eager", "transformers-compile", "onnxruntime")


def default_start_method() -> str:
    """$KIT_START_METHOD, else the fork server where the platform has one (Linux)."""
    chosen = os.environ.get("KIT_START_METHOD")
    if chosen:
        return chosen
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


class HostRunner:
    """Runs `python -m kit.harness` in a child process on this machine: forked from a warm
    fork server (default on Linux) or spawned as a fresh interpreter (`start_method="spawn"`).

    Backends with their own interpreter (vLLM) are always spawned."""

    name = "host"

    def __init__(self, python: str | None = None, start_method: str | None = None) -> None:
        self.python = python or sys.executable
        self.start_method = start_method or default_start_method()
        if self.start_method not in START_METHODS:
            raise KitError(
                f"start method {self.start_method!r} is not one of {', '.join(START_METHODS)}",
                "use --start forkserver or --start spawn (or unset KIT_START_METHOD)",
            )
        self._server: Any = None
        self._server_note: str | None = None
        self._used: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def preflight(self, jobs: list[GroupJob]) -> None:
        if not Path(self.python).exists():
            raise KitError(
                f"the Python interpreter {self.python} does not exist", "run ./scripts/setup"
            )

    def warm_up(self, log_dir: Path, backends: Iterable[str] = FORK_BACKENDS) -> None:
        """Start the fork server now (it imports torch while the kit prepares models), when
        any of these backends will run through it."""
        if self.start_method != "forkserver" or self._server is not None:
            return
        if not set(backends) & set(FORK_BACKENDS):
            return
        from kit.runner.forkserver import ForkServer

        env = {k: v for k, v in os.environ.items()}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        # The server must never compile; any cache path it might freeze at import points
        # here, so that a child writing outside its own group's cache shows up (and is tested).
        env["TORCHINDUCTOR_CACHE_DIR"] = str(log_dir / "forkserver-cache-never-used" / "inductor")
        env["TRITON_CACHE_DIR"] = str(log_dir / "forkserver-cache-never-used" / "triton")
        log_dir.mkdir(parents=True, exist_ok=True)
        self._server = ForkServer(self.python, env, log_dir / "forkserver.log")

    def _fork_server(self, job: GroupJob) -> Any:
        with self._lock:
            if self._server is None:
                self.warm_up(job.group_dir.parent.parent)
            return self._server

    def start(self, job: GroupJob) -> Any:
        own, _ = python_for(job.backend, self.python)
        if (
            self.start_method == "forkserver"
            and job.backend in FORK_BACKENDS
            and own == self.python
            and self._server_note is None
        ):
            from kit.runner.forkserver import ForkServerError

            server = self._fork_server(job)
            waited_ns = time.monotonic_ns()
            try:
                server.wait_ready()
                waited_ms = round((time.monotonic_ns() - waited_ns) / 1e6, 1)
                proc = server.fork(
                    harness_argv(job), child_env(job), job.group_dir, job.group_dir / "stderr.log"
                )
            except (ForkServerError, OSError) as err:
                # Spawn instead (journaled through describe()); never lose a group to it.
                self._server_note = f"fork server unavailable, spawned instead: {err}"
            else:
                self._used[job.group_id] = {
                    "start_method": "forkserver",
                    "forkserver": {
                        k: server.ready.get(k)
                        for k in ("pid", "import_ms", "startup_ms", "os_threads")
                    },
                    "threads_at_fork": proc.threads_at_fork,
                    "waited_for_forkserver_ms": waited_ms,
                }
                return proc
        self._used[job.group_id] = {"start_method": "spawn"} | (
            {"forkserver_note": self._server_note} if self._server_note else {}
        )
        return HostProcess(job, self.python)

    def describe(self, job: GroupJob) -> dict[str, Any]:
        python, note = python_for(job.backend, self.python)
        described = {"runner": "host", "python": python, "pid_of_kit": os.getpid()}
        described |= self._used.get(job.group_id, {"start_method": "spawn"})
        return described | ({"interpreter_note": note} if note else {})

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
