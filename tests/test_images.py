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
            entry = lock["images"].get(f"{spec.name}:{variant.name}")
            if entry is None and variant.extra_index:
                continue  # locked only where that index answers (tensorrt: pypi.nvidia.com)
            assert entry, f"{spec.name}:{variant.name} has no lock entry"
            assert entry["base"] == variant.base_template.format(**versions())
            path = REPO / entry["requirements"]
            assert sha256_file(path) == entry["requirements_sha256"]
            pins = re.findall(r"^([a-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$",
                              path.read_text(), flags=re.M)  # fmt: skip
            assert len(pins) == entry["packages"] > (0 if variant.over else 10)
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
    default = versions()["DEFAULT_STACK"]
    assert spec.tag(variant) == f"llm-repro-kit/torch:cuda-{default}"
    spec, variant = image_for_backend("vllm", "cpu")
    assert spec.tag(variant) == "llm-repro-kit/vllm:cpu"
    spec, variant = image_for_backend("tensorrt", "cuda")
    assert (spec.tag(variant), variant.over) == (
        "llm-repro-kit/tensorrt:cuda",
        "torch:cuda-{DEFAULT_STACK}",
    )
    with pytest.raises(KitError, match="has no CPU container image yet"):
        image_for_backend("tensorrt", "cpu")
    with pytest.raises(KitError, match="has no container image yet"):
        image_for_backend("ollama", "cuda")


def test_each_named_stack_is_its_own_locked_torch_image() -> None:
    from kit.images.registry import STACKS
    from kit.images.stacks import locked_cuda, locked_versions

    pins_env = versions()
    assert pins_env["DEFAULT_STACK"] in pins_env["STACKS"].split() and len(STACKS) >= 2
    torch = IMAGES["torch"]
    for stack in STACKS:
        variant = torch.variant(f"cuda-{stack.name}")
        pins = locked_versions(torch, variant)
        assert (pins["torch"], pins["triton"], pins["transformers"]) == (
            stack.torch,
            stack.triton,
            stack.transformers,
        )
        assert locked_cuda(pins) == pins_env["CUDA_VERSION"]  # PyPI's wheel carries CUDA 13.0
        assert variant.base_template == "debian:{DEBIAN_RELEASE}-slim" and variant.pypi_only
    # the layered images lock nothing their base image already pins
    base = locked_versions(torch, torch.variant(f"cuda-{pins_env['DEFAULT_STACK']}"))
    ort = IMAGES["onnxruntime"]
    layer = locked_versions(ort, ort.variant("cuda"))
    assert "onnxruntime-gpu" in layer and not set(layer) & set(base)


def test_an_incomplete_stack_is_one_clear_error() -> None:
    from kit.images.registry import stacks_from

    with pytest.raises(KitError, match=r"stack 9\.9 lacks STACK_9_9_TRITON"):
        stacks_from({"STACKS": "9.9", "STACK_9_9_TORCH": "9.9.0", "STACK_9_9_TRANSFORMERS": "1"})


def test_host_stack_matches_a_locked_stack_or_says_host_stack() -> None:
    from kit.images.stacks import stack_line, stack_record

    gpu_host = {"torch": "2.11.0+cu130", "cuda_runtime": "13.0", "triton": "3.6.0",
                "transformers": "5.17.0"}  # fmt: skip
    record = stack_record(gpu_host)
    lock = read_lock()["images"][f"torch:cuda-{versions()['DEFAULT_STACK']}"]
    assert record["locked_stack"]["image"] == "torch:cuda-2.11"
    assert stack_line(record) == (
        "stack: torch 2.11.0+cu130, triton 3.6.0, transformers 5.17.0, CUDA 13.0 "
        f"(= image torch:cuda-2.11, lock sha256 {lock['requirements_sha256'][:12]})"
    )
    other = stack_record({**gpu_host, "triton": "3.5.1"})  # TR147 v4C: another Triton
    assert other["locked_stack"] is None
    assert stack_line(other).endswith(", host stack, no image")
    in_image = stack_record({**gpu_host, "image": {"image": "torch:cuda-2.11",
                                                   "lock_sha256": "ab" * 32}})  # fmt: skip
    assert stack_line(in_image).endswith("(image torch:cuda-2.11, lock sha256 abababababab)")


def test_images_list_shows_stack_lock_base_and_built_without_a_daemon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kit.images.listing import image_rows, render_rows

    rows = {r.image: r for r in image_rows(None, "docker: not reachable")}
    assert set(rows) == {f"{s.name}:{v.name}" for s in IMAGES.values() for v in s.variants}
    torch = rows[f"torch:cuda-{versions()['DEFAULT_STACK']}"]
    assert torch.stack.startswith("torch 2.11.0, triton 3.6.0") and torch.built is None
    assert torch.base_digest == "unpinned" and torch.lock_sha256
    assert "not locked: needs https://pypi.nvidia.com" in (rows["tensorrt:cuda"].lock_note or "")
    table = render_rows(list(rows.values()))
    assert "unpinned" in table and "torch 2.11.0, triton 3.6.0" in table


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


def test_compose_builds_the_default_stacks_torch_image() -> None:
    gpu = yaml.safe_load((REPO / "compose.yaml").read_text())
    spec, variant = image_for_backend("transformers-eager", "cuda")
    torch = gpu["services"]["torch"]
    assert torch["image"] == spec.tag(variant)
    assert torch["build"]["args"]["VARIANT"] == variant.name


def test_images_page_renders_built_and_not_built_records(tmp_path: Path) -> None:
    from kit.images.validation import render

    built = {"target": "torch:cuda-2.11", "tag": "llm-repro-kit/torch:cuda-2.11",
             "status": "built", "reason": None, "seconds": 733, "stack": "torch 2.11.0",
             "lock_sha256": "ab" * 32, "packages": 76, "base": "llm-repro-kit/base:bookworm",
             "base_digest": "sha256:" + "c5" * 32, "date": "d", "image_id": "sha256:" + "ce" * 32,
             "size_bytes": 5_947_164_657, "self_check_rc": 0,
             "self_check": {"ok": True, "failures": [], "versions": {"torch": "2.11.0+cu130"},
                            "torch_cuda": "13.0", "cudnn": 91900, "libraries_loaded": 9,
                            "libraries_checked": 9, "gpu": "no NVIDIA driver"}}  # fmt: skip
    skipped = {**built, "target": "tensorrt:cuda", "tag": "llm-repro-kit/tensorrt:cuda",
               "status": "not built", "reason": "not locked", "self_check": None,
               "base_digest": None, "size_bytes": None, "image_id": None}  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(built))
    (tmp_path / "b.json").write_text(json.dumps(skipped))
    (tmp_path / "a.self-check.json").write_text("{}")  # raw self-checks are not records
    page = render(tmp_path)
    assert "| `llm-repro-kit/torch:cuda-2.11` | built | torch 2.11.0 | 733 | 5.95 GB |" in page
    assert "| `llm-repro-kit/tensorrt:cuda` | not built (not locked) |" in page
    assert "`unpinned`" in page and "CUDA libraries loaded: 9 of 9" in page
