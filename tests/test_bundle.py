from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from runfactory import make_run_dir

from kit.bundle.build import build_bundle, created_epoch
from kit.bundle.verify import verify_bundle
from kit.cli import main
from kit.errors import KitError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "run"
    make_run_dir(
        path,
        n_cells=4,
        n_samples=10,
        statuses=["ok", "degraded", "crash", "skipped"],
        telemetry_rows=400,
        resumed_first_cell=True,
        sample_status=lambda cell, rep: "length_mismatch" if (cell, rep) == (1, 3) else "ok",
    )
    return path


def _members(bundle: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(bundle, "r:*") as tar:
        return {m.name: m for m in tar.getmembers()}


def _read(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle, "r:*") as tar:
        return tar.extractfile(name).read()  # type: ignore[union-attr]


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_same_run_gives_byte_identical_archives(
    run_dir: Path, tmp_path: Path, compression: str
) -> None:
    a = build_bundle(run_dir, tmp_path / f"a.{compression}", compression, report=False)
    b = build_bundle(run_dir, tmp_path / f"b.{compression}", compression, report=False)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.content_hash == b.content_hash
    assert verify_bundle(a.path).problems == []


def test_archive_metadata_is_normalized(run_dir: Path, tmp_path: Path) -> None:
    bundle = build_bundle(run_dir, tmp_path / "b.tar.gz", report=False).path
    raw = bundle.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert not raw[3] & 0x08  # no FNAME in the gzip header
    members = _members(bundle)
    names = list(members)
    assert names[:2] == ["manifest.json", "SHA256SUMS"]
    files = [n for n in names[2:] if members[n].isfile()]
    assert files == sorted(files)
    mtime = created_epoch(json.loads((run_dir / "run.json").read_text()))
    assert mtime > 0
    for info in members.values():
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "", "", mtime)
        assert info.mode == (0o755 if info.isdir() else 0o644)
        assert not info.name.startswith("/") and ".." not in info.name.split("/")
    assert str(run_dir) not in _read(bundle, "manifest.json").decode()


def test_layout_and_manifest(run_dir: Path, tmp_path: Path) -> None:
    bundle = build_bundle(run_dir, tmp_path / "b.tar.gz", report=False).path
    names = set(_members(bundle))
    for required in (
        "run.json", "env/host.json", "matrix/cells.json", "matrix/source.yaml",
        "results/samples.jsonl", "results/cell_summary.csv", "results/statuses.jsonl",
        "results/journal.jsonl", "telemetry/gpu0.csv", "integrity/checks.jsonl",
        "results/cell_energy.csv", "results/throttle_intervals.csv",
    ):  # fmt: skip
        assert required in names
    manifest = json.loads(_read(bundle, "manifest.json"))
    assert manifest["schema"] == 1
    assert manifest["git_commit"] == "0" * 40 and manifest["git_dirty"] is False
    assert manifest["argv"][:2] == ["kit", "run"]
    assert manifest["cells"]["by_status"] == {"ok": 1, "degraded": 1, "crash": 1, "skipped": 1}
    assert manifest["incomplete"] is False and manifest["cells"]["missing"] == []
    assert manifest["energy_j"]["cells"] > 0
    assert manifest["matrix"]["id"] == "tr126"
    assert manifest["content_hash"].startswith("sha256:")


def test_statistics_use_the_last_attempt_and_only_ok_samples(run_dir: Path, tmp_path: Path) -> None:
    bundle = build_bundle(run_dir, tmp_path / "b.tar.gz", report=False).path
    rows = _read(bundle, "results/cell_summary.csv").decode().splitlines()
    header = rows[0].split(",")
    by_cell = {r.split(",")[0]: dict(zip(header, r.split(","), strict=True)) for r in rows[1:]}
    cells = json.loads((run_dir / "matrix" / "cells.json").read_text())
    first, second = by_cell[cells[0]["id"]], by_cell[cells[1]["id"]]
    assert (first["n_samples"], first["n_ok"], first["n_warmup"]) == ("10", "10", "2")
    assert (second["n_ok"], second["n_length_mismatch"]) == ("9", "1")
    checks = [json.loads(x) for x in _read(bundle, "integrity/checks.jsonl").splitlines()]
    length = {c["cell"]: c["result"] for c in checks if c["check"] == "output_length"}
    assert length[cells[1]["id"]] == "fail" and length[cells[0]["id"]] == "pass"
    status = {c["cell"]: c["result"] for c in checks if c["check"] == "cell_status"}
    assert status[cells[2]["id"]] == "fail"


