"""`python -m kit.harness.forkserver --socket PATH`: a warm parent for harness processes.

It imports the harness's heavy modules (torch, transformers and the model classes) ONCE,
never initializes CUDA, never runs a tensor op, and forks one fresh child per request. Each
child is what a spawned `python -m kit.harness --input FILE` would be, minus the imports: it
takes the environment the runner sends (its own TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR,
set before any compiler code reads them), its own session, cwd and stdio (file descriptors
passed over the socket), creates its own CUDA context and ends after its group.

Protocol (one AF_UNIX SOCK_SEQPACKET connection per child, see kit/runner/forkserver.py):
  client -> server: JSON {"argv": [...], "env": {...}, "cwd": "..."} with 3 fds (stdin,
  stdout, stderr); server -> client: {"pid": N} (or {"error": "..."}), later
  {"exit": returncode} (negative: killed by that signal, as subprocess reports it).
On stdin EOF (the kit is gone) the server kills its children's sessions and exits.
"""

from __future__ import annotations

import argparse
import array
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

# Modules worth having imported before the fork (the rest is imported by the child).
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.llama.modeling_llama",
    "transformers.models.qwen2.modeling_qwen2",
    "kit.harness.group",
    "kit.harness.backends.transformers_backend",
    "kit.env.ml",
)


def cuda_state() -> dict[str, Any]:
    """Whether anything in this process touched CUDA: torch's lazy init, or the driver itself
    (cuInit, e.g. through cudaGetDeviceCount, opens /dev/nvidiactl and keeps it open).

    The driver library merely being mapped is recorded but is no reason to refuse a fork: a
    CUDA build of torch links libcuda.so, so `import torch` maps it on every GPU host without
    calling cuInit (seen on the H200: mapped, not initialized)."""
    torch = sys.modules.get("torch")
    initialized = bool(torch is not None and torch.cuda.is_initialized())
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        lines = []
    driver_mapped = any("libcuda.so" in line for line in lines)
    device_open = any("/dev/nvidia" in line for line in lines)
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        fds = []
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            device_open = True
            break
    return {
        "cuda_initialized": initialized,
        "driver_device_open": device_open,
        "libcuda_mapped": driver_mapped,
    }


def os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


def _preload() -> dict[str, Any]:
    from transformers import AutoModelForCausalLM  # noqa: F401 - resolves the lazy module

    loaded: dict[str, float | str] = {}
    for name in PRELOAD:
        t0 = time.perf_counter()
        try:
            importlib.import_module(name)
            loaded[name] = round((time.perf_counter() - t0) * 1000, 1)
        except Exception as err:  # a missing optional model family is fine
            loaded[name] = f"{type(err).__name__}: {err}"[:200]
    return loaded


class Server:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(64)
        self.children: dict[int, socket.socket] = {}  # pid -> the connection to report on
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._shutdown(0))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.selector.register(sys.stdin, selectors.EVENT_READ, "stdin")
        self.forks = 0

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    conn, _ = self.listener.accept()
                    self._handle(conn)
                elif key.data == "wake":
                    try:
                        self.wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                elif key.data == "stdin" and not os.read(sys.stdin.fileno(), 4096):
                    self._shutdown(0)
            self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    conn.send(json.dumps({"exit": code}).encode())
                except OSError:
                    pass
                conn.close()

    def _handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            message, fds = _recv_fds(conn, 1 << 20, 3)
            request = json.loads(message)
            state = cuda_state()
            if state["cuda_initialized"] or state["driver_device_open"]:
                # A forked child of a process with a CUDA context cannot use CUDA.
                raise RuntimeError(f"the fork server touched CUDA before forking: {state}")
            if len(fds) != 3:
                raise RuntimeError(f"expected 3 file descriptors, got {len(fds)}")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except Exception as err:
            for fd in fds:
                os.close(fd)
            try:
                conn.send(json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
            except OSError:
                pass
            conn.close()
            return
        if pid == 0:
            self._child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.forks += 1
        self.children[pid] = conn
        try:
            conn.send(json.dumps({"pid": pid, "threads_at_fork": os_threads()}).encode())
        except OSError:  # the kit went away: its child follows (broken pipes, stdin EOF)
            pass

    def _child(self, request: dict[str, Any], fds: list[int]) -> None:
        code = 1
        try:
            os.setsid()  # its own session: the runner ends it with killpg, as a spawned one
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            self.selector.close()
            for sock in (self.listener, self.wake_r, self.wake_w, *self.children.values()):
                sock.close()
            # The group's own environment, before anything reads it: compile cache dirs,
            # CUDA_VISIBLE_DEVICES, PYTHONPATH. (Inductor and Triton read these at use time.)
            os.environ.clear()
            os.environ.update(request["env"])
            os.chdir(request["cwd"])
            sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
            import kit.harness.__main__ as harness

            sys.argv = [harness.__file__, *request["argv"]]  # as `python -m kit.harness` sees it
            code = harness.main(list(request["argv"]))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _shutdown(self, code: int) -> None:
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        os._exit(code)


def _recv_fds(conn: socket.socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    msg, ancdata, _flags, _addr = conn.recvmsg(size, socket.CMSG_LEN(max_fds * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    return msg, list(fds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.harness.forkserver")
    parser.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    # Fork-safe CUDA probing for anything that asks torch.cuda.is_available() at import.
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    t0 = time.perf_counter()
    loaded = _preload()
    import_ms = round((time.perf_counter() - t0) * 1000, 1)
    server = Server(args.socket)
    ready = {
        "ready": True,
        "pid": os.getpid(),
        "import_ms": import_ms,
        "preloaded": loaded,
        "os_threads": os_threads(),
        **cuda_state(),
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
