"""Writing the run directory's `env/` records, every one passed through redaction."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kit.env.host import host_fingerprint, nvidia_smi_xml
from kit.env.redact import redact, redact_text
from kit.paths import inside


def write_json(path: Path, record: Any) -> Path:
    """Write a JSON record with secrets redacted (the only way env records reach disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(redact(record), indent=2, sort_keys=True, default=str) + "\n"
    path.write_text(redact_text(text), encoding="utf-8")
    return path


def gpu_record() -> dict[str, Any]:
    from kit.gpu import detect

    return {"schema": 1, **detect().to_dict()}


def write_env(run_dir: Path | str) -> dict[str, Path]:
    """Write env/host.json, env/gpu.json and, when nvidia-smi exists, env/nvidia-smi.xml.
    Returns the paths written, by name."""
    folder = Path(run_dir) / "env"
    written = {
        "host": write_json(folder / "host.json", host_fingerprint()),
        "gpu": write_json(folder / "gpu.json", gpu_record()),
    }
    xml = nvidia_smi_xml()
    if xml is not None:
        path = folder / "nvidia-smi.xml"
        path.write_text(redact_text(xml), encoding="utf-8")
        written["nvidia_smi"] = path
    return written


def write_process_env(run_dir: Path | str, group: str, ml_stack: dict[str, Any]) -> Path:
    """Write env/process-<group>.json (the ML stack a measuring process reported, plus its
    `stack` record: kit/images/stacks.py)."""
    from kit.images.stacks import stack_record

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", group).strip("-") or "group"
    # `stack`: the image it ran in, or the locked stack a host process matches (the report's
    # "stack:" line).
    record = {**ml_stack, "stack": stack_record(ml_stack)}
    return write_json(inside(Path(run_dir) / "env", f"process-{safe}.json"), record)
