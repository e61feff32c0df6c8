"""The Docker runner: each cell group in a fresh sibling container of its backend's image.

The container runs `python -m kit.harness --input FILE` with the group's folder, the model
(read-only) and a fresh compiler cache bind-mounted at the SAME paths the orchestrator sees,
so the harness input needs no rewriting; only the mount sources are mapped to host paths
(see `PathMap`) when the kit itself runs in a container. The `docker` package is imported
lazily: the harness side never needs it.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from kit.images.registry import LABEL_PREFIX, image_for_backend
from kit.runner.base import GroupJob
from kit.runner.docker_process import ContainerProcess

RUN_LABEL = f"{LABEL_PREFIX}.run"
OWNER_LABEL = f"{LABEL_PREFIX}.owner"
GROUP_LABEL = f"{LABEL_PREFIX}.group"


def server_of(backend: str) -> str | None:
    """The server a backend talks to (backends' data: `needs.server`), e.g. ollama."""
    from kit.matrix.backends import backends

    spec = backends().get(backend)
    return spec.server if spec else None


@dataclasses.dataclass(frozen=True)
class PathMap:
    """Maps paths as the kit sees them to paths on the Docker daemon's host."""

    pairs: tuple[tuple[Path, Path], ...] = ()  # (kit side, host side)

    def to_host(self, path: Path) -> Path:
        path = Path(path)
        best: tuple[Path, Path] | None = None
        for inside, host in self.pairs:
            within = path == inside or inside in path.parents
            if within and (best is None or len(inside.parts) > len(best[0].parts)):
                best = (inside, host)
        if best is None:
            return path
        return best[1] / path.relative_to(best[0])

    @classmethod
    def from_environment(cls, client: Any = None) -> PathMap:
        """KIT_HOST_RESULTS / KIT_HOST_CACHE (set by compose.yaml) for the results folder
        (KIT_RESULTS_DIR, default /results) and the model cache (KIT_CACHE, default /cache);
        then, inside a container, the kit container's own bind mounts."""
        pairs: list[tuple[Path, Path]] = []
        for host_var, inside_var, default in (
            ("KIT_HOST_RESULTS", "KIT_RESULTS_DIR", "/results"),
            ("KIT_HOST_CACHE", "KIT_CACHE", "/cache"),
        ):
            if os.environ.get(host_var):
                inside = Path(os.environ.get(inside_var) or default)
                pairs.append((inside, Path(os.environ[host_var])))
        if client is not None and Path("/.dockerenv").exists():
            pairs.extend(_own_mounts(client))
        return cls(tuple(pairs))


def _own_mounts(client: Any) -> list[tuple[Path, Path]]:
    import docker.errors

    import docker

    try:
        me = client.containers.get(socket.gethostname())
    except docker.errors.DockerException:
        return []
    return [
        (Path(m["Destination"]), Path(m["Source"]))
        for m in me.attrs.get("Mounts", [])
        if m.get("Type") == "bind"
    ]


def owner_id() -> str:
    """Who started a container: `container:<hostname>:<pid>` or `host:<hostname>:<pid>`."""
    where = "container" if Path("/.dockerenv").exists() else "host"
    return f"{where}:{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class ContainerOptions:
    shm_size: str = "2g"  # PyTorch shares tensors through /dev/shm; vLLM needs more than 64m
    mem_limit: str | None = None
    stop_grace_s: float = 5.0
    command: tuple[str, ...] | None = None  # default: python -m kit.harness --input FILE
    user: str | None = None  # default: the kit's own uid:gid, so outputs stay the caller's


def container_config(
    job: GroupJob,
    image: str,
    paths: PathMap,
    run_id: str,
    options: ContainerOptions,
    server_url: str | None = None,
    network: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of `client.containers.create` for one group (pure; tested).

    A backend with a server (ollama) gets OLLAMA_HOST=`server_url` and joins `network` (the
    sidecar's kit network) or, for a server the user named, the host's network; every other
    backend has no network at all."""
    from docker.types import DeviceRequest, Mount, Ulimit

    def bind(path: Path, read_only: bool) -> Any:
        return Mount(str(path), str(paths.to_host(path)), type="bind", read_only=read_only)

    mounts = [bind(job.group_dir, read_only=False)]
    if job.group_dir not in job.compile_cache_dir.parents:
        mounts.append(bind(job.compile_cache_dir, read_only=False))
    if job.model_dir != job.group_dir and job.model_dir not in job.group_dir.parents:
        mounts.append(bind(job.model_dir, read_only=True))
    devices = []
    if job.device == "cuda":
        index = 0 if job.gpu_index is None else job.gpu_index
        devices.append(DeviceRequest(device_ids=[str(index)], capabilities=[["gpu"]]))
    env = {
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
        "HF_HUB_OFFLINE": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(job.compile_cache_dir / "inductor"),
        "TRITON_CACHE_DIR": str(job.compile_cache_dir / "triton"),
        **job.env,
    }
    network_mode = "none"
    if server_of(job.backend):
        network_mode = network or "host"
        if server_url:
            env["OLLAMA_HOST"] = server_url
    command = list(options.command or ("python", "-m", "kit.harness", "--input"))
    if options.command is None:
        command.append(str(job.input_path))
    return {
        "image": image,
        "command": command,
        "entrypoint": [],
        "working_dir": str(job.group_dir),
        "environment": env,
        "mounts": mounts,
        "device_requests": devices,
        "network_mode": network_mode,
        "shm_size": options.shm_size,
        "mem_limit": options.mem_limit,
        # NVIDIA's recommended limits for CUDA work (pinned memory, deep stacks); CPU groups
        # keep the daemon's defaults (raising memlock is refused on some hosts).
        "ulimits": [
            Ulimit(name="memlock", soft=-1, hard=-1),
            Ulimit(name="stack", soft=1 << 26, hard=1 << 26),
        ]
        if job.device == "cuda"
        else None,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "user": options.user or f"{os.getuid()}:{os.getgid()}",
        "labels": {RUN_LABEL: run_id, GROUP_LABEL: job.group_id, OWNER_LABEL: owner_id()},
        "stdin_open": False,
        "tty": False,
        "detach": True,
    }


class DockerRunner:
    """Runs each cell group in its backend's pinned image (see docs/FORMATS.md, Runner)."""

    name = "docker"

    def __init__(
        self,
        *,
        allow_unpinned: bool = False,
        run_id: str | None = None,
        client: Any = None,
        options: ContainerOptions | None = None,
        image_overrides: dict[str, str] | None = None,
    ) -> None:
        self.allow_unpinned = allow_unpinned
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.options = options or ContainerOptions()
        self.image_overrides = dict(image_overrides or {})  # "torch:cpu" -> any local tag
        self._client = client
        self._paths: PathMap | None = None
        self._checked: dict[str, dict[str, Any]] = {}  # tag -> what describe() reports
        self._live: dict[str, ContainerProcess] = {}
        self._sidecar: Any = None  # the run's Ollama server, started on first use
        self._lock = threading.Lock()
        atexit.register(self.close)

    @property
    def client(self) -> Any:
        if self._client is None:
            from kit.runner.preflight import connect

            self._client = connect()
        return self._client

    def image_tag(self, job: GroupJob) -> str:
        spec, variant = image_for_backend(job.backend, job.device)
        return self.image_overrides.get(f"{spec.name}:{variant.name}", spec.tag(variant))

    def preflight(self, jobs: list[GroupJob]) -> None:
        """Daemon reachable; leftovers of dead kits removed; each job's image checked."""
        from kit.runner.preflight import remove_leftovers

        remove_leftovers(self.client)
        for job in jobs:
            self._check_image(job)

    def image_pins(self, cells: list[Any]) -> list[dict[str, Any]]:
        """How each image the cells need is pinned (kit.runner.preflight.image_pins)."""
        from kit.runner.preflight import image_pins

        return image_pins(self.client, cells, self.image_overrides)

    def _check_image(self, job: GroupJob) -> dict[str, Any]:
        from kit.runner.preflight import check_image_for_job

        tag = self.image_tag(job)
        with self._lock:
            if tag not in self._checked:
                self._checked[tag] = check_image_for_job(
                    self.client, job, tag, allow_unpinned=self.allow_unpinned
                )
            return self._checked[tag]

    def start(self, job: GroupJob) -> ContainerProcess:
        record = self._check_image(job)
        if self._paths is None:
            self._paths = PathMap.from_environment(self.client)
        server_url, network = self._server_for(job)
        config = container_config(
            job, record["image_id"], self._paths, self.run_id, self.options, server_url, network
        )
        config["labels"][f"{LABEL_PREFIX}.image"] = self.image_tag(job)
        process = ContainerProcess(self.client, job, config, self.options.stop_grace_s)
        with self._lock:
            self._live[job.group_id] = process
        process.on_removed = lambda: self._forget(job.group_id, process)
        return process

    def _server_for(self, job: GroupJob) -> tuple[str | None, str | None]:
        """(OLLAMA_HOST, network) for a server backend: the user's $OLLAMA_HOST (host
        network), else the run's sidecar, started once."""
        if server_of(job.backend) != "ollama":
            return None, None
        if os.environ.get("OLLAMA_HOST"):
            return os.environ["OLLAMA_HOST"], None
        from kit.runner.ollama_sidecar import OllamaSidecar, SidecarPlan, ollama_image

        with self._lock:
            if self._sidecar is None:
                gpu = (job.gpu_index or 0) if job.device == "cuda" else None
                plan = SidecarPlan(self.run_id, ollama_image(), gpu)
                self._sidecar = OllamaSidecar(self.client, plan)
            url = self._sidecar.start()
            return url, self._sidecar.plan.network

    def _forget(self, group_id: str, process: ContainerProcess) -> None:
        with self._lock:
            if self._live.get(group_id) is process:
                del self._live[group_id]

    def describe(self, job: GroupJob) -> dict[str, Any]:
        """What really ran: image tag, id, repo digests, base and its digest, fingerprint."""
        record = dict(self._check_image(job))
        with self._lock:
            live = self._live.get(job.group_id)
        record.update(
            runner="docker",
            run_label=self.run_id,
            container_id=live.container_id if live else None,
            path_map=[[str(a), str(b)] for a, b in (self._paths.pairs if self._paths else ())],
        )
        return record

    def close(self) -> None:
        """Stop and remove every container this runner started (Ctrl-C, exit)."""
        with self._lock:
            live = list(self._live.values())
        for process in live:
            try:
                process.stop(grace_s=1.0)
            except Exception:  # at exit, a daemon gone away must not mask the real error
                pass
        if self._sidecar is not None:
            self._sidecar.stop()
            self._sidecar = None
