"""A sweep as Slurm job arrays: freeze the plan, write the batch script, call sbatch.

The sweep folder (on storage every node sees):

    plan.json                 array index -> cell group (and the frozen cells, settings)
    matrix/source.yaml, matrix/cells.json
    slurm/submit-<k>.sh       the batch script of submission k (0: the first, then resumes)
    slurm/submission-<k>.json its array jobs (chunks), sbatch commands, attempt bases
    slurm/logs/<job>_<task>.out
    tasks/<group>/attempt-<n>/  one ordinary run directory per array-task execution

The kit does not schedule: each array task runs exactly one group with the existing runner
(kit/runner/slurm_task.py); `kit merge SWEEP` joins the task directories.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from kit import __version__
from kit.errors import KitError
from kit.runner import containers
from kit.runner.journal import finished_cells, write_json_atomic
from kit.runner.merge import FINAL_STATUSES
from kit.runner.plan import RunRequest, groups_in_order, plan_cells

PLAN_SCHEMA = 1
KIT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAX_ARRAY = 1001  # Slurm's own default, when no cluster answers (dry run)


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    gres: str | None = None  # e.g. gpu:1
    exclusive: bool = True  # a shared node is a noisy neighbour
    parallel: int | None = None  # at most this many array tasks at once (%N)
    extra: tuple[str, ...] = ()  # more #SBATCH lines, e.g. "--qos=high"
    signal_lead_s: int = 120


def sbatch_lines(options: SlurmOptions, sweep: Path, name: str) -> list[str]:
    lines = [
        f"--job-name=kit-{name}",
        f"--output={sweep}/slurm/logs/%A_%a.out",
        "--open-mode=append",
        f"--signal=B:TERM@{options.signal_lead_s}",
        "--requeue",
    ]
    if options.exclusive:
        lines.append("--exclusive")
    for flag, value in (
        ("partition", options.partition),
        ("account", options.account),
        ("time", options.time),
        ("gres", options.gres),
    ):
        if value:
            lines.append(f"--{flag}={value}")
    for extra in options.extra:
        if not extra.startswith("-") or "\n" in extra:
            raise KitError(
                f"--sbatch {extra!r} is not an sbatch option", "e.g. --sbatch=--qos=high"
            )
        lines.append(extra)
    return [f"#SBATCH {line}" for line in lines]


def batch_script(
    sweep: Path, submission: int, options: SlurmOptions, runtime: containers.Runtime
) -> str:
    """The batch script: the kit runs in the background and the shell `wait`s, because a
    shell defers its traps while a foreground command runs; TERM (the time limit's
    `--signal`, `scancel --signal=TERM -b`) is passed on to the kit, which journals
    `interrupted` and flushes its telemetry before it exits."""
    kit_argv = [
        sys.executable,
        "-m",
        "kit",
        "slurm-task",
        str(sweep),
        "--submission",
        str(submission),
    ]
    lines = [
        "#!/bin/bash",
        *sbatch_lines(options, sweep, sweep.name),
        f"# Written by `kit submit --slurm` (llm-repro-kit {__version__}).",
        "# One array task = one cell group of plan.json (index = task id + KIT_INDEX_OFFSET).",
        "set -uo pipefail",
        f"export PYTHONPATH={shlex.quote(str(KIT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
        "export KIT_SLURM_INDEX=$(( SLURM_ARRAY_TASK_ID + ${KIT_INDEX_OFFSET:-0} ))",
        'echo "kit: task $KIT_SLURM_INDEX (job ${SLURM_JOB_ID}, restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date -u +%FT%TZ)"',
        *containers.prologue(runtime),
        containers.wrap(runtime, kit_argv, sweep) + " &",
        "child=$!",
        "trap 'kill -TERM \"$child\" 2>/dev/null' TERM",
        "while true; do",
        '  wait "$child"; rc=$?',
        '  kill -0 "$child" 2>/dev/null || break  # a trapped signal ended the wait: wait again',
        "done",
        'echo "kit: task $KIT_SLURM_INDEX exited with $rc at $(date -u +%FT%TZ)"',
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def max_array_size() -> int | None:
    """MaxArraySize from `scontrol show config`, or None when no Slurm answers."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.MULTILINE)
    return int(match.group(1)) if out.returncode == 0 and match else None