def test_prompt_tokens_check_names_cells_tokenized_approximately(tmp_path: Path) -> None:
    """A cell whose prompt ids were approximate (no tokenizer of its model) fails the
    `prompt_tokens` check, visibly; exact and server-tokenized cells pass; a journal that
    does not say (an older kit) adds no row."""
    run = make_run_dir(tmp_path / "run", n_cells=6, n_samples=4, statuses=["ok"] * 5 + ["skipped"])
    cells = json.loads((run.path / "matrix" / "cells.json").read_text())
    for cell in cells[:4] + cells[5:]:  # prompts of a scenario; the fifth stays a token_len cell:
        cell["token_len"] = None  # exactly token_len ids, whoever made them
    (run.path / "matrix" / "cells.json").write_text(json.dumps(cells))
    methods = dict(zip([c["id"] for c in run.cells],
                       ["exact", "approximate", "server", "-", "approximate", "approximate"],
                       strict=True))  # fmt: skip
    methods = {k: v for k, v in methods.items() if v != "-"}
    journal = run.path / "journal.jsonl"
    lines = []
    for line in journal.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "cell_started" and event["cell"] in methods:
            event["token_method"] = methods[event["cell"]]
        if event.get("event") == "cell_finished" and event["status"] == "skipped":
            lines.append(json.dumps({"event": "cell_started", "cell": event["cell"], "t_ns":
                event["t_ns"], "prompt_ids": [[1]], "token_method": "approximate"}))  # fmt: skip
        lines.append(json.dumps(event))
    journal.write_text("\n".join(lines) + "\n")
    bundle = build_bundle(run.path, tmp_path / "b.tar.gz", report=False).path
    assert verify_bundle(bundle).problems == []
    checks = [json.loads(x) for x in _read(bundle, "integrity/checks.jsonl").splitlines()]
    tokens = {c["cell"]: c for c in checks if c["check"] == "prompt_tokens"}
    first, second, third, fourth, fifth, skipped = (c["id"] for c in run.cells)
    assert skipped not in tokens  # it never ran its prompt
    assert tokens[first]["result"] == "pass" and tokens[third]["result"] == "pass"
    assert tokens[second]["result"] == "fail"
    assert "no tokenizer of this model was found" in tokens[second]["detail"]
    assert fourth not in tokens
    assert tokens[fifth]["result"] == "pass" and "exactly token_len ids" in tokens[fifth]["detail"]


def test_incomplete_run_is_bundled_and_says_so(tmp_path: Path) -> None:
    run = make_run_dir(
        tmp_path / "run", n_cells=3, n_samples=4, statuses=["ok", "incomplete", "not_run"]
    )
    result = build_bundle(run.path, tmp_path / "b.tar.gz", report=False)
    assert result.incomplete
    assert result.missing_cells == [run.cells[1]["id"], run.cells[2]["id"]]
    manifest = json.loads(_read(result.path, "manifest.json"))
    assert manifest["incomplete"] is True
    assert manifest["cells"]["missing"] == result.missing_cells
    assert verify_bundle(result.path).problems == []


def test_bundle_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: not a directory") and "Traceback" not in err
    with pytest.raises(KitError):
        build_bundle(tmp_path)


def test_bundle_modules_import_no_heavy_libraries() -> None:
    code = (
        "import sys, kit.bundle.build, kit.bundle.verify, kit.bundle.reader, "
        "kit.commands.bundle, kit.commands.verify\n"
        "bad = [m for m in ('torch', 'textual', 'matplotlib', 'transformers') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
