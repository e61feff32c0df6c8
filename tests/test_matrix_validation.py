"""Matrix validation completes: hostile shapes, safe names, refusals a user would want, and
error lists that name the file once, one line per problem, at most 10 lines."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kit.cli import main
from kit.matrix import load_matrix
from kit.matrix.validate import MatrixError
from kit.paths import UnsafePath, inside, is_safe_name

GOOD = """
schema: 1
id: mine
title: a small matrix
groups:
  - id: g1
    backends:
      - {backend: transformers-eager, label: eager, device: cpu}
    models: [tiny-gpt2]
    scenarios: [single_micro]
    modes: [prefill]
    repetitions: 2
    warmup: 1
    max_new_tokens: 4
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(MatrixError) as info:
        load_matrix(str(path))
    assert str(path) in info.value.title
    return info.value.title


def test_deep_nesting_is_one_clear_error(tmp_path: Path) -> None:
    depth = 5000
    path = write(tmp_path, GOOD + "notes: " + "[" * depth + "]" * depth + "\n")
    title = error_of(path)
    assert "nested too deeply" in title and "RecursionError" not in title
    rc = main(["matrix", "show", str(path)])
    assert rc == 1


def test_deep_mapping_nesting(tmp_path: Path) -> None:
    text = GOOD + "notes:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 300)) + "\n"
    assert "nested too deeply" in error_of(write(tmp_path, text))


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    text = "\n".join(lines) + "\nschema: 1\nid: lol\ngroups: *a9\n"
    title = error_of(write(tmp_path, text))
    assert "aliases expand to more than" in title


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = GOOD + "notes: &loop [a, *loop]\n"
    assert "alias refers to a value that contains it" in error_of(write(tmp_path, text))


@pytest.mark.parametrize("doc", ["just a string\n", "42\n", "", "- [1, 2]\n"])
def test_non_mapping_documents(tmp_path: Path, doc: str) -> None:
    title = error_of(write(tmp_path, doc))
    assert "(top): got" in title and "expected a mapping" in title


def test_multiple_documents_are_refused(tmp_path: Path) -> None:
    assert "not valid YAML" in error_of(write(tmp_path, GOOD + "---\n" + GOOD))


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("id: g1", "id: ../../etc/passwd", "groups[0].id: got '../../etc/passwd'"),
        ("id: g1", "id: 'a b'", "groups[0].id: got 'a b'"),
        ("id: mine", "id: ../up", "id: got '../up'; expected a matrix id"),
        ("label: eager", "label: ../../x", "backends[0].label: got '../../x'"),
        ("id: g1", "id: " + "g" * 65, "groups[0].id"),
    ],
)
def test_ids_and_labels_must_be_safe_names(
    tmp_path: Path, old: str, new: str, fragment: str
) -> None:
    assert fragment in error_of(write(tmp_path, GOOD.replace(old, new)))


def test_traversal_group_id_writes_nothing_outside(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("id: g1", "id: ../../etc/passwd"))
    out = tmp_path / "runs" / "r1"
    rc = main(["run", "--matrix", str(path), "--out", str(out), "--device", "cpu"])
    assert rc == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml"]


def test_inside_refuses_traversal_and_links(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    assert inside(root, "groups", "g1") == root / "groups" / "g1"
    for parts in (("..", "x"), ("groups", "../../etc/passwd"), ("/etc/passwd",), ()):
        with pytest.raises(UnsafePath):
            inside(root, *parts)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        inside(root, "link", "x")
    assert is_safe_name("gpt2-25m.fp32_1") and not is_safe_name(".hidden")
    assert not is_safe_name("a/b") and not is_safe_name("") and not is_safe_name(7)


def test_compile_block_on_a_non_compile_backend(tmp_path: Path) -> None:
    text = GOOD.replace("label: eager, device: cpu}", "label: eager, device: cpu, compile: {}}")
    title = error_of(write(tmp_path, text))
    assert "backends[0].compile" in title and "transformers-eager does not compile" in title


def test_unknown_gate_check(tmp_path: Path) -> None:
    text = GOOD + "gates:\n  - id: g\n    checks:\n      - {check: cuda_avialable}\n"
    title = error_of(write(tmp_path, text))
    assert "gates[0].checks[0].check: got 'cuda_avialable'" in title
    assert "cuda_available" in title


def test_gate_checks_match_the_harness() -> None:
    from kit.harness.gates import CHECKS
    from kit.matrix.spec import GATE_CHECKS

    assert set(GATE_CHECKS) == set(CHECKS)


def test_published_entry_matching_no_cell(tmp_path: Path) -> None:
    text = GOOD + (
        "    published:\n"
        "      - {match: {backend: transformers-eager}, statistic: mean, value: 1, source: s}\n"
        "      - {match: {mode: kv_decode}, statistic: mean, value: 1, source: s}\n"
    )
    title = error_of(write(tmp_path, text))
    assert "published[1].match: got {'mode': 'kv_decode'}" in title
    assert "published[0]" not in title


def test_missing_key_is_reported_once_and_file_named_once(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("schema: 1\n", "").replace("id: mine\n", "id: 'x y'\n"))
    title = error_of(path)
    lines = title.splitlines()
    assert lines[0] == f"2 problems in {path}:"
    assert len([line for line in lines if "schema" in line]) == 1
    assert title.count(str(path)) == 1


def test_error_list_is_capped_at_ten_lines(tmp_path: Path) -> None:
    text = GOOD + "".join(f"colour{i}: blue\n" for i in range(14))
    lines = error_of(write(tmp_path, text)).splitlines()
    assert lines[0].startswith("14 problems in ")
    assert len(lines) == 1 + 10 + 1
    assert lines[-1].strip() == "and 4 more"
    assert len(set(lines)) == len(lines)


def test_huge_repetitions_need_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("repetitions: 2", "repetitions: 1000000000000"))
    out = tmp_path / "run"
    rc = main(["run", "--matrix", str(path), "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "estimated to take 27777777h46m (2 cells" in err and "--yes" in err
    assert not out.exists()
    # The same through --reps on a sane matrix.
    sane = str(write(tmp_path, GOOD, "ok.yaml"))
    rc = main(["run", "--matrix", sane, "--out", str(out), "--device", "cpu", "--reps", "2000000"])
    assert rc == 1 and "--yes" in capsys.readouterr().err


def test_the_estimate_is_printed_and_the_run_proceeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.runner.plan import RunRequest, check_duration, plan_cells

    path = write(tmp_path, GOOD.replace("repetitions: 2", "repetitions: 1000000000000"))
    request = RunRequest(matrix=str(path), out=tmp_path / "r", yes=True)
    _, cells = plan_cells(request)
    assert check_duration(cells, confirmed=True) > 24 * 3600
    from kit.runner.progress import ProgressLine

    line = ProgressLine()
    line({"event": "run_started", "cells": 1, "finished": 0, "estimate_s": 3725.0})
    assert "estimate for the run's 1 cells: 1h02m" in capsys.readouterr().err


def test_builtin_matrices_still_load_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("tr117", "tr126", "tr147"):
        matrix = load_matrix(name)
        assert all(is_safe_name(g) for g in matrix.groups)
        assert all(is_safe_name(c.backend_label) for c in matrix.cells)
    assert main(["matrix", "show", "tr117", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
