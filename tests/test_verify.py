from __future__ import annotations

from pathlib import Path

import pytest
from bundle_corpus import CASES
from runfactory import make_run_dir

from kit.bundle.build import build_bundle
from kit.bundle.verify import verify_bundle
from kit.cli import main


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    make_run_dir(
        root / "run", n_cells=3, n_samples=8, statuses=["ok", "crash", "ok"], telemetry_rows=300
    )
    return build_bundle(root / "run", root / "good.tar.gz", report=False).path


def test_good_bundle_verifies(good_bundle: Path) -> None:
    result = verify_bundle(good_bundle)
    assert result.problems == []
    assert result.manifest is not None and result.manifest.cell_counts == {"ok": 2, "crash": 1}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_damage_is_detected_with_its_own_message(
    case: str, good_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builder, expected = CASES[case]
    damaged = tmp_path / f"{case}.tar.gz"
    builder(good_bundle, damaged)
    rc = main(["verify", str(damaged)])
    out = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out.out + out.err
    assert out.err == ""
    lines = out.out.splitlines()
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(f"{damaged}: ") for line in lines)


def test_messages_are_distinct_across_cases(good_bundle: Path, tmp_path: Path) -> None:
    fragments = [expected for _, expected in CASES.values()]
    for case, (builder, expected) in CASES.items():
        damaged = tmp_path / case
        builder(good_bundle, damaged)
        problems = verify_bundle(damaged).problems
        others = [f for f in fragments if f != expected and any(f in p for p in problems)]
        # Only damage that really implies another one may share its message.
        allowed = {"checksum_removed": {"content hash mismatch"}}.get(case, set())
        assert set(others) <= allowed, (case, problems)


def test_size_cap_rejects_big_members(good_bundle: Path) -> None:
    problems = verify_bundle(good_bundle, size_cap=1000).problems
    assert any("over the size cap" in p and "results/journal.jsonl" in p for p in problems)


def test_verify_never_writes_members_to_disk(
    good_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    damaged = tmp_path / "evil.tar.gz"
    CASES["path_traversal"][0](good_bundle, damaged)
    verify_bundle(damaged)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]
    assert not (tmp_path.parent.parent / "evil.sh").exists()


def test_verify_json_output(good_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--json", str(good_bundle)]) == 0
    assert '"ok": true' in capsys.readouterr().out
