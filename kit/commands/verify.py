"""`kit verify BUNDLE`: check a bundle without extracting it."""

from __future__ import annotations

import argparse
from pathlib import Path

from kit.errors import ExitCode

HELP = "verify a bundle: checksums, schema, completeness, consistency and safety"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="a .tar.gz or .tar.zst")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--max-member-mib",
        type=int,
        default=4096,
        help="reject members larger than this (default 4096 MiB)",
    )


def run(args: argparse.Namespace) -> int:
    from kit.bundle.verify import dumps, render, verify_bundle

    result = verify_bundle(args.bundle, size_cap=args.max_member_mib << 20)
    print(dumps(result) if args.json else render(result))
    return int(ExitCode.OK if result.ok else ExitCode.FAILURE)
