"""`kit gpu`: what NVML sees, a live view, a sampler trace, per-phase telemetry of a run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

HELP = "show the GPUs (snapshot, --watch live view), trace telemetry, join it to a run"

_TABLE = (
    ("name", "name"),
    ("uuid", "uuid"),
    ("PCI bus", "pci_bus_id"),
    ("architecture", "architecture"),
    ("compute capability", "compute_capability"),
    ("memory (MiB)", "memory_total_mib"),
    ("driver", "driver_version"),
    ("CUDA (driver)", "cuda_driver_version"),
    ("NVML", "nvml_version"),
    ("VBIOS", "vbios_version"),
    ("max clocks gr/SM/mem (MHz)", None),
    ("app clocks gr/mem (MHz)", None),
    ("power limit (W)", "power_limit_w"),
    ("persistence", "persistence_mode"),
    ("compute mode", "compute_mode"),
    ("MIG", "mig_mode"),
    ("ECC", "ecc_mode"),
    ("PCIe", None),
    ("pstate", "pstate"),
    ("fan (%)", "fan_speed_pct"),
    ("temperature (C)", "temperature_c"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.add_argument("--watch", action="store_true", help="live view (Ctrl-C to quit)")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="with --watch: tail this run's telemetry"
    )
    parser.add_argument("--interval", type=float, default=0.5, help="--watch refresh seconds")
    parser.add_argument("--count", type=int, default=None, help="--watch: stop after N frames")
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="run the sampler process for --seconds, writing RUN_DIR/telemetry/gpuN.csv",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="--trace duration")
    parser.add_argument("--hz", type=float, default=20.0, help="--trace sampling rate")
    parser.add_argument(
        "--join",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="write RUN_DIR/telemetry/phases.jsonl (energy, clocks, throttling per phase)",
    )


def _cell(snapshot: dict[str, Any], label: str, key: str | None) -> str:
    s = snapshot
    if key is not None:
        value = s.get(key)
    elif label.startswith("max clocks"):
        value = f"{s['max_graphics_clock_mhz']}/{s['max_sm_clock_mhz']}/{s['max_mem_clock_mhz']}"
    elif label.startswith("app clocks"):
        value = f"{s['app_graphics_clock_mhz']}/{s['app_mem_clock_mhz']}"
    else:
        value = f"gen {s['pcie_gen']} x{s['pcie_width']}"
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace("None", "n/a")


def render_table(detection: dict[str, Any]) -> str:
    if not detection["gpus"]:
        return f"no GPU: {detection['reason']}"
    lines = []
    for snap in detection["gpus"]:
        lines.append(f"GPU {snap['index']}")
        lines += [f"  {label:<28} {_cell(snap, label, key)}" for label, key in _TABLE]
    if detection["reason"]:
        lines.append(f"note: {detection['reason']}")
    return "\n".join(lines)


def _watch(args: argparse.Namespace) -> int:
    from kit.gpu import detect
    from kit.gpu.watch import LiveSource, RunSource, render_frame

    detection = detect()
    source: LiveSource | RunSource
    if args.run_dir is not None:
        source = RunSource(args.run_dir)
    elif not detection.gpus:
        print(f"no GPU: {detection.reason}", file=sys.stderr)
        return 0
    else:
        source = LiveSource(detection)
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    frames = 0
    try:
        while args.count is None or frames < args.count:
            history = source.poll()
            note = "; ".join(source.lost) or None
            if not history:
                note = f"waiting for telemetry in {args.run_dir}/telemetry ..."
            print(clear + render_frame(history, source.names, note), flush=True)
            frames += 1
            if args.count is None or frames < args.count:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    return 0


def _trace(args: argparse.Namespace) -> int:
    from kit.gpu.process import start_sampler

    handle = start_sampler(args.trace, hz=args.hz)
    if not handle.available:
        handle.stop()
        print(f"no telemetry: {handle.reason}")
        return 0
    try:
        time.sleep(args.seconds)
    finally:
        result = handle.stop()
    print(json.dumps({"telemetry": str(args.trace / "telemetry"), **result.__dict__}, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch(args)
    if args.trace is not None:
        return _trace(args)
    if args.join is not None:
        from kit.gpu.join import write_phases

        print(write_phases(args.join))
        return 0
    from kit.gpu import detect

    detection = detect().to_dict()
    print(json.dumps(detection, indent=2) if args.json else render_table(detection))
    return 0
