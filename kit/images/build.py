"""Build an image variant with the Docker SDK, streaming the build log line by line.

The build context is staged under build/context/<image>-<variant>/ (hard links where the
filesystem allows): the kit's source, docker/, the variant's wheelhouse and the extra CA bundle,
so a build sends only what that image uses.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from kit.errors import KitError
from kit.images.lock import base_reference, pip_env
from kit.images.registry import ImageSpec, Variant, repo_root, torch_index_url

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    base_image: str | None = None  # None: the lock's pinned base (or its tag)
    wheelhouse: bool = True  # fill a wheelhouse from the lock with the host's pip first
    extra_ca_bundle: Path | None = None  # trusted by pip in the build (proxies)
    network: str | None = None  # e.g. "host" where the build must reach a proxy
    pull: bool = False


@dataclasses.dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    base_image: str


def _link_tree(src: Path, dst: Path) -> None:
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(
        src, dst, copy_function=link, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def fill_wheelhouse(spec: ImageSpec, variant: Variant, dest: Path) -> bool:
    """Download every locked file into dest with the host's pip; False when pip cannot."""
    lock = repo_root() / spec.lock_path(variant)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
        "--only-binary=:all:", "--dest", str(dest), "-r", str(lock),
    ]  # fmt: skip
    if variant.torch_index and torch_index_url():
        cmd += ["--extra-index-url", torch_index_url()]
    return subprocess.run(cmd, capture_output=True, env=pip_env(variant)).returncode == 0


def stage_context(spec: ImageSpec, variant: Variant, options: BuildOptions) -> tuple[Path, bool]:
    """Assemble the build context; returns (folder, wheelhouse complete)."""
    root = repo_root()
    context = root / "build" / "context" / f"{spec.name}-{variant.name}"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    _link_tree(root / "kit", context / "kit")
    _link_tree(root / "docker", context / "docker")
    complete = False
    if options.wheelhouse:
        cache = root / "build" / "wheelhouse" / f"{spec.name}-{variant.name}"
        complete = fill_wheelhouse(spec, variant, cache)
        _link_tree(cache, context / "wheelhouse")
    else:
        (context / "wheelhouse").mkdir()
    ca = options.extra_ca_bundle
    (context / "extra-ca.crt").write_bytes(ca.read_bytes() if ca else b"")
    (context / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return context, complete


def build_image(
    spec: ImageSpec,
    variant: Variant,
    options: BuildOptions,
    progress: Callable[[str], None] = lambda line: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> BuildResult:
    """Build and tag `spec.tag(variant)`; every build log line goes to `progress`.

    `cancelled()` is asked before each chunk of the daemon's stream: when it turns True the
    stream is closed (the daemon stops a build whose client went away) and KitError("...
    cancelled") is raised; the tag keeps the image it had. Raises KitError naming the failed
    step (the daemon's error message).
    """
    import docker.client
    import docker.errors

    import docker  # lazy: see kit/images/__init__.py

    base = options.base_image or base_reference(spec, variant)
    context, complete = stage_context(spec, variant, options)
    buildargs = {
        "BASE_IMAGE": base,
        "VARIANT": variant.name,
        "WHEELHOUSE": "wheelhouse",
        "EXTRA_CA_BUNDLE": "extra-ca.crt",
        "PIP_EXTRA_ARGS": "--no-index" if complete else "",
        # Only where torch's own index is needed: a CUDA lock names PyPI's files alone.
        "TORCH_INDEX_URL": torch_index_url() if variant.torch_index else "",
    }
    progress(
        f"building {spec.tag(variant)} from {base}" + (" (offline wheels)" if complete else "")
    )
    client = docker.client.from_env()
    image_id = ""
    for line in _stream(client, context, spec, variant, buildargs, options, cancelled):
        progress(line)
        if line.startswith("Successfully built "):
            image_id = line.split()[-1]
    image = client.images.get(spec.tag(variant))
    return BuildResult(spec.tag(variant), str(image.id or image_id), base)


def _stream(
    client: object,
    context: Path,
    spec: ImageSpec,
    variant: Variant,
    buildargs: dict[str, str],
    options: BuildOptions,
    cancelled: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    api = client.api  # type: ignore[attr-defined]
    chunks = api.build(
        path=str(context),
        dockerfile=spec.dockerfile,
        tag=spec.tag(variant),
        buildargs=buildargs,
        network_mode=options.network,
        pull=options.pull,
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in chunks:
        if cancelled():
            chunks.close()
            api.close()  # closes the connection: the daemon abandons a build without a client
            raise KitError(
                f"building {spec.tag(variant)} cancelled",
                "the tag keeps the image it had; build again to finish it",
            )
        if "error" in chunk:
            raise KitError(
                f"building {spec.tag(variant)} failed: {str(chunk['error']).strip()}",
                "read the build log above; for proxies pass --extra-ca-bundle and --network host",
            )
        text = chunk.get("stream") or chunk.get("status") or ""
        for line in str(text).splitlines():
            if line.strip():
                yield line.rstrip()
