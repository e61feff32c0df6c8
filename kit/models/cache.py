"""Where models and tokenizers live: a cache directory, never the repository.

Layout under `cache_root()`:
    models/<model>/hub/               a hub snapshot + prepared.json
    models/<model>/random-seed<N>/    a synthesized checkpoint + prepared.json
    tokenizers/<tokenizer>/           registered or downloaded tokenizer files
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from kit.errors import KitError

APP_NAME = "llm-repro-kit"
WEIGHTS_KINDS = ("hub", "random")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _user_cache_dir() -> Path:
    # The platform conventions platformdirs follows, without the dependency.
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / APP_NAME


def cache_root() -> Path:
    """The kit's cache directory: `$KIT_CACHE` if set, else the user cache dir
    (e.g. `~/.cache/llm-repro-kit`). Not created here."""
    value = os.environ.get("KIT_CACHE")
    return Path(value).expanduser() if value else _user_cache_dir()


def safe_name(name: str) -> str:
    """A file-name-safe form of a model id (`gemma3:270m` -> `gemma3_270m`)."""
    return _UNSAFE.sub("_", name)


def model_dir(model_id: str, weights: str, seed: int = 42) -> Path:
    """Where the checkpoint of `model_id` with `weights` ("hub" or "random") lives; random
    checkpoints are per seed. Raises KitError for another weights kind."""
    if weights not in WEIGHTS_KINDS:
        raise KitError(f"unknown weights kind {weights!r}", f"valid: {', '.join(WEIGHTS_KINDS)}")
    leaf = "hub" if weights == "hub" else f"random-seed{seed}"
    return cache_root() / "models" / safe_name(model_id) / leaf


def tokenizer_dir(tokenizer: str) -> Path:
    """Where the files of a registered or downloaded tokenizer (`gpt2`, `qwen2`) live."""
    return cache_root() / "tokenizers" / safe_name(tokenizer)


def sha256_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints can be several GB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
