"""`kit status SWEEP`: where each planned group stands.

The task directories are the truth (a cell is done when it has a final record); Slurm's view
comes next: `squeue` for array tasks it still holds, then `sacct` when the cluster keeps
accounting (without it `sacct` fails, and that is said, not hidden). PREEMPTED and REQUEUED
are not final: such a task runs again.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

from kit.runner.journal import read_jsonl
from kit.runner.slurm import attempt_dirs, finished_in_group, load_plan, submissions

NOT_FINAL = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "PREEMPTED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
}


@dataclasses.dataclass(frozen=True)
class SlurmState:
    job: str  # <array job id>_<task id>
    state: str
    source: str  # squeue | sacct


@dataclasses.dataclass(frozen=True)
class GroupStatus:
    index: int
    group_id: str
    cells: int
    done: int
    attempts: list[dict[str, Any]]
    slurm: SlurmState | None

    @property
    def state(self) -> str:
        if self.done >= self.cells:
            return "done"
        if self.slurm and self.slurm.state in NOT_FINAL:
            return self.slurm.state.lower()
        return "unfinished" if self.attempts else "not started"


@dataclasses.dataclass(frozen=True)
class SweepStatus:
    sweep: Path
    groups: list[GroupStatus]
    accounting: str  # what sacct said

    @property
    def complete(self) -> bool:
        return all(g.state == "done" for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": str(self.sweep),
            "complete": self.complete,
            "accounting": self.accounting,
            "groups": [
                {
                    **dataclasses.asdict(g),
                    "state": g.state,
                    "slurm": dataclasses.asdict(g.slurm) if g.slurm else None,
                }
                for g in self.groups
            ],
        }


def _jobs(sweep: Path) -> dict[str, int]:
    """array job id -> index offset, over every submission of the sweep."""
    return {
        str(c["array_job_id"]): int(c["offset"])
        for s in submissions(sweep)
        for c in s.get("chunks", [])
        if c.get("array_job_id")
    }


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _parse(lines: str, jobs: dict[str, int], source: str) -> dict[int, SlurmState]:
    found: dict[int, SlurmState] = {}
    for line in lines.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or parts[0] not in jobs or not parts[1].isdigit():
            continue
        index = jobs[parts[0]] + int(parts[1])
        found[index] = SlurmState(f"{parts[0]}_{parts[1]}", parts[2].split()[0], source)
    return found


def squeue_states(sweep: Path) -> dict[int, SlurmState]:
    """Plan index -> state of the array task Slurm still holds for it (later jobs win)."""
    jobs = _jobs(sweep)
    if not jobs:
        return {}
    out = _run(["squeue", "-h", "-r", "-j", ",".join(jobs), "-o", "%F|%K|%T"])
    return _parse(out.stdout, jobs, "squeue") if out and out.returncode == 0 else {}


def sacct_states(sweep: Path) -> tuple[dict[int, SlurmState], str]:
    jobs = _jobs(sweep)
    if not jobs:
        return {}, "no job submitted"
    out = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(jobs), "-o", "JobID,State"])
    if out is None or out.returncode != 0:
        reason = (
            (out.stderr.strip().splitlines() or ["not installed"])[-1] if out else "not installed"
        )
        return {}, f"sacct unavailable ({reason[:160]})"
    rows = []
    for line in out.stdout.splitlines():
        job, _, state = line.partition("|")
        array_job, _, task = job.partition("_")
        rows.append(f"{array_job}|{task}|{state}")
    return _parse("\n".join(rows), jobs, "sacct"), "sacct"


def sweep_status(sweep: Path) -> SweepStatus:
    plan = load_plan(sweep)
    live = squeue_states(sweep)
    past, accounting = sacct_states(sweep)
    groups = []
    for group in plan["groups"]:
        gid, index = group["group_id"], int(group["index"])
        done = finished_in_group(sweep, gid)
        attempts = []
        for folder in attempt_dirs(sweep, gid):
            last = None
            for event in read_jsonl(folder / "journal.jsonl"):
                if event.get("event") in (
                    "run_started",
                    "run_resumed",
                    "run_finished",
                    "interrupted",
                ):
                    last = event["event"]
            attempts.append({"dir": folder.name, "last": last or "started"})
        groups.append(
            GroupStatus(
                index=index,
                group_id=gid,
                cells=len(group["cells"]),
                done=sum(1 for c in group["cells"] if c in done),
                attempts=attempts,
                slurm=live.get(index) or past.get(index),
            )
        )
    return SweepStatus(sweep, groups, accounting)


def render(status: SweepStatus) -> str:
    lines = [f"sweep {status.sweep}"]
    width = max((len(g.group_id) for g in status.groups), default=5)
    lines.append(f"{'idx':>3}  {'group':<{width}}  cells   {'state':<12} slurm")
    for g in status.groups:
        slurm = f"{g.slurm.job} {g.slurm.state} ({g.slurm.source})" if g.slurm else "-"
        tried = ", ".join(f"{a['dir']}: {a['last']}" for a in g.attempts)
        lines.append(
            f"{g.index:>3}  {g.group_id:<{width}}  {g.done:>2}/{g.cells:<3}  {g.state:<12} {slurm}"
            + (f"  [{tried}]" if tried else "")
        )
    done = sum(1 for g in status.groups if g.state == "done")
    lines.append(f"{done} of {len(status.groups)} groups done; accounting: {status.accounting}")
    if not status.complete:
        lines.append(f"unfinished groups: resume with `kit submit --slurm --resume {status.sweep}`")
    return "\n".join(lines)
