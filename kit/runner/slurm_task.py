"""One Slurm array task: run exactly its cell group of the sweep's plan into
`tasks/<group>/attempt-<n>/`, a run directory of its own (no file is written by two nodes).

n = the submission's attempt base for the group + SLURM_RESTART_COUNT, so a requeued task
(and a `kit submit --resume`) starts a fresh directory. Cells with a final record in any
earlier attempt of the group are not run again; a cell cut off by TERM has none (the kit
journals `interrupted` instead) and is rerun from its start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell
from kit.runner.journal import write_json_atomic
from kit.runner.slurm import finished_in_group, load_plan, submissions
from kit.runner.sweep import Controls, EventHook, RunOutcome

SLURM_VARS = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "restart_count": "SLURM_RESTART_COUNT",
    "node": "SLURMD_NODENAME",
    "cluster": "SLURM_CLUSTER_NAME",
    "partition": "SLURM_JOB_PARTITION",
    "cpus_on_node": "SLURM_CPUS_ON_NODE",
    "gpus": "SLURM_JOB_GPUS",
}
CONTAINER_VARS = {
    "runtime": "KIT_CONTAINER_RUNTIME",
    "source_image": "KIT_CONTAINER_SOURCE",
    "source_digest": "KIT_CONTAINER_SOURCE_DIGEST",
    "image_file": "KIT_CONTAINER_IMAGE_FILE",
    "image_sha256": "KIT_CONTAINER_IMAGE_SHA256",
}


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    index: int
    group_id: str
    attempt_dir: Path
    outcome: RunOutcome | None  # None: nothing left to run in this group


def slurm_facts(env: dict[str, str]) -> dict[str, Any]:
    facts: dict[str, Any] = {k: env.get(v) for k, v in SLURM_VARS.items()}
    facts["node"] = facts["node"] or socket.gethostname()
    return facts


def task_index(env: dict[str, str]) -> int:
    raw = env.get("KIT_SLURM_INDEX")
    if raw is None and env.get("SLURM_ARRAY_TASK_ID") is not None:
        raw = str(int(env["SLURM_ARRAY_TASK_ID"]) + int(env.get("KIT_INDEX_OFFSET", "0")))
    if raw is None or not raw.lstrip("-").isdigit():
        raise KitError(
            "kit slurm-task runs inside a Slurm array task (no SLURM_ARRAY_TASK_ID)",
            "submit the sweep with `kit submit --slurm`",
        )
    return int(raw)


def attempt_number(sweep: Path, submission: int, index: int, env: dict[str, str]) -> int:
    record = next((s for s in submissions(sweep) if s.get("number") == submission), None)
    if record is None:
        raise KitError(f"{sweep}: no slurm/submission-{submission}.json", "resubmit the sweep")
    base = int((record.get("attempt_bases") or {}).get(str(index), 0))
    return base + int(env.get("SLURM_RESTART_COUNT") or 0)


def run_task(
    sweep: Path,
    submission: int,
    controls: Controls | None = None,
    on_event: EventHook | None = None,
    env: dict[str, str] | None = None,
) -> TaskOutcome:
    from kit.runner.service import resume_run, start_frozen_run

    env = dict(os.environ) if env is None else env
    plan = load_plan(sweep)
    index = task_index(env)
    if not 0 <= index < len(plan["groups"]):
        raise KitError(f"array index {index} is not in {sweep}/plan.json", "resubmit the sweep")
    group = plan["groups"][index]
    gid = group["group_id"]
    folder = sweep / "tasks" / gid / f"attempt-{attempt_number(sweep, submission, index, env)}"
    if (folder / "run.json").is_file():  # the same attempt started again: continue it
        return TaskOutcome(index, gid, folder, resume_run(folder, controls, on_event))
    done = finished_in_group(sweep, gid)
    wanted = set(group["cells"]) - set(done)
    cells = [Cell.from_dict(c) for c in plan["cells"] if c["id"] in wanted]
    if not cells:
        return TaskOutcome(index, gid, folder, None)
    container = {k: env.get(v) for k, v in CONTAINER_VARS.items()}
    header = {
        **plan["header"],
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "slurm": {**slurm_facts(env), "submission": submission},
        "sweep": {
            "path": str(sweep),
            "index": index,
            "group_id": gid,
            "cells_done_before": sorted(set(group["cells"]) & set(done)),
        },
        "container": container,
    }
    folder.mkdir(parents=True, exist_ok=True)
    if container.get("runtime") not in (None, "", "host"):
        (folder / "env").mkdir(exist_ok=True)
        write_json_atomic(folder / "env" / "container.json", {"schema": 1, **container})
    outcome = start_frozen_run(
        folder, header, cells, sweep / "matrix" / "source.yaml", controls, on_event
    )
    return TaskOutcome(index, gid, folder, outcome)


def describe(task: TaskOutcome) -> str:
    if task.outcome is None:
        return f"task {task.index}: group {task.group_id} has no unfinished cell"
    counts = ", ".join(f"{n} {s}" for s, n in sorted(task.outcome.counts.items()))
    state = "interrupted" if task.outcome.interrupted else "finished"
    return f"task {task.index}: {task.attempt_dir} {state}: {counts}; " + json.dumps(
        {"wall_s": round(task.outcome.wall_s, 1)}
    )
