"""`kit bundle RUN_DIR`: one deterministic archive for artifact review."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "bundle a run directory into one deterministic, verifiable archive"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="archive path (default: beside the run)"
    )
    parser.add_argument("--zstd", action="store_true", help="write .tar.zst instead of .tar.gz")
    parser.add_argument("--no-report", action="store_true", help="leave report/ out")
    parser.add_argument("--no-plots", action="store_true", help="report without PNG plots")


def run(args: argparse.Namespace) -> int:
    from kit.bundle.build import build_bundle

    result = build_bundle(
        args.run_dir,
        args.output,
        compression="zst" if args.zstd else "gz",
        report=not args.no_report,
        plots=not args.no_plots,
    )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.cell_counts.items()))
    print(f"bundle: {result.path}")
    print(f"  {result.members} members, cells: {counts or 'none'}")
    print(f"  content hash: {result.content_hash}")
    if result.incomplete:
        shown = ", ".join(result.missing_cells[:10])
        more = (
            f" (+{len(result.missing_cells) - 10} more)" if len(result.missing_cells) > 10 else ""
        )
        print(f"  INCOMPLETE run: {len(result.missing_cells)} cells missing: {shown}{more}")
    return 0
