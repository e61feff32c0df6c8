"""`kit env`: the host fingerprint (and, on request, the ML stack of this Python)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "show the machine's fingerprint (OS, CPU, memory, container, GPU, relevant env vars)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the full record as JSON")
    parser.add_argument(
        "--ml", action="store_true", help="also import torch here and report the ML stack"
    )
    parser.add_argument(
        "--write", type=Path, default=None, metavar="RUN_DIR", help="write RUN_DIR/env/ records"
    )


def _summary(record: dict[str, Any]) -> str:
    cpu, container = record["cpu"], record["container"]
    lines = [
        f"os            {record['os']} (kernel {record['kernel']}, {record['machine']})",
        f"cpu           {cpu['model']} ({cpu['logical_cores']} logical, "
        f"{cpu['usable_cores']} usable; governor {cpu['governor'] or 'n/a'})",
        f"memory        {record['memory_mib']} MiB",
        f"python        {record['python']['version']} ({record['python']['executable']})",
        f"container     {'yes' if container['in_container'] else 'no'}"
        + (f" (image {container['image_id']})" if container["image_id"] else ""),
        f"docker        {record['docker_version'] or 'not reachable'}",
        f"packages      {len(record['packages'] or [])} installed",
    ]
    gpus = record["gpu"]["gpus"]
    names = ", ".join(f"{g['index']}: {g['name']}" for g in gpus)
    lines.append(f"gpus          {names or 'none (' + str(record['gpu']['reason']) + ')'}")
    if record.get("ml_stack"):
        ml = record["ml_stack"]
        lines.append(
            f"ml stack      torch {ml['torch']}, CUDA {ml['cuda_runtime']}, "
            f"transformers {ml['transformers']}"
        )
    lines.append(
        "env vars      " + (", ".join(f"{k}={v}" for k, v in record["env"].items()) or "-")
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from kit.env import host_fingerprint, redact, write_env
    from kit.env.write import gpu_record

    if args.write is not None:
        for name, path in write_env(args.write).items():
            print(f"{name}: {path}")
        return 0
    record = host_fingerprint()
    record["gpu"] = gpu_record()
    if args.ml:
        from kit.env import ml_stack

        record["ml_stack"] = ml_stack()
    record = redact(record)
    print(json.dumps(record, indent=2, sort_keys=True) if args.json else _summary(record))
    return 0
