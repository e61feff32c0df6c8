"""Keeping secrets out of everything the kit writes.

An environment variable whose NAME contains TOKEN, KEY, SECRET, PASS or CREDENTIAL is a
secret: its value becomes `<redacted>` wherever a record names it, and the value itself is
scrubbed from any text the kit writes (pip freeze lines, URLs, tool output), so a secret
copied into another variable or a URL does not leak either. `user:password@` in URLs is
redacted too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASS", "CREDENTIAL")
# Variables that change results (and so belong in the fingerprint).
RELEVANT_PREFIXES = (
    "CUDA_",
    "TORCH_",
    "TRITON_",
    "HF_",
    "OMP_",
    "PYTORCH_",
    "KIT_",
    "NVIDIA_",
    "NCCL_",
    "CUBLAS_",
    "CUDNN_",
    "MKL_",
    "TOKENIZERS_",
    "TRANSFORMERS_",
    "VLLM_",
)
_MIN_SECRET_LEN = 4  # shorter values would scrub innocent text ("1", "true")

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s:]+(:[^/@\s]*)?@")
_NAMED_SECRET = re.compile(
    r"(?P<name>\b[A-Za-z0-9_.-]*(?:token|key|secret|pass|credential)[A-Za-z0-9_.-]*)"
    r"(?P<sep>\s*(?:=(?!=)|:(?!//))\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',;&]+)",
    re.IGNORECASE,
)
_KNOWN_TOKEN_SHAPES = re.compile(r"\b(hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,})\b")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of every secret-named variable, longest first (so overlaps scrub fully)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Text with URL credentials, `name=value` secrets and known secret values removed."""
    for value in secret_values(environ):
        text = text.replace(value, REDACTED)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _NAMED_SECRET.sub(
        lambda m: (
            f"{m.group('name')}{m.group('sep')}{m.group('quote')}{REDACTED}"
            if m.group("value") != REDACTED
            else m.group(0)
        ),
        text,
    )
    return _KNOWN_TOKEN_SHAPES.sub(REDACTED, text)


def redact(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of a JSON-like object with secret-named keys and secret text redacted."""
    if isinstance(obj, Mapping):
        return {
            k: REDACTED if is_secret_name(str(k)) and v not in (None, "") else redact(v, environ)
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, environ) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, environ)
    return obj


def relevant_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that change results, sorted, with secrets replaced by `<redacted>`."""
    env = os.environ if environ is None else environ
    picked = {k: v for k, v in env.items() if k.startswith(RELEVANT_PREFIXES)}
    return {
        k: REDACTED if is_secret_name(k) else redact_text(v, environ)
        for k, v in sorted(picked.items())
    }