def chunk_indices(indices: list[int], max_array: int) -> list[tuple[int, list[int]]]:
    """(offset, array task ids) per sbatch call: every task id below `max_array`, as Slurm
    requires; the task adds the offset back (KIT_INDEX_OFFSET)."""
    if max_array < 1:
        raise KitError(f"MaxArraySize {max_array} leaves no array index", "check slurm.conf")
    chunks: list[tuple[int, list[int]]] = []
    for index in sorted(set(indices)):
        if chunks and index - chunks[-1][0] < max_array:
            chunks[-1][1].append(index - chunks[-1][0])
        else:
            chunks.append((index, [0]))
    return chunks


def array_spec(task_ids: list[int], parallel: int | None) -> str:
    return ",".join(str(i) for i in task_ids) + (f"%{parallel}" if parallel else "")


# -- the sweep folder ------------------------------------------------------------------------
def load_plan(sweep: Path) -> dict[str, Any]:
    path = sweep / "plan.json"
    if not path.is_file():
        raise KitError(
            f"{sweep} is not a sweep folder (no plan.json)",
            "give the --out folder of `kit submit --slurm`",
        )
    plan = json.loads(path.read_text(encoding="utf-8"))
    if plan.get("schema") != PLAN_SCHEMA:
        raise KitError(f"{path}: plan schema {plan.get('schema')} is not {PLAN_SCHEMA}")
    return dict(plan)


def attempt_dirs(sweep: Path, group_id: str) -> list[Path]:
    """tasks/<group>/attempt-<n> folders, by n."""
    folder = sweep / "tasks" / group_id
    found = [p for p in folder.glob("attempt-*") if p.name[8:].isdigit()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[8:]))


def finished_in_group(sweep: Path, group_id: str) -> dict[str, dict[str, Any]]:
    """Cells of a group with a final record in any of its attempts (later attempts win)."""
    done: dict[str, dict[str, Any]] = {}
    for folder in attempt_dirs(sweep, group_id):
        for cid, rec in finished_cells(folder).items():
            if rec.get("status") in FINAL_STATUSES:
                done[cid] = {**rec, "attempt_dir": folder.name}
    return done


