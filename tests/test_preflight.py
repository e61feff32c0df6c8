"""Preflight messages: each failure one sentence and a hint, from real sockets and daemons."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.runner import preflight
from tests.conftest import docker_available


def test_no_daemon_at_a_missing_socket(tmp_path: Path) -> None:
    where = f"unix://{tmp_path}/absent.sock"
    with pytest.raises(KitError) as info:
        preflight.connect(where, timeout_s=2)
    assert info.value.title == f"no Docker daemon answers at {where}"
    assert "systemctl start docker" in info.value.hint and "--runner host" in info.value.hint


def test_no_daemon_behind_a_dead_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the file stays; nobody listens: ECONNREFUSED
    with pytest.raises(KitError) as info:
        preflight.connect(f"unix://{path}", timeout_s=2)
    assert info.value.title.startswith("no Docker daemon answers at unix://")


def test_permission_denied_on_the_socket() -> None:
    """A listening socket the caller may not open (mode 600, owned by another user)."""
    folder = Path(tempfile.mkdtemp(prefix="kit-sock-"))
    folder.chmod(0o755)
    path = folder / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    path.chmod(0o600)
    # Root opens any socket: the child imports everything, then becomes nobody to connect.
    code = (
        "import os, docker, docker.client, docker.errors, docker.transport\n"
        "from kit.runner import preflight\n"
        "from kit.errors import KitError\n"
        "if os.getuid() == 0:\n    os.setgid(65534); os.setuid(65534)\n"
        f"try:\n    preflight.connect('unix://{path}', timeout_s=2)\n"
        "except KitError as e:\n    print(e.title); print(e.hint)\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parent.parent),
            timeout=60,
        )
    finally:
        server.close()
    lines = proc.stdout.splitlines()
    assert lines[:1] == [f"permission denied on the Docker socket unix://{path}"], proc.stderr
    assert "usermod -aG docker" in lines[1]


def test_nvidia_runtime_present_or_not() -> None:
    preflight.check_nvidia_runtime({"Runtimes": {"runc": {}, "nvidia": {"path": "x"}}})
    with pytest.raises(KitError) as info:
        preflight.check_nvidia_runtime({"Runtimes": {"runc": {}}, "DefaultRuntime": "runc"})
    assert info.value.title == (
        "the Docker daemon has no NVIDIA runtime, so containers cannot use the GPU"
    )
    assert "nvidia-ctk runtime configure" in info.value.hint


def test_driver_too_old_for_the_image() -> None:
    preflight.check_driver_cuda("13.0", "13.0", "img")
    preflight.check_driver_cuda("12.8", "12.4", "img")
    preflight.check_driver_cuda(None, None, "cpu-image")  # a CPU image needs no driver
    with pytest.raises(KitError) as info:
        preflight.check_driver_cuda("12.4", "13.0", "llm-repro-kit/torch:cuda")
    assert info.value.title == (
        "the NVIDIA driver supports CUDA 12.4 but image llm-repro-kit/torch:cuda needs CUDA 13.0"
    )
    assert "update the NVIDIA driver" in info.value.hint
    with pytest.raises(KitError, match="no NVIDIA driver answers"):
        preflight.check_driver_cuda(None, "13.0", "img")


def test_host_driver_cuda_through_the_nvml_door(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.gpu import nvml

    monkeypatch.setenv(nvml.FAKE_ENV, "h100")
    nvml.shutdown()
    try:
        version = preflight.host_driver_cuda()
    finally:
        nvml.shutdown()
    assert version is not None and version.count(".") == 1


@pytest.mark.docker
def test_image_missing_names_the_build_command() -> None:
    if not docker_available():
        pytest.skip("no Docker daemon answers (scripts/ci-prepare starts one)")
    from kit.runner.base import GroupJob
    from kit.runner.docker import DockerRunner

    job = GroupJob("g", Path("/x"), Path("/x"), Path("/x"), Path("/x"), "vllm", "cpu", None, 5)
    runner = DockerRunner(image_overrides={"vllm:cpu": "llm-repro-kit/not-built:never"})
    with pytest.raises(KitError) as info:
        runner.preflight([job])
    assert (
        info.value.title == "image llm-repro-kit/not-built:never is not built on this Docker daemon"
    )
    assert "kit images build vllm --variant cpu" in info.value.hint
