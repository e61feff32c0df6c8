"""The Docker runner: the container it asks for (unit), and real groups on a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.runner.base import GroupJob
from kit.runner.docker import (
    RUN_LABEL,
    ContainerOptions,
    DockerRunner,
    PathMap,
    container_config,
)
from tests.conftest import docker_available

REPO = Path(__file__).resolve().parent.parent
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
FAKE_HARNESS = """
import json, os, sys, time
def ev(name, **kw):
    print(json.dumps({"event": name, "t_ns": time.monotonic_ns(), **kw}), flush=True)
ev("group_started", group={}, pid=os.getpid(), ml_stack={})
print("harness stderr line", file=sys.stderr, flush=True)
ev("cell_started", cell="c1", tokens_in=3, prompt_ids=[1, 2, 3])
ev("sample", cell="c1", phase="prefill", rep=0, warmup=False, latency_ms=1.0)
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "sleep":
    time.sleep(600)
if mode == "oom":
    hog = [bytearray(16 << 20) for _ in range(64)]
if mode == "fail":
    print("Traceback: boom", file=sys.stderr, flush=True)
    sys.exit(3)
ev("cell_finished", cell="c1", status="ok", reasons=[], evidence={})
ev("group_finished", group={})
"""


def job_in(folder: Path, backend: str = "transformers-eager", device: str = "cpu",
           timeout_s: float = 60, env: dict[str, str] | None = None) -> GroupJob:  # fmt: skip
    group = folder / "groups" / "g1"
    (group / "compile-cache-1").mkdir(parents=True, exist_ok=True)
    (folder / "model").mkdir(exist_ok=True)
    (group / "input-1.json").write_text("{}")
    (group / "fake.py").write_text(FAKE_HARNESS)
    return GroupJob("g1", group / "input-1.json", group, folder / "model",
                    group / "compile-cache-1", backend, device, 1 if device == "cuda" else None,
                    timeout_s, env or {})  # fmt: skip


def test_container_asks_for_one_gpu_read_only_model_no_network_no_capabilities(
    tmp_path: Path,
) -> None:
    job = job_in(tmp_path, device="cuda")
    paths = PathMap(((tmp_path, Path("/srv/host-results")),))
    config = container_config(job, "img", paths, "run1", ContainerOptions())
    (request,) = config["device_requests"]
    assert request["DeviceIDs"] == ["1"] and request["Capabilities"] == [["gpu"]]
    assert request["Count"] in (None, 0) and not request["Driver"]
    mounts = {m["Target"]: m for m in config["mounts"]}
    assert set(mounts) == {str(job.group_dir), str(job.model_dir)}  # cache is in the group
    assert mounts[str(job.model_dir)]["ReadOnly"] is True
    assert mounts[str(job.group_dir)]["ReadOnly"] is False
    assert mounts[str(job.group_dir)]["Source"] == "/srv/host-results/groups/g1"
    assert config["network_mode"] == "none" and config["cap_drop"] == ["ALL"]
    assert config["privileged"] is False and config["shm_size"] == "2g"
    assert config["command"] == ["python", "-m", "kit.harness", "--input", str(job.input_path)]
    assert config["environment"]["TORCHINDUCTOR_CACHE_DIR"].startswith(str(job.compile_cache_dir))
    assert config["labels"][RUN_LABEL] == "run1"
    cpu = container_config(job_in(tmp_path), "img", paths, "run1", ContainerOptions())
    assert cpu["device_requests"] == [] and cpu["ulimits"] is None


def test_ollama_groups_get_a_network(tmp_path: Path) -> None:
    config = container_config(job_in(tmp_path, "ollama"), "i", PathMap(), "r", ContainerOptions())
    assert config["network_mode"] == "host"


def test_path_map_prefers_the_longest_prefix() -> None:
    paths = PathMap(((Path("/results"), Path("/h/res")), (Path("/results/x"), Path("/h/x"))))
    assert paths.to_host(Path("/results/run/g")) == Path("/h/res/run/g")
    assert paths.to_host(Path("/results/x/y")) == Path("/h/x/y")
    assert paths.to_host(Path("/elsewhere")) == Path("/elsewhere")


def test_path_map_from_compose_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_HOST_RESULTS", "/home/me/results")
    monkeypatch.setenv("KIT_RESULTS_DIR", "/results")
    monkeypatch.setenv("KIT_HOST_CACHE", "")
    paths = PathMap.from_environment()
    assert paths.to_host(Path("/results/r1/groups/g")) == Path("/home/me/results/r1/groups/g")


# -- real daemon ---------------------------------------------------------------------------


def _build(name: str, variant: str | None) -> str:
    from kit.images.build import BuildOptions, build_image
    from kit.images.registry import LOCAL_BASE_IMAGE, image_spec

    spec = image_spec(name)
    options = BuildOptions(
        base_image=LOCAL_BASE_IMAGE,
        network="host",
        extra_ca_bundle=HOST_CA if HOST_CA.exists() else None,
    )
    return build_image(spec, spec.variant(variant), options).tag


# Process-wide (pytest may load this module twice: here and through test_docker_compose).
_BUILT_ENV = "KIT_TEST_DOCKER_IMAGES"


@pytest.fixture(scope="session")
def docker_images() -> dict[str, str]:
    """The offline base, the kit image and the CPU torch image, built once per session
    (Docker's layer cache makes a rebuild after a code change a few seconds). Other test
    modules import this fixture; one build per test process all the same."""
    if not docker_available():
        pytest.skip("no Docker daemon answers (scripts/ci-prepare installs and starts one)")
    if _BUILT_ENV not in os.environ:
        subprocess.run([str(REPO / "scripts" / "build-base-image")], check=True)
        built = {"kit": _build("kit", None), "torch:cpu": _build("torch", "cpu")}
        os.environ[_BUILT_ENV] = json.dumps(built)
    return dict(json.loads(os.environ[_BUILT_ENV]))


def no_labelled_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={RUN_LABEL}"], capture_output=True, text=True
    )
    return out.stdout.split()


def fake_runner(images: dict[str, str], **options: Any) -> DockerRunner:
    return DockerRunner(
        allow_unpinned=True,
        image_overrides={"torch:cpu": images["kit"]},
        options=ContainerOptions(command=("python", "fake.py"), **options),
    )


@pytest.fixture()
def images(docker_images: dict[str, str]) -> Iterator[dict[str, str]]:
    yield docker_images
    assert no_labelled_containers() == []


@pytest.mark.docker
def test_group_streams_events_and_describes_the_image(
    images: dict[str, str], tmp_path: Path
) -> None:
    runner = fake_runner(images)
    job = job_in(tmp_path)
    runner.preflight([job])
    process = runner.start(job)
    lines = list(process.lines())
    info = process.wait()
    assert info.clean and info.detail == ""
    assert [line.split('"event": "')[1].split('"')[0] for line in lines] == [
        "group_started", "cell_started", "sample", "cell_finished", "group_finished",
    ]  # fmt: skip
    assert "harness stderr line" in (job.group_dir / "stderr.log").read_text()
    record = runner.describe(job)
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", images["kit"]],
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert record["image_id"] == image_id
    # built from the project's own base: pinned by its layers (kit/images/inspect.py)
    assert record["pinned"] is True and record["pin"] == "local-base"
    assert record["base_image_id"] and record["base_layers"]
    assert record["fingerprint"]["image"] == "kit" and record["fingerprint"]["pip_freeze"]


@pytest.mark.docker
def test_timeout_stops_the_container(images: dict[str, str], tmp_path: Path) -> None:
    process = fake_runner(images, stop_grace_s=1).start(
        job_in(tmp_path, timeout_s=3, env={"FAKE_MODE": "sleep"})
    )
    started = time.monotonic()
    assert len(list(process.lines())) == 3
    info = process.wait()
    assert info.timed_out and not info.clean and time.monotonic() - started < 20
    assert info.detail.startswith("timeout: the group exceeded its 3 s limit")


@pytest.mark.docker
def test_out_of_memory_is_reported(images: dict[str, str], tmp_path: Path) -> None:
    process = fake_runner(images, mem_limit="96m").start(job_in(tmp_path, env={"FAKE_MODE": "oom"}))
    list(process.lines())
    info = process.wait()
    assert info.oom_killed and info.returncode == 137
    assert info.detail.startswith("out of memory")


@pytest.mark.docker
def test_non_zero_exit_carries_the_stderr_tail(images: dict[str, str], tmp_path: Path) -> None:
    process = fake_runner(images).start(job_in(tmp_path, env={"FAKE_MODE": "fail"}))
    list(process.lines())
    info = process.wait()
    assert info.returncode == 3 and info.signal is None
    assert info.detail == "exited with code 3: harness stderr line | Traceback: boom"


@pytest.mark.docker
def test_leftovers_of_a_dead_kit_are_removed(images: dict[str, str]) -> None:
    from kit.runner.preflight import connect, remove_leftovers

    client = connect()
    dead_pid = 2**22 - 7  # above the usual pid_max: never alive
    leftover = client.containers.run(
        images["kit"], ["-c", "import time; time.sleep(300)"], entrypoint=["python"],
        detach=True, network_mode="none",
        labels={RUN_LABEL: "old", "org.llm-repro-kit.owner": f"host:{os.uname().nodename}:{dead_pid}"},
    )  # fmt: skip
    mine = client.containers.run(
        images["kit"], ["-c", "import time; time.sleep(300)"], entrypoint=["python"],
        detach=True, network_mode="none",
        labels={RUN_LABEL: "live", "org.llm-repro-kit.owner": f"host:{os.uname().nodename}:{os.getpid()}"},
    )  # fmt: skip
    try:
        removed = remove_leftovers(client)
        assert leftover.id in removed and mine.id not in removed
    finally:
        mine.remove(force=True)
        try:
            leftover.remove(force=True)
        except Exception:
            pass


TINY = """
schema: 1
id: tiny
title: tiny CPU matrix for docker tests
defaults: {device: cpu, repetitions: 3, warmup: 1, max_new_tokens: 32, seed: 42}
groups:
  - id: eager
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [kv_decode, generate]
"""


@pytest.mark.docker
@pytest.mark.slow
def test_sweep_through_docker_runner_kill_mid_cell(images: dict[str, str], tmp_path: Path) -> None:
    """A real harness in the CPU torch image; the container is killed from outside mid-cell."""
    from kit.runner.journal import finished_cells, read_jsonl
    from kit.runner.plan import RunRequest
    from kit.runner.preflight import connect
    from kit.runner.service import start_run

    client = connect()
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(textwrap.dedent(TINY))
    out = tmp_path / "run"
    state: dict[str, Any] = {"killed_cell": None}

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] != "sample" or state["killed_cell"] is not None:
            return
        if len(finished_cells(out)) == 2:
            state["killed_cell"] = event["cell"]
            for container in client.containers.list(filters={"label": RUN_LABEL}):
                container.kill()

    request = RunRequest(matrix=str(matrix), out=out, weights="random", runner="docker",
                         allow_unpinned=True, argv=("kit", "run"))  # fmt: skip
    outcome = start_run(request, on_event=on_event)
    final = finished_cells(out)
    assert final[state["killed_cell"]]["status"] == "crash"
    assert "killed by SIGKILL from outside the kit" in final[state["killed_cell"]]["reasons"][0]
    assert outcome.counts == {"ok": outcome.total - 1, "crash": 1} and outcome.total >= 4
    events = list(read_jsonl(out / "journal.jsonl"))
    spawned = [e for e in events if e["event"] == "group_spawned"]
    assert [e["attempt"] for e in spawned] == [1, 2]
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", images["torch:cpu"]],
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
    for event in spawned:
        assert event["runner"]["image_id"] == image_id
        assert event["runner"]["fingerprint"]["ml_stack"]["torch"].startswith("2.")
    samples = [e for e in events if e["event"] == "sample" and e["status"] == "ok"]
    assert len(samples) >= (outcome.total - 1) * 3
