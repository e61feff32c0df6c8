"""`docker/images.lock.json` and the hashed requirement lock files: read, check, regenerate.

The lock JSON records, per image variant, the base image reference and its digest (null until
`scripts/lock-images` runs where the registry answers) and the sha256 of the requirement lock.
Requirement locks come from pip's own resolver (`pip install --dry-run --report`), never by
hand: one `name==version --hash=sha256:...` per package for the images' platform.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.images.registry import IMAGES, ImageSpec, Variant, repo_root, torch_index_url, versions

LOCK_FILE = "docker/images.lock.json"
# The platform every image's Python runs on (Debian bookworm's CPython, x86_64, glibc 2.36).
# pip does not widen a --platform tag to older glibc tags by itself, so list them all.
PIP_PLATFORM = "manylinux_2_36_x86_64"
_PLATFORM_TAGS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
_BASE_ARG = re.compile(r"^ARG BASE_IMAGE=.*$", re.MULTILINE)
_VARIANT_ARG = re.compile(r"^ARG VARIANT=\S+$", re.MULTILINE)


def read_lock(root: Path | None = None) -> dict[str, Any]:
    path = (root or repo_root()) / LOCK_FILE
    if not path.exists():
        return {"schema": 1, "versions": {}, "images": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def lock_entry(
    spec: ImageSpec, variant: Variant, root: Path | None = None
) -> dict[str, Any] | None:
    """The lock JSON's record for this image variant, or None when it has none."""
    entry = read_lock(root).get("images", {}).get(f"{spec.name}:{variant.name}")
    return entry if isinstance(entry, dict) else None


def pinned_base(spec: ImageSpec, variant: Variant, root: Path | None = None) -> str | None:
    """`ref@sha256:...` from the lock, or None while the digest is not filled in."""
    entry = lock_entry(spec, variant, root)
    if not entry or not entry.get("base_digest"):
        return None
    return f"{entry['base']}@{entry['base_digest']}"


def base_reference(spec: ImageSpec, variant: Variant, root: Path | None = None) -> str:
    """The base to build from: pinned by digest when the lock has one, else the tag."""
    pinned = pinned_base(spec, variant, root)
    return pinned or variant.base_template.format(**versions(root))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_requirements(variant: Variant, python_version: str) -> list[tuple[str, str, str]]:
    """Resolve with pip for the images' platform: sorted (name, version, sha256) triples.

    Raises KitError when pip cannot resolve (message: pip's last line).
    """
    reqs = [r.format(**versions()) for r in variant.requirements]
    base_pins = _over_pins(variant)
    reqs += [f"{name}=={version}" for name, version in base_pins.items()]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--quiet", "--report", str(report), "--target", str(Path(tmp) / "t"),
            "--only-binary=:all:", *(f"--platform={tag}" for tag in _PLATFORM_TAGS),
            "--python-version", python_version, "--implementation", "cp",
            *reqs,
        ]  # fmt: skip
        if variant.torch_index and torch_index_url():
            cmd += ["--extra-index-url", torch_index_url()]
        if variant.extra_index:
            cmd += ["--extra-index-url", variant.extra_index]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=pip_env(variant))
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise KitError(
                f"pip could not resolve {' '.join(reqs[: len(variant.requirements)])}"
                + (f" over {variant.over.format(**versions())}" if variant.over else "")
                + f": {last}",
                "check the versions in docker/versions.env and that the index is reachable",
            )
        data = json.loads(report.read_text())
    found = []
    for item in data["install"]:
        name = item["metadata"]["name"].lower().replace("_", "-")
        if name in variant.exclude or name in base_pins:
            continue
        sha = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha:
            raise KitError(f"pip gave no sha256 for {name}", "lock from a wheel index")
        found.append((name, item["metadata"]["version"], sha))
    return sorted(found)


def _over_pins(variant: Variant) -> dict[str, str]:
    """name -> version locked in the image this variant is built FROM ({} for none)."""
    if not variant.over:
        return {}
    from kit.images.registry import image_spec

    image, _, name = variant.over.format(**versions()).partition(":")
    spec = image_spec(image)
    text = (repo_root() / spec.lock_path(spec.variant(name))).read_text()
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, flags=re.MULTILINE)
    return {n.lower(): v for n, v in pins}


