"""TR126's `in_container` gate check: a kit image's fingerprint file is the proof; a bare
/.dockerenv (the GPU host's VM has one) is not (issue 11)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kit.env.image_proof import FINGERPRINT, kit_image_proof
from kit.harness.gates import check_container
from tests.conftest import docker_available
from tests.test_docker_runner import docker_images

__all__ = ["docker_images"]  # the session fixture


def _root(tmp_path: Path, *, dockerenv: bool, fingerprint: object = None) -> Path:
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "cgroup").write_text("0::/\n")
    if dockerenv:
        (tmp_path / ".dockerenv").write_text("")
    if fingerprint is not None:
        path = tmp_path / FINGERPRINT
        path.parent.mkdir(parents=True)
        path.write_text(fingerprint if isinstance(fingerprint, str) else json.dumps(fingerprint))
    return tmp_path


def test_a_dockerenv_without_a_fingerprint_is_not_a_kit_image(tmp_path: Path) -> None:
    proof = kit_image_proof(_root(tmp_path, dockerenv=True))
    assert proof.in_kit_image is False and proof.image is None
    assert proof.detail == (
        "/.dockerenv exists but no kit image fingerprint (/etc/kit/image-fingerprint.json)"
    )


def test_no_marker_and_no_fingerprint_says_so(tmp_path: Path) -> None:
    proof = kit_image_proof(_root(tmp_path, dockerenv=False))
    assert not proof.in_kit_image
    assert proof.detail.startswith("no container marker") and "no kit image fingerprint" in (
        proof.detail
    )


@pytest.mark.parametrize(
    ("content", "said"),
    [("{not json", "unreadable kit image fingerprint"), ({"schema": 1}, "names no image")],
)
def test_a_broken_fingerprint_is_not_proof(tmp_path: Path, content: object, said: str) -> None:
    proof = kit_image_proof(_root(tmp_path, dockerenv=True, fingerprint=content))
    assert not proof.in_kit_image and said in proof.detail


def test_the_fingerprint_is_proof_and_names_the_image(tmp_path: Path) -> None:
    fingerprint = {"image": "torch", "variant": "cpu", "base_image": "llm-repro-kit/base:bookworm"}
    proof = kit_image_proof(_root(tmp_path, dockerenv=False, fingerprint=fingerprint))
    assert proof.in_kit_image and proof.image == "torch:cpu"
    assert "kit image torch:cpu" in proof.detail and "llm-repro-kit/base:bookworm" in proof.detail


def test_this_machine_is_judged_by_the_fingerprint_alone() -> None:
    """Here (a dev or CI machine, maybe itself a container with /.dockerenv) the check fails
    and says what it found, unless this really is a kit image."""
    passed, value, expected, detail = check_container({}, {})
    assert expected == "a kit image"
    if Path("/", FINGERPRINT).exists():
        pytest.skip("this machine is a kit image")
    assert passed is False and value is False
    assert "no kit image fingerprint" in detail
    if Path("/.dockerenv").exists():
        assert detail.startswith("/.dockerenv exists but")


@pytest.mark.docker
@pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")
def test_inside_the_kit_image_the_check_passes_and_names_it(docker_images: dict[str, str]) -> None:
    code = (
        "import json; from kit.harness.gates import check_container; "
        "print(json.dumps(check_container({}, {})))"
    )
    # this checkout's kit over the image's copy (the daemon is shared: the tag may have been
    # rebuilt from another tree meanwhile); the fingerprint file is the image's own
    kit_src = Path(__file__).resolve().parent.parent / "kit"
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python",
         "-v", f"{kit_src}:/opt/kit/src/kit:ro", docker_images["kit"], "-c", code],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    passed, value, _expected, detail = json.loads(proc.stdout)
    assert passed is True and value == "kit:default"
    assert "kit image kit:default" in detail
