"""llama.cpp vs transformers on the same weights (issue 14's table), from ONE `kit run`.

gpt2-25m and gpt2-100m (synthesized weights, fp32): transformers eager vs llama-cpp (the
kit's own GGUF export of the same checkpoint, llama-cpp-python): prefill median and
per-token decode median (kv_decode median / max_new_tokens) over the timed `ok` samples of a
1-prompt single_short cell; for llama-cpp also llama.cpp's own perf counters (medians of
t_p_eval_ms for prefill, t_eval_ms / n_eval for decode). The machine's load average is
printed before and after: on a shared machine the numbers are only as good as it was quiet.

    .venv/bin/python scripts/bench/llamacpp_vs_transformers.py --out /tmp/llamacpp-cpu
    .venv/bin/python scripts/bench/llamacpp_vs_transformers.py --out DIR --device cuda

Prints a Markdown table; the run directory keeps every sample, status and reason.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ("transformers-eager", "llama-cpp")
MODELS = ("gpt2-25m", "gpt2-100m")


def matrix_text(reps: int, warmup: int, new_tokens: int, device: str) -> str:
    return textwrap.dedent(
        f"""\
        schema: 1
        id: llamacpp-vs-transformers
        title: "issue 14: llama.cpp vs transformers, same weights (one run)"
        defaults: {{device: {device}, repetitions: {reps}, warmup: {warmup},
                    max_new_tokens: {new_tokens}, seed: 42, sampling: {{do_sample: false}}}}
        groups:
          - id: llamacpp-vs-transformers
            extension: true
            backends:
              - {{backend: transformers-eager, label: eager}}
              - {{backend: llama-cpp, label: llama.cpp}}
            models: [{", ".join(f"{{model: {m}, dtype: fp32}}" for m in MODELS)}]
            scenarios: [single_short]
            modes: [prefill, kv_decode]
        """
    )


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def table(run_dir: Path, new_tokens: int) -> str:
    cells = {c["id"]: c for c in json.loads((run_dir / "matrix" / "cells.json").read_text())}
    samples: dict[str, list[float]] = {}
    status: dict[str, str] = {}
    perf: dict[str, list[dict[str, Any]]] = {}
    tokens_in: dict[str, int] = {}
    for line in (run_dir / "journal.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("event") == "sample" and not e["warmup"] and e["status"] == "ok":
            samples.setdefault(e["cell"], []).append(float(e["latency_ms"]))
            tokens_in[e["cell"]] = int(e["tokens_in"])
        elif e.get("event") == "cell_finished":
            status[e["cell"]] = e["status"] + (
                f" ({'; '.join(e['reasons'])})" if e["reasons"] else ""
            )
            counters = (e.get("evidence") or {}).get("perf_counters") or {}
            warmup = int(cells.get(e["cell"], {}).get("warmup", 0))
            perf[e["cell"]] = [p for p in counters.get("per_rep", []) if p["rep"] >= warmup]
    rows = [
        "| model | backend | prompt tokens | prefill median ms | decode median ms/token "
        "| llama.cpp t_p_eval median ms | llama.cpp t_eval/n median ms | n | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        for backend in BACKENDS:
            found = {
                c["mode"]: cid
                for cid, c in cells.items()
                if c["model"] == model and c["backend"] == backend
            }
            pre_id, dec_id = found.get("prefill", ""), found.get("kv_decode", "")
            pre, dec = samples.get(pre_id, []), samples.get(dec_id, [])
            p_eval = [p["t_p_eval_ms"] for p in perf.get(pre_id, [])]
            t_eval = [p["t_eval_ms"] / max(p["n_eval"], 1) for p in perf.get(dec_id, [])]
            states = {status.get(found.get(m, ""), "not run") for m in ("prefill", "kv_decode")}
            rows.append(
                f"| {model} | {backend} | {tokens_in.get(pre_id, '-')} | {_median(pre)} "
                f"| {_median([d / new_tokens for d in dec])} | {_median(p_eval)} "
                f"| {_median(t_eval)} | {len(pre)}/{len(dec)} | {', '.join(sorted(states))} |"
            )
    return "\n".join(rows)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory to create")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--table-only", action="store_true", help="re-read an existing --out")
    args = parser.parse_args()
    if not args.table_only:
        print(f"before: {_load()}", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        matrix = args.out / "matrix.yaml"
        matrix.write_text(matrix_text(args.reps, args.warmup, args.max_new_tokens, args.device))
        proc = subprocess.run(
            [sys.executable, "-m", "kit", "run", "--matrix", str(matrix), "--weights", "random",
             "--select", "prompt_index=0", "--out", str(args.out / "run")],
            cwd=REPO,
        )  # fmt: skip
        print(f"after: {_load()}", flush=True)
        if proc.returncode not in (0, 3):  # 3: some cells degraded; the table says which
            return proc.returncode
    print(table(args.out / "run", args.max_new_tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
