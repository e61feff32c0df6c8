"""Selection expressions: `key=value,key2=a|b*` (comma = AND, `|` = OR, `*` wildcard)."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

from kit.errors import KitError
from kit.matrix.cell import Cell

SELECT_SYNTAX = "key=value pairs joined by ',' (AND), values joined by '|' (OR), '*' wildcard"


class SelectionError(KitError):
    pass


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclasses.dataclass(frozen=True)
class Selection:
    """A parsed selection; the empty selection matches every cell."""

    terms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    expression: str = ""

    def matches(self, cell: Cell) -> bool:
        flat = cell.flat()
        return all(
            key in flat and any(fnmatch.fnmatchcase(_text(flat[key]), p) for p in patterns)
            for key, patterns in self.terms
        )

    def check_keys(self, valid: Iterable[str]) -> None:
        known = set(valid)
        for key, _ in self.terms:
            if key not in known:
                raise SelectionError(
                    f"unknown selection key {key!r} in {self.expression!r}",
                    f"valid keys: {', '.join(sorted(known))}",
                )


def parse_selection(expression: str | None) -> Selection:
    """Parse `--select`; raises SelectionError naming the bad part."""
    if not expression or not expression.strip():
        return Selection()
    terms: list[tuple[str, tuple[str, ...]]] = []
    for part in expression.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, values = part.partition("=")
        key = key.strip()
        patterns = tuple(v.strip() for v in values.split("|") if v.strip())
        if not sep or not key or not patterns:
            raise SelectionError(
                f"bad selection term {part!r} in {expression!r}",
                f"write {SELECT_SYNTAX}, e.g. 'model=gpt2-*,mode=prefill|kv_decode'",
            )
        terms.append((key, patterns))
    return Selection(tuple(terms), expression)


def select_cells(cells: Sequence[Cell], selection: Selection) -> list[Cell]:
    """Cells matching the selection, in their listed order. Unknown keys raise."""
    if cells and selection.terms:
        flats = [cell.flat() for cell in cells]
        selection.check_keys({key for flat in flats for key in flat})
    return [cell for cell in cells if selection.matches(cell)]
