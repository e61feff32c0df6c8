#!/usr/bin/env python3
"""Sweep wall: one selection through the kit and through a plain single-process loop.

The loop is the lower bound: ONE Python process for every cell (no fresh process per group,
one compiler cache shared by all groups, no journal, no telemetry), running the kit's own
cell code (`kit.harness.group.run_cell`, so the timed region is identical) over the same
cells, prompts (same token ids), reps and compile settings, groups in the same order. The
kit run is a plain `kit run` of the same selection (fork server and precompile by default).

`loopr` is the same loop that frees each group before the next (its backend dropped,
`torch._dynamo.reset()`, a full collection, `torch.cuda.empty_cache()`): still one process and
one compiler cache, but no group runs beside the previous groups' models, compiled graphs and
CUDA-graph pools. On the H200 (2026-12-03) one call's plain loop ran its eager gpt2-100m group
(right after a compiled group) at 7-8 ms against the kit's 4 ms in both rounds; the next call's
loop ran it at 4.0 ms, and loopr against itself moved 0.71x to 1.45x per group between two
rounds: that was the host's drift, not state left by earlier groups.

Runs alternate as `--sequence` says (default loop,kit,loop,kit: drift hits both alike; `kitnp`
is a kit run with --no-precompile, `kitsep` one with --park-max 0 (precompile in separate
processes, then fresh measuring ones), their walls reported beside) and
the script prints each run's wall, the kit/loop wall ratios, and per cell the medians side
by side (cells with CV < 10% in both are checked against the 5% target).

    python scripts/bench/sweep_wall.py --matrix tr126 \\
        --select 'group=phase2-dynamic,model=gpt2-25m' --weights random --device cpu --reps 5
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOOPS = ("loop", "loopr")
sys.path.insert(0, str(ROOT))


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--matrix", default="tr126")
    parser.add_argument("--select", default="group=phase2-dynamic,model=gpt2-25m")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"))
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--sequence", default="loop,kit,loop,kit")
    parser.add_argument("--out", type=Path, default=None, help="folder for runs and results")
    parser.add_argument(
        "--kit-args", default="", help="extra `kit run` arguments, e.g. '--order interleaved'"
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="skip the remaining runs when the next one would likely end past this many seconds",
    )
    parser.add_argument("--loop-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--loop-reset", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _overrides(args: argparse.Namespace) -> list[str]:
    flags = []
    for name, value in (
        ("--device", args.device),
        ("--reps", args.reps),
        ("--warmup", args.warmup),
    ):
        if value is not None:
            flags += [name, str(value)]
    return flags


# -- the loop (runs in its own interpreter: `--loop-only RESULT.json`) ----------------------
def run_loop(args: argparse.Namespace, result: Path, reset: bool = False) -> None:
    cache = tempfile.mkdtemp(prefix="sweep-wall-loop-cache-")  # fresh, one for all groups
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(cache, "inductor")
    os.environ["TRITON_CACHE_DIR"] = os.path.join(cache, "triton")
    from kit.harness.backends import backend_class
    from kit.harness.events import Emitter
    from kit.harness.group import run_cell
    from kit.models.prepare import prepare
    from kit.runner.plan import RunRequest, groups_in_order, plan_cells, prompt_ids

    request = RunRequest(
        matrix=args.matrix,
        out=result.parent,
        selection=args.select,
        device=args.device,
        repetitions=args.reps,
        warmup=args.warmup,
        weights=args.weights,
    )
    matrix, cells = plan_cells(request)
    inputs = prompt_ids(matrix, cells)
    stream = io.StringIO()
    out = Emitter(stream)
    for group in groups_in_order(cells):
        first = group[0]
        model = prepare(first.model, args.weights, seed=first.seed)
        spec = {
            "cells": [c.to_dict() for c in group],
            "model_dir": str(model.path),
            "compile_cache_dir": cache,
            "prompts": {c.id: inputs[c.id]["ids"] for c in group},
        }
        cls, reason = backend_class(first.backend)
        if cls is None:
            raise SystemExit(f"loop: backend {first.backend} unavailable: {reason}")
        backend = cls(spec)
        backend.load()
        for cell in group:
            run_cell(backend, cell.to_dict(), inputs[cell.id]["ids"], out)
        if reset:
            _free(backend, args.device)
        del backend
    samples: dict[str, list[float]] = {}
    for line in stream.getvalue().splitlines():
        event = json.loads(line)
        if event["event"] == "sample" and not event["warmup"] and event["status"] == "ok":
            samples.setdefault(event["cell"], []).append(float(event["latency_ms"]))
    result.write_text(json.dumps(samples))


def _free(backend: Any, device: str | None) -> None:
    """What `loopr` does between groups: drop the model, dynamo's caches and CUDA's pool."""
    import gc

    import torch

    for name in list(vars(backend)):
        setattr(backend, name, None)
    torch._dynamo.reset()
    gc.collect()
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# -- the driver ------------------------------------------------------------------------------
def kit_samples(run_dir: Path) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    with open(run_dir / "journal.jsonl", encoding="utf-8") as journal:
        for line in journal:
            event = json.loads(line)
            if event.get("event") == "sample" and not event["warmup"] and event["status"] == "ok":
                samples.setdefault(event["cell"], []).append(float(event["latency_ms"]))
    return samples


def cv(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.stdev(values) / statistics.mean(values)


def main() -> int:
    args = _args()
    if args.loop_only:
        run_loop(args, args.loop_only, reset=args.loop_reset)
        return 0
    out = args.out or Path(tempfile.mkdtemp(prefix="sweep-wall-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    runs: list[dict[str, Any]] = []
    began = time.perf_counter()
    for i, kind in enumerate(args.sequence.split(",")):
        t0 = time.perf_counter()
        same = [r["wall_s"] for r in runs if r["kind"] == kind]
        guess = max(same) if same else max((r["wall_s"] for r in runs), default=0.0)
        if args.deadline_s and (t0 - began) + guess > args.deadline_s:
            print(f"run {i}: {kind} skipped: it would end past --deadline-s {args.deadline_s:.0f}")
            continue
        if kind in LOOPS:
            result = out / f"{kind}-{i}.json"
            command = [sys.executable, __file__, "--loop-only", str(result)]
            command += ["--matrix", args.matrix, "--select", args.select, "--weights", args.weights]
            command += _overrides(args) + (["--loop-reset"] if kind == "loopr" else [])
        elif kind in ("kit", "kitnp", "kitsep"):
            run_dir = out / f"{kind}-{i}"
            command = [sys.executable, "-m", "kit", "run", "--matrix", args.matrix]
            command += ["--select", args.select, "--weights", args.weights, "--out", str(run_dir)]
            command += _overrides(args) + args.kit_args.split()
            if kind == "kitnp":
                command.append("--no-precompile")
            if kind == "kitsep":
                command += ["--park-max", "0"]
        else:
            raise SystemExit(
                f"--sequence: unknown run kind {kind!r} (use loop, loopr: the loop freeing each "
                "group, kit, kitnp: kit with --no-precompile, kitsep: kit with --park-max 0)"
            )
        done = subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{kind} run {i} failed with exit code {done.returncode}")
        samples = json.loads(result.read_text()) if kind in LOOPS else kit_samples(run_dir)
        runs.append({"kind": kind, "index": i, "wall_s": wall, "samples": samples})
        print(f"run {i}: {kind:<4} wall {wall:8.1f} s  ({len(samples)} cells)", flush=True)
    _report(runs, out)
    return 0


def _spread(name: str, ratios: list[float]) -> None:
    """Geometric mean of per-cell ratios, its p10-p90, and how many lie within 5% of 1."""
    if not ratios:
        return
    logs = sorted(math.log(r) for r in ratios)
    q = lambda f: math.exp(logs[min(len(logs) - 1, int(f * len(logs)))])  # noqa: E731
    near = sum(abs(r - 1) <= 0.05 for r in ratios)
    print(
        f"{name}: geometric mean {math.exp(statistics.mean(logs)):.3f} over {len(ratios)} cells, "
        f"p10-p90 {q(0.1):.3f}-{q(0.9):.3f}, within 5%: {near} of {len(ratios)}"
    )


def _report(runs: list[dict[str, Any]], out: Path) -> None:
    """One comparison per loop kind in the runs (kit against loop, kit against loopr)."""
    kinds = [k for k in LOOPS if any(r["kind"] == k for r in runs)] or ["loop"]
    results = {kind: _compare(runs, kind) for kind in kinds}
    (out / "sweep_wall.json").write_text(
        json.dumps(
            {
                "runs": [{k: v for k, v in r.items() if k != "samples"} for r in runs],
                "cells": results[kinds[0]],
                **({"cells_" + k: results[k] for k in kinds[1:]}),
            },
            indent=1,
        )
    )


def _compare(runs: list[dict[str, Any]], loop_kind: str) -> list[dict[str, Any]]:
    kits = [r for r in runs if r["kind"] == "kit"]
    loops = [r for r in runs if r["kind"] == loop_kind]
    print()
    print(
        f"## kit against {loop_kind}"
        + (" (each group freed before the next)" if loop_kind == "loopr" else "")
    )
    print()
    print("| pair | loop wall s | kit wall s | kit/loop |")
    print("|---|---:|---:|---:|")
    for n, (loop, kit) in enumerate(zip(loops, kits, strict=False)):
        ratio = kit["wall_s"] / loop["wall_s"]
        print(f"| {n + 1} | {loop['wall_s']:.1f} | {kit['wall_s']:.1f} | {ratio:.2f} |")
    cells = sorted(set().union(*(r["samples"] for r in runs)))
    rows = []
    for cid in cells:
        kit_all = [x for r in kits for x in r["samples"].get(cid, [])]
        loop_all = [x for r in loops for x in r["samples"].get(cid, [])]
        if not kit_all or not loop_all:
            continue
        per_round = [
            statistics.median(k["samples"][cid]) / statistics.median(lo["samples"][cid])
            for lo, k in zip(loops, kits, strict=False)
            if cid in k["samples"] and cid in lo["samples"]
        ]
        rows.append(
            {
                "cell": cid,
                "kit_median_ms": statistics.median(kit_all),
                "loop_median_ms": statistics.median(loop_all),
                "ratio": statistics.median(kit_all) / statistics.median(loop_all),
                "per_round": per_round,
                # The host's own run-to-run drift: the same loop, a later round (noise floor).
                "loop_drift": (
                    statistics.median(loops[-1]["samples"][cid])
                    / statistics.median(loops[0]["samples"][cid])
                    if len(loops) > 1 and all(cid in lo["samples"] for lo in (loops[0], loops[-1]))
                    else None
                ),
                "cv_max": max(cv(kit_all), cv(loop_all)),
            }
        )
    print()
    print(
        "| cell | loop median ms | kit median ms | kit/loop | per round | "
        "loop last/first | CV max | checked |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---|")
    checked = within = 0
    for row in rows:
        steady = row["cv_max"] < 0.10
        ok = abs(row["ratio"] - 1) <= 0.05
        checked += steady
        within += steady and ok
        rounds = " ".join(f"{r:.3f}" for r in row["per_round"])
        mark = ("ok" if ok else "OUT") if steady else "cv>=10%"
        drift = f"{row['loop_drift']:.3f}" if row["loop_drift"] is not None else "-"
        print(
            f"| {row['cell']} | {row['loop_median_ms']:.4f} | {row['kit_median_ms']:.4f} | "
            f"{row['ratio']:.3f} | {rounds} | {drift} | {row['cv_max']:.3f} | {mark} |"
        )
    print()
    print(f"cells with CV < 10%: {checked}; medians within 5%: {within} of {checked}")
    _spread("kit/loop", [r["ratio"] for r in rows])
    _spread("loop last/first (the host's drift, no harness difference)",
            [r["loop_drift"] for r in rows if r["loop_drift"] is not None])  # fmt: skip
    if kits and loops:
        kit_wall = statistics.mean(k["wall_s"] for k in kits)
        loop_wall = statistics.mean(lo["wall_s"] for lo in loops)
        print(
            f"mean wall: kit {kit_wall:.1f} s, loop {loop_wall:.1f} s, kit/loop {kit_wall / loop_wall:.2f} "
            "(targets: kit/loop <= 1.3, kit <= 80 s)"
        )
        for other, flag in (("kitnp", "--no-precompile"), ("kitsep", "--park-max 0")):
            walls = [r["wall_s"] for r in runs if r["kind"] == other]
            if walls:
                print(
                    f"mean wall: kit {flag} {statistics.mean(walls):.1f} s over {len(walls)} "
                    f"run(s), /loop {statistics.mean(walls) / loop_wall:.2f}"
                )
    return rows


if __name__ == "__main__":
    sys.exit(main())
