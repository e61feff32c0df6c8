"""The Images screen's logic: how a build from the UI is configured, and what its streamed
log says so far (steps, layers, bytes downloaded). Plain Python, tested headless."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

_STEP = re.compile(r"^Step (\d+)/(\d+) :")
_LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")
# pip's "Downloading name-1.0-...whl (90.2 MB)" (the size pip announces before fetching)
_DOWNLOAD = re.compile(r"Downloading \S+ \((\d+(?:\.\d+)?) (kB|MB|GB)\)")
_UNITS = {"kB": 1e3, "MB": 1e6, "GB": 1e9}


@dataclasses.dataclass
class BuildProgress:
    """What one build's streamed log says so far."""

    image: str
    step: int = 0
    steps: int = 0
    layers: int = 0
    downloads: int = 0
    download_bytes: float = 0.0
    lines: int = 0
    state: str = "building"  # building | built | failed | cancelled
    message: str = ""

    def feed(self, line: str) -> None:
        self.lines += 1
        step = _STEP.match(line)
        if step:
            self.step, self.steps = int(step.group(1)), int(step.group(2))
        if _LAYER.match(line):
            self.layers += 1
        download = _DOWNLOAD.search(line)
        if download:
            self.downloads += 1
            self.download_bytes += float(download.group(1)) * _UNITS[download.group(2)]

    def text(self) -> str:
        steps = f"step {self.step}/{self.steps}" if self.steps else "preparing the context"
        size = f"{self.download_bytes / 1e6:.1f} MB" if self.download_bytes else "0 MB"
        head = f"{self.image}: {self.state}"
        if self.message:
            head += f" ({self.message})"
        return f"{head}\n{steps}, {self.layers} layers, {self.downloads} downloads ({size})"


def ui_build_options(environ: dict[str, str] | None = None) -> dict[str, object]:
    """The BuildOptions a build from the UI uses, as keyword arguments.

    KIT_BASE_IMAGE (a base instead of the locked one: on air-gapped machines the offline base,
    llm-repro-kit/base:bookworm), KIT_BUILD_NETWORK (default host: proxies on localhost) and
    KIT_EXTRA_CA_BUNDLE (default: the host's CA bundle when it exists, for TLS-intercepting
    proxies; "none" for none).
    """
    env = dict(os.environ if environ is None else environ)
    ca_text = env.get("KIT_EXTRA_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ca = Path(ca_text) if ca_text and ca_text != "none" and Path(ca_text).is_file() else None
    network = env.get("KIT_BUILD_NETWORK", "host") or None
    return {"base_image": env.get("KIT_BASE_IMAGE") or None, "network": network,
            "extra_ca_bundle": ca}  # fmt: skip


def image_for_problem(backend: str, device: str) -> str | None:
    """The "image:variant" a disabled cell needs (its Images screen row), or None."""
    from kit.errors import KitError
    from kit.images.registry import image_for_backend

    try:
        spec, variant = image_for_backend(backend, device)
    except KitError:
        return None
    return f"{spec.name}:{variant.name}"
