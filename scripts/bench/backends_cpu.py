"""The CPU backend table of issue 8's closing note, from ONE `kit run` on this machine.

gpt2-25m and gpt2-50m (synthesized weights), transformers eager vs torch.compile (Inductor,
TR126 phase-2 baseline settings) vs ONNX Runtime (KV cache exported, CPU provider) vs vLLM
(CPU build, .venv-vllm): prefill median and per-token decode median (kv_decode median /
max_new_tokens), over the timed `ok` samples of a 1-prompt single_short cell.

    .venv/bin/python scripts/bench/backends_cpu.py --out /tmp/backends-cpu [--reps 10]

Prints a Markdown table; the run directory keeps every sample, status and reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BACKENDS = [
    ("transformers-eager", "{backend: transformers-eager, label: eager}"),
    (
        "transformers-compile",
        "{backend: transformers-compile, label: compiled, compile: "
        "{backend: inductor, mode: reduce-overhead, fullgraph: false, dynamic: false}}",
    ),
    ("onnxruntime", "{backend: onnxruntime, label: onnxruntime}"),
    ("vllm", "{backend: vllm, label: vllm}"),
]
MODELS = ("gpt2-25m", "gpt2-50m")


def matrix_text(reps: int, warmup: int, new_tokens: int) -> str:
    backends = "\n".join(f"      - {spec}" for _, spec in BACKENDS)
    return (
        textwrap.dedent(
            f"""\
        schema: 1
        id: backends-cpu
        title: "issue 8: CPU backend table (one run)"
        defaults: {{device: cpu, repetitions: {reps}, warmup: {warmup},
                    max_new_tokens: {new_tokens}, seed: 42, sampling: {{do_sample: false}}}}
        groups:
          - id: backends-cpu
            extension: true
            backends:
        """
        )
        + backends
        + textwrap.indent(
            textwrap.dedent(
                f"""
            models: [{", ".join(f"{{model: {m}, dtype: fp32}}" for m in MODELS)}]
            scenarios: [single_short]
            modes: [prefill, kv_decode]
            """
            ),
            "    ",
        )
    )


def table(run_dir: Path, new_tokens: int) -> str:
    cells: dict[str, dict[str, Any]] = {}
    for c in json.loads((run_dir / "matrix" / "cells.json").read_text()):
        cells[c["id"]] = c
    samples: dict[str, list[float]] = {}
    status: dict[str, str] = {}
    for line in (run_dir / "journal.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("event") == "sample" and not e["warmup"] and e["status"] == "ok":
            samples.setdefault(e["cell"], []).append(float(e["latency_ms"]))
        elif e.get("event") == "cell_finished":
            status[e["cell"]] = e["status"] + (
                f" ({'; '.join(e['reasons'])})" if e["reasons"] else ""
            )
    rows = ["| model | backend | prefill median ms | decode median ms/token | n | status |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for model in MODELS:
        for backend, _ in BACKENDS:
            found = {c["mode"]: cid for cid, c in cells.items()
                     if c["model"] == model and c["backend"] == backend}  # fmt: skip
            pre = samples.get(found.get("prefill", ""), [])
            dec = samples.get(found.get("kv_decode", ""), [])
            pre_s = f"{statistics.median(pre):.2f}" if pre else "-"
            dec_s = f"{statistics.median(dec) / new_tokens:.2f}" if dec else "-"
            states = {status.get(found.get(m, ""), "not run") for m in ("prefill", "kv_decode")}
            rows.append(
                f"| {model} | {backend} | {pre_s} | {dec_s} | {len(pre)}/{len(dec)} | {', '.join(sorted(states))} |"
            )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory to create")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--table-only", action="store_true", help="re-read an existing --out")
    args = parser.parse_args()
    if not args.table_only:
        args.out.mkdir(parents=True, exist_ok=True)
        matrix = args.out.parent / f"{args.out.name}-matrix.yaml"
        matrix.write_text(matrix_text(args.reps, args.warmup, args.max_new_tokens))
        proc = subprocess.run(
            [sys.executable, "-m", "kit", "run", "--matrix", str(matrix), "--weights", "random",
             "--select", "prompt_index=0", "--out", str(args.out / "run")],
            cwd=REPO,
        )  # fmt: skip
        if proc.returncode != 0:
            return proc.returncode
    print(table(args.out / "run", args.max_new_tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
