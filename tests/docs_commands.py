"""Read the shell commands that README.md and REPRODUCE.md tell a person to type.

The convention (also stated in tests/test_docs_commands.py and in the two files):

- a command is a line of an indented code block (4 spaces, after a blank line, outside any
  fence) or of a fenced block whose info string is `sh`, `bash`, `shell` or `console` (in a
  `console` block only lines starting with `$ ` are commands, the rest is output);
- a line ending in a backslash continues on the next line; blank lines and `#` comment lines
  are not commands; a trailing `# comment` stays (bash ignores it);
- a block whose previous non-blank line is `<!-- docs-test: skip (REASON) -->` is not run; the
  reason is required (GPU-only, cluster-only, interactive, needs a bundle you were given);
- the one rewrite: a `kit run` command (not `--resume`) without `--device cpu` gets
  ` --device cpu` appended before its comment, so GPU rows run on a CPU machine.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>[\w-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->\s*$")
SHELL_INFOS = {"sh", "bash", "shell", "console"}
KIT_RUN = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?kit\s+run\b")


@dataclasses.dataclass(frozen=True)
class DocCommand:
    source: str  # "README.md:42"
    text: str  # as written (continuations joined with their newlines)
    command: str  # what is run: `text`, or `text` with --device cpu appended
    skipped: str | None  # the skip reason, or None when it runs


@dataclasses.dataclass
class _Block:
    start: int  # 1-based line of the first content line
    lines: list[str]
    console: bool
    skip: str | None


def split_comment(line: str) -> tuple[str, str]:
    """(`code`, `comment`): the comment starts at the first `#` outside quotes that begins a
    word, as bash reads it."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i:]
    return line.rstrip(), ""


def cpu_rewrite(text: str) -> str:
    """Append `--device cpu` to a `kit run` command that lacks it (the only rewrite)."""
    code, comment = split_comment(text)
    if not KIT_RUN.search(code) or "--resume" in code or re.search(r"--device[ =]cpu\b", code):
        return text
    if re.search(r"&&|\|\||;|\|", code.split("kit run", 1)[1]):
        raise ValueError(f"cannot append --device cpu to a chained command: {text!r}")
    return f"{code} --device cpu" + (f"  {comment}" if comment else "")


def _blocks(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    pending_skip: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        skip = SKIP.match(line)
        if skip:
            reason = skip.group("reason").strip()
            if not reason:
                raise ValueError(f"line {i + 1}: a docs-test skip needs a reason")
            pending_skip = reason
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, info = len(fence.group("indent")), fence.group("info")
            j = i + 1
            body = []
            while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
                body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
                j += 1
            if info in SHELL_INFOS:
                blocks.append(_Block(i + 2, body, info == "console", pending_skip))
            pending_skip = None
            i = j + 1
            continue
        indented = line.startswith("    ") and line.strip()
        if indented and (i == 0 or not lines[i - 1].strip()):
            j = i
            body = []
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                body.append(lines[j][4:])
                j += 1
            blocks.append(_Block(i + 1, body, False, pending_skip))
            pending_skip = None
            i = j
            continue
        if line.strip():
            pending_skip = None  # a skip marker applies to the very next block only
        i += 1
    return blocks


def commands_in(path: Path) -> list[DocCommand]:
    """Every command of `path`, in document order (skipped ones included, with the reason)."""
    found: list[DocCommand] = []
    for block in _blocks(path.read_text(encoding="utf-8").splitlines()):
        k = 0
        while k < len(block.lines):
            line, number = block.lines[k], block.start + k
            k += 1
            if block.console:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [line]
            while parts[-1].rstrip().endswith("\\") and k < len(block.lines):
                nxt = block.lines[k]
                parts.append(nxt[2:] if block.console and nxt.startswith("> ") else nxt)
                k += 1
            text = "\n".join(parts)
            command = text if block.skip else cpu_rewrite(text)
            found.append(DocCommand(f"{path.name}:{number}", text, command, block.skip))
    return found
