#!/usr/bin/env python3
"""Kit overhead: the kit's measured prefill median vs a bare timing loop of the same forward.

Both run in fresh child processes of the same interpreter, on the same prepared model and
token ids, interleaved in rounds (kit, bare, kit, bare, ...) so drift hits both alike. Prints
per-round medians and the ratio of the medians of round medians (target <= 1.03).

    python scripts/bench/overhead.py --model gpt2-25m --device cpu --rounds 6 --reps 30
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BARE = r"""
import json, sys, time, statistics, torch
from transformers import AutoModelForCausalLM
spec = json.load(open(sys.argv[1]))
cell = spec["cells"][0]
dev = cell["device"]
dtype = {"fp32": torch.float32, "fp16": torch.float16}[cell["dtype"]]
torch.set_grad_enabled(False)
model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=dtype).to(dev).eval()
ids = torch.tensor(spec["prompts"][cell["id"]], device=dev)
mask = torch.ones_like(ids)
def sync():
    if dev == "cuda": torch.cuda.synchronize()
times = []
for rep in range(cell["warmup"] + cell["repetitions"]):
    sync(); t0 = time.perf_counter_ns()
    model(input_ids=ids, attention_mask=mask, use_cache=True)
    sync(); t1 = time.perf_counter_ns()
    if rep >= cell["warmup"]: times.append((t1 - t0) / 1e6)
print(json.dumps({"median_ms": statistics.median(times)}))
"""


def kit_median(input_path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "kit.harness", "--input", str(input_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    lat = [
        e["latency_ms"]
        for e in map(json.loads, out.splitlines())
        if e.get("event") == "sample" and not e["warmup"] and e["status"] == "ok"
    ]
    return statistics.median(lat)


def bare_median(input_path: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", BARE, str(input_path)], capture_output=True, text=True, check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gpt2-25m")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    from kit.matrix import load_matrix, parse_selection, select_cells
    from kit.models.prepare import prepare
    from kit.models.tokenizer import exact_length_ids

    cell = select_cells(
        load_matrix("tr147").cells,
        parse_selection(
            f"group=v1-prefill,model={args.model},backend=transformers-eager,token_len=32"
        ),
    )[0]
    cell = cell.replace(device=args.device, dtype="fp32", repetitions=args.reps, warmup=args.warmup)
    model = prepare(args.model, "random")
    tmp = Path(tempfile.mkdtemp())
    spec = {
        "schema": 1,
        "cells": [cell.to_dict()],
        "model_dir": str(model.path),
        "compile_cache_dir": str(tmp / "cc"),
        "prompts": {cell.id: [exact_length_ids(args.model, 32)]},
    }
    input_path = tmp / "input.json"
    input_path.write_text(json.dumps(spec))
    kit_rounds, bare_rounds = [], []
    print(
        f"model {args.model}, device {args.device}, prompt 32 tokens, {args.reps} reps + {args.warmup} warmup per round"
    )
    print(f"{'round':>5}  {'kit median ms':>14}  {'bare median ms':>15}  {'ratio':>6}")
    for r in range(args.rounds):
        k = kit_median(input_path)
        b = bare_median(input_path)
        kit_rounds.append(k)
        bare_rounds.append(b)
        print(f"{r:>5}  {k:>14.3f}  {b:>15.3f}  {k / b:>6.3f}")
    km, bm = statistics.median(kit_rounds), statistics.median(bare_rounds)
    ratios = [k / b for k, b in zip(kit_rounds, bare_rounds, strict=True)]
    print(
        f"\nmedian of round medians: kit {km:.3f} ms, bare {bm:.3f} ms, ratio {km / bm:.3f} "
        f"(per-round ratios {min(ratios):.3f}..{max(ratios):.3f}); target <= 1.03"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
