"""`kit report BUNDLE|RUN_DIR`: REPORT.md, plots and CSV exports."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write REPORT.md, PNG plots and CSV exports from a bundle or a run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, metavar="BUNDLE|RUN_DIR", help="a bundle archive or a run directory"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="folder to write (default: RUN_DIR/report, or <bundle>-report beside the bundle)",
    )
    parser.add_argument("--no-plots", action="store_true", help="tables and CSVs only")
    parser.add_argument(
        "--unverified",
        action="store_true",
        help="render a bundle that fails `kit verify`, stamped UNVERIFIED: <reason>",
    )


def run(args: argparse.Namespace) -> int:
    from kit.bundle.report import report_from_path

    out = report_from_path(
        args.source, args.output, with_plots=not args.no_plots, unverified=args.unverified
    )
    print(f"report: {out / 'REPORT.md'}")
    return 0
