"""Checks before any container runs: each failure is one KitError sentence with a hint.

Used by the Docker runner (before and during a sweep) and by `kit doctor`. Imports `docker`
lazily.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from kit.errors import KitError
from kit.images.inspect import image_facts, image_fingerprint, pin_status
from kit.images.registry import LABEL_PREFIX, image_for_backend
from kit.runner.base import GroupJob

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def _root_cause(err: BaseException) -> BaseException:
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        nxt = err.__cause__ or err.__context__ or (err.args[0] if err.args else None)
        if isinstance(nxt, BaseException):
            err = nxt
            continue
        if isinstance(nxt, tuple) and len(nxt) > 1 and isinstance(nxt[1], BaseException):
            err = nxt[1]  # urllib3's ('Connection aborted.', FileNotFoundError(...))
            continue
        break
    return err


def daemon_error(err: BaseException, where: str) -> KitError:
    """Map a failed connection to the daemon to one message that names the fix."""
    cause = _root_cause(err)
    code = getattr(cause, "errno", None)
    if isinstance(cause, PermissionError) or code in (errno.EACCES, errno.EPERM):
        return KitError(
            f"permission denied on the Docker socket {where}",
            "add your user to the docker group (sudo usermod -aG docker $USER, then log in "
            "again), or run the kit with sudo",
        )
    if isinstance(cause, FileNotFoundError | ConnectionRefusedError) or code in (
        errno.ENOENT,
        errno.ECONNREFUSED,
    ):
        return KitError(
            f"no Docker daemon answers at {where}",
            "start it (sudo systemctl start docker, or `dockerd &`), or set DOCKER_HOST to "
            "where it listens; without Docker use --runner host",
        )
    return KitError(
        f"the Docker daemon at {where} cannot be used: {cause}",
        "check `docker info`; it talks to the same daemon",
    )


def connect(base_url: str | None = None, timeout_s: float = 10.0) -> Any:
    """A docker client whose daemon answered a ping; raises KitError otherwise."""
    try:
        import docker.client
        import docker.errors

        import docker
    except ImportError as err:
        raise KitError(
            "the Docker SDK for Python is not installed",
            "pip install docker (it is in the kit's dependencies: ./scripts/setup)",
        ) from err
    where = base_url or docker_host()
    try:
        client = docker.client.DockerClient(base_url=where, timeout=int(timeout_s))
        client.ping()
    except docker.errors.DockerException as err:
        raise daemon_error(err, where) from err
    except OSError as err:
        raise daemon_error(err, where) from err
    return client


def check_nvidia_runtime(info: dict[str, Any]) -> None:
    """Raise unless the daemon can hand GPUs to containers (NVIDIA Container Toolkit)."""
    runtimes = set((info.get("Runtimes") or {}).keys())
    if "nvidia" in runtimes or info.get("DefaultRuntime") == "nvidia" or info.get("CDISpecDirs"):
        return
    raise KitError(
        "the Docker daemon has no NVIDIA runtime, so containers cannot use the GPU",
        "install the NVIDIA Container Toolkit and run `sudo nvidia-ctk runtime configure "
        "--runtime=docker && sudo systemctl restart docker`; or run on CPU with "
        "compose.cpu.yaml / --device cpu",
    )


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def check_driver_cuda(driver_cuda: str | None, image_cuda: str | None, image: str) -> None:
    """Raise when the host driver supports an older CUDA than the image was built for."""
    if not image_cuda:
        return  # a CPU image, or one that does not say
    if driver_cuda is None:
        raise KitError(
            f"image {image} needs CUDA {image_cuda} but no NVIDIA driver answers here",
            "install the NVIDIA driver (check `nvidia-smi`), or run on CPU with --device cpu",
        )
    if _version_tuple(driver_cuda)[:2] < _version_tuple(image_cuda)[:2]:
        raise KitError(
            f"the NVIDIA driver supports CUDA {driver_cuda} but image {image} needs CUDA "
            f"{image_cuda}",
            "update the NVIDIA driver (nvidia-smi shows its CUDA version top right), or "
            "build the image for an older CUDA (CUDA_VERSION in docker/versions.env)",
        )


def host_driver_cuda() -> str | None:
    """The CUDA version the host driver supports (e.g. "13.0"), or None without a driver."""
    from kit.gpu.nvml import GpuUnavailable, query

    try:
        value = query("nvmlSystemGetCudaDriverVersion_v2")
    except GpuUnavailable:
        return None
    if not value:
        return None
    return f"{int(value) // 1000}.{int(value) % 1000 // 10}"


def image_missing(tag: str, spec_name: str, variant: str) -> KitError:
    return KitError(
        f"image {tag} is not built on this Docker daemon",
        f"build it with `kit images build {spec_name} --variant {variant}` "
        f"(or `docker compose build {spec_name}`)",
    )


def unpinned_error(tag: str, reason: str, spec_name: str, variant: str) -> KitError:
    return KitError(
        f"image {tag} is not pinned: {reason}",
        "run scripts/lock-images where the registry answers and rebuild "
        f"(kit images build {spec_name} --variant {variant}), or pass --allow-unpinned "
        "(the UI asks), which the run records",
    )


def image_pins(
    client: Any, cells: list[Any], overrides: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One record per image the cells need: tag, image id, and how it is pinned (or why not).
    `overrides` maps "torch:cpu" to another local tag (tests). Raises KitError when an image
    is not built."""
    import docker.errors

    import docker

    records: dict[str, dict[str, Any]] = {}
    for cell in cells:
        try:
            spec, variant = image_for_backend(cell.backend, cell.device)
        except KitError:
            continue  # a backend without an image: its groups say so when they start
        tag = (overrides or {}).get(f"{spec.name}:{variant.name}", spec.tag(variant))
        if tag in records:
            continue
        try:
            facts = image_facts(client, tag)
        except docker.errors.ImageNotFound:
            raise image_missing(tag, spec.name, variant.name) from None
        pin = pin_status(facts, spec, variant, client)
        records[tag] = {
            "image": tag,
            "image_id": facts.image_id,
            "base_image": facts.base_image,
            **pin.to_json(),
        }
    return list(records.values())


