"""A small strict validator for matrix files: every problem names the file, the field path,
the bad value and what would be valid. Unknown keys are errors, never ignored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kit.errors import KitError


class MatrixError(KitError):
    pass


MAX_LINES = 10  # problems shown in one error; the rest are counted


class Problems:
    """Collects validation problems for one file; `raise_if_any` turns them into one error.

    The file is named once, at the top; each problem is one line `path: got X; expected Y`.
    A second problem at a path that already has one is dropped (one line per problem).
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[str] = []
        self._paths: set[str] = set()

    def add(self, path: str, value: Any, expected: str) -> None:
        key = path.removeprefix("(top).")
        if key in self._paths:
            return
        self._paths.add(key)
        shown = _short_repr(value)
        self.items.append(f"{path}: got {shown}; expected {expected}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        count = len(self.items)
        if count == 1:
            title = f"{self.file}: {self.items[0]}"
        else:
            shown = self.items[:MAX_LINES]
            if count > MAX_LINES:
                shown.append(f"and {count - MAX_LINES} more")
            title = f"{count} problems in {self.file}:\n  " + "\n  ".join(shown)
        raise MatrixError(title, "fix the matrix file; `kit matrix show tr126` shows a valid one")


def _short_repr(value: Any) -> str:
    """repr() cut to 60 characters (values are bounded in size and depth by the loader)."""
    try:
        shown = repr(value)
    except RecursionError:
        return f"<a deeply nested {type(value).__name__}>"
    return shown if len(shown) <= 60 else shown[:57] + "..."


def check_keys(
    p: Problems, path: str, data: Any, allowed: Mapping[str, str], required: tuple[str, ...] = ()
) -> bool:
    """Check `data` is a mapping with only `allowed` keys (key -> description) and the
    `required` ones. Returns False when data is not a mapping at all."""
    if not isinstance(data, dict):
        p.add(path, data, "a mapping with keys " + ", ".join(allowed))
        return False
    for key in data:
        if key not in allowed:
            p.add(f"{path}.{key}", key, "one of the keys " + ", ".join(allowed))
    for key in required:
        if key not in data:
            p.add(f"{path}.{key}", None, f"the required key {key!r} ({allowed[key]})")
    return True


def is_int(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(p: Problems, path: str, value: Any, ok: Callable[[Any], bool], expected: str) -> bool:
    if ok(value):
        return True
    p.add(path, value, expected)
    return False


def check_choice(p: Problems, path: str, value: Any, choices: tuple[str, ...] | list[str]) -> bool:
    return check(p, path, value, lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def check_list(
    p: Problems, path: str, value: Any, item_ok: Callable[[Any], bool], expected: str
) -> bool:
    """A non-empty list whose items all satisfy item_ok (each bad item reported)."""
    if not isinstance(value, list) or not value:
        p.add(path, value, f"a non-empty list of {expected}")
        return False
    good = True
    for i, item in enumerate(value):
        good &= check(p, f"{path}[{i}]", item, item_ok, expected)
    return good
