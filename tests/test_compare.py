from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfactory import make_run_dir

from kit.bundle.build import build_bundle
from kit.bundle.compare import compare, load_any
from kit.cli import main


def _run(path: Path, **kw) -> Path:
    kw.setdefault("n_cells", 3)
    kw.setdefault("n_samples", 30)
    return make_run_dir(path, **kw).path


def test_same_data_is_portable(tmp_path: Path) -> None:
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b")
    result = compare(load_any(a), load_any(b))
    assert [c.verdict for c in result.cells] == ["equivalent"] * 3
    assert all(c.ratio == pytest.approx(1.0) for c in result.cells)
    assert result.verdict == "portable"


def test_slower_stack_is_not_portable(tmp_path: Path) -> None:
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", base_latency_ms=2.5, seed=3)
    result = compare(load_any(a), load_any(b), margin_pct=3)
    assert {c.verdict for c in result.cells} == {"B slower"}
    assert all(c.ci_low > 1.0 and c.p_holm < 0.05 for c in result.cells)
    assert result.verdict == "not portable"


def test_crashes_and_mismatched_cells(tmp_path: Path) -> None:
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", n_cells=4, statuses=["ok", "crash", "ok", "ok"])
    result = compare(load_any(a), load_any(b))
    assert result.cells[1].verdict == "crash in B"
    assert result.crash_rate_b == pytest.approx(0.25) and result.crash_rate_a == 0.0
    assert len(result.only_in_b) == 1 and result.only_in_a == []
    assert result.verdict == "not portable"


def test_cli_json_from_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = build_bundle(_run(tmp_path / "a"), tmp_path / "a.tar.gz", report=False).path
    b = build_bundle(_run(tmp_path / "b"), tmp_path / "b.tar.gz", report=False).path
    assert main(["compare", str(a), str(b), "--json", "--margin-pct", "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "portable" and data["margin_pct"] == 5.0
    assert len(data["cells"]) == 3
    assert main(["compare", str(a), str(tmp_path / "missing.tar.gz")]) == 1
    assert capsys.readouterr().err.startswith("error: not found")
