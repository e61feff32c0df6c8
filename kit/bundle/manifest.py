"""The bundle manifest and SHA256SUMS, with one reader per manifest schema.

Hashing contract (schema 1):
- `SHA256SUMS` lists `<sha256 hex>  <path>` for every regular member except itself, sorted
  by path, including `manifest.json`.
- `manifest.json`'s `content_hash` is `sha256:` + the sha256 of `SHA256SUMS` without its
  `manifest.json` line, i.e. one hash that names every payload byte of the bundle. The manifest
  cannot hash itself, so its own line in SHA256SUMS protects it instead.

A new schema adds a reader to `READERS` and keeps the old ones, so old bundles stay readable:
each reader returns the current in-memory shape (`Manifest`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

SCHEMA_VERSION = 1
BUNDLE_KIND = "llm-repro-kit bundle"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"


def sums_text(hashes: Mapping[str, str]) -> str:
    """SHA256SUMS text (the format `sha256sum -c` reads) for `hashes` (path -> hex)."""
    return "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))


def parse_sums(text: str) -> tuple[dict[str, str], list[str]]:
    """Parse SHA256SUMS; returns (path -> hex, problems with malformed lines)."""
    found: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            problems.append(f"SHA256SUMS line {number} is malformed")
            continue
        if name in found:
            problems.append(f"SHA256SUMS lists {name} twice")
        found[name] = digest
    return found, problems


def content_hash(hashes: Mapping[str, str]) -> str:
    payload = {k: v for k, v in hashes.items() if k != MANIFEST}
    return "sha256:" + hashlib.sha256(sums_text(payload).encode()).hexdigest()


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    return (json.dumps(manifest, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What verify and report rely on, whatever schema the bundle was written with."""

    schema: int
    content_hash: str
    cell_counts: dict[str, int]
    incomplete: bool
    missing_cells: list[str]
    n_cells: int
    run_span_ns: tuple[int, int] | None
    cells_span_ns: tuple[int, int] | None  # first cell start .. last cell end
    device: str
    matrix: dict[str, Any]
    raw: dict[str, Any]


class ManifestError(ValueError):
    """The manifest cannot be read; the message is one line for the verify report."""


def _read_v1(raw: dict[str, Any]) -> Manifest:
    try:
        cells = raw["cells"]
        span = raw.get("run_span_ns")
        cells_span = raw.get("cells_span_ns")
        return Manifest(
            schema=1,
            content_hash=str(raw["content_hash"]),
            cell_counts={str(k): int(v) for k, v in cells["by_status"].items()},
            incomplete=bool(raw["incomplete"]),
            missing_cells=[str(c) for c in cells["missing"]],
            n_cells=int(cells["total"]),
            run_span_ns=(int(span[0]), int(span[1])) if span else None,
            cells_span_ns=(int(cells_span[0]), int(cells_span[1])) if cells_span else None,
            device=str(raw.get("device") or ""),
            matrix=dict(raw.get("matrix") or {}),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ManifestError(f"manifest.json (schema 1) lacks or mangles a field: {err}") from None


READERS: dict[int, Callable[[dict[str, Any]], Manifest]] = {1: _read_v1}


def read_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes with the reader for its schema; raise ManifestError."""
    try:
        raw = json.loads(data)
    except ValueError as err:
        raise ManifestError(f"manifest.json is not JSON: {err}") from None
    if not isinstance(raw, dict) or raw.get("kind") != BUNDLE_KIND:
        raise ManifestError("manifest.json is not a kit bundle manifest (no kind field)")
    schema = raw.get("schema")
    reader = READERS.get(schema) if isinstance(schema, int) else None
    if reader is None:
        known = ", ".join(str(s) for s in sorted(READERS))
        raise ManifestError(
            f"unsupported bundle schema {schema!r} (this kit reads schema {known}); "
            "upgrade the kit to read newer bundles"
        )
    return reader(raw)
