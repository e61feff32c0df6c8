"""`kit run`: measure the selected cells of a matrix (or resume a run)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

HELP = "run the selected cells of a matrix, or resume an interrupted run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", help="tr117, tr126, tr147 or a matrix YAML file")
    parser.add_argument(
        "--select", default=None, help="e.g. 'model=gpt2-*,mode=prefill' (see `kit matrix show`)"
    )
    parser.add_argument("--out", type=Path, help="the run directory to create")
    parser.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run"
    )
    parser.add_argument(
        "--runner",
        choices=("host", "docker"),
        default=None,
        help="host child processes (default) or sibling containers (default inside the kit container)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="run every selected cell on this device"
    )
    parser.add_argument("--reps", type=int, help="override the timed repetitions")
    parser.add_argument("--warmup", type=int, help="override the warmup repetitions")
    parser.add_argument(
        "--until-ci",
        type=float,
        metavar="PCT",
        help="keep measuring each cell past --reps until its median's 95%% CI half-width is under PCT%% of the median",
    )
    parser.add_argument(
        "--max-reps", type=int, help="with --until-ci: most timed calls per cell (default 5x reps)"
    )
    parser.add_argument("--max-new-tokens", type=int, help="override the forced output length")
    parser.add_argument(
        "--order",
        choices=("auto", "listed", "shuffled", "interleaved"),
        default="auto",
        help="auto (default): a seeded shuffle for sweeps of 50+ cells, else listed; "
        "interleaved: a comparison's groups alternate in short blocks of repetitions",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of --order shuffled")
    parser.add_argument("--weights", choices=("auto", "hub", "random"), default="auto")
    parser.add_argument(
        "--group-timeout", type=float, default=1800.0, help="seconds per cell-group process"
    )
    parser.add_argument(
        "--max-fatal-restarts",
        type=int,
        default=3,
        help="on_error: continue: fresh processes that may continue one cell after fatal "
        "device errors (default 3); past them the cell is a crash",
    )
    parser.add_argument(
        "--gpu", type=int, default=None, help="GPU index for cuda cells (default 0)"
    )
    parser.add_argument(
        "--gpus",
        default=None,
        metavar="0,1,...",
        help="spread the groups over these GPUs (round-robin in run order), each process "
        "pinned with CUDA_VISIBLE_DEVICES, one sampler per GPU",
    )
    parser.add_argument(
        "--isolation",
        choices=("exclusive", "per-gpu"),
        default="exclusive",
        help="with --gpus: exclusive (default) runs one group at a time on the whole host "
        "(for timing claims); per-gpu runs one group per GPU at once (throughput)",
    )
    parser.add_argument("--telemetry-hz", type=float, default=20.0)
    parser.add_argument(
        "--idle-baseline", type=float, default=3.0, help="seconds of idle GPU baseline (0: none)"
    )
    parser.add_argument(
        "--thermal-gate",
        type=float,
        default=None,
        metavar="CELSIUS",
        help="before the sweep, wait until the GPU is at or below this temperature",
    )
    parser.add_argument(
        "--start",
        choices=("forkserver", "spawn"),
        default=None,
        help="host runner: fork group processes from a warm server (default on Linux) or spawn",
    )
    parser.add_argument(
        "--no-precompile",
        action="store_true",
        help="compile each compiled group in its measuring process only (no parallel phase)",
    )
    parser.add_argument(
        "--park-max",
        type=int,
        default=None,
        metavar="N",
        help="precompile: compiled groups whose measuring processes compile at once and wait "
        "their turn (default: a quarter of the cores, at least 2; 0: compile in separate "
        "processes that exit, then measure in fresh ones)",
    )
    parser.add_argument(
        "--block-reps", type=int, default=5, help="--order interleaved: repetitions per block"
    )
    parser.add_argument(
        "--ollama-models",
        choices=("tags", "local"),
        default="tags",
        help="ollama groups: their published tags (default), or the kit's own GGUF of the same "
        "models the other backends run (local)",
    )
    parser.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="docker runner: accept images without a lock entry",
    )
    parser.add_argument(
        "--skip-done",
        action="append",
        default=[],
        metavar="RUN_OR_BUNDLE",
        help="leave out the selected cells that already have a final result in this earlier "
        "run directory or bundle (verified first); repeatable. Join the runs with `kit merge`",
    )
    parser.add_argument(
        "--yes", action="store_true", help="run a selection estimated to take over 24 h"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (groups, cells, estimate; what --skip-done leaves out) and stop: "
        "nothing runs, no directory is written, --out is not needed",
    )


def _default_runner() -> str:
    import os

    return "docker" if os.environ.get("KIT_IN_CONTAINER") == "1" else "host"


def _gpus(args: argparse.Namespace) -> tuple[int, ...] | None:
    """--gpus parsed; KitError when combined with --gpu, or --isolation per-gpu without it."""
    from kit.errors import KitError
    from kit.runner.placement import parse_gpus

    if args.gpus is None:
        if args.isolation == "per-gpu":
            raise KitError(
                "--isolation per-gpu needs --gpus", "e.g. --gpus 0,1 --isolation per-gpu"
            )
        return None
    if args.gpu is not None:
        raise KitError(
            "--gpu and --gpus both name GPUs", "give one: --gpu 1, or --gpus 0,1 for several"
        )
    return parse_gpus(args.gpus)


def run(args: argparse.Namespace) -> int:
    from kit.errors import ExitCode, KitError
    from kit.runner.plan import RunRequest
    from kit.runner.progress import ProgressLine
    from kit.runner.service import resume_run, start_run
    from kit.runner.sweep import Controls

    controls = Controls()

    def on_signal(signum: int, _frame: Any) -> None:
        if controls.abort.is_set():
            raise KeyboardInterrupt
        controls.abort.set()
        print(
            "\nstopping: ending the current process; resume with `kit run --resume DIR`",
            file=sys.stderr,
        )

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if args.dry_run and args.resume:
        raise KitError(
            "--dry-run plans a new run; --resume continues one",
            f"see what is left of a run with `kit status {args.resume}`",
        )
    if args.resume:
        if args.matrix or args.out or args.skip_done:
            raise KitError(
                "--resume takes the run directory alone",
                "drop --matrix/--out/--skip-done; the run keeps its own cells",
            )
        progress = ProgressLine()  # its total comes with the run_resumed event
        outcome = resume_run(args.resume, controls, progress)
    else:
        gpus = _gpus(args)
        if args.dry_run:
            if not args.matrix:
                raise KitError(
                    "kit run --dry-run needs --matrix",
                    "e.g. kit run --matrix tr126 --select 'group=phase2-padded' --dry-run",
                )
            args.out = args.out or Path("(dry run)")
        if not args.matrix or not args.out:
            raise KitError(
                "kit run needs --matrix and --out (or --resume RUN_DIR)",
                "e.g. kit run --matrix tr126 --select 'model=gpt2-25m,mode=prefill' --device cpu --out runs/first",
            )
        request = RunRequest(
            matrix=args.matrix,
            out=args.out,
            selection=args.select,
            runner=args.runner or _default_runner(),
            device=args.device,
            repetitions=args.reps,
            warmup=args.warmup,
            max_new_tokens=args.max_new_tokens,
            until_ci_pct=args.until_ci,
            max_reps=args.max_reps,
            order=args.order,
            order_seed=args.seed,
            weights=args.weights,
            group_timeout_s=args.group_timeout,
            max_fatal_restarts=args.max_fatal_restarts,
            gpu_index=args.gpu or 0,
            gpus=gpus,
            isolation=args.isolation,
            telemetry_hz=args.telemetry_hz,
            idle_baseline_s=args.idle_baseline,
            thermal_gate_c=args.thermal_gate,
            allow_unpinned=args.allow_unpinned,
            ollama_models=args.ollama_models,
            argv=tuple(sys.argv),
            yes=args.yes,
            start_method=args.start,
            precompile=not args.no_precompile,
            park_max=args.park_max,
            block_reps=args.block_reps,
            skip_done=tuple(str(p) for p in args.skip_done),
        )
        if args.dry_run:
            print_dry_run(request)
            return 0
        progress = ProgressLine()  # its total comes with the run_started event
        outcome = start_run(request, controls, progress)
    progress.close()
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items()))
    print(f"run directory: {outcome.run_dir}")
    if not args.resume:
        from kit.runner.merge import gpu_models_at

        here = gpu_models_at(outcome.run_dir)
        for line in skip_done_lines(_header_skip_done(outcome.run_dir), here):
            print(line)
    print(f"cells: {counts} (of {outcome.total})")
    print(
        f"wall time {outcome.wall_s:.1f} s; sweep efficiency {outcome.efficiency:.1%} "
        f"(share of wall time inside timed or warmup work)"
    )
    if outcome.interrupted:
        print(f"interrupted: resume with `kit run --resume {outcome.run_dir}`", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    print(f"summary: kit summarize {outcome.run_dir}")
    bad = outcome.counts.get("crash", 0) + outcome.counts.get("degraded", 0)
    return int(ExitCode.CELLS_FAILED) if bad else 0


def print_dry_run(request: Any) -> None:
    """`kit run --dry-run`: the cells `kit run` would plan, one line per group in run order,
    with the estimate; the 24 h confirmation is reported, not raised."""
    import dataclasses

    from kit.matrix.estimate import LONG_RUN_S, estimate_s, fmt_duration, recompile_storms
    from kit.runner.plan import groups_in_order, plan

    planned = plan(dataclasses.replace(request, yes=True))
    groups = groups_in_order(planned.cells)
    rows = []
    for cells in groups:
        first = cells[0]
        compiled = first.backend == "transformers-compile"
        mode = (first.compile or {}).get("mode", "default") if compiled else "-"
        rows.append((first.group_id(), str(len(cells)), first.backend, first.model,
                     first.device, str(mode), fmt_duration(estimate_s(cells, None, None, None, {})[0])))  # fmt: skip
    head = ("group", "cells", "backend", "model", "device", "compile", "estimate")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    total = estimate_s(planned.cells, None, None, None, {})[0]
    print()
    print(f"{len(planned.cells)} cells of {planned.matrix.id} in {len(groups)} groups; "
          f"estimate {fmt_duration(total)} (an upper bound: compiles are summed, though "
          "compiled groups precompile in parallel)")  # fmt: skip
    here = None
    if planned.skipped_done:
        from kit.env.write import gpu_record
        from kit.runner.merge import models_of

        here = models_of(gpu_record())
    for line in skip_done_lines(planned.skipped_done, here):
        print(line)
    for storm in recompile_storms(planned.cells):
        print(f"warning: {storm.warning()}")
    if total > LONG_RUN_S and not request.yes:
        print(f"over {fmt_duration(LONG_RUN_S)}: kit run would ask for --yes")
    print("dry run: nothing was started and no directory was written")


def skip_done_lines(records: list[dict[str, Any]], here: str | None = None) -> list[str]:
    """A line per --skip-done source: what it took out, and the selected cells it finished
    with other options (they ran there, but as other cells: not skipped). `here`: this
    machine's GPU models (kit.runner.merge.models_of); a source measured on others is said,
    since `kit merge` refuses to join runs of two GPU models."""
    lines = []
    for record in records:
        theirs = record.get("gpu_models")
        if here is not None and theirs is not None and theirs != here:
            mine = "no GPU" if here == "none" else here
            lines.append(f"note: --skip-done {record['path']} was measured on {theirs}, this "
                         f"machine has {mine}: the cells it finished are not run here, and "
                         "`kit merge` refuses to join runs of two GPU models")  # fmt: skip
        line = (f"--skip-done {record['path']}: {record['cells_skipped']} selected cells "
                "already have a final result there")  # fmt: skip
        other = record.get("other_overrides") or 0
        if other:
            line += (f"; {other} more ran there with other options (--reps, --device, ...): "
                     "give the options of that run to skip them too")  # fmt: skip
        lines.append(line)
    return lines


def _header_skip_done(run_dir: Path) -> list[dict[str, Any]]:
    """run.json's skip_done records (none when the run had no --skip-done)."""
    import json

    try:
        records = json.loads((Path(run_dir) / "run.json").read_text()).get("skip_done")
    except (OSError, ValueError, AttributeError):
        return []
    return records if isinstance(records, list) else []
