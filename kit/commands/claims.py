"""`kit claims RUN_OR_BUNDLE`: one verdict per published claim, from the bundle alone."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "evaluate the published claims (TR117/TR126/TR147) on a bundle or run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, metavar="RUN_OR_BUNDLE", help="a bundle archive or a run directory"
    )
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    parser.add_argument(
        "--claims", type=Path, default=None, help="a claims YAML file (default: the matrix's own)"
    )


def run(args: argparse.Namespace) -> int:
    from kit.claims import claims_for_path
    from kit.claims.render import dumps, render_text

    report = claims_for_path(args.source, args.claims)
    print(dumps(report) if args.json else render_text(report), end="" if args.json else "\n")
    return 0
