"""`kit merge`: join a Slurm sweep's tasks, or separate runs, into one ordinary run directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "merge a Slurm sweep (or several run directories of one matrix) into one run directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", type=Path, nargs="+", metavar="SWEEP_OR_RUN_DIR",
                        help="one sweep folder of `kit submit --slurm`, or run directories of "
                        "`kit run` and bundles of them (each bundle is verified first)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, required=True, help="the merged run directory to create"
    )
    parser.add_argument("--force", action="store_true",
                        help="merge runs of different matrices or kit versions (recorded in run.json)")  # fmt: skip
    parser.add_argument("--later-wins", action="store_true",
                        help="a cell finished in several runs keeps the latest run's result "
                        "(by created time; the others are listed in run.json merged.replaced_results)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import contextlib
    import tempfile

    from kit.errors import KitError
    from kit.runner import slurm
    from kit.runner.merge import MergeInput, merge_runs, task_names
    from kit.runner.merge_bundle import from_bundle, is_bundle

    sources = [p.resolve() for p in args.sources]
    out = args.out.resolve()
    sweeps = [p for p in sources if (p / "plan.json").is_file()]
    with contextlib.ExitStack() as stack:
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
                argv=tuple(sys.argv), later_wins=args.later_wins,
            )  # fmt: skip
        else:
            if len(set(sources)) != len(sources):
                raise KitError("the same run directory is given twice", "give each run once")
            for path in sources:
                if not path.is_dir() and not is_bundle(path):
                    raise KitError(
                        f"not a run directory or bundle: {path}",
                        "give run directories, bundles (.tar.gz) or one sweep folder",
                    )
            names = task_names(
                [p.parent / p.name.split(".tar")[0].removesuffix(".tgz") for p in sources]
            )
            opened: list[MergeInput] = []
            for path, name in zip(sources, names, strict=True):
                if path.is_dir():
                    opened.append(MergeInput.open(path, name))
                else:  # verified, then rebuilt in a temporary folder that the merge copies from
                    tmp = Path(
                        stack.enter_context(tempfile.TemporaryDirectory(prefix="kit-merge-"))
                    )
                    opened.append(from_bundle(path, tmp, name))
            # Chronological: an input that resumes cells another left unfinished comes after it.
            opened.sort(key=lambda s: str(s.run.get("created_utc") or ""))
            result = merge_runs(
                opened, out, force=args.force, argv=tuple(sys.argv), later_wins=args.later_wins
            )
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
    from kit.runner.merge import mixed_tokenization

    for line in mixed_tokenization(result.out):
        print(f"note: {line}: claims and kit compare treat cells fed other token counts as "
              "different inputs")  # fmt: skip
    print(f"bundle: kit bundle {result.out}")
    return 0
