"""Every command that README.md and REPRODUCE.md tell a person to type is a test (issue 11).

The convention (tests/docs_commands.py parses it; both files say so in a comment):

- commands are the lines of indented (4-space) code blocks and of ```sh / ```bash / ```shell /
  ```console fenced blocks (in `console` blocks, the `$ ` lines); tables and inline code are
  prose, not commands;
- they run VERBATIM with bash, in document order (README.md, then REPRODUCE.md), all in ONE
  fresh temporary working directory that is not the checkout;
- a block whose previous non-blank line is `<!-- docs-test: skip (REASON) -->` is not run
  (GPU-only, cluster-only, interactive, or needing a file the reader was given), and the
  reason is required;
- the only rewrite: a `kit run` without `--device cpu` gets ` --device cpu` appended (GPU rows
  run on the CPU machine that CI is).

How `.venv/bin/kit` and `kit` resolve, honestly: the temporary folder gets a symlink `.venv`
to the checkout's own `.venv` (the one `./scripts/setup` made, with the kit installed in
editable mode), and that `.venv/bin` is first on PATH, as in an activated virtual
environment. Nothing else of the checkout is visible from the working directory.

Passing means: every command exits 0, and every cell of every run directory the commands
produced (any folder with a run.json) has a final status, and it is `ok` (a run whose cells
crash fails this test even when `kit run` exits 0).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.docs_commands import DocCommand, commands_in, cpu_rewrite, split_comment

REPO = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "REPRODUCE.md")


def all_commands() -> list[DocCommand]:
    return [c for name in DOCS for c in commands_in(REPO / name)]


def run_statuses(run_dir: Path) -> dict[str, str]:
    """cell id -> last status, for every cell run.json lists ("missing" when it has none)."""
    last: dict[str, str] = {}
    cells = run_dir / "cells.jsonl"
    if cells.exists():
        for line in cells.read_text().splitlines():
            row = json.loads(line)
            last[row["cell"]] = row["status"]
    header = json.loads((run_dir / "run.json").read_text())
    return {cid: last.get(cid, "missing") for cid in header["cell_ids"]}


# -- the parser (fast) ---------------------------------------------------------------------


def test_parser_reads_blocks_continuations_skips_and_console(tmp_path: Path) -> None:
    doc = tmp_path / "DOC.md"
    doc.write_text(
        "Intro `kit inline` is prose.\n\n"
        "    kit one   # comment\n"
        "    kit two --x \\\n"
        "        --y\n\n"
        "| table | `kit table` |\n\n"
        "<!-- docs-test: skip (needs a GPU) -->\n\n"
        "```sh\nkit skipped\n```\n\n"
        "```console\n$ kit three\noutput line\n```\n\n"
        "```python\nprint('not shell')\n```\n\n"
        "   ```bash\n   # a comment line\n   kit run --matrix m --out r\n   ```\n"
    )
    found = commands_in(doc)
    assert [(c.source, c.text, c.skipped) for c in found] == [
        ("DOC.md:3", "kit one   # comment", None),
        ("DOC.md:4", "kit two --x \\\n    --y", None),
        ("DOC.md:12", "kit skipped", "needs a GPU"),
        ("DOC.md:16", "kit three", None),
        ("DOC.md:26", "kit run --matrix m --out r", None),
    ]
    assert found[-1].command == "kit run --matrix m --out r --device cpu"


def test_a_skip_marker_needs_a_reason(tmp_path: Path) -> None:
    doc = tmp_path / "DOC.md"
    doc.write_text("<!-- docs-test: skip () -->\n\n    kit x\n")
    with pytest.raises(ValueError, match="needs a reason"):
        commands_in(doc)


def test_the_cpu_rewrite_is_the_only_one() -> None:
    assert cpu_rewrite(".venv/bin/kit run --out r  # note") == (
        ".venv/bin/kit run --out r --device cpu  # note"
    )
    assert (
        cpu_rewrite("kit run --device cuda --out r") == "kit run --device cuda --out r --device cpu"
    )
    for unchanged in ("kit run --device cpu --out r", "kit run --resume r", "kit bundle r"):
        assert cpu_rewrite(unchanged) == unchanged
    with pytest.raises(ValueError, match="chained"):
        cpu_rewrite("kit run --out r && kit bundle r")
    assert split_comment("kit x --select 'a#b' # c") == ("kit x --select 'a#b'", "# c")


def test_the_docs_have_runnable_commands_and_honest_skips() -> None:
    commands = all_commands()
    runnable = [c for c in commands if c.skipped is None]
    assert any("kit run" in c.command and "results/first" in c.command for c in runnable)
    assert any("kit verify results/smoke.tar.gz" in c.command for c in runnable)
    for c in commands:
        if c.skipped is None:
            assert "<" not in c.command.split("#")[0].replace("<(", ""), c  # no placeholders
        else:
            assert len(c.skipped) > 10, c


# -- running them (slow) -------------------------------------------------------------------


@pytest.mark.slow
def test_every_documented_command_runs_and_every_cell_is_ok(tmp_path: Path) -> None:
    work = tmp_path / "fresh"
    work.mkdir()
    venv = REPO / ".venv"
    assert (venv / "bin" / "kit").exists(), "run ./scripts/setup first"
    (work / ".venv").symlink_to(venv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_RESULTS")}
    env.pop("KIT_GPT2_TOKENIZER_DIR", None)  # the kit ships its tokenizer: no help from outside
    env["PATH"] = f"{work / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    ran = []
    for doc in all_commands():
        if doc.skipped is not None:
            continue
        proc = subprocess.run(
            ["bash", "-c", doc.command], cwd=work, env=env,
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, (
            f"{doc.source}: `{doc.command}` exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        )
        ran.append(doc.source)
    run_dirs = sorted(p.parent for p in work.rglob("run.json") if ".venv" not in p.parts)
    assert run_dirs, f"the documented commands ({', '.join(ran)}) made no run directory"
    problems = {
        str(d.relative_to(work)): {cid: s for cid, s in run_statuses(d).items() if s != "ok"}
        for d in run_dirs
    }
    assert {d: bad for d, bad in problems.items() if bad} == {}
