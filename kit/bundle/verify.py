"""`kit verify BUNDLE`: checksums, schema, completeness, consistency and safety, in one pass.

The archive is read once in stream mode (`reader.scan`): every member is hashed as it passes,
the few small members the checks need are kept, and the large ones (samples, telemetry) are
only counted line by line. Every problem is one line; nothing here raises on a damaged file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from pathlib import Path
from typing import IO

from kit.bundle import consistency
from kit.bundle.manifest import (
    MANIFEST,
    SUMS,
    Manifest,
    ManifestError,
    content_hash,
    parse_sums,
    read_manifest,
)
from kit.bundle.reader import DEFAULT_SIZE_CAP, scan

KEEP = {
    MANIFEST,
    SUMS,
    "matrix/cells.json",
    "results/statuses.jsonl",
    "results/cell_summary.csv",
}
KEEP_CAP = 64 << 20  # a kept member larger than this is itself a problem
REQUIRED = (
    MANIFEST,
    SUMS,
    "run.json",
    "matrix/cells.json",
    "results/statuses.jsonl",
    "results/samples.jsonl",
    "results/cell_summary.csv",
    "integrity/checks.jsonl",
)


@dataclasses.dataclass
class VerifyResult:
    path: Path
    problems: list[str]
    members: int
    manifest: Manifest | None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclasses.dataclass
class _Collected:
    hashes: dict[str, str] = dataclasses.field(default_factory=dict)
    kept: dict[str, bytes] = dataclasses.field(default_factory=dict)
    samples: consistency.SampleCounts = dataclasses.field(default_factory=consistency.SampleCounts)
    telemetry: dict[str, tuple[int | None, int | None, int]] = dataclasses.field(
        default_factory=dict
    )
    problems: list[str] = dataclasses.field(default_factory=list)
    listed: dict[str, str] | None = None  # SHA256SUMS, parsed when it has passed


def _listed(got: _Collected) -> dict[str, str] | None:
    """SHA256SUMS's entries once it has been read (it is the second member), else None."""
    if got.listed is None and SUMS in got.kept:
        try:
            got.listed, _ = parse_sums(got.kept[SUMS].decode("utf-8"))
        except UnicodeDecodeError:
            got.listed = {}
    return got.listed


def _consume(info: tarfile.TarInfo, fh: IO[bytes], got: _Collected) -> None:
    name = info.name
    listed = _listed(got)
    if listed is not None and name not in listed and info.size > KEEP_CAP:
        # A large member SHA256SUMS does not list is a problem whatever it holds: do not
        # spend a minute hashing an added 2 GiB member (tarfile skips its data).
        got.hashes[name] = "unlisted"
        return
    digest = hashlib.sha256()
    if name == "results/samples.jsonl":
        for line in fh:
            digest.update(line)
            got.samples.add_line(line)
    elif name.startswith("telemetry/") and name.endswith(".csv"):
        first: int | None = None
        last: int | None = None
        rows = 0
        for number, line in enumerate(fh):
            digest.update(line)
            if number == 0:
                continue
            t_ns = consistency.leading_int(line)
            if t_ns is not None:
                first = t_ns if first is None else first
                last = t_ns
                rows += 1
        got.telemetry[name] = (first, last, rows)
    elif name in KEEP and info.size <= KEEP_CAP:
        data = fh.read()
        digest.update(data)
        got.kept[name] = data
    else:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    got.hashes[name] = digest.hexdigest()


def _check_sums(got: _Collected, problems: list[str]) -> dict[str, str] | None:
    data = got.kept.get(SUMS)
    if data is None:
        return None
    try:
        listed, malformed = parse_sums(data.decode("utf-8"))
    except UnicodeDecodeError:
        problems.append("SHA256SUMS is not text")
        return None
    problems.extend(malformed)
    for name, digest in got.hashes.items():
        if name == SUMS:
            continue
        if name not in listed:
            problems.append(f"member not listed in SHA256SUMS: {name}")
        elif listed[name] != digest:
            problems.append(f"checksum mismatch: {name} (content differs from SHA256SUMS)")
    for name in sorted(set(listed) - set(got.hashes)):
        problems.append(f"member listed in SHA256SUMS is missing from the archive: {name}")
    return listed


def verify_bundle(path: Path, size_cap: int = DEFAULT_SIZE_CAP) -> VerifyResult:
    """Verify one bundle archive; every problem found is one line in `problems`."""
    got = _Collected()
    scanned = scan(path, lambda info, fh: _consume(info, fh, got), size_cap)
    problems = list(scanned.problems)
    manifest: Manifest | None = None
    # An archive that cannot be read to its end gets that one line: the checks that would
    # follow would only list the members it lost.
    if not scanned.fatal:
        for name in REQUIRED:
            if name not in got.hashes:
                problems.append(f"required member missing: {name}")
        listed = _check_sums(got, problems)
        if MANIFEST in got.kept:
            try:
                manifest = read_manifest(got.kept[MANIFEST])
            except ManifestError as err:
                problems.append(str(err))
        if manifest is not None and listed is not None:
            expected = content_hash(listed)
            if manifest.content_hash != expected:
                problems.append(
                    f"content hash mismatch: manifest says {manifest.content_hash}, "
                    f"SHA256SUMS gives {expected}"
                )
        if manifest is not None:
            problems.extend(consistency.check(manifest, got.kept, got.samples, got.telemetry))
    return VerifyResult(path=path, problems=problems, members=len(got.hashes), manifest=manifest)


def render(result: VerifyResult) -> str:
    """Text for the terminal: one line per problem, or one line saying all is well."""
    if result.problems:
        return "\n".join(f"{result.path}: {p}" for p in result.problems)
    m = result.manifest
    tail = ""
    if m is not None:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(m.cell_counts.items()))
        tail = f"; cells: {counts}; {m.content_hash}"
        if m.incomplete:
            tail += f"; INCOMPLETE run ({len(m.missing_cells)} cells missing)"
    return f"{result.path}: OK ({result.members} members verified{tail})"


def dumps(result: VerifyResult) -> str:
    return json.dumps(
        {"path": str(result.path), "ok": result.ok, "problems": result.problems}, indent=2
    )
