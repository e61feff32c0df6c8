"""`kit summarize` through the real CLI entry (kit.cli.main)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from runfactory import make_run_dir

from kit.cli import main


def test_table_lists_every_cell_and_writes_summary_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=3, statuses=["ok", "crash", "not_run"])
    assert main(["summarize", str(run.path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["cell", "model", "backend"]
    for cell in run.cells:
        assert any(line.startswith(cell["id"]) for line in lines)
    assert "crash 1, not_run 1, ok 1" in out and "INCOMPLETE" in out
    assert (run.path / "summary.json").exists() and (run.path / "summary.csv").exists()


def test_json_output_equals_the_written_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2)
    assert main(["summarize", str(run.path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out == (run.path / "summary.json").read_text()
    doc = json.loads(out)
    assert [r["cell"] for r in doc["rows"]] == [c["id"] for c in run.cells]


def test_csv_output_and_no_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=2)
    assert main(["summarize", str(run.path), "--csv", "--no-write", "--resamples", "200"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2 and rows[0]["n"] == "10"
    assert not (run.path / "summary.json").exists()


def test_json_and_csv_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["summarize", str(tmp_path), "--json", "--csv"])
    assert info.value.code == 2


@pytest.mark.parametrize("case", ["missing", "not_run_dir"])
def test_errors_are_one_message_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    target = tmp_path / "missing" if case == "missing" else tmp_path
    assert main(["summarize", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint:" in err and "Traceback" not in err


def test_unwritable_summary_says_use_no_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run_dir(tmp_path / "run", n_cells=1)
    (run.path / "summary.json").mkdir()  # replacing a directory fails, even for root
    assert main(["summarize", str(run.path)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the summary" in err and "--no-write" in err
    assert main(["summarize", str(run.path), "--no-write"]) == 0
