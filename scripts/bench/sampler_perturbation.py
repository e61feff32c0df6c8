"""Does the GPU sampler bend what it observes? (issue 4; target: ratio <= 1.01 at 20 Hz)

Measures a prefill and a greedy KV-cache decode of a synthesized gpt2-25m (GPT2Config
n_embd=384, n_layer=3, n_head=2, n_inner=1536, random init, seed 42; on CUDA when available)
under three conditions: sampler off, sampler on at 20 Hz, sampler on at 100 Hz.

The conditions are INTERLEAVED in many short rounds (the order rotates every round) because
launch-bound work on the GPU VM drifts (ENVIRONMENT.md). Both samplers are started once and
paused with SIGSTOP / resumed with SIGCONT, so a round switches conditions in microseconds
and a paused sampler costs nothing. Each chunk gives a median; a condition's figure is the
median of its chunk medians; `spread` is the range of chunk medians, and `paired` is the
median (and IQR) of the per-round ratios on/off, which cancels slow drift.

Run (GPU machine): PYTHONPATH=. python scripts/bench/sampler_perturbation.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kit.gpu.process import SamplerHandle, start_sampler

GPT2_25M = {"n_embd": 384, "n_layer": 3, "n_head": 2, "n_inner": 1536}


def build_model(device: str) -> Any:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(42)
    model = GPT2LMHeadModel(GPT2Config(**GPT2_25M)).eval().to(device)
    return model


class Workload:
    """Timed prefill (ms) and greedy KV decode (ms per token) of one model."""

    def __init__(self, device: str, prompt_len: int, new_tokens: int) -> None:
        import torch

        self.torch = torch
        self.device = device
        self.model = build_model(device)
        gen = torch.Generator().manual_seed(42)
        self.ids = torch.randint(0, 50257, (1, prompt_len), generator=gen).to(device)
        self.new_tokens = new_tokens

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def prefill_ms(self) -> tuple[float, int, int]:
        with self.torch.inference_mode():
            self._sync()
            t0 = time.monotonic_ns()
            start = time.perf_counter()
            self.model(self.ids, use_cache=True)
            self._sync()
            ms = (time.perf_counter() - start) * 1000.0
        return ms, t0, time.monotonic_ns()

    def decode_ms_per_token(self) -> tuple[float, int, int]:
        with self.torch.inference_mode():
            out = self.model(self.ids, use_cache=True)
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
            self._sync()
            t0 = time.monotonic_ns()
            start = time.perf_counter()
            for _ in range(self.new_tokens):
                out = self.model(token, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = out.logits[:, -1:].argmax(-1)
            self._sync()
            ms = (time.perf_counter() - start) * 1000.0
        return ms / self.new_tokens, t0, time.monotonic_ns()


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Workload(device, args.prompt_len, args.new_tokens)
    run_dir = Path(args.telemetry or tempfile.mkdtemp(prefix="kit-perturb-"))
    samplers: dict[str, SamplerHandle | None] = {"off": None}
    for hz in args.hz:
        handle = start_sampler(run_dir / f"hz{hz:g}", hz=hz)
        if not handle.available:
            print(f"note: sampler unavailable ({handle.reason}); 'on' = off here", file=sys.stderr)
        samplers[f"{hz:g} Hz"] = handle
        os.kill(handle.proc.pid, signal.SIGSTOP)
    names = list(samplers)
    chunks: dict[str, dict[str, list[float]]] = {n: {"prefill": [], "decode": []} for n in names}
    for _ in range(args.warmup):
        work.prefill_ms()
        work.decode_ms_per_token()
    started = time.monotonic()
    try:
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                handle = samplers[name]
                if handle is not None:
                    os.kill(handle.proc.pid, signal.SIGCONT)
                    time.sleep(args.settle_s)  # let it reach its steady rhythm
                else:
                    time.sleep(args.settle_s)
                pre = [work.prefill_ms()[0] for _ in range(args.chunk)]
                dec = [work.decode_ms_per_token()[0] for _ in range(args.chunk)]
                if handle is not None:
                    os.kill(handle.proc.pid, signal.SIGSTOP)
                chunks[name]["prefill"].append(statistics.median(pre))
                chunks[name]["decode"].append(statistics.median(dec))
    finally:
        results = {}
        for name, handle in samplers.items():
            if handle is not None:
                os.kill(handle.proc.pid, signal.SIGCONT)
                results[name] = handle.stop().__dict__
    return summarize(chunks, names, device, args, time.monotonic() - started, results, run_dir)


def summarize(
    chunks: dict[str, dict[str, list[float]]],
    names: list[str],
    device: str,
    args: argparse.Namespace,
    seconds: float,
    samplers: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    table = []
    for metric in ("prefill", "decode"):
        base = chunks["off"][metric]
        base_med = statistics.median(base)
        for name in names:
            values = chunks[name][metric]
            med = statistics.median(values)
            paired = [v / b for v, b in zip(values, base, strict=True)]
            q1, q3 = _quartiles(paired)
            table.append(
                {
                    "metric": metric,
                    "condition": name,
                    "median_of_chunk_medians": med,
                    "chunk_min": min(values),
                    "chunk_max": max(values),
                    "ratio_vs_off": med / base_med,
                    "paired_ratio_median": statistics.median(paired),
                    "paired_ratio_q1": q1,
                    "paired_ratio_q3": q3,
                    "chunks": len(values),
                }
            )
    return {
        "device": device,
        "rounds": args.rounds,
        "chunk": args.chunk,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "seconds": seconds,
        "table": table,
        "samplers": samplers,
        "telemetry": str(run_dir),
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"sampler perturbation on {report['device']}: {report['rounds']} interleaved rounds x "
        f"{report['chunk']} reps per chunk, prompt {report['prompt_len']}, "
        f"decode {report['new_tokens']} tokens ({report['seconds']:.0f} s)"
    )
    head = (
        f"{'metric':<8} {'condition':<9} {'median':>15} {'chunk range':>19} {'ratio':>7} "
        f"{'paired ratio [IQR]':>26}"
    )
    print(head)
    print("-" * len(head))
    for row in report["table"]:
        unit = "ms" if row["metric"] == "prefill" else "ms/tok"
        print(
            f"{row['metric']:<8} {row['condition']:<9} "
            f"{row['median_of_chunk_medians']:>8.4f} {unit:<6} "
            f"{row['chunk_min']:>8.4f}-{row['chunk_max']:<9.4f} "
            f"{row['ratio_vs_off']:>7.4f} {row['paired_ratio_median']:>8.4f} "
            f"[{row['paired_ratio_q1']:.4f}, {row['paired_ratio_q3']:.4f}]"
        )
    for name, result in report["samplers"].items():
        print(f"sampler {name}: {result['status']}, rows {result['rows']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--chunk", type=int, default=15, help="repetitions per chunk")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--hz", type=float, nargs="+", default=[20.0, 100.0])
    parser.add_argument("--settle-s", type=float, default=0.05)
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--telemetry", default=None, help="folder for the samplers' CSVs")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(args)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
