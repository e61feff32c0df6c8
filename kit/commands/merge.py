"""`kit merge`: join a Slurm sweep's tasks, or separate runs, into one ordinary run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "merge a Slurm sweep (or several run directories of one matrix) into one run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", type=Path, nargs="+", metavar="SWEEP_OR_RUN_DIR",
                        help="one sweep folder of `kit submit --slurm`, or run directories of `kit run`")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, required=True, help="the merged run directory to create"
    )
    parser.add_argument("--force", action="store_true",
                        help="merge runs of different matrices or kit versions (recorded in run.json)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kit.errors import KitError
    from kit.runner import slurm
    from kit.runner.merge import MergeInput, merge_runs, task_names

    sources = [p.resolve() for p in args.sources]
    out = args.out.resolve()
    sweeps = [p for p in sources if (p / "plan.json").is_file()]
    if sweeps:
        if len(sources) != 1:
            raise KitError(
                "give one sweep folder alone", "merge sweeps one at a time, then merge the runs"
            )
        sweep = sweeps[0]
        plan = slurm.load_plan(sweep)
        inputs = slurm.merge_inputs(sweep, plan)
        if not inputs:
            raise KitError(f"no task of {sweep} has started yet", f"see `kit status {sweep}`")
        groups_of = {c: g["group_id"] for g in plan["groups"] for c in g["cells"]}
        result = merge_runs(
            inputs, out, force=args.force, cell_ids=plan["cell_ids"], cells=plan["cells"],
            groups_of=groups_of, extra={"sweep": str(sweep), "planned_groups": len(plan["groups"])},
            argv=tuple(sys.argv),
        )  # fmt: skip
    else:
        for path in sources:
            if not path.is_dir():
                raise KitError(
                    f"not a directory: {path}", "give run directories or one sweep folder"
                )
        opened = [MergeInput.open(p, n) for p, n in zip(sources, task_names(sources), strict=True)]
        # Chronological: an input that resumes cells another left unfinished comes after it.
        opened.sort(key=lambda s: str(s.run.get("created_utc") or ""))
        if len({s.path for s in opened}) != len(opened):
            raise KitError("the same run directory is given twice", "give each run once")
        result = merge_runs(opened, out, force=args.force, argv=tuple(sys.argv))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items()))
    print(f"merged run: {result.out} from {len(result.inputs)} run directories")
    print(f"cells: {counts} (of {result.total})")
    if result.shifted:
        print(
            f"clocks shifted for {len(result.shifted)} inputs (their ranges overlapped): see run.json merged.inputs"
        )
    if not result.complete:
        groups = (
            f" in groups {', '.join(result.missing_groups)}"
            if result.missing_groups != ["?"]
            else ""
        )
        print(
            f"INCOMPLETE: {len(result.missing_cells)} cells without a final record{groups}",
            file=sys.stderr,
        )
    print(f"bundle: kit bundle {result.out}")
    return 0