def pip_env(variant: Variant) -> dict[str, str]:
    """pip's environment: the host's, or for a PyPI-only variant one without its pip config
    (index mirrors, find-links folders, constraints) so that the lock names PyPI's files."""
    env = dict(os.environ)
    if variant.pypi_only:
        for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT"):
            env.pop(key, None)
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def render_requirements(spec: ImageSpec, variant: Variant, pins: list[tuple[str, str, str]]) -> str:
    lines = [
        "# Generated by scripts/lock-images (kit/images/lock.py) from docker/versions.env;",
        f"# do not edit. Image {spec.name}, variant {variant.name}, CPython "
        f"{versions()['PYTHON_VERSION']}, {PIP_PLATFORM}.",
    ]
    for name, version, sha in pins:
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{sha}")
    return "\n".join(lines) + "\n"


def registry_digest(ref: str) -> str | None:
    """Pull `ref` and return its repo digest (sha256:...), or None when no registry answers."""
    import docker.client
    import docker.errors

    import docker  # lazy: see kit/images/__init__.py

    client = docker.client.from_env()
    try:
        image = client.images.pull(ref)
    except docker.errors.APIError:
        return None
    for repo_digest in image.attrs.get("RepoDigests", []):
        if "@" in repo_digest:
            return str(repo_digest.split("@", 1)[1])
    return None


def sync_dockerfile(spec: ImageSpec, root: Path) -> bool:
    """Write the first variant's base and name into the Dockerfile's `ARG BASE_IMAGE=` and
    `ARG VARIANT=` defaults."""
    path = root / spec.dockerfile
    text = path.read_text()
    new = _BASE_ARG.sub(f"ARG BASE_IMAGE={base_reference(spec, spec.variants[0], root)}", text, 1)
    new = _VARIANT_ARG.sub(f"ARG VARIANT={spec.variants[0].name}", new)
    if new != text:
        path.write_text(new)
    return new != text


def _selected(names: list[str] | None) -> list[tuple[ImageSpec, Variant]]:
    """Image variants named `image` (all its variants) or `image:variant`; all when None."""
    from kit.images.registry import image_spec

    chosen: list[tuple[ImageSpec, Variant]] = []
    for name in names or list(IMAGES):
        image, _, variant = name.partition(":")
        spec = image_spec(image)
        chosen += [(spec, spec.variant(variant))] if variant else [(spec, v) for v in spec.variants]
    return chosen


def update_lock(
    names: list[str] | None = None,
    *,
    resolve_digests: bool = True,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Regenerate the lock files and docker/images.lock.json; returns the new lock JSON."""
    root = repo_root()
    pins = versions(root)
    data = read_lock(root)
    data["schema"], data["versions"] = 1, pins
    images = data.setdefault("images", {})
    for spec, variant in _selected(names):
        key = f"{spec.name}:{variant.name}"
        base = variant.base_template.format(**pins)
        old = images.get(key, {})
        digest = old.get("base_digest") if old.get("base") == base else None
        if resolve_digests:
            progress(f"{key}: resolving {base}")
            digest = registry_digest(base) or digest
        progress(f"{key}: resolving Python requirements")
        try:
            resolved = resolve_requirements(variant, pins["PYTHON_VERSION"])
        except KitError as err:
            if not variant.extra_index:
                raise
            # e.g. tensorrt: its libraries live on NVIDIA's index only; the others still lock
            progress(f"{key}: NOT locked ({variant.extra_index} did not answer): {err.title}")
            continue
        lock_path = root / spec.lock_path(variant)
        lock_path.write_text(render_requirements(spec, variant, resolved))
        images[key] = {
            "base": base,
            "base_digest": digest,
            "requirements": spec.lock_path(variant),
            "requirements_sha256": sha256_file(lock_path),
            "packages": len(resolved),
        }
        progress(f"{key}: {len(resolved)} packages, base digest {digest or 'MISSING'}")
    known = {f"{s.name}:{v.name}" for s in IMAGES.values() for v in s.variants}
    for stale in set(images) - known:  # a variant the registry no longer has
        del images[stale]
    (root / LOCK_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    for spec in IMAGES.values():
        sync_dockerfile(spec, root)
    return data