def check_image_for_job(
    client: Any, job: GroupJob, tag: str, *, allow_unpinned: bool
) -> dict[str, Any]:
    """Image present, pinned (or allowed), GPU runtime and driver fit; returns what ran."""
    import docker.errors

    import docker

    spec, variant = image_for_backend(job.backend, job.device)
    try:
        facts = image_facts(client, tag)
    except docker.errors.ImageNotFound:
        raise image_missing(tag, spec.name, variant.name) from None
    pin = pin_status(facts, spec, variant, client)
    if not pin.pinned and not allow_unpinned:
        raise unpinned_error(tag, pin.reason or "", spec.name, variant.name)
    fingerprint = image_fingerprint(client, facts)
    image_cuda = (fingerprint.get("ml_stack") or {}).get("cuda")
    if job.device == "cuda":
        check_nvidia_runtime(client.info())
        check_driver_cuda(host_driver_cuda(), image_cuda, tag)
    return {
        **facts.to_json(),
        "image": tag,
        **pin.to_json(),
        "image_cuda": image_cuda,
        "fingerprint": fingerprint,
        "docker_server": client.version().get("Version"),
    }


def _orphaned(container: Any, running_hosts: set[str]) -> bool:
    if container.status not in ("running", "restarting"):
        return True
    where, _, rest = container.labels.get(f"{LABEL_PREFIX}.owner", "").partition(":")
    hostname, _, pid = rest.rpartition(":")
    if where == "container":
        if hostname != os.uname().nodename:
            return hostname not in running_hosts
    elif where != "host" or hostname != os.uname().nodename:
        return False  # another machine's kit, or one we cannot judge: leave it be
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


def remove_leftovers(client: Any) -> list[str]:
    """Remove labelled containers whose kit is gone (crashed, killed); returns their ids."""
    import docker.errors

    import docker

    labelled = client.containers.list(all=True, filters={"label": f"{LABEL_PREFIX}.run"})
    if not labelled:
        return []
    running_hosts = {
        str(c.attrs.get("Config", {}).get("Hostname", ""))
        for c in client.containers.list(filters={"status": "running"})
    }
    removed = []
    for container in labelled:
        if _orphaned(container, running_hosts):
            try:
                container.remove(force=True)
                removed.append(container.id)
            except docker.errors.NotFound:
                pass
    return removed
