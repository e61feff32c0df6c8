#!/usr/bin/env python3
"""Kit overhead: the kit's measured prefill vs a bare timing loop of the same forward.

One process, one loaded model, one input. Chunks alternate (kit, bare, kit, bare, ...): a kit
chunk runs repetitions exactly as the harness does (`backend.call` -> `Timer.measure` ->
sample event serialised), a bare chunk runs `sync; perf_counter; model(...); sync`. The
ratio of the medians of chunk medians is the kit's overhead (target <= 1.03); alternating
short chunks keeps a noisy VM's drift out of the comparison.

    python scripts/bench/overhead.py --model gpt2-25m --device cpu --rounds 20 --chunk 15

The compiled path (`--backend compiled`: torch.compile, Inductor, reduce-overhead, dynamic,
as TR126 phase 2 dynamic) and the decode path (`--mode kv_decode`: the bare side is a plain
HF loop of one-token forwards with the KV cache, per-token step = call / new tokens) take
several prompt lengths at once (`--token-lens 1,4,16,64`), one table row each:

    python scripts/bench/overhead.py --backend compiled --token-lens 1,4,16,64 --device cuda
    python scripts/bench/overhead.py --backend compiled --mode kv_decode --new-tokens 16
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def kit_chunk_median(
    backend: Any, cell: dict[str, Any], ids: list[list[int]], sink: Any, chunk: int, phase: str
) -> float:
    """`chunk` repetitions the harness's way (backend.call -> Timer.measure -> a sample event,
    the collector paused as run_cell pauses it); their median latency_ms."""
    from kit.harness.timing import gc_paused

    lat = []
    with gc_paused():
        for rep in range(chunk):
            call = backend.call(cell, ids, rep)
            timed = backend.timer.measure(call.run, call.setup())
            sink.emit(
                "sample", cell=cell["id"], phase=phase, rep=rep, warmup=False,
                latency_ms=timed.latency_ms, cuda_event_ms=timed.cuda_event_ms,
                tokens_in=len(ids[0]), tokens_out=min(call.count(timed.result)),
                t0_ns=timed.t0_ns, t1_ns=timed.t1_ns, status="ok", flags=[],
            )  # fmt: skip
            lat.append(timed.latency_ms)
    return statistics.median(lat)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2-25m")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=15, help="repetitions per chunk")
    parser.add_argument("--token-len", type=int, default=32)
    parser.add_argument("--token-lens", default=None, help="comma list: one row per length")
    parser.add_argument("--backend", default="eager", choices=("eager", "compiled"))
    parser.add_argument("--mode", default="prefill", choices=("prefill", "kv_decode"))
    parser.add_argument("--new-tokens", type=int, default=16, help="kv_decode steps")
    parser.add_argument(
        "--compile-mode",
        default="reduce-overhead",
        choices=("reduce-overhead", "default"),
        help="torch.compile mode of --backend compiled (reduce-overhead kv_decode raises "
        "TR126's CUDAGraphs-overwritten error in any harness: use default for decode)",
    )
    args = parser.parse_args()
    if args.backend != "eager" or args.mode != "prefill" or args.token_lens:
        return run_table(args)
    from kit.harness.backends.transformers_backend import TransformersBackend
    from kit.harness.events import Emitter
    from kit.matrix import load_matrix, parse_selection, select_cells
    from kit.models.prepare import prepare
    from kit.models.tokenizer import exact_length_ids

    cell = select_cells(
        load_matrix("tr147").cells,
        parse_selection(
            f"group=v1-prefill,model={args.model},backend=transformers-eager,token_len={args.token_len}"
        ),
    )[0]
    cell = cell.replace(device=args.device, dtype="fp32")
    ids = [exact_length_ids(args.model, args.token_len)]
    spec = {
        "cells": [cell.to_dict()],
        "model_dir": str(prepare(args.model, "random").path),
        "compile_cache_dir": tempfile.mkdtemp(),
    }
    backend = TransformersBackend(spec)
    backend.load()
    torch = backend.torch
    model, timer = backend.model, backend.timer
    sink = Emitter(io.StringIO())
    input_ids = torch.tensor(ids, device=args.device)
    mask = torch.ones_like(input_ids)
    cell_dict = cell.to_dict()

    def kit_chunk() -> float:
        return kit_chunk_median(backend, cell_dict, ids, sink, args.chunk, "prefill")

    def bare_chunk() -> float:
        lat = []
        for _ in range(args.chunk):
            timer.sync()
            t0 = time.perf_counter_ns()
            model(input_ids=input_ids, attention_mask=mask, use_cache=True)
            timer.sync()
            lat.append((time.perf_counter_ns() - t0) / 1e6)
        return statistics.median(lat)

    for _ in range(3):  # warm both paths
        kit_chunk()
        bare_chunk()
    kit_m, bare_m = [], []
    for _ in range(args.rounds):
        kit_m.append(kit_chunk())
        bare_m.append(bare_chunk())
    km, bm = statistics.median(kit_m), statistics.median(bare_m)
    ratios = sorted(k / b for k, b in zip(kit_m, bare_m, strict=True))
    q = lambda xs, f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    print(
        f"model {args.model}, device {args.device}, prompt {args.token_len} tokens, "
        f"{args.rounds} rounds x {args.chunk} reps per chunk, alternating kit/bare"
    )
    print(f"{'path':<6} {'median of chunk medians ms':>27} {'min':>8} {'max':>8}")
    print(f"{'kit':<6} {km:>27.4f} {min(kit_m):>8.4f} {max(kit_m):>8.4f}")
    print(f"{'bare':<6} {bm:>27.4f} {min(bare_m):>8.4f} {max(bare_m):>8.4f}")
    print(
        f"ratio kit/bare {km / bm:.4f} (per-round ratios p10 {q(ratios, 0.1):.3f}, p50 {q(ratios, 0.5):.3f}, "
        f"p90 {q(ratios, 0.9):.3f}); target <= 1.03"
    )
    return 0


COMPILED = {"backend": "inductor", "mode": "reduce-overhead", "fullgraph": False, "dynamic": True}


def run_table(args: argparse.Namespace) -> int:
    """kit/bare per prompt length, for the eager or compiled backend, prefill or kv_decode.

    The timed region on the kit side is exactly the harness's (backend.call -> Timer.measure,
    the sample event serialised after it); the bare side times only the forwards (and, for
    decode, the argmax that picks the next token), synchronized, with perf_counter."""
    from kit.harness.backends.transformers_backend import TransformersBackend
    from kit.harness.events import Emitter
    from kit.matrix import load_matrix, parse_selection, select_cells
    from kit.models.prepare import prepare
    from kit.models.tokenizer import exact_length_ids

    lengths = [int(x) for x in (args.token_lens or str(args.token_len)).split(",")]
    base = select_cells(
        load_matrix("tr147").cells,
        parse_selection("group=v1-prefill,backend=transformers-eager"),
    )[0].replace(model=args.model)
    compiled = args.backend == "compiled"
    cells = [
        base.replace(
            device=args.device,
            dtype="fp32",
            token_len=n,
            mode=args.mode,
            max_new_tokens=args.new_tokens,
            backend="transformers-compile" if compiled else "transformers-eager",
            compile=dict(COMPILED, mode=args.compile_mode) if compiled else None,
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
    sink = Emitter(io.StringIO())
    steps = args.new_tokens if args.mode == "kv_decode" else 1
    print(
        f"model {args.model}, {args.backend} ({'torch.compile ' + str(dict(COMPILED, mode=args.compile_mode)) if compiled else 'eager'}), "
        f"device {args.device}, mode {args.mode}"
        + (f" ({steps} steps; per-token = call / {steps})" if steps > 1 else "")
        + f", {args.rounds} rounds x {args.chunk} reps per chunk, alternating kit/bare"
    )
    print(
        "| tokens | kit ms | bare ms | kit/bare | per-round p10 | p50 | p90 |"
        + (
            " kit ms/token |"
            if steps > 1
            else " bare+select ms | kit/(bare+select) | per-round p10-p90 |"
        )
    )
    print("|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if steps > 1 else "---:|---:|---:|"))

    def measure_length(n: int, cell: Any) -> None:
        cell_dict = cell.to_dict()
        ids = [exact_length_ids(args.model, n)]
        input_ids = torch.tensor(ids, device=args.device)
        mask = torch.ones_like(input_ids)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)

        def kit_chunk() -> float:
            return kit_chunk_median(backend, cell_dict, ids, sink, args.chunk, args.mode)

        def forward(**kw: object) -> object:
            return model(use_cache=True, **kw)

        def bare_chunk(select: bool = False) -> float:
            lat = []
            for _ in range(args.chunk):
                if steps == 1:
                    timer.sync()
                    t0 = time.perf_counter_ns()
                    out = forward(input_ids=input_ids, attention_mask=mask, position_ids=positions)
                    if select:  # the kit's prefill also picks the first token
                        out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                    timer.sync()
                else:
                    out = forward(input_ids=input_ids, attention_mask=mask, position_ids=positions)
                    past = out.past_key_values
                    token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                    step_mask = mask
                    timer.sync()
                    t0 = time.perf_counter_ns()
                    for i in range(steps):
                        step_mask = torch.cat([step_mask, step_mask.new_ones((1, 1))], dim=-1)
                        out = forward(
                            input_ids=token,
                            past_key_values=past,
                            attention_mask=step_mask,
                            position_ids=positions[:, -1:] + 1 + i,
                        )
                        past = out.past_key_values
                        token = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
                    timer.sync()
                lat.append((time.perf_counter_ns() - t0) / 1e6)
            return statistics.median(lat)

        for _ in range(3):  # warm every path (compiles and records the graphs on the first)
            kit_chunk()
            bare_chunk()
            if steps == 1:
                bare_chunk(select=True)
        kit_m, bare_m, sel_m = [], [], []
        for _ in range(args.rounds):
            kit_m.append(kit_chunk())
            bare_m.append(bare_chunk())
            if steps == 1:
                sel_m.append(bare_chunk(select=True))
        km, bm = statistics.median(kit_m), statistics.median(bare_m)
        ratios = sorted(k / b for k, b in zip(kit_m, bare_m, strict=True))
        q = lambda xs, f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
        tail = f" {km / steps:.4f} |" if steps > 1 else ""
        if steps == 1:
            # The same work as the kit's definition of prefill (forward + first-token argmax):
            # what is left of kit/bare here is the harness's own mechanics.
            sm = statistics.median(sel_m)
            sel_ratios = sorted(k / b for k, b in zip(kit_m, sel_m, strict=True))
            tail = (
                f" {sm:.4f} | {km / sm:.4f} | {q(sel_ratios, 0.1):.3f}-{q(sel_ratios, 0.9):.3f} |"
            )
        print(
            f"| {n} | {km:.4f} | {bm:.4f} | {km / bm:.4f} | {q(ratios, 0.1):.3f} | "
            f"{q(ratios, 0.5):.3f} | {q(ratios, 0.9):.3f} |" + tail,
            flush=True,
        )

    for n, cell in zip(lengths, cells, strict=True):
        measure_length(n, cell)
    print(
        "target: kit/bare <= 1.03"
        + (
            " (bare: the forward alone); kit/(bare+select): the same work as the kit's prefill"
            " (forward + first-token argmax), so what remains is the harness's own"
            if args.mode == "prefill"
            else " (bare: the same one-token forwards and argmax steps)"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
