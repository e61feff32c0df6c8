"""`kit status SWEEP`: each planned group's cells done, its attempts and Slurm's view."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "show where a Slurm sweep stands (task files, then squeue, then sacct)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep", type=Path, metavar="SWEEP", help="the folder of `kit submit --slurm`"
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace) -> int:
    from kit.runner.sweep_status import render, sweep_status

    status = sweep_status(args.sweep.resolve())
    print(json.dumps(status.to_dict(), indent=1) if args.json else render(status))
    return 0
