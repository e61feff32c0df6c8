"""Images: the lock, the Dockerfiles and compose files agree; the orchestrator imports stay lean."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kit.errors import KitError
from kit.images.lock import base_reference, read_lock, sha256_file
from kit.images.registry import IMAGES, image_for_backend, versions

REPO = Path(__file__).resolve().parent.parent


def test_every_variant_has_a_lock_entry_and_a_hashed_lock_file() -> None:
    lock = read_lock()
    assert lock["versions"] == versions()  # locked from the current docker/versions.env
    for spec in IMAGES.values():
        for variant in spec.variants:
            entry = lock["images"][f"{spec.name}:{variant.name}"]
            assert entry["base"] == variant.base_template.format(**versions())
            path = REPO / entry["requirements"]
            assert sha256_file(path) == entry["requirements_sha256"]
            pins = re.findall(r"^([a-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$",
                              path.read_text(), flags=re.M)  # fmt: skip
            assert len(pins) == entry["packages"] > 10
            names = {name for name, _ in pins}
            assert ("torch" in names) == (not variant.uses_base_torch and spec.name != "kit")
            assert not names & set(variant.exclude)


def test_dockerfile_base_defaults_come_from_the_lock() -> None:
    for spec in IMAGES.values():
        text = (REPO / spec.dockerfile).read_text()
        default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.M)
        assert default and default.group(1) == base_reference(spec, spec.variants[0])


def test_versions_are_named_once() -> None:
    torch = versions()["TORCH_VERSION"]
    assert "torch==" + torch + "+cpu" in (REPO / "docker/torch/cpu.lock.txt").read_text()
    for path in ("compose.yaml", "compose.cpu.yaml", "docker/kit/Dockerfile"):
        assert torch not in (REPO / path).read_text(), path


def test_compose_cpu_kit_equals_compose_kit_without_the_gpu() -> None:
    gpu = yaml.safe_load((REPO / "compose.yaml").read_text())
    cpu = yaml.safe_load((REPO / "compose.cpu.yaml").read_text())
    assert "version" not in gpu and "version" not in cpu
    devices = gpu["services"]["kit"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    gpu_kit, cpu_kit = dict(gpu["services"]["kit"]), dict(cpu["services"]["kit"])
    gpu_kit.pop("deploy"), gpu_kit.pop("build"), cpu_kit.pop("build")
    assert gpu_kit == cpu_kit
    assert "/var/run/docker.sock:/var/run/docker.sock" in cpu_kit["volumes"]
    assert {"KIT_HOST_RESULTS", "KIT_HOST_CACHE"} <= set(cpu_kit["environment"])


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose v1 missing")
def test_compose_files_are_valid_for_compose_v1() -> None:
    for files in (["compose.yaml"], ["compose.cpu.yaml"]):
        args = [a for f in files for a in ("-f", f)]
        proc = subprocess.run(
            ["docker-compose", *args, "config", "-q"], cwd=REPO, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr


def test_backends_map_to_image_variants() -> None:
    spec, variant = image_for_backend("transformers-compile", "cuda")
    assert (spec.tag(variant), variant.uses_base_torch) == ("llm-repro-kit/torch:cuda", True)
    spec, variant = image_for_backend("vllm", "cpu")
    assert spec.tag(variant) == "llm-repro-kit/vllm:cpu"
    with pytest.raises(KitError, match="has no container image yet"):
        image_for_backend("tensorrt", "cuda")


@pytest.mark.parametrize(
    "module",
    ["kit.images.build", "kit.images.lock", "kit.images.inspect", "kit.runner.docker",
     "kit.runner.preflight", "kit.commands.images", "kit.commands.doctor"],
)  # fmt: skip
def test_modules_import_neither_docker_nor_torch_nor_textual(module: str) -> None:
    code = (
        f"import sys, json, {module}\n"
        "print(json.dumps([m for m in ('docker', 'torch', 'textual', 'transformers')"
        " if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
