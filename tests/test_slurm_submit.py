"""`kit submit --slurm` without a cluster: chunking, the batch script, container commands.

pyxis/enroot and Apptainer do not exist here: the generated commands are checked as text and
by `bash -n`; the real-Slurm tier is tests/test_slurm_real.py.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from kit.errors import KitError
from kit.runner import containers, slurm

REPO = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "ab" * 32

TINY = """
schema: 1
id: tiny-slurm
title: two tiny-gpt2 groups
defaults: {device: cpu, repetitions: 2, warmup: 0, max_new_tokens: 2, seed: 42}
groups:
  - id: a
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
  - id: b
    backends: [{backend: transformers-eager, label: eager}]
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
"""


def test_chunks_keep_every_task_id_below_max_array_size() -> None:
    assert slurm.chunk_indices([0, 1, 2], 2) == [(0, [0, 1]), (2, [0])]
    assert slurm.chunk_indices([5, 1, 9, 2], 4) == [(1, [0, 1]), (5, [0]), (9, [0])]
    assert slurm.chunk_indices(list(range(7)), 1001) == [(0, list(range(7)))]
    assert slurm.array_spec([0, 3, 4], 2) == "0,3,4%2"
    with pytest.raises(KitError):
        slurm.chunk_indices([0], 0)


def _script(runtime: containers.Runtime, **options: object) -> str:
    return slurm.batch_script(Path("/shared/sw"), 0, slurm.SlurmOptions(**options), runtime)  # type: ignore[arg-type]


def test_batch_script_signals_requeue_and_waits_on_the_kit(tmp_path: Path) -> None:
    text = _script(containers.Runtime(), partition="gpu", account="lab", time="01:00:00",
                   gres="gpu:1", extra=("--qos=high",))  # fmt: skip
    for line in ("#SBATCH --signal=B:TERM@120", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 "#SBATCH --exclusive", "#SBATCH --partition=gpu", "#SBATCH --account=lab",
                 "#SBATCH --time=01:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --qos=high"):  # fmt: skip
        assert line in text.splitlines()
    assert "slurm-task /shared/sw --submission 0 &" in text
    assert "trap 'kill -TERM \"$child\" 2>/dev/null' TERM" in text
    assert "#SBATCH --exclusive" not in _script(containers.Runtime(), exclusive=False)
    path = tmp_path / "s.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    with pytest.raises(KitError, match="not an sbatch option"):
        slurm.sbatch_lines(slurm.SlurmOptions(extra=("qos=high",)), Path("/x"), "x")


def test_pyxis_imports_once_per_digest_under_flock(tmp_path: Path) -> None:
    image = f"ghcr.io/lab/kit-torch@{DIGEST}"
    runtime = containers.resolve_runtime(
        "pyxis", image, "/shared/images", ("/scratch:/cache",), Path("/shared/sw")
    )
    assert runtime.image_file == f"/shared/images/sha256-{'ab' * 32}.sqsh"
    text = _script(runtime)
    assert f"enroot import --output \"$part\" 'docker://ghcr.io#lab/kit-torch@{DIGEST}'" in text
    assert "flock -x 9" in text and '9>"$IMAGE_FILE.lock"' in text
    assert 'sha256sum "$IMAGE_FILE"' in text
    assert f"export KIT_CONTAINER_SOURCE_DIGEST={DIGEST}" in text
    assert ('srun --ntasks=1 --container-image="$IMAGE_FILE" '
            "--container-mounts=/shared/sw:/shared/sw,/scratch:/cache python -m kit slurm-task") in text  # fmt: skip
    (tmp_path / "s.sh").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "s.sh")]).returncode == 0
    with pytest.raises(KitError, match="has no digest"):
        containers.resolve_runtime("pyxis", "kit-torch:latest", None, (), Path("/x"))
    assert containers.enroot_uri(f"kit-torch@{DIGEST}") == f"docker://kit-torch@{DIGEST}"


def _docker_archive(path: Path, config_hex: str) -> None:
    """The layout `docker save` writes (manifest.json naming the config blob)."""
    manifest = json.dumps([{"Config": f"blobs/sha256/{config_hex}", "RepoTags": ["kit:cpu"],
                            "Layers": []}]).encode()  # fmt: skip
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


def test_apptainer_builds_from_the_archive_and_binds_the_sweep(tmp_path: Path) -> None:
    archive = tmp_path / "kit.tar"
    _docker_archive(archive, "cd" * 32)
    runtime = containers.resolve_runtime("apptainer", str(archive), None, (), tmp_path / "sw")
    assert runtime.source_digest == "sha256:" + "cd" * 32
    assert runtime.image_file == f"{tmp_path}/sw/images/sha256-{'cd' * 32}.sif"
    text = _script(runtime)
    assert f'apptainer build "$part" docker-archive:{archive}' in text
    assert (
        'apptainer exec --nv --bind /shared/sw:/shared/sw "$IMAGE_FILE" python -m kit slurm-task'
        in text
    )
    (tmp_path / "s.sh").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "s.sh")]).returncode == 0
    (tmp_path / "bad.tar").write_bytes(b"not a tar")
    with pytest.raises(KitError, match="not a docker-archive"):
        containers.archive_image_id(tmp_path / "bad.tar")


@pytest.mark.docker
def test_apptainer_digest_of_a_real_docker_save(tmp_path: Path) -> None:
    from conftest import docker_available

    if not docker_available():
        pytest.skip("no Docker daemon answers (scripts/ci-prepare starts one)")
    image = "llm-repro-kit/base:bookworm"
    found = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image],
                           capture_output=True, text=True)  # fmt: skip
    if found.returncode != 0:
        pytest.skip(f"{image} is not built (scripts/build-base-image)")
    archive = tmp_path / "base.tar"
    subprocess.run(["docker", "save", image, "-o", str(archive)], check=True, timeout=300)
    assert containers.archive_image_id(archive) == found.stdout.strip()


def test_dry_run_prints_script_and_plan_and_writes_nothing(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(textwrap.dedent(TINY))
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "submit", "--slurm", "--matrix", str(matrix),
         "--out", str(out), "--dry-run", "--parallel", "1", "--time", "00:10:00"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --time=00:10:00" in proc.stdout
    assert "plan.json: 2 groups, 6 cells" in proc.stdout
    assert "would run: sbatch --parsable --array=0" in proc.stdout and "%1" in proc.stdout
    assert not out.exists()


def test_bad_submissions_say_what_to_fix(tmp_path: Path) -> None:
    def kit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=120)  # fmt: skip

    no_slurm = kit("submit", "--matrix", "tr126", "--out", str(tmp_path / "x"))
    assert no_slurm.returncode == 1 and "needs --slurm" in no_slurm.stderr
    assert "Traceback" not in no_slurm.stderr
    unpinned = kit("submit", "--slurm", "--matrix", "tr126", "--out", str(tmp_path / "x"),
                   "--runtime", "pyxis", "--image", "kit:latest", "--dry-run")  # fmt: skip
    assert unpinned.returncode == 1 and "has no digest" in unpinned.stderr
    not_sweep = kit("status", str(tmp_path))
    assert not_sweep.returncode == 1 and "not a sweep folder" in not_sweep.stderr
