"""Is this process inside one of the kit's own images? The proof is the fingerprint file each
kit image writes at build time (`/etc/kit/image-fingerprint.json`, docker/fingerprint.py), not
a marker any container runtime (or VM) may leave, such as `/.dockerenv`.

Used by TR126's gate (`in_container`): it means "inside the pinned image", so it passes only
with the fingerprint, names the image, and otherwise says what it found instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path
from typing import Any

FINGERPRINT = "etc/kit/image-fingerprint.json"  # relative to the filesystem root
_MARKERS = (".dockerenv", "run/.containerenv")


@dataclasses.dataclass(frozen=True)
class ImageProof:
    in_kit_image: bool
    image: str | None  # "torch:cpu" from the fingerprint
    image_id: str | None  # sha256:... of the running container's image, when the daemon says
    detail: str  # one sentence: what was found


def _markers(root: Path) -> list[str]:
    found = [f"/{m}" for m in _MARKERS if (root / m).exists()]
    try:
        cgroup = (root / "proc/1/cgroup").read_text(errors="replace")
    except OSError:
        cgroup = ""
    if any(word in cgroup for word in ("docker", "kubepods", "containerd", "libpod", "lxc")):
        found.append("a container cgroup in /proc/1/cgroup")
    return found


def own_image_id(timeout_s: float = 2.0) -> str | None:
    """The image id of the container named by this hostname, asked of the Docker socket
    (the kit's container has it mounted); `KIT_IMAGE_ID` first. None when nobody answers."""
    if os.environ.get("KIT_IMAGE_ID"):
        return os.environ["KIT_IMAGE_ID"]
    path = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    if not Path(path).exists():
        return None
    request = f"GET /containers/{socket.gethostname()}/json HTTP/1.0\r\nHost: docker\r\n\r\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(request.encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            return None
        image = json.loads(body).get("Image")
        return str(image) if image else None
    except (OSError, ValueError):
        return None


def kit_image_proof(root: Path = Path("/")) -> ImageProof:
    """Read `root`'s fingerprint file (root is / except in tests)."""
    markers = _markers(root)
    path = root / FINGERPRINT
    try:
        fingerprint: Any = json.loads(path.read_text())
    except FileNotFoundError:
        fingerprint = None
        problem = "no kit image fingerprint"
    except (OSError, ValueError) as err:
        fingerprint = None
        problem = f"an unreadable kit image fingerprint ({err})"
    if not isinstance(fingerprint, dict) or not fingerprint.get("image"):
        if fingerprint is not None:
            problem = "a kit image fingerprint that names no image"
        where = (
            f"{' and '.join(markers)} {'exist' if len(markers) > 1 else 'exists'}"
            if markers
            else "no container marker (/.dockerenv, /run/.containerenv, cgroup)"
        )
        return ImageProof(False, None, None, f"{where} but {problem} (/{FINGERPRINT})")
    image = f"{fingerprint['image']}:{fingerprint.get('variant') or '-'}"
    image_id = own_image_id() if root == Path("/") else None
    base = fingerprint.get("base_image") or "an unnamed base"
    detail = f"kit image {image} (/{FINGERPRINT}; base {base}; image id {image_id or 'not reported by a Docker socket'})"
    return ImageProof(True, image, image_id, detail)
