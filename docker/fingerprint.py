"""Write the image's own fingerprint (JSON on stdout); run once at image build time.

Runs inside the image being built, with the image's interpreter; stdlib only, so it works in
every image. Imports torch only to read its versions (the build of a torch image is the one
place where that is the point).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path


def _distributions() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def _torch_stack() -> dict[str, object]:
    try:
        import torch  # type: ignore[import-not-found]
    except ImportError:
        return {}
    stack: dict[str, object] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    try:
        import triton  # type: ignore[import-not-found]

        stack["triton"] = triton.__version__
    except ImportError:
        stack["triton"] = None
    return stack


def _sha256_tree(root: Path) -> str | None:
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    lock = Path("/etc/kit/requirements.lock.txt")
    os_release = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "VERSION_ID", "PRETTY_NAME"):
            os_release[key.lower()] = value.strip('"')
    fingerprint = {
        "schema": 1,
        "image": os.environ.get("KIT_IMAGE", ""),
        "variant": os.environ.get("KIT_IMAGE_VARIANT", ""),
        "base_image": os.environ.get("KIT_BASE_IMAGE", ""),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "os": os_release,
        "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None,
        "kit_source_sha256": _sha256_tree(Path("/opt/kit/src/kit")),
        "ml_stack": _torch_stack(),
        "pip_freeze": _distributions(),
    }
    json.dump(fingerprint, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
