"""The GPU sampler: a separate PROCESS that writes `telemetry/gpuN.csv` while cells run.

Never a thread inside the measured process (ARCHITECTURE.md: a sampler thread would compete
with a launch-bound decode loop for the GIL). Rows are stamped with `time.monotonic_ns()`,
the clock the harness stamps its events with, so `kit.gpu.join` can join them by time.

    with start_sampler(run_dir, hz=20) as sampler:
        ...  # run cells
    result = sampler.result  # status, rows per GPU, crash detail

The process itself: `python -m kit.gpu.sampler --out RUN_DIR/telemetry --hz 20 [--gpus 0,1]`.
It writes `telemetry/sampler.json` (status, rate, GPUs, rows, lost GPUs) when it starts and
when it ends; the parent adds the exit code and log tail there if it crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from kit.errors import KitError
from kit.gpu import nvml
from kit.gpu.nvml import GpuLost, GpuUnavailable
from kit.gpu.telemetry import Probe, format_row, header_line

DEFAULT_HZ = 20.0
MAX_HZ = 100.0
FLUSH_EVERY_S = 0.25  # a crash loses at most this much telemetry


def check_rate(hz: float) -> float:
    """Return `hz` if it is a sampling rate the sampler accepts; raise KitError if not."""
    if not 0 < hz <= MAX_HZ:
        raise KitError(
            f"GPU sampling rate {hz:g} Hz is outside 0 < hz <= {MAX_HZ:g}",
            "NVML refreshes power and clocks every few ms at best and each reading costs "
            f"driver time; use a rate up to {MAX_HZ:g} Hz (default {DEFAULT_HZ:g})",
        )
    return hz


def write_status(folder: Path, status: dict[str, Any], name: str = "sampler") -> None:
    """`<name>.json` in the telemetry folder: `sampler`, or `sampler-gpuN` for the per-GPU
    samplers of a `--gpus` run."""
    tmp = folder / f"{name}.json.tmp"
    tmp.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / f"{name}.json")


def read_status(folder: Path, name: str = "sampler") -> dict[str, Any]:
    try:
        data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _open_csv(path: Path) -> IO[str]:
    fresh = not path.exists() or path.stat().st_size == 0
    # Stays open for the whole loop; closed in run_sampler. Append: a resumed run keeps rows.
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
    if fresh:
        handle.write(header_line())
    return handle


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True


def run_sampler(
    out: Path,
    hz: float,
    gpus: Sequence[int] | None,
    parent_pid: int | None,
    duration_s: float | None = None,
    ready: IO[str] | None = None,
    name: str = "sampler",
) -> int:
    """The sampler loop. Returns the exit code (0 also when no GPU is available); its
    status goes to `<name>.json` in `out`."""
    check_rate(hz)
    out.mkdir(parents=True, exist_ok=True)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status: dict[str, Any] = {
        "schema": 1,
        "pid": os.getpid(),
        "hz": hz,
        "status": "starting",
        "started_ns": time.monotonic_ns(),
        "nvml_fake": os.environ.get(nvml.FAKE_ENV) or None,
    }
    try:
        if gpus is None:
            gpus = list(range(int(nvml.query("nvmlDeviceGetCount") or 0)))
        probes = [Probe(i) for i in gpus]
    except (GpuUnavailable, GpuLost) as err:
        status.update(status="unavailable", reason=err.title, hint=err.hint)
        write_status(out, status, name)
        if ready is not None:
            print(f"unavailable: {err.title}", file=ready, flush=True)
        return 0
    files = {p.index: _open_csv(out / f"gpu{p.index}.csv") for p in probes}
    rows = dict.fromkeys(files, 0)
    lost: dict[int, str] = {}
    status.update(
        status="running", gpus=list(files), power_kind={p.index: p.power_kind for p in probes}
    )
    write_status(out, status, name)
    period_ns = int(1e9 / hz)
    next_tick = time.monotonic_ns()
    deadline = next_tick + int(duration_s * 1e9) if duration_s else None
    last_flush = next_tick
    overruns = 0
    outcome = "stopped"
    while not stop.requested:
        for probe in list(probes):
            try:
                row = probe.read()
            except GpuLost as err:  # reported, not fatal: the other GPUs go on
                lost[probe.index] = err.title
                probes.remove(probe)
                files[probe.index].flush()
                continue
            files[probe.index].write(format_row(row))
            rows[probe.index] += 1
        now = time.monotonic_ns()
        if ready is not None:
            print("ready", file=ready, flush=True)
            ready = None
        if now - last_flush >= FLUSH_EVERY_S * 1e9 or lost.keys() - status.get("lost", {}).keys():
            for handle in files.values():
                handle.flush()
            last_flush = now
            if lost:
                status["lost"] = dict(lost)
                write_status(out, status, name)
        if not probes:
            outcome = "lost"
            break
        if deadline is not None and now >= deadline:
            break
        if parent_pid is not None and os.getppid() != parent_pid:
            outcome = "orphaned"  # the orchestrator died without stopping us
            break
        next_tick += period_ns
        if next_tick <= now:  # fell behind (a slow NVML call): skip, do not burst
            overruns += (now - next_tick) // period_ns + 1
            next_tick += ((now - next_tick) // period_ns + 1) * period_ns
        time.sleep((next_tick - now) / 1e9)
    for handle in files.values():
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
    status.update(
        status=outcome, stopped_ns=time.monotonic_ns(), rows=rows, lost=lost, overruns=overruns
    )
    write_status(out, status, name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.gpu.sampler", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="the run's telemetry folder")
    parser.add_argument("--hz", type=float, default=DEFAULT_HZ)
    parser.add_argument("--gpus", default=None, help="comma-separated NVML indices")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="stop after seconds")
    parser.add_argument("--nice", type=int, default=5, help="lower the sampler's priority")
    parser.add_argument("--name", default="sampler", help="status file stem (<name>.json in --out)")
    args = parser.parse_args(argv)
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    try:
        if args.nice:
            os.nice(args.nice)
    except OSError:
        pass
    try:
        return run_sampler(
            args.out, args.hz, gpus, args.parent_pid, args.duration, sys.stdout, args.name
        )
    except KitError as err:
        print(err.render(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
