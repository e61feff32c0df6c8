"""Safe names and paths: the one place that decides whether a name may become a path.

Matrix ids, group ids, backend labels and cell ids end up in folder and file names (run
directories, bundle members, report files). `SAFE_NAME` is the shape they must have; `inside`
(over `within`) is the one check, used by every writer (runner, bundle, report), that a path
built from a root and such names stays under that root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kit.errors import KitError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SAFE_NAME_TEXT = "1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"


def is_safe_name(value: object) -> bool:
    """True for a string of the `SAFE_NAME` shape (no slash, no leading dot, <= 64 chars)."""
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


class UnsafePath(KitError):
    """A path built from names would leave its root."""


def within(root: Path, path: Path) -> bool:
    """True when `path` lies strictly below `root`, both lexically (after normalising `..`)
    and after resolving the symlinks that exist, so neither a traversal name nor a planted
    link escapes."""
    pairs = (
        (os.path.abspath(root), os.path.abspath(path)),
        (os.path.realpath(root), os.path.realpath(path)),
    )
    return all(t != b and t.startswith(b.rstrip(os.sep) + os.sep) for b, t in pairs)


def inside(root: Path, *parts: str) -> Path:
    """`root / parts...`, refused (UnsafePath) unless it stays strictly inside `root`."""
    candidate = Path(root).joinpath(*parts)
    if not parts or not within(root, candidate):
        shown = "/".join(parts)
        raise UnsafePath(
            f"refusing to write {shown!r}: it is not inside {root}",
            f"names that become paths must be {SAFE_NAME_TEXT}",
        )
    return candidate
