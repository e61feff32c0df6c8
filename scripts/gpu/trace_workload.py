"""A 10-second sampler trace during a real gpt2-25m workload, joined per cell and phase.

Writes a run directory shaped like the runner's (journal.jsonl with FORMATS.md `sample` and
`phase` events, telemetry/gpu0.csv from the sampler PROCESS, env/), then
telemetry/phases.jsonl via kit.gpu.join, and prints the per-cell-phase table.
Three cells: prefill (1 x 64 tokens), kv_decode (32 tokens) and a heavier prefill
(8 x 512 tokens) so power and clocks move.

Run (GPU machine): PYTHONPATH=. python scripts/gpu/trace_workload.py --out DIR --seconds 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))

from sampler_perturbation import Workload

from kit.env import ml_stack, write_env, write_json
from kit.gpu.baseline import idle_baseline, wait_for_thermal_gate
from kit.gpu.join import write_phases
from kit.gpu.process import start_sampler


def emit(journal: IO[str], event: dict[str, Any]) -> None:
    event.setdefault("t_ns", time.monotonic_ns())
    journal.write(json.dumps(event) + "\n")
    journal.flush()


def run_cell(
    journal: IO[str],
    cell: str,
    phase: str,
    fn: Any,
    seconds: float,
    tokens_in: int,
    tokens_out: int,
    warmup: int = 5,
) -> int:
    emit(journal, {"event": "cell_started", "cell": cell, "tokens_in": tokens_in})
    rep = 0
    deadline = time.monotonic() + seconds
    while rep < warmup + 3 or time.monotonic() < deadline:  # at least 3 measured reps
        ms, t0, t1 = fn()
        per_call = ms * (tokens_out if phase == "kv_decode" else 1)
        emit(
            journal,
            {
                "event": "sample",
                "cell": cell,
                "phase": phase,
                "rep": rep,
                "warmup": rep < warmup,
                "latency_ms": per_call,
                "cuda_event_ms": None,
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "t0_ns": t0,
                "t1_ns": t1,
                "status": "ok",
                "flags": [],
            },
        )
        rep += 1
    emit(
        journal,
        {"event": "cell_finished", "cell": cell, "status": "ok", "reasons": [], "evidence": {}},
    )
    return rep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=20.0)
    args = parser.parse_args()
    run_dir: Path = args.out
    run_dir.mkdir(parents=True, exist_ok=True)
    write_env(run_dir)
    baseline = [b.to_dict() for b in idle_baseline(seconds=2.0, hz=10)]
    gate = wait_for_thermal_gate(threshold_c=70, max_wait_s=10).to_dict()
    write_json(run_dir / "env" / "gpu-baseline.json", {"idle": baseline, "gate": gate})
    sampler = start_sampler(run_dir, hz=args.hz)
    print(f"sampler: {'running' if sampler.available else sampler.reason}")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with open(run_dir / "journal.jsonl", "a", encoding="utf-8") as journal:
        t0 = time.monotonic_ns()
        small = Workload(device, prompt_len=64, new_tokens=32)
        big = Workload(device, prompt_len=512, new_tokens=1)
        big.ids = big.ids.repeat(8, 1)
        t1 = time.monotonic_ns()
        emit(
            journal,
            {
                "event": "phase",
                "phase": "load",
                "cell": None,
                "t0_ns": t0,
                "t1_ns": t1,
                "ms": (t1 - t0) / 1e6,
                "detail": {},
            },
        )
        write_json(run_dir / "env" / "process-gpt2-25m.json", ml_stack())
        share = args.seconds / 3
        reps = {
            "gpt2-25m/prefill-64": run_cell(
                journal, "gpt2-25m/prefill-64", "prefill", small.prefill_ms, share, 64, 1
            ),
            "gpt2-25m/kv_decode-32": run_cell(
                journal,
                "gpt2-25m/kv_decode-32",
                "kv_decode",
                small.decode_ms_per_token,
                share,
                64,
                32,
            ),
            "gpt2-25m/prefill-8x512": run_cell(
                journal, "gpt2-25m/prefill-8x512", "prefill", big.prefill_ms, share, 8 * 512, 1
            ),
        }
    time.sleep(0.2)  # one more row after the last sample, so its end is covered
    result = sampler.stop()
    print(f"sampler stopped: {result.status}, rows {result.rows}, reps {reps}")
    path = write_phases(run_dir)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    print_table([r for r in records if r["scope"] in ("cell_phase", "phase_event")])
    print(f"idle baseline: {baseline}\nthermal gate: {gate}\nphases: {path}")
    return 0


def print_table(records: list[dict[str, Any]]) -> None:
    head = (
        f"{'cell':<24} {'phase':<9} {'spans':>5} {'rows':>5} {'energy J':>9} {'method':<8} "
        f"{'J/tok':>9} {'mean W':>7} {'max W':>7} {'SM min/mean':>12} {'maxC':>5} flags"
    )
    print(head)
    print("-" * len(head))
    for r in records:
        flags = [f for f in ("thermal_limited", "power_limited") if r[f]]
        reasons = {k: v for k, v in (r["clock_event_share"] or {}).items() if v}

        def num(value: Any, fmt: str) -> str:
            return format(value, fmt) if value is not None else "n/a"

        sm = f"{num(r['min_sm_clock_mhz'], '.0f')}/{num(r['mean_sm_clock_mhz'], '.0f')}"
        print(
            f"{r['cell'] or '-'!s:<24} {r['phase']:<9} {r['n_spans']:>5} "
            f"{r['telemetry_rows']:>5} {num(r['energy_j'], '9.3f'):>9} "
            f"{str(r['energy_method'] or '-')[:8]:<8} {num(r['j_per_token_out'], '9.4f'):>9} "
            f"{num(r['mean_power_w'], '7.1f'):>7} {num(r['max_power_w'], '7.1f'):>7} "
            f"{sm:>12} {num(r['max_temp_c'], '.0f'):>5} {','.join(flags) or '-'} {reasons or ''}"
        )


if __name__ == "__main__":
    sys.exit(main())
