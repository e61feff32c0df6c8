"""`kit compare A B`: TR147-style portability between two bundles or run directories."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kit.errors import ExitCode

HELP = "compare two bundles cell by cell: ratio of medians, Holm, TOST, crash rates, verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, metavar="A", help="reference bundle or run directory")
    parser.add_argument("b", type=Path, metavar="B", help="candidate bundle or run directory")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument(
        "--margin-pct",
        type=float,
        default=3.0,
        help="TOST equivalence margin, percent of A's mean (default 3, as TR147)",
    )
    parser.add_argument(
        "--unverified",
        action="store_true",
        help="compare bundles that fail `kit verify` (the output says UNVERIFIED)",
    )


def run(args: argparse.Namespace) -> int:
    from kit.bundle.compare import compare, load_any, render

    result = compare(
        load_any(args.a, args.unverified),
        load_any(args.b, args.unverified),
        args.margin_pct,
        names=(str(args.a), str(args.b)),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        print(render(result))
    return int(ExitCode.OK)
