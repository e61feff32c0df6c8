"""The runner's side of the fork server (kit/harness/forkserver.py): start it, ask it for
one fresh child per group, follow that child like a spawned one.

The orchestrator never imports torch: the server is a separate interpreter. A forked child is
not the kit's own child, so its exit status comes from the server over the child's own
connection; the kit still ends it directly (killpg on the child's session).
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kit.runner.base import ExitInfo

READY_TIMEOUT_S = 300.0  # importing torch + transformers on a loaded small VM


class ForkServerError(Exception):
    """The fork server could not start or refused a fork (the runner falls back to spawn)."""


class ForkServer:
    def __init__(self, python: str, env: dict[str, str], log_path: Path) -> None:
        self._dir = tempfile.mkdtemp(prefix="kit-forkserver-")
        self.socket_path = os.path.join(self._dir, "sock")
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.ready: dict[str, Any] | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self.started_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(
            [python, "-m", "kit.harness.forkserver", "--socket", self.socket_path],
            stdin=subprocess.PIPE,  # its EOF tells the server that the kit is gone
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=self._dir,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """The server's ready record (import time, CUDA state); raises ForkServerError."""
        with self._lock:
            if self.ready is not None:
                return self.ready
            if self.error is not None:
                raise ForkServerError(self.error)
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
            line = self.proc.stdout.readline() if ready else b""
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or not record.get("ready"):
                self.error = (
                    f"the fork server did not start (exit {self.proc.poll()}): {line[:300]!r}"
                )
                self.close()
                raise ForkServerError(self.error)
            record["startup_ms"] = round((time.monotonic_ns() - self.started_ns) / 1e6, 1)
            self.ready = record
            return record

    def fork(
        self, argv: list[str], env: dict[str, str], cwd: Path, stderr_path: Path
    ) -> ForkedProcess:
        self.wait_ready()
        return ForkedProcess(self.socket_path, argv, env, cwd, stderr_path)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        for name in ("sock",):
            try:
                os.unlink(os.path.join(self._dir, name))
            except OSError:
                pass
        try:
            os.rmdir(self._dir)
        except OSError:
            pass


class ForkedProcess:
    """A GroupProcess whose process the fork server forked (see base.GroupProcess)."""

    start_method = "forkserver"

    def __init__(
        self, socket_path: str, argv: list[str], env: dict[str, str], cwd: Path, stderr_path: Path
    ) -> None:
        from kit.runner.host import StderrPump

        self.requested_ns = time.monotonic_ns()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._conn.connect(socket_path)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe()
        request = {"argv": argv, "env": env, "cwd": str(cwd)}
        try:
            fds = array.array("i", [in_r, out_w, err_w])
            self._conn.sendmsg(
                [json.dumps(request).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
            )
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        self._conn.settimeout(READY_TIMEOUT_S)  # the fork itself takes milliseconds
        try:
            reply = json.loads(self._conn.recv(1 << 16) or b"{}")
        except (OSError, json.JSONDecodeError) as err:
            reply = {"error": f"no answer from the fork server: {err}"}
        self._conn.settimeout(None)
        if "pid" not in reply:
            for fd in (out_r, err_r, in_w):
                os.close(fd)
            self._conn.close()
            raise ForkServerError(reply.get("error", "the fork server closed the connection"))
        self.pid = int(reply["pid"])
        self.threads_at_fork = reply.get("threads_at_fork")
        self.stdin = os.fdopen(in_w, "w", buffering=1, encoding="utf-8")
        self._stdout = os.fdopen(out_r, "rb")
        self._pump = StderrPump(os.fdopen(err_r, "rb"), stderr_path)
        self._returncode: int | None = None
        self._exited = threading.Event()
        self._timed_out = False
        threading.Thread(target=self._wait_exit, daemon=True).start()

    def _wait_exit(self) -> None:
        try:
            data = self._conn.recv(1 << 16)
            code = json.loads(data).get("exit") if data else None
        except (OSError, json.JSONDecodeError):
            code = None
        if code is None:
            # The server went away: wait for the child itself to be gone.
            while _alive(self.pid):
                time.sleep(0.05)
            code = 1
        self._returncode = int(code)
        self._conn.close()
        self._exited.set()

    def lines(self) -> Iterator[str]:
        try:
            for raw in self._stdout:
                yield raw.decode("utf-8", "replace").rstrip("\n")
        finally:
            self._stdout.close()

    def poll(self) -> int | None:
        return self._returncode

    def wait(self, timeout_s: float | None = None) -> ExitInfo:
        if not self._exited.wait(timeout_s):
            self._timed_out = True
            return self.stop()
        self._stdout.close()
        return self._info()

    def mark_timed_out(self) -> None:
        self._timed_out = True

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            try:  # the child has not reached setsid() yet
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float = 5.0) -> ExitInfo:
        if not self._exited.is_set():
            self._signal(signal.SIGTERM)
            if not self._exited.wait(grace_s):
                self._signal(signal.SIGKILL)
                self._exited.wait()
        return self._info()

    def _info(self) -> ExitInfo:
        try:
            self.stdin.close()
        except OSError:
            pass
        return self._pump.exit_info(self._returncode, self._timed_out)

    def stderr_tail(self, lines: int = 5) -> str:
        return self._pump.tail(lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of the (gone) server is reaped by init; treat a zombie as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False