def unfinished_groups(sweep: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for group in plan["groups"]:
        done = finished_in_group(sweep, group["group_id"])
        if any(c not in done for c in group["cells"]):
            out.append(group)
    return out


def freeze_plan(
    request: RunRequest, options: SlurmOptions, runtime: containers.Runtime
) -> tuple[dict[str, Any], Path]:
    """The plan of a new sweep (not yet written) and the matrix file it came from."""
    from kit.runner.service import git_state

    matrix, cells = plan_cells(request)
    groups = groups_in_order(cells)
    settings = {
        k: v for k, v in dataclasses.asdict(request).items() if k not in ("out", "argv", "matrix")
    }
    header = {
        "kit_version": __version__,
        **git_state(),
        "argv": list(request.argv),
        "matrix": {"id": matrix.id, "source": str(request.matrix), "sha256": matrix.sha256},
        "selection": request.selection,
        "overrides": request.overrides(),
        "runner": request.runner,
        "device": request.device,
        "order": request.order,
        "order_seed": request.order_seed,
        "settings": settings,
    }
    plan = {
        "schema": PLAN_SCHEMA,
        "kind": "kit-slurm-sweep",
        "kit_version": __version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sweep": str(request.out.resolve()),
        "header": header,
        "cell_ids": [c.id for c in cells],
        "groups": [
            {"index": i, "group_id": g[0].group_id(), "cells": [c.id for c in g]}
            for i, g in enumerate(groups)
        ],
        "slurm": dataclasses.asdict(options),
        "runtime": runtime.to_dict(),
    }
    plan["cells"] = [c.to_dict() for c in cells]
    return plan, matrix.path


@dataclasses.dataclass
class Submission:
    number: int
    script: str
    script_path: Path
    commands: list[list[str]]
    chunks: list[dict[str, Any]]
    max_array: int
    max_array_source: str
    skipped_live: list[int]
    dry_run: bool


def prepare_submission(
    sweep: Path, plan: dict[str, Any], indices: list[int], number: int, dry_run: bool
) -> Submission:
    options = SlurmOptions(**{**plan["slurm"], "extra": tuple(plan["slurm"]["extra"])})
    rt = dict(plan["runtime"])
    runtime = containers.Runtime(**{**rt, "mounts": tuple(rt.get("mounts") or ())})
    script = batch_script(sweep, number, options, runtime)
    found = max_array_size()
    max_array, source = (
        (found, "scontrol show config")
        if found
        else (DEFAULT_MAX_ARRAY, "Slurm's default (no cluster answered)")
    )
    script_path = sweep / "slurm" / f"submit-{number}.sh"
    commands, chunks = [], []
    for offset, task_ids in chunk_indices(indices, max_array):
        spec = array_spec(task_ids, options.parallel)
        cmd = ["sbatch", "--parsable", f"--array={spec}",
               f"--export=ALL,KIT_INDEX_OFFSET={offset}", str(script_path)]  # fmt: skip
        commands.append(cmd)
        chunks.append({"offset": offset, "indices": [offset + t for t in task_ids], "array": spec})
    return Submission(number, script, script_path, commands, chunks, max_array, source, [], dry_run)


def live_indices(sweep: Path) -> dict[int, str]:
    """Plan indices with an array task Slurm still holds (pending, running, requeued...)."""
    from kit.runner.sweep_status import squeue_states

    return {i: s.state for i, s in squeue_states(sweep).items()}


def submit(sweep: Path, plan: dict[str, Any], indices: list[int], dry_run: bool) -> Submission:
    """Write (unless dry run) the script and call sbatch once per chunk; check its exit code."""
    previous = sorted(sweep.glob("slurm/submission-*.json")) if sweep.is_dir() else []
    number = len(previous)
    sub = prepare_submission(sweep, plan, indices, number, dry_run)
    if dry_run:
        return sub
    bases = {}
    for index in indices:
        group = plan["groups"][index]
        dirs = attempt_dirs(sweep, group["group_id"])
        bases[str(index)] = int(dirs[-1].name[8:]) + 1 if dirs else 0
    (sweep / "slurm" / "logs").mkdir(parents=True, exist_ok=True)
    record = {
        "number": number,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "script": sub.script_path.name,
        "max_array_size": sub.max_array,
        "max_array_size_from": sub.max_array_source,
        "attempt_bases": bases,
        "chunks": sub.chunks,
    }
    sub.script_path.write_text(sub.script, encoding="utf-8")
    sub.script_path.chmod(0o755)
    path = sweep / "slurm" / f"submission-{number}.json"
    write_json_atomic(path, record)
    for cmd, chunk in zip(sub.commands, sub.chunks, strict=True):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise KitError(
                f"sbatch could not be run: {err}", "is Slurm installed here (sbatch on PATH)?"
            ) from None
        chunk["command"] = cmd
        if out.returncode != 0:
            write_json_atomic(path, record)
            raise KitError(
                f"sbatch failed (exit {out.returncode}) for array {chunk['array']}: {out.stderr.strip()[:500]}",
                "fix the option it names; already submitted chunks are in " + str(path),
            )
        chunk["array_job_id"] = out.stdout.strip().split(";")[0]
        write_json_atomic(path, record)
    return sub


def submissions(sweep: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(
        sweep.glob("slurm/submission-*.json"), key=lambda p: int(p.stem.split("-")[1])
    ):
        found.append(json.loads(path.read_text(encoding="utf-8")))
    return found


def write_sweep(sweep: Path, plan: dict[str, Any], matrix_path: Path) -> None:
    """The sweep folder's frozen part: plan.json and the matrix it was planned from."""
    import shutil

    (sweep / "matrix").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(matrix_path, sweep / "matrix" / "source.yaml")
    write_json_atomic(sweep / "matrix" / "cells.json", plan["cells"])
    write_json_atomic(sweep / "plan.json", plan)


def merge_inputs(sweep: Path, plan: dict[str, Any]) -> list[Any]:
    """Every attempt directory of the sweep, group by group in plan order, attempts in order."""
    from kit.runner.merge import MergeInput

    found = []
    for group in plan["groups"]:
        for folder in attempt_dirs(sweep, group["group_id"]):
            if (folder / "run.json").is_file():
                found.append(MergeInput.open(folder, f"{group['group_id']}/{folder.name}"))
    return found
