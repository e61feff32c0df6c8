"""`kit compare A B`: TR147-style portability between two bundles or run directories."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kit.errors import ExitCode, KitError

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
    try:
        claims = _claims_portability(args.a, args.b)
    except KitError:
        if not args.unverified:
            raise
        claims = None  # claims are never evaluated on an unverified bundle
    if args.json:
        out = result.to_dict()
        if claims is not None:
            from kit.claims.portability import to_dicts

            out["claims"] = to_dicts(claims)
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(render(result))
        if claims is not None:
            from kit.claims.portability import render as render_claims

            print("\nper-claim portability (each side's verdict on the cells it ran):")
            print(render_claims(claims))
            unequal = len({c.cell for c in result.cells if not c.same_work})
            if unequal:
                print(
                    f"note: {unequal} common cells were fed prompts of different lengths or "
                    "different weights on A and B (above); a claim pools each side's own "
                    "cells, so its A and B values may rest on those different inputs"
                )
    return int(ExitCode.OK)


def _claims_portability(a: Path, b: Path) -> list[Any] | None:
    """Per-claim portability when both runs are of a matrix with claims (else None)."""
    from kit.claims.portability import portability
    from kit.claims.source import claims_file_for, claims_for_evidence, open_evidence

    ev_a, ev_b = open_evidence(a), open_evidence(b)
    if ev_a.matrix != ev_b.matrix or claims_file_for(ev_a.matrix, None, ev_a.claims_yaml) is None:
        return None
    return portability(claims_for_evidence(ev_a), claims_for_evidence(ev_b))
