#!/usr/bin/env python3
"""Where the kit's compiled prefill overhead goes: one variant at a time, interleaved.

`overhead.py --backend compiled` compares the kit's timed prefill with a bare forward (+ the
first-token argmax). This bench splits the difference: each variant below changes ONE thing
of the kit's path, all run in one process on one compiled model, in rounds that rotate the
variants' order (host drift hits all alike). Each row: median of chunk medians, and its ratio
to `bare+select` with the per-round p10-p90.

  kit             the harness's path: backend.call (the cell's input tensors, built at its
                  first call and passed to every repetition) -> Timer.measure (sync,
                  perf_counter, CUDA event records) -> sample event serialised, with Python's
                  garbage collector paused for the chunk (as run_cell pauses it)
  kit-no-events   the same, timed by sync + perf_counter only (no CUDA event records)
  kit-fresh-input the kit's path with fresh input tensors per repetition (the harness until
                  stop 24: its backend.call built them anew each call)
  kit-gc-on       the kit's path with the collector left on (the harness before it paused it)
  bare+select     sync; perf_counter; forward; argmax; sync (the same work, no harness)
  bare+events     bare+select with the kit's two CUDA event records inside the window
  bare+fresh      bare+select with fresh input tensors made before each repetition

    python scripts/bench/overhead_parts.py --device cuda --token-lens 1,16 --rounds 10
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

COMPILED = {"backend": "inductor", "mode": "reduce-overhead", "fullgraph": False, "dynamic": True}
VARIANTS = (
    "kit",
    "kit-no-events",
    "kit-fresh-input",
    "kit-gc-on",
    "bare+select",
    "bare+events",
    "bare+fresh",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2-25m")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--backend", default="compiled", choices=("eager", "compiled"))
    parser.add_argument("--token-lens", default="1,16")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=20, help="repetitions per chunk")
    args = parser.parse_args()

    from kit.harness.backends.transformers_backend import TransformersBackend
    from kit.harness.events import Emitter
    from kit.harness.timing import gc_paused
    from kit.matrix import load_matrix, parse_selection, select_cells
    from kit.models.prepare import prepare
    from kit.models.tokenizer import exact_length_ids

    compiled = args.backend == "compiled"
    lengths = [int(x) for x in args.token_lens.split(",")]
    base = select_cells(
        load_matrix("tr147").cells,
        parse_selection("group=v1-prefill,backend=transformers-eager"),
    )[0].replace(model=args.model)
    cells = [
        base.replace(
            device=args.device,
            dtype="fp32",
            token_len=n,
            mode="prefill",
            backend="transformers-compile" if compiled else "transformers-eager",
            compile=dict(COMPILED) if compiled else None,
        )
        for n in lengths
    ]
    spec = {
        "cells": [c.to_dict() for c in cells],
        "model_dir": str(prepare(args.model, "random").path),
        "compile_cache_dir": tempfile.mkdtemp(),
    }
    backend = TransformersBackend(spec)
    backend.load()
    torch, model, timer = backend.torch, backend.model, backend.timer
    cuda = args.device == "cuda"
    sink = Emitter(io.StringIO())
    print(
        f"model {args.model}, {args.backend}"
        + (f" (torch.compile {COMPILED})" if compiled else "")
        + f", device {args.device}, prefill, {args.rounds} rounds x {args.chunk} reps per chunk,"
        " variants in rotated order each round"
    )
    print("| tokens | variant | median ms | / bare+select | per-round p10-p90 |")
    print("|---:|---|---:|---:|---|")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def one_length(n: int, cell: object) -> None:
        cell_dict = cell.to_dict()  # type: ignore[attr-defined]
        ids = [exact_length_ids(args.model, n)]
        input_ids = torch.tensor(ids, device=args.device)
        mask = torch.ones_like(input_ids)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        def emit(rep: int, latency_ms: float) -> None:
            sink.emit("sample", cell=cell_dict["id"], phase="prefill", rep=rep, warmup=False,
                      latency_ms=latency_ms, tokens_in=n, status="ok", flags=[])  # fmt: skip

        def kit(rep: int, events: bool = True, fresh: bool = False) -> float:
            if fresh:
                backend._memo = None  # forget the cell's input tensors: built anew
            call = backend.call(cell_dict, ids, rep)
            if events:
                timed = timer.measure(call.run, call.setup())
                ms = timed.latency_ms
            else:
                state = call.setup()
                sync()
                p0 = time.perf_counter_ns()
                call.run(state)
                sync()
                ms = (time.perf_counter_ns() - p0) / 1e6
            emit(rep, ms)
            return ms

        def bare(rep: int, events: bool = False, fresh: bool = False) -> float:
            x, m, p = input_ids, mask, positions
            if fresh:
                x = torch.tensor(ids, dtype=torch.long, device=args.device)
                m = torch.tensor([[1] * n], dtype=torch.long, device=args.device)
                p = (m.cumsum(-1) - 1).clamp(min=0)
            start = end = None
            if events and cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
            sync()
            p0 = time.perf_counter_ns()
            if start is not None:
                start.record()
            out = model(input_ids=x, attention_mask=m, position_ids=p, use_cache=True)
            out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
            if end is not None:
                end.record()
            sync()
            return (time.perf_counter_ns() - p0) / 1e6

        runs = {
            "kit": lambda r: kit(r),
            "kit-no-events": lambda r: kit(r, events=False),
            "kit-fresh-input": lambda r: kit(r, fresh=True),
            "kit-gc-on": lambda r: kit(r),
            "bare+select": lambda r: bare(r),
            "bare+events": lambda r: bare(r, events=True),
            "bare+fresh": lambda r: bare(r, fresh=True),
        }

        def chunk(name: str) -> float:
            if name.startswith("kit") and name != "kit-gc-on":
                with gc_paused():
                    return statistics.median(runs[name](r) for r in range(args.chunk))
            return statistics.median(runs[name](r) for r in range(args.chunk))

        for _ in range(2):  # compile and record the graphs on every path first
            for name in VARIANTS:
                chunk(name)
        per: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            k = r % len(VARIANTS)
            for name in VARIANTS[k:] + VARIANTS[:k]:
                per[name].append(chunk(name))
        ref = per["bare+select"]
        q = lambda xs, f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
        for name in VARIANTS:
            ratios = sorted(a / b for a, b in zip(per[name], ref, strict=True))
            med = statistics.median(per[name])
            print(
                f"| {n} | {name} | {med:.4f} | {med / statistics.median(ref):.4f} | "
                f"{q(ratios, 0.1):.3f}-{q(ratios, 0.9):.3f} |",
                flush=True,
            )

    for n, cell in zip(lengths, cells, strict=True):
        one_length(n, cell)
    return 0


if __name__ == "__main__":
    sys.exit(main())
