"""The Ollama server beside the measuring container: a sidecar of the pinned `ollama/ollama`
image on a network of the kit's own (internal: no other network), with GPU access and a named
volume for its models, started once per run by the Docker runner for `ollama` groups.

When the user names a server ($OLLAMA_HOST), no sidecar starts: the harness container then
uses the host's network to reach it. The specs here are pure (tested); `OllamaSidecar` runs
them through the Docker SDK.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from kit.images.registry import LABEL_PREFIX, versions

PORT = 11434
MODELS_IN_CONTAINER = "/root/.ollama"
DEFAULT_VOLUME = "llm-repro-kit-ollama-models"


def ollama_image() -> str:
    """The pinned image, `ollama/ollama:<OLLAMA_VERSION>` from docker/versions.env
    ($KIT_OLLAMA_IMAGE overrides it, e.g. with a digest)."""
    return os.environ.get("KIT_OLLAMA_IMAGE") or f"ollama/ollama:{versions()['OLLAMA_VERSION']}"


@dataclasses.dataclass(frozen=True)
class SidecarPlan:
    run_id: str
    image: str
    gpu_index: int | None  # None: a CPU-only server
    volume: str = DEFAULT_VOLUME

    @property
    def network(self) -> str:
        return f"llm-repro-kit-{self.run_id}"

    @property
    def name(self) -> str:
        return f"llm-repro-kit-ollama-{self.run_id}"

    @property
    def host_url(self) -> str:
        """OLLAMA_HOST for the harness container (the sidecar's name on the kit network)."""
        return f"http://{self.name}:{PORT}"

    def labels(self) -> dict[str, str]:
        return {f"{LABEL_PREFIX}.run": self.run_id, f"{LABEL_PREFIX}.role": "ollama-sidecar"}


def network_config(plan: SidecarPlan) -> dict[str, Any]:
    """`client.networks.create` keywords: internal, so the server reaches nothing else."""
    return {"name": plan.network, "driver": "bridge", "internal": True, "labels": plan.labels()}


def sidecar_config(plan: SidecarPlan) -> dict[str, Any]:
    """`client.containers.create` keywords of the Ollama server (pure; tested)."""
    from docker.types import DeviceRequest, Mount

    devices = []
    if plan.gpu_index is not None:
        devices.append(DeviceRequest(device_ids=[str(plan.gpu_index)], capabilities=[["gpu"]]))
    return {
        "image": plan.image,
        "name": plan.name,
        "detach": True,
        "environment": {
            "OLLAMA_HOST": f"0.0.0.0:{PORT}",
            "OLLAMA_KEEP_ALIVE": "30m",  # the model stays loaded between requests
            "OLLAMA_NUM_PARALLEL": "1",  # one request at a time: what the harness measures
            "OLLAMA_MAX_LOADED_MODELS": "1",
        },
        "mounts": [Mount(MODELS_IN_CONTAINER, plan.volume, type="volume")],
        "device_requests": devices,
        "network": plan.network,
        "labels": plan.labels(),
        "security_opt": ["no-new-privileges"],
        "privileged": False,
    }


class OllamaSidecar:
    """Starts (once) and stops the sidecar of one run through a Docker client."""

    def __init__(self, client: Any, plan: SidecarPlan) -> None:
        self.client = client
        self.plan = plan
        self.container: Any = None
        self.network: Any = None

    def start(self, timeout_s: float = 60.0) -> str:
        """Network, container, then wait until /api/version answers inside the network;
        returns OLLAMA_HOST for the harness. Raises KitError when it does not come up."""
        from kit.errors import KitError

        if self.container is None:
            self.network = self.client.networks.create(**network_config(self.plan))
            self.container = self.client.containers.create(**sidecar_config(self.plan))
            self.container.start()
        deadline = time.monotonic() + timeout_s
        probe = ["ollama", "list"]
        while time.monotonic() < deadline:
            code, _ = self.container.exec_run(probe)
            if code == 0:
                return self.plan.host_url
            time.sleep(1.0)
        raise KitError(
            f"the Ollama sidecar {self.plan.name} did not answer within {timeout_s:.0f} s",
            f"see `docker logs {self.plan.name}`; or set OLLAMA_HOST to a running server",
        )

    def stop(self) -> None:
        for thing in (self.container, self.network):
            if thing is None:
                continue
            try:
                if thing is self.container:
                    thing.remove(force=True)
                else:
                    thing.remove()
            except Exception:  # at exit, a daemon gone away must not mask the real error
                pass
        self.container = self.network = None
