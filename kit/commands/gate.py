"""`kit gate MATRIX`: run a matrix's gates (TR126 phase 1) in a measuring child process."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HELP = (
    "run a matrix's gate checks (TR126 phase 1: CUDA, Triton, Inductor, container, weight parity)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="a matrix with gates (tr126) or a matrix YAML file")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), help="default: cuda when a GPU is visible"
    )
    parser.add_argument("--weights", choices=("auto", "hub", "random"), default="auto")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for all checks")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="RUN_DIR",
        help="also write the result into RUN_DIR/env/gate-<matrix>.json (bundled; `kit claims` reads it)",
    )


def gate_inputs(name: str, device: str, weights: str) -> dict[str, Any]:
    """The gates' harness input: checks, the parity model prepared, its prompts tokenized."""
    from kit.errors import KitError
    from kit.matrix import load_matrix
    from kit.models.prepare import prepare
    from kit.models.tokenizer import tokenize

    matrix = load_matrix(name)
    gates = matrix.gates()
    if not gates:
        raise KitError(
            f"matrix {matrix.id} has no gates",
            "tr126 has them (its phase-1 gate); see `kit matrix show`",
        )
    checks = [c for g in gates for c in g.get("checks", [])]
    parity: dict[str, Any] = next((c for c in checks if c.get("model")), {})
    model = str(parity.get("model", "tiny-gpt2"))
    scenario = str(parity.get("scenario", "parity"))
    book = matrix.prompt_book()
    texts = book.prompt_sets[book.scenarios[scenario].prompts]
    prepared = prepare(model, weights, seed=int(parity.get("seed", 42)))
    return {
        "gates": gates,
        "device": device,
        "model": model,
        "model_dir": str(prepared.path),
        "weights": prepared.weights,
        "prompts": [tokenize(model, t).ids for t in texts],
        "texts": texts,
    }


def run(args: argparse.Namespace) -> int:
    from kit.gpu.snapshot import detect
    from kit.runner.journal import read_jsonl

    device = args.device or ("cuda" if detect().gpus else "cpu")
    spec = gate_inputs(args.name, device, args.weights)
    with tempfile.TemporaryDirectory(prefix="kit-gate-") as tmp:
        spec["compile_cache_dir"] = tmp  # fresh compiler cache: nothing warmed elsewhere
        path = Path(tmp) / "input.json"
        path.write_text(json.dumps(spec))
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "kit.harness.gates", "--input", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=args.timeout,
        )
        (Path(tmp) / "events.jsonl").write_text(proc.stdout)
        checks = [
            e for e in read_jsonl(Path(tmp) / "events.jsonl") if e.get("event") == "gate_check"
        ]
    if proc.returncode != 0 or not checks:
        from kit.errors import KitError

        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise KitError(
            f"the gate process failed (exit {proc.returncode}): {tail}",
            "rerun with --debug, or check the torch install",
        )
    passed = all(c["passed"] for c in checks)
    if args.record is not None:
        record_gate(args.record, args.name, device, spec, passed, checks)
    if args.json:
        print(
            json.dumps(
                {
                    "device": device,
                    "model": spec["model"],
                    "weights": spec["weights"],
                    "passed": passed,
                    "checks": checks,
                },
                indent=1,
            )
        )
    else:
        print(
            f"gates of {args.name} on {device} (parity model {spec['model']}, {spec['weights']} weights)"
        )
        for c in checks:
            mark = "PASS" if c["passed"] else "FAIL"
            print(
                f"  {mark}  {c['gate']}: {c['check']} = {c['value']!r} (want {c['expected']}) {c['detail']}".rstrip()
            )
        print(
            "all gates passed"
            if passed
            else "GATE FAILED: cells measured here do not meet the matrix's preconditions"
        )
    return 0 if passed else 1


def record_gate(
    run_dir: Path, name: str, device: str, spec: dict[str, Any], passed: bool, checks: list[Any]
) -> Path:
    """Write the gate result into a run directory's env/ (bundled with it)."""
    from kit.errors import KitError
    from kit.matrix import load_matrix

    if not (run_dir / "run.json").is_file():
        raise KitError(
            f"{run_dir} is not a run directory (no run.json)", "give a `kit run --out` folder"
        )
    matrix = load_matrix(name).id
    path = run_dir / "env" / f"gate-{matrix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "matrix": matrix, "device": device, "model": spec["model"], "weights": spec["weights"],
        "passed": passed, "checks": checks,
    }  # fmt: skip
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path
