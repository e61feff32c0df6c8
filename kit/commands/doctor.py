"""`kit doctor`: can cell groups run in containers here? Each check: ok, or what to do."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from kit.errors import KitError

HELP = "check Docker, the NVIDIA runtime, the driver and the images before a docker run"


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    hint: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda if a GPU answers"
    )
    parser.add_argument(
        "--backend", action="append", help="backends to check images for (default: torch ones)"
    )
    parser.add_argument("--allow-unpinned", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _failed(name: str, err: KitError) -> Check:
    return Check(name, False, err.title, err.hint)


def run_checks(device: str | None, backends: list[str], allow_unpinned: bool) -> list[Check]:
    """Compute every check (never prints); stops after a daemon failure."""
    from pathlib import Path

    from kit.runner import preflight
    from kit.runner.base import GroupJob

    checks: list[Check] = []
    try:
        client = preflight.connect()
    except KitError as err:
        return [_failed("docker daemon", err)]
    checks.append(Check("docker daemon", True, f"Docker {client.version().get('Version')}"))
    driver = preflight.host_driver_cuda()
    device = device or ("cuda" if driver else "cpu")
    if device == "cuda":
        try:
            preflight.check_nvidia_runtime(client.info())
            checks.append(Check("nvidia runtime", True, "the daemon can hand GPUs to containers"))
        except KitError as err:
            checks.append(_failed("nvidia runtime", err))
        if driver is None:
            checks.append(
                Check(
                    "driver",
                    False,
                    "no NVIDIA driver answers on this machine (NVML)",
                    "install the NVIDIA driver and check `nvidia-smi`, or pass --device cpu",
                )
            )
        else:
            checks.append(Check("driver", True, f"the driver supports CUDA {driver}"))
    for backend in backends:
        job = GroupJob(backend, Path("/"), Path("/"), Path("/"), Path("/"), backend, device, 0, 1)
        try:
            from kit.images.registry import image_for_backend

            spec, variant = image_for_backend(backend, device)
            record = preflight.check_image_for_job(
                client, job, spec.tag(variant), allow_unpinned=allow_unpinned
            )
            note = "" if record["pinned"] else f" (unpinned: {record['unpinned_reason']})"
            checks.append(Check(f"image for {backend}", True, f"{record['image']}{note}"))
        except KitError as err:
            checks.append(_failed(f"image for {backend}", err))
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{'ok ' if check.ok else 'FAIL'} {check.name}: {check.message}")
        if check.hint and not check.ok:
            lines.append(f"     hint: {check.hint}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    backends = args.backend or ["transformers-eager"]
    checks = run_checks(args.device, backends, args.allow_unpinned)
    if args.json:
        out: Any = [dataclasses.asdict(c) for c in checks]
        print(json.dumps(out, indent=1))
    else:
        print(render(checks))
    return 0 if all(c.ok for c in checks) else 1
