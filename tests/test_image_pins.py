"""What "pinned" means for the kit's images (issue 11, kit/images/inspect.py): a registry
base by the lock's digest; a base the project builds itself (the lock's `local_bases`) by its
layers, checked against the base present now and recorded. Where an image is truly
unpinned, a run is refused before its run directory exists, unless accepted, and run.json
then says "unpinned"."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.images import inspect as image_inspect
from kit.images.inspect import image_facts, pin_status
from kit.images.lock import read_lock
from kit.images.registry import LOCAL_BASE_IMAGE, image_spec
from kit.matrix import load_matrix
from kit.runner.docker import DockerRunner
from kit.runner.service import _image_pins
from tests.conftest import docker_available
from tests.test_docker_runner import docker_images

__all__ = ["docker_images"]  # the session fixture
needs_docker = pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")
TORCH, CPU = image_spec("torch"), image_spec("torch").variant("cpu")


def test_the_lock_names_the_bases_the_project_builds() -> None:
    local = read_lock()["local_bases"]
    assert set(local) == {LOCAL_BASE_IMAGE}
    assert local[LOCAL_BASE_IMAGE]["built_by"] == "scripts/build-base-image"


def _docker(*args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().strip()


def _import(tag: str, content: bytes) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("etc/base-id")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    _docker("import", "-", tag, stdin=buffer.getvalue())


def _build_from(tag: str, base: str, label_base: str, folder: Path) -> None:
    (folder / "Dockerfile").write_text(
        f"FROM {base}\nLABEL org.llm-repro-kit.base={label_base}\nCOPY marker /marker\n"
    )
    (folder / "marker").write_text(tag)
    _docker("build", "-q", "-t", tag, str(folder))


@pytest.fixture()
def scratch_tags() -> Iterator[list[str]]:
    """Tags made by one test (unique names: the daemon is shared), removed afterwards."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


@pytest.mark.docker
@needs_docker
def test_an_image_of_the_local_base_is_pinned_by_its_layers(docker_images: dict[str, str]) -> None:
    import docker

    client = docker.from_env()
    facts = image_facts(client, docker_images["torch:cpu"])
    pin = pin_status(facts, TORCH, CPU, client)
    base = image_facts(client, LOCAL_BASE_IMAGE)
    assert (pin.pinned, pin.how, pin.reason) == (True, "local-base", None)
    assert pin.base_image_id == base.image_id and pin.base_layers == base.layers


@pytest.mark.docker
@needs_docker
def test_a_rebuilt_local_base_unpins_images_of_the_old_one(
    tmp_path: Path, scratch_tags: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker

    name = uuid.uuid4().hex[:10]
    base, image = f"kit-test/base-{name}:1", f"kit-test/img-{name}:1"
    scratch_tags += [image, base]
    monkeypatch.setattr(image_inspect, "local_bases", lambda: {base: {}})
    _import(base, b"first build")
    _build_from(image, base, base, tmp_path)
    client = docker.from_env()
    assert pin_status(image_facts(client, image), TORCH, CPU, client).how == "local-base"
    _import(base, b"second build, another machine")  # same tag, other content
    pin = pin_status(image_facts(client, image), TORCH, CPU, client)
    assert not pin.pinned and f"built from another {base} than the one present" in str(pin.reason)
    _docker("rmi", base)
    pin = pin_status(image_facts(client, image), TORCH, CPU, client)
    assert not pin.pinned and "no longer present" in str(pin.reason)


@pytest.mark.docker
@needs_docker
def test_a_registry_base_without_a_digest_is_refused_unless_accepted(
    tmp_path: Path, scratch_tags: list[str]
) -> None:
    name = uuid.uuid4().hex[:10]
    base, image = f"kit-test/base-{name}:1", f"kit-test/img-{name}:1"
    scratch_tags += [image, base]
    _import(base, b"a registry base, say")
    _build_from(image, base, "debian:bookworm-slim", tmp_path)  # the lock has no digest for it
    runner = DockerRunner(image_overrides={"torch:cpu": image})
    cells = [c.replace(device="cpu") for c in load_matrix("tr126").cells[:1]]
    with pytest.raises(KitError, match="is not pinned: the lock has no digest") as err:
        _image_pins(runner, cells, allow_unpinned=False)
    assert "--allow-unpinned" in err.value.hint and "the UI asks" in err.value.hint
    images, pinning = _image_pins(runner, cells, allow_unpinned=True)
    assert pinning == "unpinned"
    (record,) = images
    assert record["image"] == image and record["pinned"] is False and record["pin"] == "unpinned"
    assert json.dumps(record)  # goes into run.json as it is


def test_the_report_header_says_how_images_were_pinned() -> None:
    from kit.bundle.report import image_pinning_line

    image = {"image": "llm-repro-kit/torch:cpu", "image_id": "sha256:" + "ab" * 32}
    assert image_pinning_line({}) == ""  # a run from before image_pinning existed
    assert image_pinning_line({"image_pinning": "host", "images": []}) == ""
    pinned = {**image, "pinned": True, "pin": "local-base"}
    line = image_pinning_line({"image_pinning": "pinned", "images": [pinned]})
    assert line == (
        "- image pinning: pinned: `llm-repro-kit/torch:cpu` sha256:abababababab (local-base)"
    )
    loose = {**image, "pinned": False, "unpinned_reason": "the lock has no digest"}
    line = image_pinning_line({"image_pinning": "unpinned", "images": [loose]})
    assert "**UNPINNED** (accepted for this run)" in line and "the lock has no digest" in line
