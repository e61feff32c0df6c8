"""`kit report` and `kit compare` verify first; the report header says where and with what
the run was measured; the manifest stores real values or JSON null."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from bundle_corpus import CASES, read_members, write_tar
from runfactory import make_run_dir

from kit.bundle.build import build_bundle
from kit.cli import main
from kit.errors import KitError

# The tamper cases of issue 11, by the corpus's names, with the verifier's reason.
TAMPERED = {
    "member_flipped": "checksum mismatch: results/samples.jsonl",
    "member_removed": "missing from the archive: results/phases.jsonl",
    "duplicate": "duplicate member 'run.json'",
    "checksum_removed": "member not listed in SHA256SUMS: results/cell_summary.csv",
    "wrong_schema": "unsupported bundle schema 99",
    "manifest_missing": "required member missing: manifest.json",
    "sums_missing": "required member missing: SHA256SUMS",
}
CSVS = (
    "published.csv",
    "eager_vs_compiled.csv",
    "gpt2_family.csv",
    "energy_by_backend.csv",
    "oneoff_energy_by_backend.csv",
    "problem_cells.csv",
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tamper")
    make_run_dir(root / "run", n_cells=3, n_samples=8, telemetry_rows=300)
    good = build_bundle(root / "run", root / "good.tar.gz", report=False).path
    out = {"good": good, "run": root / "run"}
    for case in TAMPERED:
        out[case] = root / f"{case}.tar.gz"
        CASES[case][0](good, out[case])
    out["extra_member"] = root / "extra_member.tar.gz"
    members = read_members(good)
    members["results/extra.txt"] = b"added later\n"
    write_tar(out["extra_member"], members)
    return out


def _huge(good: Path, out: Path, size: int = 2 << 30) -> None:
    """The good bundle plus an added 2 GiB member, as a plain tar whose data is a hole
    (sparse on disk: the test writes a few MB, not 2 GiB)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in read_members(good).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("results/huge.bin")
        info.size = size
        tar.addfile(info)  # the header only; the data is skipped over:
        tar.fileobj.seek(size, 1)  # type: ignore[union-attr]
        tar.offset += size


@pytest.mark.parametrize("case", [*TAMPERED, "extra_member"])
def test_report_refuses_a_tampered_bundle(
    case: str, corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = corpus[case]
    reason = TAMPERED.get(case, "member not listed in SHA256SUMS: results/extra.txt")
    out = tmp_path / "r"
    assert main(["report", str(bundle), "-o", str(out), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bundle} fails verification: ") and reason in err
    assert len(err.splitlines()) == 2 and "Traceback" not in err  # one line and its hint
    assert not out.exists()


@pytest.mark.parametrize("case", ["member_flipped", "wrong_schema", "extra_member"])
def test_unverified_renders_stamped(
    case: str, corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    assert main(["report", str(corpus[case]), "-o", str(out), "--no-plots", "--unverified"]) == 0
    capsys.readouterr()
    report = (out / "REPORT.md").read_text().splitlines()
    assert report[0].startswith("UNVERIFIED: ")
    assert (TAMPERED.get(case) or "results/extra.txt") in report[0]
    for name in CSVS:
        assert (out / name).read_text().splitlines()[0] == report[0], name


def test_compare_refuses_tampered_and_stamps_unverified(
    corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = str(corpus["good"]), str(corpus["member_flipped"])
    assert main(["compare", good, bad]) == 1
    err = capsys.readouterr().err
    assert f"{bad} fails verification: checksum mismatch: results/samples.jsonl" in err
    assert main(["compare", bad, good]) == 1
    capsys.readouterr()
    assert main(["compare", good, bad, "--unverified"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("UNVERIFIED B: UNVERIFIED: checksum mismatch")
    assert main(["compare", good, bad, "--unverified", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unverified"][0].startswith("B: UNVERIFIED:")
    assert main(["compare", good, good, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unverified"] == []


def test_an_added_huge_member_is_refused(corpus: dict[str, Path], tmp_path: Path) -> None:
    from kit.bundle.reader import open_verified

    huge = tmp_path / "huge.tar"
    _huge(corpus["good"], huge)
    assert huge.stat().st_size > 2 << 30
    assert huge.stat().st_blocks * 512 < 64 << 20  # sparse where the filesystem allows
    with pytest.raises(KitError) as info, open_verified(huge):
        pass
    assert "fails verification: member not listed in SHA256SUMS: results/huge.bin" in str(
        info.value
    )


def test_a_run_directory_is_reported_as_not_a_bundle(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.bundle.reader import NOT_A_BUNDLE

    assert main(["report", str(corpus["run"]), "-o", str(tmp_path / "r"), "--no-plots"]) == 0
    report = (tmp_path / "r" / "REPORT.md").read_text()
    assert report.startswith("# Report")
    assert f"- verification: {NOT_A_BUNDLE}" in report
    assert not (tmp_path / "r" / "published.csv").read_text().startswith("UNVERIFIED")
    assert main(["report", str(corpus["good"]), "-o", str(tmp_path / "g"), "--no-plots"]) == 0
    assert "- verification: verified" in (tmp_path / "g" / "REPORT.md").read_text()
    capsys.readouterr()


def test_header_names_gpu_stack_commit_runner_and_manifest_is_json_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2, n_samples=4).path
    header = json.loads((run / "run.json").read_text())
    header.update(git_commit=None, device=None)
    (run / "run.json").write_text(json.dumps(header))
    gpu = {"name": "NVIDIA H200", "driver_version": "580.1", "cuda_driver_version": "13.0"}
    gpus = {"schema": 1, "gpus": [{"index": i, **gpu} for i in range(2)], "reason": None}
    (run / "env" / "gpu.json").write_text(json.dumps(gpus))
    stack = {"torch": "2.11.0+cu130", "cuda_runtime": "13.0", "triton": "3.6.0",
             "transformers": "5.17.0", "python": "3.12.3"}  # fmt: skip
    for name in ("g1.attempt1", "g2.attempt1"):
        (run / "env" / f"process-{name}.json").write_text(json.dumps(stack))
    bundle = build_bundle(run, tmp_path / "b.tar.gz", report=False).path
    manifest = json.loads(read_members(bundle)["manifest.json"])
    assert manifest["device"] is None and manifest["git_commit"] is None
    assert manifest["devices"] == ["cpu"]
    assert manifest["gpu"]["gpus"][0]["name"] == "NVIDIA H200"
    assert main(["report", str(bundle), "-o", str(tmp_path / "r"), "--no-plots"]) == 0
    capsys.readouterr()
    text = (tmp_path / "r" / "REPORT.md").read_text()
    assert "None" not in text.split("## ")[0]
    assert "- kit 0.1.0, commit `unknown`" in text
    assert "- runner: host; images: host (no container)" in text
    assert "- device: cpu (as the matrix says; cells: 2 cpu)" in text
    assert "- GPU: 2x NVIDIA H200; driver 580.1; CUDA 13.0" in text
    assert (
        "- ML stack of the measuring processes: torch 2.11.0+cu130, CUDA runtime 13.0, "
        "triton 3.6.0, transformers 5.17.0, python 3.12.3 (2 processes)"
    ) in text
