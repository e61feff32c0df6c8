"""Start or resume a run: the run directory, environment, telemetry, sweep, summary.

`start_run` and `resume_run` compute a RunOutcome; the CLI and the UI render it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit import __version__
from kit.errors import KitError
from kit.matrix import Cell
from kit.matrix.estimate import estimate_s, recompile_storms
from kit.runner.journal import finished_cells
from kit.runner.plan import RunRequest, plan, resolved_order
from kit.runner.sweep import (
    Controls,
    EventHook,
    RunOutcome,
    Sweep,
    count_statuses,
    write_run_header,
)

KIT_ROOT = Path(__file__).resolve().parents[2]


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(KIT_ROOT), *args], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if dirty is None else bool(dirty)}


def make_runner(name: str, request: RunRequest | None = None) -> Any:
    """The runner by name: `host` (child processes) or `docker` (sibling containers)."""
    if name == "host":
        from kit.runner.host import HostRunner

        return HostRunner(start_method=request.start_method if request else None)
    if name == "docker":
        try:
            from kit.runner.docker import DockerRunner
        except ImportError as err:
            raise KitError(
                f"the docker runner is unavailable: {err}",
                "use --runner host, or install the kit with its docker extra",
            ) from None
        return DockerRunner(allow_unpinned=bool(request and request.allow_unpinned))
    raise KitError(f"unknown runner {name!r}", "use --runner host or --runner docker")


def _check_devices(cells: list[Cell], detection: Any = None) -> dict[str, Any]:
    """Refuse cuda cells when no NVIDIA GPU is visible; return the detection record."""
    from kit.gpu.snapshot import detect

    detection = detection or detect()
    needs_gpu = sum(1 for c in cells if c.device == "cuda")
    if needs_gpu and not detection.gpus:
        raise KitError(
            f"{needs_gpu} selected cells need device cuda, but no NVIDIA GPU is visible: {detection.reason}",
            "run them on the CPU with --device cpu, or select CPU cells with --select device=cpu",
        )
    return detection.to_dict()


def _image_pins(
    runner: Any, cells: list[Cell], allow_unpinned: bool
) -> tuple[list[dict[str, Any]], str]:
    """The images the run will use and how each is pinned, checked BEFORE the run directory
    exists; run.json's `image_pinning`: "host" (no images), "pinned", or "unpinned" (accepted
    with --allow-unpinned or in the UI). Raises KitError for an unpinned image otherwise."""
    if not hasattr(runner, "image_pins"):
        return [], "host"
    from kit.runner.preflight import unpinned_error

    images: list[dict[str, Any]] = runner.image_pins(cells)
    unpinned = [r for r in images if not r["pinned"]]
    if unpinned and not allow_unpinned:
        first = unpinned[0]
        name, _, variant = first["image"].rpartition("/")[2].partition(":")
        raise unpinned_error(first["image"], first["unpinned_reason"] or "", name, variant)
    return images, "unpinned" if unpinned else "pinned"


def start_run(
    request: RunRequest, controls: Controls | None = None, on_event: EventHook | None = None
) -> RunOutcome:
    planned = plan(request)
    matrix, cells = planned.matrix, planned.cells
    # Absolute from here on: group processes run with cwd=<group dir> and bind mounts need
    # absolute sources, so a relative --out (or the UI's default ./results) must not leak.
    out = Path(request.out).expanduser().resolve()
    if (out / "run.json").exists():
        raise KitError(
            f"{out} already holds a run",
            f"resume it with `kit run --resume {out}`, or choose another --out",
        )
    if request.order == "interleaved" and request.runner != "host":
        raise KitError(
            "--order interleaved needs the host runner",
            "use --runner host, or --order listed/shuffled with the docker runner",
        )
    if request.block_reps < 1:
        raise KitError(f"--block-reps {request.block_reps} is out of range", "give 1 or more")
    if request.park_max is not None and request.park_max < 0:
        raise KitError(
            f"--park-max {request.park_max} is out of range",
            "give 0 (no parking) or more",
        )
    from kit.gpu.snapshot import detect
    from kit.runner.placement import check_gpus, check_servers, cpu_note

    found = detect()
    isolation, placement_notes = check_gpus(
        request.gpus or (), request.isolation, found, resolved_order(request.order, len(cells))
    )
    check_servers(cells, isolation)
    if request.gpus and (note := cpu_note(cells)):
        placement_notes.append(note)
    asked_isolation = request.isolation
    request = dataclasses.replace(request, isolation=isolation)
    detection = _check_devices(cells, found)
    runner = make_runner(request.runner, request)
    images, pinning = _image_pins(runner, cells, request.allow_unpinned)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        k: v for k, v in dataclasses.asdict(request).items() if k not in ("out", "argv", "matrix")
    }
    header = {
        "kit_version": __version__,
        **git_state(),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(request.argv),
        "matrix": {"id": matrix.id, "source": str(request.matrix), "sha256": matrix.sha256},
        "selection": request.selection,
        "overrides": request.overrides(),
        "runner": request.runner,
        "device": request.device,
        "order": resolved_order(request.order, len(cells)),
        "order_asked": request.order,
        "order_seed": request.order_seed,
        "settings": settings,
        "gpus_at_start": detection,
        "gpus": list(request.gpus) if request.gpus else None,
        "isolation": isolation,
        "isolation_asked": asked_isolation,
        "image_pinning": pinning,
        "images": images,
    }
    if planned.skipped_done:
        header["skip_done"] = planned.skipped_done
    write_run_header(out, header, cells, matrix.path)
    return _execute(
        out, cells, settings, runner, controls, on_event, resumed=False, notes=placement_notes
    )


def start_frozen_run(
    run_dir: Path,
    header: dict[str, Any],
    cells: list[Cell],
    matrix_path: Path,
    controls: Controls | None = None,
    on_event: EventHook | None = None,
) -> RunOutcome:
    """Run cells frozen earlier (a Slurm sweep's plan) into a new run directory: `header`
    is run.json without `schema`, `cell_ids` and `gpus_at_start`, which are added here."""
    settings = dict(header.get("settings") or {})
    detection = _check_devices(cells)
    runner = make_runner(str(header.get("runner", "host")))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_header(run_dir, {**header, "gpus_at_start": detection}, cells, matrix_path)
    return _execute(run_dir, cells, settings, runner, controls, on_event, resumed=False)


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[Cell]]:
    if not (run_dir / "run.json").exists():
        raise KitError(
            f"{run_dir} is not a run directory (no run.json)",
            "give the --out folder of an earlier `kit run`",
        )
    header = json.loads((run_dir / "run.json").read_text())
    raw = json.loads((run_dir / "matrix" / "cells.json").read_text())
    order = {cid: i for i, cid in enumerate(header.get("cell_ids", []))}
    cells = sorted((Cell.from_dict(c) for c in raw), key=lambda c: order.get(c.id, len(order)))
    return header, cells


def resume_run(
    run_dir: Path, controls: Controls | None = None, on_event: EventHook | None = None
) -> RunOutcome:
    run_dir = Path(run_dir).expanduser().resolve()  # see start_run
    header, cells = load_run(run_dir)
    settings = dict(header.get("settings") or {})
    from kit.gpu.snapshot import detect

    found = detect()
    if settings.get("gpus"):  # the run's GPUs must still be here (placement.py)
        from kit.runner.placement import check_gpus

        check_gpus(settings["gpus"], str(settings.get("isolation")), found, "listed")
    _check_devices([c for c in cells], found)
    runner = make_runner(
        header.get("runner", "host"),
        RunRequest(
            matrix="",
            out=run_dir,
            start_method=settings.get("start_method"),
            allow_unpinned=bool(settings.get("allow_unpinned")),
        ),
    )
    return _execute(run_dir, cells, settings, runner, controls, on_event, resumed=True)


def sampled_gpus(cells: list[Cell], settings: dict[str, Any]) -> list[int]:
    """The GPUs a run samples: --gpus (every listed one, CPU cells too: their groups are
    placed there), else --gpu when any cell runs on cuda, else none."""
    if settings.get("gpus"):
        return [int(g) for g in settings["gpus"]]
    if any(c.device == "cuda" for c in cells):
        return [int(settings.get("gpu_index", 0))]
    return []


def _telemetry_start(
    run_dir: Path, cells: list[Cell], settings: dict[str, Any], sweep: Sweep
) -> list[Any]:
    """Idle baseline, then the sampler: one process for the --gpu run (telemetry/sampler.json),
    one per GPU with --gpus (telemetry/sampler-gpuN.json: one GPU's slow NVML call never
    delays another's rows), then the thermal gate."""
    gpus = sampled_gpus(cells, settings)
    if not gpus:
        return []
    from kit.gpu.baseline import idle_baseline, wait_for_thermal_gate
    from kit.gpu.process import start_sampler

    seconds = float(settings.get("idle_baseline_s", 3.0))
    if seconds > 0:
        sweep.record(
            {
                "event": "idle_baseline",
                "gpus": [b.to_dict() for b in idle_baseline(seconds, gpus=gpus)],
            }
        )
    hz = float(settings.get("telemetry_hz", 20.0))
    handles = []
    if settings.get("gpus"):
        for gpu in gpus:
            handle = start_sampler(run_dir, hz, gpus=[gpu], name=f"sampler-gpu{gpu}")
            handles.append(handle)
            sweep.record(
                {
                    "event": "sampler_started",
                    "gpu": gpu,
                    "available": handle.available,
                    "reason": handle.reason,
                }
            )
    else:
        handle = start_sampler(run_dir, hz, gpus=gpus)
        handles.append(handle)
        sweep.record(
            {"event": "sampler_started", "available": handle.available, "reason": handle.reason}
        )
    gate = settings.get("thermal_gate_c")
    if gate is not None:
        record = wait_for_thermal_gate(
            float(gate), float(settings.get("thermal_gate_max_wait_s", 120.0)), gpus=gpus
        )
        sweep.record({"event": "thermal_gate", **record.to_dict()})
    return handles


def _execute(
    run_dir: Path,
    cells: list[Cell],
    settings: dict[str, Any],
    runner: Any,
    controls: Controls | None,
    on_event: EventHook | None,
    resumed: bool,
    notes: list[str] | None = None,
) -> RunOutcome:
    controls = controls or Controls()
    runner.preflight([])
    if hasattr(runner, "warm_up"):
        runner.warm_up(
            run_dir, {c.backend for c in cells}
        )  # the fork server imports torch while models are prepared
    sweep = Sweep(run_dir, cells, runner, settings, controls, on_event)
    started = time.monotonic()
    sweep.record(
        {
            "event": "run_resumed" if resumed else "run_started",
            "cells": len(cells),
            "finished": len(finished_cells(run_dir)),
            "kit_version": __version__,
            "estimate_s": round(estimate_s(cells, None, None, None, {})[0], 1),
        }
    )
    for note in notes or []:
        sweep.record({"event": "log", "level": "info", "message": note})
    for storm in recompile_storms(cells):
        sweep.record({"event": "log", "level": "warning", "plan": True,
                      "group_id": storm.group, "message": storm.warning()})  # fmt: skip
    samplers: list[Any] = []
    completed = False
    try:
        try:
            from kit.env.write import write_env

            write_env(run_dir)
        except Exception as err:  # a fingerprint failure must not lose a run
            sweep.record(
                {
                    "event": "log",
                    "level": "warning",
                    "message": f"environment fingerprint failed: {err}",
                }
            )
        samplers = _telemetry_start(run_dir, cells, settings, sweep)
        completed = sweep.run()
    except KeyboardInterrupt:
        controls.abort.set()
    finally:
        for sampler in samplers:
            result = sampler.stop()
            gpu = {"gpu": sampler.gpus[0]} if settings.get("gpus") else {}
            sweep.record(
                {
                    "event": "sampler_stopped",
                    **gpu,
                    "status": result.status,
                    "rows": result.rows,
                    "detail": result.detail,
                }
            )
        wall = time.monotonic() - started
        counts = count_statuses(run_dir, cells)
        outcome = RunOutcome(
            run_dir, counts, len(cells), wall, sweep.measured_ns / 1e9, not completed
        )
        sweep.record(
            {
                "event": "interrupted" if not completed else "run_finished",
                "wall_s": round(wall, 3),
                "measured_s": round(outcome.measured_s, 3),
                "sweep_efficiency": round(outcome.efficiency, 4),
                "counts": counts,
            }
        )
        sweep.close()
        if hasattr(runner, "close"):
            runner.close()
        _post_process(run_dir, bool(sampled_gpus(cells, settings)))
    return outcome


def _post_process(run_dir: Path, joined_telemetry: bool) -> None:
    """Summary and telemetry joins; failures are journaled, never fatal (the data is kept)."""
    from kit.stats.run_summary import write_summary

    steps: list[tuple[str, Callable[[Path], object]]] = [("summary", write_summary)]
    if joined_telemetry and (run_dir / "telemetry").is_dir():
        from kit.gpu.join import write_phases

        steps.append(("telemetry join", write_phases))
    for name, step in steps:
        try:
            step(run_dir)
        except Exception as err:
            # the sweep's journal is closed by now: append the warning directly
            line = {"event": "log", "level": "warning", "message": f"{name} failed: {err}"}
            with open(run_dir / "journal.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")


post_process = _post_process  # the merged run's summary and telemetry join (kit/runner/merge.py)
