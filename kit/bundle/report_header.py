"""The report's header: what was run, where, with what, and whether the bundle verified.

Read from the members themselves (run.json, env/gpu.json, env/process-*.json, the cells)
rather than only from the manifest, so that bundles written before a manifest field existed
still get a complete header. A missing value is said as "unknown", never `None`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kit.bundle.report_data import ReportData

UNKNOWN = "unknown"
STACK_KEYS = (
    ("torch", "torch"),
    ("cuda_runtime", "CUDA runtime"),
    ("cudnn", "cuDNN"),
    ("triton", "triton"),
    ("transformers", "transformers"),
    ("onnxruntime", "onnxruntime"),
    ("vllm", "vllm"),
    ("python", "python"),
)


def _text(value: Any) -> str:
    return UNKNOWN if value in (None, "", "null", "None") else str(value)


def commit_text(manifest: dict[str, Any], run: dict[str, Any]) -> str:
    commit = manifest.get("git_commit") or run.get("git_commit")
    dirty = manifest.get("git_dirty", run.get("git_dirty"))
    text = _text(commit)
    return text + (" (dirty tree)" if commit and dirty else "")


def gpu_text(gpu: Any) -> str:
    """GPU name(s) with driver and CUDA driver version, from env/gpu.json."""
    if not isinstance(gpu, dict):
        return "GPU: unknown (no env/gpu.json)"
    gpus = [g for g in gpu.get("gpus") or [] if isinstance(g, dict)]
    if not gpus:
        return f"GPU: none ({gpu.get('reason') or 'no NVIDIA GPU visible'})"
    names = Counter(_text(g.get("name")) for g in gpus)
    shown = ", ".join(f"{n}x {name}" if n > 1 else name for name, n in sorted(names.items()))
    drivers = sorted({_text(g.get("driver_version")) for g in gpus})
    cuda = sorted({_text(g.get("cuda_driver_version")) for g in gpus})
    return f"GPU: {shown}; driver {', '.join(drivers)}; CUDA {', '.join(cuda)}"


def device_text(data: ReportData, run: dict[str, Any]) -> str:
    chosen = run.get("device")
    counts = Counter(str(c.get("device")) for c in data.cells.values())
    per = ", ".join(f"{n} {d}" for d, n in sorted(counts.items()))
    how = f"--device {chosen}" if isinstance(chosen, str) and chosen else "as the matrix says"
    return f"device: {', '.join(sorted(counts)) or UNKNOWN} ({how}; cells: {per or 'none'})"


def stack_text(processes: dict[str, dict[str, Any]]) -> str:
    """The measuring processes' ML stacks, each distinct one once with its process count."""
    if not processes:
        return "ML stack of the measuring processes: not recorded (no env/process-*.json)"
    stacks: Counter[str] = Counter()
    for record in processes.values():
        parts = [f"{label} {record[key]}" for key, label in STACK_KEYS if record.get(key)]
        stacks[", ".join(parts) or "no library versions recorded"] += 1
    shown = "; ".join(
        f"{stack} ({n} process{'es' * (n > 1)})" for stack, n in sorted(stacks.items())
    )
    return f"ML stack of the measuring processes: {shown}"


def images_text(manifest: dict[str, Any], runner: str) -> str:
    images = [str(i) for i in manifest.get("images") or []]
    if images:
        return "images: " + ", ".join(f"`{i}`" for i in sorted(images))
    return "images: host (no container)" if runner == "host" else "images: none recorded"


def header_lines(data: ReportData, verification: str | None) -> list[str]:
    """The bullet lines under the report's title (without the energy and hash lines)."""
    m = data.manifest
    run = data.env.get("run") if isinstance(data.env.get("run"), dict) else {}
    run = run or {}
    runner = _text(m.get("runner") or run.get("runner"))
    lines = []
    if verification is not None:
        lines.append(f"- verification: {verification}")
    lines += [
        f"- kit {_text(m.get('kit_version') or run.get('kit_version'))}, "
        f"commit `{commit_text(m, run)}`",
        f"- command: `{' '.join(str(a) for a in m.get('argv') or run.get('argv') or [])}`",
        f"- runner: {runner}; {images_text(m, runner)}",
        f"- {device_text(data, run)}",
        f"- {gpu_text(data.env.get('gpu'))}",
        f"- {stack_text(data.env.get('processes') or {})}",
    ]
    return lines
