"""The sweep: run a plan's cell groups through a runner, journal every event, resume.

Everything needed to resume or bundle is in the run directory (docs/FORMATS.md); nothing
lives only in memory. Completed cells (any final status) are never rerun; a half-done cell
is rerun from its start in a fresh process, except a cell its process suspended after a
fatal device error under on_error: continue (`cell_suspended`): the group's next process
continues it (`continue_from` in its input), at most `max_fatal_restarts` times. A resumed
run (`kit run --resume`) reruns a suspended cell from its start.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.matrix import Cell
from kit.paths import inside
from kit.runner.base import GroupJob, Runner
from kit.runner.journal import Journal, finished_cells, write_json_atomic
from kit.runner.placement import CoSchedule, placement
from kit.runner.plan import groups_in_order, prompt_ids

RUN_SCHEMA = 1
MAX_FATAL_RESTARTS = 3  # fresh processes continuing one cell after fatal device errors
EventHook = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class Controls:
    """Set from another thread (the UI, a signal handler): `abort` ends the current process
    now; `stop_after_cell` lets the current cell finish, then stops."""

    abort: threading.Event = dataclasses.field(default_factory=threading.Event)
    stop_after_cell: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def stopping(self) -> bool:
        return self.abort.is_set() or self.stop_after_cell.is_set()


@dataclasses.dataclass
class RunOutcome:
    run_dir: Path
    counts: dict[str, int]
    total: int
    wall_s: float
    measured_s: float
    interrupted: bool

    @property
    def efficiency(self) -> float:
        return self.measured_s / self.wall_s if self.wall_s > 0 else 0.0


class Sweep:
    def __init__(
        self,
        run_dir: Path,
        cells: list[Cell],
        runner: Runner,
        settings: dict[str, Any],
        controls: Controls | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.run_dir = run_dir.resolve()  # group processes run with cwd=<group dir>
        self.cells = cells
        self.runner = runner
        self.settings = settings
        self.controls = controls or Controls()
        self.on_event = on_event or (lambda _e: None)
        self.journal = Journal(run_dir / "journal.jsonl")
        self.measured_ns = 0
        self.precompiled: dict[str, dict[str, Any]] = {}  # group id -> precompile record
        # --gpus: every group of the run placed on one GPU, before anything runs (placement.py)
        self.gpus: tuple[int, ...] = tuple(int(g) for g in settings.get("gpus") or ())
        self.isolation = str(settings.get("isolation") or "exclusive")
        self.placed = placement(groups_in_order(cells), self.gpus) if self.gpus else {}
        self.coschedule = CoSchedule()
        self._record_lock = threading.Lock()
        self._cells_lock = threading.Lock()  # per-GPU workers finish cells at once
        self._prepare_lock = threading.Lock()  # two groups may share one model checkpoint
        self._cells_file = open(run_dir / "cells.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        # cell id -> (attempt that suspended it, its cell_suspended event); in memory only:
        # a resumed run reruns such a cell from its start.
        self.suspended: dict[str, tuple[int, dict[str, Any]]] = {}

    # -- journal helpers --------------------------------------------------------------------
    def record(self, event: dict[str, Any]) -> None:
        with self._record_lock:  # precompile readers journal from their own threads
            self.journal.append(event)
            self.on_event(event)

    def finish_cell(
        self, cell_id: str, status: str, reasons: list[str], attempt: int, **extra: Any
    ) -> None:
        line = {"cell": cell_id, "status": status, "reasons": reasons, "attempt": attempt, **extra}
        with self._cells_lock:
            self._cells_file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._cells_file.flush()
            os.fsync(self._cells_file.fileno())

    def placed_fields(self, job: GroupJob, cell: str | None = None) -> dict[str, Any]:
        """`gpu` and (for a finishing cell) `co_scheduled` of a placed run's records; {}
        without --gpus, so that a default run's journal and cells.jsonl stay as they were."""
        if not self.placed:
            return {}
        fields: dict[str, Any] = {"gpu": job.gpu_index}
        if cell is not None:
            fields["co_scheduled"] = self.coschedule.cell_finished(cell)
        return fields

    def spawn_fields(self, job: GroupJob) -> dict[str, Any]:
        """`gpu`, `device` and `isolation` of a placed run's `group_spawned`; {} without
        --gpus."""
        if not self.placed:
            return {}
        return {"gpu": job.gpu_index, "device": job.device, "isolation": self.isolation}

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> bool:
        """Run every unfinished cell; returns False when stopped early (resumable)."""
        done = finished_cells(self.run_dir)
        todo = [c for c in self.cells if c.id not in done]
        inputs = prompt_ids(self._matrix(), todo) if todo else {}
        for c in todo:
            info = inputs[c.id]
            if info["method"] == "approximate":
                self.record(
                    {
                        "event": "log",
                        "level": "warning",
                        "cell": c.id,
                        "message": f"token ids are approximate ({info['source']}): token counts may differ from the model's tokenizer",
                    }
                )
        groups = groups_in_order(todo)
        from kit.runner.precompile import can_park, precompile_groups, run_parked

        if can_park(self):
            # Each compiled group's measuring process compiles (several at once) and parks.
            return run_parked(self, groups, inputs)
        if self.settings.get("precompile", True):
            self.precompiled = precompile_groups(self, groups, inputs)
        if self.settings.get("order") == "interleaved":
            from kit.runner.interleave import run_interleaved

            return run_interleaved(self, groups, inputs)
        if self.placed and self.isolation == "per-gpu":
            from kit.runner.pergpu import run_per_gpu

            return run_per_gpu(self, groups, inputs)
        for group in groups:
            if self.controls.stopping:
                return False
            if not self._run_group(group, inputs):
                return False
        return True

    def _matrix(self) -> Any:
        from kit.matrix import load_matrix

        return load_matrix(str(self.run_dir / "matrix" / "source.yaml"))

    def _prepare_model(self, cell: Cell) -> tuple[Path, dict[str, Any]]:
        from kit.matrix.models import get_model
        from kit.models.prepare import prepare

        if get_model(cell.model).family == "ollama":
            return self.run_dir, {"model": cell.model, "weights": "server"}
        with self._prepare_lock:
            prepared = prepare(cell.model, self.settings.get("weights", "auto"), seed=cell.seed)
        return prepared.path, prepared.to_dict()

    def group_spec(
        self,
        cells: list[Cell],
        model_dir: Path,
        model_record: dict[str, Any],
        cache_dir: Path,
        inputs: dict[str, dict[str, Any]],
        continue_from: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The harness input of one group process (docs/FORMATS.md); `continue_from`: the
        suspended cells it continues (see `continuations`)."""
        spec = {
            "schema": 1,
            "cells": [c.to_dict() for c in cells],
            "model_dir": str(model_dir),
            "compile_cache_dir": str(cache_dir),
            "weights": model_record.get("weights"),
            "prompts": {c.id: inputs[c.id]["ids"] for c in cells},
            "texts": {c.id: inputs[c.id].get("texts", []) for c in cells},
            "group_timeout_s": self.settings.get("group_timeout_s", 1800.0),
        }
        precompiled = self.precompiled.get(cells[0].group_id())
        if precompiled and cache_dir.name == "compile-cache-1":
            spec["precompile"] = precompiled
        if continue_from:
            spec["continue_from"] = continue_from
        return spec

    def new_job(
        self,
        cells: list[Cell],
        attempt: int,
        model_dir: Path,
        model_record: dict[str, Any],
        inputs: dict[str, dict[str, Any]],
        *,
        input_name: str | None = None,
        harness_args: tuple[str, ...] = (),
        interactive: bool = False,
    ) -> GroupJob:
        """One process of a group: its compiler cache (`fresh_cache`), its harness input
        (groups/<group>/input-<attempt>.json unless named) and the job a runner starts."""
        first = cells[0]
        group_dir = inside(self.run_dir, "groups", first.group_id())
        group_dir.mkdir(parents=True, exist_ok=True)
        cache_dir = self.fresh_cache(group_dir, attempt)
        spec = self.group_spec(
            cells, model_dir, model_record, cache_dir, inputs, self.continuations(cells, attempt)
        )
        input_path = group_dir / (input_name or f"input-{attempt}.json")
        input_path.write_text(json.dumps(spec))
        return GroupJob(
            group_id=first.group_id(),
            input_path=input_path,
            group_dir=group_dir,
            model_dir=Path(model_dir),
            compile_cache_dir=cache_dir,
            backend=first.backend,
            device=first.device,
            gpu_index=self.gpu_for(first),
            timeout_s=float(self.settings.get("group_timeout_s", 1800.0)),
            harness_args=harness_args,
            interactive=interactive,
        )

    def continuations(self, cells: list[Cell], attempt: int) -> dict[str, dict[str, Any]]:
        """`continue_from` of process `attempt`: per suspended cell, the repetition to go on
        from, the tallies so far and every continuation (this one last)."""
        found: dict[str, dict[str, Any]] = {}
        for cell in cells:
            if cell.id not in self.suspended:
                continue
            _, event = self.suspended[cell.id]
            step = {"attempt": attempt, "from_rep": event.get("next_rep"),
                    "fatal_error": event.get("fatal_error")}  # fmt: skip
            found[cell.id] = {
                "from_rep": int(event.get("next_rep") or 0),
                "errors": list(event.get("errors") or []),
                "counts": dict(event.get("counts") or {}),
                "ok_ms": list(event.get("ok_ms") or []),
                "continued": [*(event.get("continued") or []), step],
            }
        return found

    def _suspend(self, job: GroupJob, event: dict[str, Any], attempt: int) -> bool:
        """Note a `cell_suspended`; past `max_fatal_restarts` continuations the cell is
        finished `crash` instead. Returns True when the cell was finished."""
        cid = str(event["cell"])
        limit = max(0, int(self.settings.get("max_fatal_restarts", MAX_FATAL_RESTARTS)))
        fatal = len(event.get("continued") or []) + 1
        if fatal <= limit:
            self.suspended[cid] = (attempt, event)
            return False
        self.suspended.pop(cid, None)
        errors = "fatal device error: it ended" if fatal == 1 else "fatal device errors: each ended"
        reasons = [
            f"{fatal} {errors} its process; gave up after {limit} continuation"
            f"{'' if limit == 1 else 's'}; last: {event.get('fatal_error')}"
        ]
        counts = {**(event.get("counts") or {}), "error": len(event.get("errors") or [])}
        placed = self.placed_fields(job, cid)
        self.finish_cell(cid, "crash", reasons, attempt, **placed)
        self.record(
            {
                "event": "cell_finished", "cell": cid, "status": "crash", "reasons": reasons,
                "evidence": {"by": "runner", "sample_counts": counts,
                             "continued": event.get("continued") or []},
                "attempt": attempt, **placed,
            }
        )  # fmt: skip
        return True

    def gpu_for(self, cell: Cell) -> int | None:
        """Which GPU a group (its precompile, its measuring processes) runs on: the one
        place a per-GPU scheduler decides it. With --gpus every group has one, CPU groups
        too (their process gets CUDA_VISIBLE_DEVICES; placement.cpu_note)."""
        if self.placed:
            return self.placed.get(cell.group_id(), self.gpus[0])
        return int(self.settings.get("gpu_index", 0)) if cell.device == "cuda" else None

    def fresh_cache(self, group_dir: Path, attempt: int) -> Path:
        """compile-cache-<attempt>: fresh, except attempt 1 of a precompiled group (its own
        precompile wrote it, for this group only)."""
        cache_dir = group_dir / f"compile-cache-{attempt}"
        if attempt == 1 and group_dir.name in self.precompiled:
            return cache_dir
        if cache_dir.exists():
            shutil.rmtree(cache_dir)
        cache_dir.mkdir(parents=True)
        return cache_dir

    def _run_group(
        self,
        group: list[Cell],
        inputs: dict[str, dict[str, Any]],
        first_attempt: int = 1,
        parked: Any = None,
    ) -> bool:
        """`parked`: the group's attempt-1 process, compiled and waiting (precompile.py)."""
        first = group[0]
        gid = first.group_id()
        group_dir = inside(self.run_dir, "groups", gid)  # ids are safe names; checked anyway
        group_dir.mkdir(parents=True, exist_ok=True)
        try:
            model_dir, model_record = self._prepare_model(first)
        except KitError as err:
            for cell in group:
                self.record(
                    {
                        "event": "cell_started",
                        "cell": cell.id,
                        "tokens_in": 0,
                        "prompt_ids": [],
                        "attempt": 0,
                    }
                )
                self.record(
                    {
                        "event": "cell_finished",
                        "cell": cell.id,
                        "status": "skipped",
                        "reasons": [f"model not prepared: {err.title}"],
                        "evidence": {},
                    }
                )
                self.finish_cell(cell.id, "skipped", [f"model not prepared: {err.title}"], 0)
            return True
        if parked is None:
            self.record({"event": "model_prepared", "group_id": gid, "model": model_record})
        remaining = list(group)
        attempt = first_attempt - 1
        while remaining:
            attempt += 1
            adopted, parked = (parked, None) if attempt == 1 else (None, parked)
            if adopted is not None:
                job = adopted.job
            else:
                job = self.new_job(remaining, attempt, model_dir, model_record, inputs)
            finished_now, inflight = self._run_process(
                job, attempt, len(remaining), {c.id: inputs[c.id] for c in remaining}, adopted
            )
            if self.controls.abort.is_set() or (
                self.controls.stop_after_cell.is_set() and inflight is None
            ):
                return False
            remaining = [c for c in remaining if c.id not in finished_now]
            suspended_now = any(a == attempt for a, _ in self.suspended.values())
            if adopted is not None and remaining and not finished_now and not suspended_now:
                # It ended while compiling ahead or parked, before any cell began: the
                # group is measured in a fresh process, as without parking.
                self.record({"event": "log", "level": "warning", "group_id": gid,
                             "message": "the parked process ended before measuring; the "
                             "group runs in a fresh process (see stderr.log)"})  # fmt: skip
                continue
            if remaining and not finished_now and not suspended_now:
                reason = (
                    "the group process failed before finishing any cell; see groups/"
                    + gid
                    + "/stderr.log"
                )
                for cell in remaining:
                    placed = self.placed_fields(job, cell.id)
                    self.finish_cell(cell.id, "crash", [reason], attempt, **placed)
                    self.record(
                        {
                            "event": "cell_finished",
                            "cell": cell.id,
                            "status": "crash",
                            "reasons": [reason],
                            "evidence": {"by": "runner"},
                            **placed,
                        }
                    )
                return True
            if self.controls.stop_after_cell.is_set():
                return not remaining
        return True

    def _run_process(
        self,
        job: GroupJob,
        attempt: int,
        n_cells: int,
        inputs: dict[str, dict[str, Any]],
        parked: Any = None,
    ) -> tuple[set[str], str | None]:
        """Run one group process to its end: a fresh one, or `parked` (compiled and waiting:
        its buffered events are journaled first, then it is told `go`)."""
        lines: Iterator[str]
        if parked is not None:
            proc, spawn_ns = parked.proc, parked.spawn_ns
            running = None
            if self.placed:
                running = self.coschedule.started(job.group_id, attempt, job.gpu_index)
            self.record(
                {
                    "event": "group_unparked",
                    "group_id": job.group_id,
                    "attempt": attempt,
                    "parked": parked.parked,
                    **({"gpu": job.gpu_index, "running": running} if self.placed else {}),
                }
            )
            if parked.parked:
                try:
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                except (OSError, ValueError, AttributeError):
                    pass  # it is ending: its stream says how
            lines = itertools.chain(parked.buffered, parked.lines)
        else:
            spawn_ns = time.monotonic_ns()
            proc = self.runner.start(job)
            lines = iter(proc.lines())
            spawned = self.spawn_fields(job)
            if self.placed:
                spawned["running"] = self.coschedule.started(job.group_id, attempt, job.gpu_index)
            self.record(
                {
                    "event": "group_spawned",
                    "group_id": job.group_id,
                    "attempt": attempt,
                    "cells": n_cells,
                    "runner": self.runner.describe(job),
                    **spawned,
                }
            )
        finished: set[str] = set()
        inflight: str | None = None
        deadline = time.monotonic() + job.timeout_s
        watchdog_done = threading.Event()

        def watchdog() -> None:
            # Wakes at once on abort (the event itself), else checks the deadline often.
            while not watchdog_done.is_set():
                aborted = self.controls.abort.wait(0.05)
                if aborted or time.monotonic() > deadline:
                    if not aborted and hasattr(proc, "mark_timed_out"):
                        proc.mark_timed_out()
                    proc.stop()
                    return

        guard = threading.Thread(target=watchdog, daemon=True)
        guard.start()
        try:
            for line in lines:
                event = _parse(line)
                event["attempt"] = attempt
                if self.placed:  # several processes write the journal at once: whose line
                    event["group_id"] = job.group_id
                    event["gpu"] = job.gpu_index
                name = event.get("event")
                if name == "group_started":
                    _mark_startup(event, spawn_ns, proc)
                if name == "group_started" and isinstance(event.get("ml_stack"), dict):
                    self._write_process_env(job.group_id, attempt, event["ml_stack"])
                elif name == "cell_started":
                    inflight = event.get("cell")
                    event.setdefault("token_method", inputs.get(inflight or "", {}).get("method"))
                    if self.placed and inflight:
                        self.coschedule.cell_started(str(inflight), job.group_id, attempt)
                elif name == "sample":
                    span = int(event.get("t1_ns", 0)) - int(event.get("t0_ns", 0))
                    with self._cells_lock:
                        self.measured_ns += span
                placed: dict[str, Any] = {}
                if name == "cell_finished" and event.get("cell"):
                    placed = self.placed_fields(job, str(event["cell"]))
                    event.update(placed)
                self.record(event)
                if name == "cell_suspended" and event.get("cell"):
                    # Not finished: the next process continues it (unless past the cap).
                    if self._suspend(job, event, attempt):
                        finished.add(str(event["cell"]))
                    inflight = None
                    continue
                if name == "cell_finished" and event.get("cell"):
                    cid = str(event["cell"])
                    self.finish_cell(
                        cid,
                        str(event.get("status")),
                        list(event.get("reasons") or []),
                        attempt,
                        **placed,
                    )
                    finished.add(cid)
                    self.suspended.pop(cid, None)
                    inflight = None
                    if self.controls.stop_after_cell.is_set():
                        proc.stop()
                        break
        finally:
            watchdog_done.set()
        info = proc.wait()
        exited: dict[str, Any] = {}
        if self.placed:
            exited = {
                "gpu": job.gpu_index,
                "running": self.coschedule.exited(job.group_id, attempt),
            }
        self.record(
            {
                "event": "child_exited",
                "group_id": job.group_id,
                "attempt": attempt,
                "returncode": info.returncode,
                "signal": info.signal,
                "oom_killed": info.oom_killed,
                "timed_out": info.timed_out,
                "detail": info.detail,
                **exited,
            }
        )
        if inflight and info.signal == 15 and not info.timed_out:
            # A TERM the kit did not send: Slurm (requeue, preemption, scancel) signals every
            # process of the job at once, the kit too. Let its own handler land before the
            # cell is judged: a stop is an interruption (rerun later), not a crash.
            self.controls.abort.wait(1.0)
        if inflight and not self.controls.abort.is_set():
            reason = info.detail or "the process ended in the middle of the cell"
            if info.oom_killed:
                reason = "out of memory: the process was OOM-killed; " + reason
            placed = self.placed_fields(job, inflight)
            self.finish_cell(inflight, "crash", [reason], attempt, **placed)
            self.record(
                {
                    "event": "cell_finished",
                    "cell": inflight,
                    "status": "crash",
                    "reasons": [reason],
                    "evidence": {"by": "runner", "exit": dataclasses.asdict(info)},
                    "attempt": attempt,
                    **placed,
                }
            )
            finished.add(inflight)
            inflight = None
        return finished, inflight

    def _write_process_env(self, group_id: str, attempt: int, ml_stack: dict[str, Any]) -> None:
        """env/process-<group>.json: the ML stack the measuring process reported."""
        try:
            from kit.env.write import write_process_env

            write_process_env(self.run_dir, f"{group_id}.attempt{attempt}", ml_stack)
        except Exception as err:  # a fingerprint must never stop a sweep
            self.record(
                {
                    "event": "log",
                    "level": "warning",
                    "message": f"process fingerprint not written: {err}",
                }
            )

    def close(self) -> None:
        self.journal.close()
        self._cells_file.close()


def _mark_startup(event: dict[str, Any], spawn_ns: int, proc: Any) -> None:
    """Start-up cost of a group process: from the runner's start request to the harness's
    first event (both stamped with time.monotonic_ns(), one clock on one kernel)."""
    requested = getattr(proc, "requested_ns", None)
    start_ns = requested if isinstance(requested, int) else spawn_ns
    if isinstance(event.get("t_ns"), int):
        event["startup_ms"] = round((event["t_ns"] - start_ns) / 1e6, 1)
    event["start_method"] = getattr(proc, "start_method", "container")


def _parse(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
        if isinstance(event, dict) and "event" in event:
            return event
    except json.JSONDecodeError:
        pass
    return {"event": "log", "level": "stdout", "message": line[:2000], "t_ns": time.monotonic_ns()}


def write_run_header(
    run_dir: Path, header: dict[str, Any], cells: list[Cell], matrix_path: Path
) -> None:
    (run_dir / "matrix").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(matrix_path, run_dir / "matrix" / "source.yaml")
    write_json_atomic(run_dir / "matrix" / "cells.json", [c.to_dict() for c in cells])
    write_json_atomic(
        run_dir / "run.json", {"schema": RUN_SCHEMA, **header, "cell_ids": [c.id for c in cells]}
    )


def count_statuses(run_dir: Path, cells: list[Cell]) -> dict[str, int]:
    done = finished_cells(run_dir)
    counts: dict[str, int] = {}
    for cell in cells:
        status = done.get(cell.id, {}).get("status", "not_run")
        counts[status] = counts.get(status, 0) + 1
    return counts


__all__ = ["Controls", "RunOutcome", "Sweep", "count_statuses", "write_run_header"]
