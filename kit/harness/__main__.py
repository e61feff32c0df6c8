"""`python -m kit.harness --input FILE`: measure one cell group, events on stdout."""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.harness")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", type=Path, help="harness input JSON (docs/FORMATS.md)")
    what.add_argument(
        "--self-check",
        nargs="?",
        const="",
        metavar="BACKEND",
        help="check this interpreter's backend stack (imports, CUDA libraries), print JSON",
    )
    parser.add_argument(
        "--precompile",
        action="store_true",
        help="compile the group's shapes into its cache and exit (kit.harness.precompile)",
    )
    parser.add_argument(
        "--park",
        action="store_true",
        help="compile every cell's shapes, emit `parked`, wait for `go` on stdin, then measure",
    )
    parser.add_argument(
        "--block-reps",
        type=int,
        default=0,
        help="interleaved order: pause after every N timed repetitions until stdin says go",
    )
    args = parser.parse_args(argv)
    if args.self_check is not None:
        from kit.harness.selfcheck import main as self_check

        return self_check(args.self_check or None)
    # A signal that kills the interpreter (SIGSEGV in a CUDA graph replay, SIGABRT) leaves
    # its Python stack in stderr.log; the runner puts the innermost frame in the crash reason.
    faulthandler.enable(all_threads=True)
    _audit_opens()
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
    from kit.harness.backends import backend_class

    if args.precompile:
        from kit.harness.precompile import cache_dirs, precompile_group

        out.emit("precompile_started", group=group, pid=os.getpid(), cache_dirs=cache_dirs())
        cls, _ = backend_class(first["backend"])
        code = precompile_group(cls, spec, out)
        out.emit("precompile_finished", group=group, exit_code=code)
        return code
    out.emit("group_started", group=group, pid=os.getpid(), ml_stack=_ml_stack(first["backend"]))
    from kit.harness.group import run_group

    if args.block_reps > 0:
        from kit.harness.blocks import install_blocks

        out = install_blocks(out, spec, args.block_reps)
    cls, reason = backend_class(first["backend"])
    code = run_group(cls, reason, spec, out, park=args.park)
    out.emit("group_finished", group=group, exit_code=code)
    return code


def _audit_opens() -> None:
    """With $KIT_AUDIT_OPENS=DIR, log every file and directory this process opens or lists
    (Python audit events) to DIR/<pid>.log: the test that no group reads another group's
    compiler cache reads these logs."""
    folder = os.environ.get("KIT_AUDIT_OPENS")
    if not folder:
        return
    log = open(Path(folder) / f"{os.getpid()}.log", "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event in ("open", "os.listdir", "os.scandir") and args:
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                try:
                    log.write(os.path.abspath(os.fsdecode(path)) + "\n")
                except (OSError, ValueError, TypeError):
                    pass

    sys.addaudithook(hook)


def _ml_stack(backend: str) -> dict[str, object]:
    """The measuring process's ML stack, plus the backend library's own version."""
    from kit.env.ml import _version, ml_stack

    record: dict[str, object] = {"python": sys.version.split()[0], **ml_stack()}
    # As this process sees it: the GPU the runner pinned it to (None: not pinned).
    record["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    library = {
        "onnxruntime": "onnxruntime",
        "vllm": "vllm",
        "tensorrt": "tensorrt",
        "llama-cpp": "llama_cpp",
        "ollama": "ollama",
    }.get(backend)
    if library:
        record[library] = _version(library)
    image = _image_fingerprint()
    if image:
        record["image"] = image
    return record


def _image_fingerprint(path: Path = Path("/etc/kit/image-fingerprint.json")) -> dict[str, object]:
    """Which of the kit's images this process runs in ({} outside them): its build-time
    fingerprint's image, variant, base and lock hash."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict) or not found.get("image"):
        return {}
    return {
        "image": f"{found['image']}:{found.get('variant', '')}",
        "base_image": found.get("base_image"),
        "lock_sha256": found.get("lock_sha256"),
    }


if __name__ == "__main__":
    sys.exit(main())
