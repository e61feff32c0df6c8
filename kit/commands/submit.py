"""`kit submit --slurm`: hand a selection to Slurm as job arrays (one task per cell group)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "submit a sweep to Slurm as job arrays (one array task per cell group), or resume one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--slurm", action="store_true", help="submit to Slurm (the one scheduler so far)"
    )
    parser.add_argument("--matrix", help="tr117, tr126, tr147 or a matrix YAML file")
    parser.add_argument("--select", default=None, help="e.g. 'model=gpt2-*,mode=prefill'")
    parser.add_argument("--out", type=Path, help="the sweep folder to create (shared storage)")
    parser.add_argument(
        "--resume", type=Path, metavar="SWEEP", help="submit only the unfinished groups of a sweep"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="run every selected cell on this device"
    )
    parser.add_argument("--reps", type=int, help="override the timed repetitions")
    parser.add_argument("--warmup", type=int, help="override the warmup repetitions")
    parser.add_argument("--max-new-tokens", type=int, help="override the forced output length")
    parser.add_argument("--weights", choices=("auto", "hub", "random"), default="auto")
    parser.add_argument(
        "--group-timeout", type=float, default=1800.0, help="seconds per cell-group process"
    )
    parser.add_argument("--partition", help="sbatch --partition")
    parser.add_argument("--account", help="sbatch --account")
    parser.add_argument("--time", help="sbatch --time, e.g. 02:00:00")
    parser.add_argument("--gres", help="sbatch --gres, e.g. gpu:1")
    parser.add_argument(
        "--no-exclusive", action="store_true", help="share nodes (default: --exclusive)"
    )
    parser.add_argument(
        "--parallel", type=int, help="at most N array tasks at once (--array=...%%N)"
    )
    parser.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                        help="one more #SBATCH line, e.g. --sbatch=--qos=high (repeatable)")  # fmt: skip
    parser.add_argument("--runtime", choices=("host", "pyxis", "apptainer"), default="host",
                        help="run each task on the host, or in the kit's image via pyxis/enroot or Apptainer")  # fmt: skip
    parser.add_argument(
        "--image", help="pyxis: REGISTRY/IMAGE@sha256:...; apptainer: a `docker save` archive"
    )
    parser.add_argument(
        "--image-cache", help="shared folder for .sqsh/.sif files (default SWEEP/images)"
    )
    parser.add_argument("--mount", action="append", default=[], metavar="SRC:DST",
                        help="one more bind mount into the container (repeatable)")  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="print the batch script and the plan; submit nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the submission as JSON")


def run(args: argparse.Namespace) -> int:
    from kit.errors import KitError
    from kit.runner import containers, slurm
    from kit.runner.plan import RunRequest

    if not args.slurm:
        raise KitError(
            "kit submit needs --slurm",
            "e.g. kit submit --slurm --matrix tr126 --out /shared/sweeps/a",
        )
    if args.resume:
        if args.matrix or args.out:
            raise KitError("--resume takes the sweep folder alone", "drop --matrix/--out")
        sweep = args.resume.resolve()
        plan = slurm.load_plan(sweep)
        live = slurm.live_indices(sweep)
        todo = [g["index"] for g in slurm.unfinished_groups(sweep, plan) if g["index"] not in live]
        if not todo:
            held = f"; Slurm still holds {sorted(live)}" if live else ""
            print(f"nothing to submit: every group of {sweep} is finished or queued{held}")
            return 0
    else:
        if not args.matrix or not args.out:
            raise KitError("kit submit --slurm needs --matrix and --out (or --resume SWEEP)",
                           "e.g. kit submit --slurm --matrix tr126 --device cpu --out /shared/sweeps/a")  # fmt: skip
        sweep = args.out.resolve()
        if (sweep / "plan.json").exists():
            raise KitError(
                f"{sweep} already holds a sweep", f"resume it: kit submit --slurm --resume {sweep}"
            )
        if args.parallel is not None and args.parallel < 1:
            raise KitError(f"--parallel {args.parallel} is out of range", "give a positive integer")
        request = RunRequest(
            matrix=args.matrix, out=sweep, selection=args.select, runner="host",
            device=args.device, repetitions=args.reps, warmup=args.warmup,
            max_new_tokens=args.max_new_tokens, weights=args.weights,
            group_timeout_s=args.group_timeout, argv=tuple(sys.argv),
        )  # fmt: skip
        options = slurm.SlurmOptions(
            partition=args.partition, account=args.account, time=args.time, gres=args.gres,
            exclusive=not args.no_exclusive, parallel=args.parallel, extra=tuple(args.sbatch),
        )  # fmt: skip
        slurm.sbatch_lines(options, sweep, sweep.name)  # checks --sbatch lines before writing
        runtime = containers.resolve_runtime(
            args.runtime, args.image, args.image_cache, tuple(args.mount), sweep
        )
        plan, matrix_path = slurm.freeze_plan(request, options, runtime)
        todo = [g["index"] for g in plan["groups"]]
        if not args.dry_run:
            slurm.write_sweep(sweep, plan, matrix_path)
    sub = slurm.submit(sweep, plan, todo, args.dry_run)
    if args.json:
        print(json.dumps({"sweep": str(sweep), "submission": sub.number, "dry_run": sub.dry_run,
                          "max_array_size": sub.max_array, "chunks": sub.chunks}, indent=1))  # fmt: skip
        return 0
    if args.dry_run:
        print(f"# batch script ({sub.script_path}, not written: dry run)")
        print(sub.script, end="")
        print(f"# plan.json: {len(plan['groups'])} groups, {len(plan['cell_ids'])} cells")
        for group in plan["groups"]:
            print(f"#   {group['index']:>3}  {group['group_id']}  ({len(group['cells'])} cells)")
    print(f"MaxArraySize {sub.max_array} ({sub.max_array_source}): {len(sub.chunks)} array job(s)")
    for cmd, chunk in zip(sub.commands, sub.chunks, strict=True):
        job = chunk.get("array_job_id")
        print(("would run: " if args.dry_run else f"job {job}: ") + " ".join(cmd))
    if not args.dry_run:
        print(f"status: kit status {sweep}")
        print(f"merge:  kit merge {sweep} --out RUN_DIR")
    return 0
