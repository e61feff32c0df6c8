"""One cell group's container: live stdout lines, timeout, exit state, removal.

Part of the Docker runner (`kit.runner.docker`); implements `kit.runner.base.GroupProcess`.
"""

from __future__ import annotations

import collections
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kit.errors import KitError
from kit.runner.base import ExitInfo, GroupJob

_EOF = object()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ContainerProcess:
    """A created-then-started container whose output is read as it comes.

    Attaches before starting (nothing is lost), demultiplexes stdout (events, queued as lines)
    from stderr (kept as a tail and in group_dir/stderr.log). A timer enforces the group's
    timeout on its own, so a silent, hung harness cannot block `lines()` forever.
    """

    def __init__(
        self, client: Any, job: GroupJob, config: dict[str, Any], stop_grace_s: float = 5.0
    ) -> None:
        self.client = client
        self.job = job
        self.stop_grace_s = stop_grace_s
        self.on_removed: Callable[[], None] | None = None
        self.started_ns = time.monotonic_ns()
        self.first_line_ns: int | None = None
        self._lines: queue.Queue[object] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_log = open(job.group_dir / "stderr.log", "ab")  # noqa: SIM115 - closed at EOF
        self._state_lock = threading.Lock()
        self._timed_out = False
        self._stopped_by_kit = False
        self._info: ExitInfo | None = None
        self.container = client.containers.create(**config)
        self.container_id: str = self.container.id
        stream = client.api.attach(
            self.container_id, stdout=True, stderr=True, stream=True, logs=True, demux=True
        )
        self._reader = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._reader.start()
        try:
            self.container.start()
        except Exception as err:
            self._remove()
            raise KitError(
                f"the container for group {job.group_id} could not start: "
                f"{getattr(err, 'explanation', None) or err}",
                "check `docker info` and the image (kit doctor)",
            ) from err
        self._timer = threading.Timer(job.timeout_s, self._on_timeout)
        self._timer.daemon = True
        self._timer.start()

    # -- reading -------------------------------------------------------------------------
    def _pump(self, stream: Any) -> None:
        pending = b""
        try:
            for out, err in stream:
                if err:
                    self._stderr_log.write(err)
                    self._stderr_log.flush()
                    for text in err.decode("utf-8", "replace").splitlines():
                        if text.strip():
                            self._tail.append(text.rstrip())
                if out:
                    pending += out
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        self._emit(raw)
        except Exception as err:  # the daemon went away mid-stream: end the lines, say why
            self._tail.append(f"(kit: the container's output stream broke: {err})")
        finally:
            if pending:
                self._emit(pending)
            self._stderr_log.close()
            self._lines.put(_EOF)

    def _emit(self, raw: bytes) -> None:
        if self.first_line_ns is None:
            self.first_line_ns = time.monotonic_ns()
        self._lines.put(raw.decode("utf-8", "replace").rstrip("\r"))

    def lines(self) -> Iterator[str]:
        while True:
            item = self._lines.get()
            if item is _EOF:
                return
            yield str(item)

    def stderr_tail(self, lines: int = 5) -> str:
        return " | ".join(list(self._tail)[-lines:])

    # -- ending --------------------------------------------------------------------------
    def _on_timeout(self) -> None:
        self.mark_timed_out()
        self.stop(self.stop_grace_s)

    def mark_timed_out(self) -> None:
        self._timed_out = True

    def wait(self, timeout_s: float | None = None) -> ExitInfo:
        import requests

        if self._info is not None:
            return self._info
        try:
            self.container.wait(timeout=timeout_s)
        except requests.exceptions.ConnectionError:  # docker-py's read timeout
            self.mark_timed_out()
            return self.stop(self.stop_grace_s)
        return self._finish()

    def stop(self, grace_s: float = 5.0) -> ExitInfo:
        """SIGTERM, SIGKILL after grace_s (docker stop), then the exit state; idempotent."""
        import docker.errors

        import docker

        if self._info is not None:
            return self._info
        self._stopped_by_kit = True
        try:
            self.container.stop(timeout=max(1, round(grace_s)))
        except docker.errors.NotFound:
            pass
        return self._finish()

    def _finish(self) -> ExitInfo:
        import docker.errors

        import docker

        with self._state_lock:
            if self._info is not None:
                return self._info
            self._timer.cancel()
            try:
                self.container.wait()
                state = self.client.api.inspect_container(self.container_id)["State"]
            except docker.errors.NotFound:
                state = {"ExitCode": None, "OOMKilled": False, "Error": "container vanished"}
            self._reader.join(timeout=10)
            self._info = self._exit_info(state)
            self._remove()
            return self._info

    def _exit_info(self, state: dict[str, Any]) -> ExitInfo:
        code = state.get("ExitCode")
        oom = bool(state.get("OOMKilled"))
        sig = code - 128 if isinstance(code, int) and code > 128 else None
        tail = self.stderr_tail(3)
        if self._timed_out:
            detail = (
                f"timeout: the group exceeded its {self.job.timeout_s:g} s limit and its "
                "container was stopped"
            )
        elif oom:
            detail = "out of memory: the kernel killed the container at its memory limit"
        elif sig is not None and self._stopped_by_kit:
            detail = f"stopped by the kit ({_signal_name(sig)})"
        elif sig is not None:
            detail = f"the container was killed by {_signal_name(sig)} from outside the kit"
            if sig == signal.SIGKILL:
                detail += " (docker kill, or the host's OOM killer)"
        elif code is None:
            detail = f"the container ended in an unknown state: {state.get('Error') or 'gone'}"
        elif code != 0:
            detail = f"exited with code {code}" + (f": {tail}" if tail else "")
        else:
            detail = ""
        return ExitInfo(code, signal=sig, oom_killed=oom, timed_out=self._timed_out, detail=detail)

    def _remove(self) -> None:
        import docker.errors

        import docker

        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:  # "removal already in progress"
            if "in progress" not in str(err):
                raise
        if self.on_removed is not None:
            self.on_removed()
