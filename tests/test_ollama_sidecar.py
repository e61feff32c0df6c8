"""The Ollama sidecar's container spec (Docker runner): pinned image, GPU, model volume, the
kit's own internal network only; the harness container joins that network and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.images.registry import versions
from kit.runner.base import GroupJob
from kit.runner.docker import ContainerOptions, DockerRunner, PathMap, container_config
from kit.runner.ollama_sidecar import SidecarPlan, network_config, ollama_image, sidecar_config

pytest.importorskip("docker", reason="the Docker runner needs the docker package")


def _job(tmp: Path, backend: str, device: str = "cuda") -> GroupJob:
    group = tmp / "groups" / "g1"
    (group / "compile-cache-1").mkdir(parents=True, exist_ok=True)
    return GroupJob("g1", group / "input-1.json", group, tmp / "model", group / "compile-cache-1",
                    backend, device, 0 if device == "cuda" else None, 60.0, {})  # fmt: skip


def test_sidecar_spec_pinned_image_gpu_volume_kit_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIT_OLLAMA_IMAGE", raising=False)
    image = ollama_image()
    assert image == f"ollama/ollama:{versions()['OLLAMA_VERSION']}" and not image.endswith(
        ":latest"
    )
    plan = SidecarPlan("run7", image, gpu_index=1)
    config = sidecar_config(plan)
    assert config["image"] == image and config["name"] == "llm-repro-kit-ollama-run7"
    (request,) = config["device_requests"]
    assert request["DeviceIDs"] == ["1"] and request["Capabilities"] == [["gpu"]]
    (mount,) = config["mounts"]
    assert (mount["Target"], mount["Source"], mount["Type"]) == (
        "/root/.ollama", "llm-repro-kit-ollama-models", "volume",
    )  # fmt: skip
    assert config["network"] == plan.network == "llm-repro-kit-run7"
    assert "ports" not in config and config["privileged"] is False  # not published anywhere
    assert config["environment"]["OLLAMA_NUM_PARALLEL"] == "1"
    net = network_config(plan)
    assert net["name"] == plan.network and net["internal"] is True  # no route out
    assert net["labels"]["org.llm-repro-kit.run"] == "run7"
    assert sidecar_config(SidecarPlan("r", image, None))["device_requests"] == []


def test_harness_container_joins_the_sidecar_network_only(tmp_path: Path) -> None:
    plan = SidecarPlan("run7", "ollama/ollama:x", 0)
    job = _job(tmp_path, "ollama")
    config = container_config(
        job, "img", PathMap(), "run7", ContainerOptions(), plan.host_url, plan.network
    )
    assert config["network_mode"] == "llm-repro-kit-run7"
    assert config["environment"]["OLLAMA_HOST"] == "http://llm-repro-kit-ollama-run7:11434"
    other = container_config(_job(tmp_path, "llama-cpp"), "img", PathMap(), "r", ContainerOptions())
    assert other["network_mode"] == "none" and "OLLAMA_HOST" not in other["environment"]


def test_a_user_named_server_needs_no_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://gpu-box:11434")
    runner = DockerRunner(client=object(), run_id="r1")  # the client is never used here
    assert runner._server_for(_job(tmp_path, "ollama")) == ("http://gpu-box:11434", None)
    assert runner._server_for(_job(tmp_path, "vllm")) == (None, None)
    assert runner._sidecar is None
