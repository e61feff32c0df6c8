"""`python -m kit.harness --input FILE`: measure one cell group, events on stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.harness")
    parser.add_argument(
        "--input", required=True, type=Path, help="harness input JSON (docs/FORMATS.md)"
    )
    args = parser.parse_args(argv)
    from kit.harness.events import Emitter

    out = Emitter.take_stdout()
    spec = json.loads(args.input.read_text())
    cache_dir = spec.get("compile_cache_dir")
    if cache_dir:
        # A fresh compiler cache per group, set before torch is imported (TR126's pitfall).
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(cache_dir) / "inductor"))
        os.environ.setdefault("TRITON_CACHE_DIR", str(Path(cache_dir) / "triton"))
    first = spec["cells"][0]
    group = {
        k: first.get(k)
        for k in ("matrix", "group", "backend", "device", "model", "dtype", "compile", "cache")
    }
    out.emit("group_started", group=group, pid=os.getpid(), ml_stack=_ml_stack(first["backend"]))
    from kit.harness.backends import backend_class
    from kit.harness.group import run_group

    cls, reason = backend_class(first["backend"])
    code = run_group(cls, reason, spec, out)
    out.emit("group_finished", group=group, exit_code=code)
    return code


def _ml_stack(backend: str) -> dict[str, object]:
    """The measuring process's ML stack, plus the backend library's own version."""
    from kit.env.ml import _version, ml_stack

    record: dict[str, object] = {"python": sys.version.split()[0], **ml_stack()}
    library = {"onnxruntime": "onnxruntime", "vllm": "vllm"}.get(backend)
    if library:
        record[library] = _version(library)
    return record


if __name__ == "__main__":
    sys.exit(main())
