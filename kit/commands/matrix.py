"""`kit matrix list|show`: the matrices and their expanded cells."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

HELP = "list the matrices, or show a matrix's expanded cells"

SHOW_COLUMNS = (
    "id",
    "group",
    "backend",
    "device",
    "model",
    "dtype",
    "scenario",
    "prompt_index",
    "mode",
    "token_len",
    "repetitions",
    "warmup",
    "max_new_tokens",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="matrix_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="name the matrices with their cell counts").add_argument(
        "--json", action="store_true", help="print JSON"
    )
    show = sub.add_parser("show", help="print a matrix's expanded cells")
    show.add_argument("name", help="tr117, tr126, tr147 or a path to a matrix YAML file")
    show.add_argument("--select", default=None, help="e.g. 'model=gpt2-*,mode=prefill|kv_decode'")
    show.add_argument("--json", action="store_true", help="print a JSON list of cells")
    show.add_argument("--published", action="store_true", help="also list the published values")
    show.add_argument(
        "--ollama-models", choices=("tags", "local"), default="tags",
        help="ollama groups on their tags (default) or the kit's own GGUF of the same models",
    )  # fmt: skip


def list_result() -> list[dict[str, Any]]:
    from kit.matrix import BUILTIN_MATRICES, load_matrix

    rows = []
    for name in BUILTIN_MATRICES:
        matrix = load_matrix(name)
        groups = Counter(cell.group for cell in matrix.cells)
        rows.append(
            {
                "id": matrix.id,
                "title": matrix.title,
                "cells": len(matrix.cells),
                "groups": dict(groups),
                "published_values": len(matrix.published),
            }
        )
    return rows


def render_table(rows: list[dict[str, Any]], columns: tuple[str, ...] | list[str]) -> str:
    text = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in text]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from kit.errors import KitError
    from kit.matrix import load_matrix, parse_selection, select_cells

    if args.matrix_command == "list":
        rows = list_result()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print(f"{row['id']:<7} {row['cells']:>5} cells  {row['title']}")
                for group, count in row["groups"].items():
                    print(f"          {count:>5}  {group}")
        return 0
    matrix = load_matrix(args.name, args.ollama_models)
    cells = select_cells(matrix.cells, parse_selection(args.select))
    if not cells:
        raise KitError(
            f"the selection {args.select!r} matches no cell of {matrix.id}",
            "loosen it; `kit matrix show NAME --json` lists the fields and values",
        )
    if args.json:
        json.dump([c.to_dict() for c in cells], sys.stdout, indent=1)
        print()
        return 0
    print(render_table([c.to_dict() for c in cells], SHOW_COLUMNS))
    print(f"\n{len(cells)} of {len(matrix.cells)} cells of {matrix.id} ({matrix.title})")
    if args.published:
        print("\npublished values:")
        for pub in matrix.published:
            match = ",".join(f"{k}={val}" for k, val in pub.match.items())
            print(
                f"  {pub.group}: {match}: {pub.statistic} {pub.value:g} {pub.unit}  [{pub.source}]"
            )
    return 0
