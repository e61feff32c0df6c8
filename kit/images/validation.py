"""Records of real image builds (scripts/build-cuda-images) and their page,
docs/validation/images.md.

`python -m kit.images.validation record ...` prints one build's record (JSON): what was asked,
how it ended, and for a built image its id, size, lock hash, base digest and self-check summary.
`python -m kit.images.validation render FOLDER` turns every record in FOLDER into the page.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kit.images.lock import lock_entry
from kit.images.registry import image_spec
from kit.images.stacks import image_stack_label


def _docker_inspect(tag: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["docker", "image", "inspect", tag], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {}
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found[0] if found else {}


def self_check_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The lines of a self-check worth a table: versions, CUDA, libraries, GPU, failures."""
    torch = record.get("torch") or {}
    imports = record.get("imports") or {}
    libraries = record.get("cuda_libraries") or {}
    versions = {
        name: found.get("version") for name, found in sorted(imports.items()) if found.get("ok")
    }
    return {
        "ok": bool(record.get("ok")),
        "failures": list(record.get("failures") or []),
        "versions": versions,
        "torch_cuda": torch.get("cuda"),
        "cudnn": torch.get("cudnn"),
        "libraries_loaded": sum(1 for f in libraries.values() if f.get("loads")),
        "libraries_checked": len(libraries),
        "gpu": (torch.get("gpu") or {}).get("reason") or (torch.get("gpu") or {}).get("device"),
    }


def build_record(args: argparse.Namespace) -> dict[str, Any]:
    image, _, variant_name = args.target.partition(":")
    spec = image_spec(image)
    variant = spec.variant(variant_name)
    entry = lock_entry(spec, variant) or {}
    record: dict[str, Any] = {
        "target": args.target,
        "tag": spec.tag(variant),
        "status": args.status,
        "reason": args.reason,
        "seconds": args.seconds,
        "stack": image_stack_label(spec, variant),
        "lock_sha256": entry.get("requirements_sha256"),
        "packages": entry.get("packages"),
        "base": args.base,
        "base_digest": args.base_id,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if args.status == "built":
        attrs = _docker_inspect(spec.tag(variant))
        record["image_id"] = attrs.get("Id")
        record["size_bytes"] = attrs.get("Size")
    if args.self_check:
        text = Path(args.self_check).read_text()
        try:
            check = json.loads(text[text.index("{") :])
        except ValueError:
            check = {"ok": False, "failures": [f"no JSON: {text.strip()[-200:]}"]}
        record["self_check_rc"] = args.self_check_rc
        record["self_check"] = self_check_summary(check)
    return record


def build_base(target: str, default_base: str) -> tuple[str | None, str | None]:
    """(base to build `target` from, None) or (None, why it cannot be built here).

    A layered variant (`over`) builds FROM the kit's own image, which must be built first; a
    variant without a lock entry cannot be built (its lock needs an index this machine lacks).
    """
    from kit.images.registry import IMAGE_REPOSITORY, versions

    image, _, variant_name = target.partition(":")
    spec = image_spec(image)
    variant = spec.variant(variant_name)
    if lock_entry(spec, variant) is None:
        where = f" (its lock needs {variant.extra_index}, which this machine cannot reach)"
        return None, "not locked" + (where if variant.extra_index else "")
    if not variant.over:
        return default_base, None
    base = f"{IMAGE_REPOSITORY}/{variant.over.format(**versions())}"
    if not _docker_inspect(base):
        return None, f"its base image {base} is not built here"
    return base, None


def _gb(size: int | None) -> str:
    return f"{size / 1e9:.2f} GB" if size else "-"


def render(folder: Path) -> str:
    """The markdown page for every record (*.json but *.self-check.json) in folder."""
    records = [
        json.loads(p.read_text())
        for p in sorted(folder.glob("*.json"))
        if not p.name.endswith(".self-check.json")
    ]
    lines = [
        "# CUDA images: what was built here",
        "",
        "Written by `scripts/build-cuda-images` (its last output; do not edit by hand). Built on",
        "the development machine (2 cores, no GPU, PyPI through a TLS-intercepting proxy) from",
        "the offline Debian base; each image was then self-checked with",
        "`docker run --rm --network none IMAGE python -m kit.harness --self-check FAMILY`",
        "(imports, CUDA libraries dlopen'ed, torch's CUDA/cuDNN, Triton's toolchain). No GPU",
        "here: GPU absence is reported, not failed. No cell was measured in these images here.",
        "Sizes are `docker image inspect` sizes, shared base layers included (a layered image's",
        "own part is its size minus its base's). Base digest: the local image ID of the base.",
        "",
        "| image | status | stack | build s | size | lock sha256 | base digest | self-check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        check = r.get("self_check") or {}
        verdict = "-"
        if check:
            verdict = "ok" if check.get("ok") else "FAILED: " + ", ".join(check.get("failures", []))
        status = r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        lines.append(
            f"| `{r['tag']}` | {status} | {r.get('stack') or '-'} | {r.get('seconds') or '-'} "
            f"| {_gb(r.get('size_bytes'))} | `{(r.get('lock_sha256') or 'none')[:16]}` "
            f"| `{(r.get('base_digest') or 'unpinned')[:19]}` | {verdict} |"
        )
    lines += ["", "## Details", ""]
    for r in records:
        lines.append(f"### `{r['tag']}` ({r['date']})")
        lines.append("")
        lines.append(f"- status: {r['status']}" + (f": {r['reason']}" if r.get("reason") else ""))
        lines.append(f"- image id: `{r.get('image_id') or '-'}`")
        lines.append(f"- base: `{r['base']}` = `{r.get('base_digest') or 'unpinned'}`")
        lines.append(f"- lock: sha256 `{r.get('lock_sha256')}` ({r.get('packages')} packages)")
        check = r.get("self_check")
        if check:
            versions = ", ".join(f"{k} {v}" for k, v in check["versions"].items())
            lines.append(f"- imports: {versions}")
            lines.append(f"- torch.version.cuda {check['torch_cuda']}, cuDNN {check['cudnn']}")
            lines.append(
                f"- CUDA libraries loaded: {check['libraries_loaded']} of "
                f"{check['libraries_checked']}; GPU: {check['gpu']}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.images.validation")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--target", required=True)
    rec.add_argument("--status", required=True, choices=["built", "failed", "not built"])
    rec.add_argument("--reason")
    rec.add_argument("--seconds", type=int)
    rec.add_argument("--base", required=True)
    rec.add_argument("--base-id")
    rec.add_argument("--self-check")
    rec.add_argument("--self-check-rc", type=int)
    base = sub.add_parser("base", help="the base to build TARGET from, or why it cannot be")
    base.add_argument("--target", required=True)
    base.add_argument("--default", required=True)
    ren = sub.add_parser("render")
    ren.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "base":
        found, why = build_base(args.target, args.default)
        print(found or why)
        return 0 if found else 2
    if args.command == "record":
        print(json.dumps(build_record(args), indent=1, sort_keys=True))
    else:
        print(render(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
