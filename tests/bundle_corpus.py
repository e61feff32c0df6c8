"""A corpus of damaged bundles, each built from a good one, for `kit verify` tests.

`CASES` maps a case name to (builder, expected message fragment). Each builder takes the good
bundle's path and an output path and writes the damaged archive; `rebuild` re-packs a bundle
with edited members and, with `rehash=True`, recomputes SHA256SUMS and the manifest's content
hash so that only the intended inconsistency remains.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from kit.bundle.manifest import content_hash, dump_manifest, parse_sums, sums_text

Members = dict[str, bytes]
Extra = Sequence[tarfile.TarInfo]


def read_members(bundle: Path) -> Members:
    with tarfile.open(bundle, "r:*") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def rehash(members: Members) -> None:
    """Recompute SHA256SUMS and the manifest's content hash after an edit (in place)."""
    hashes = {
        n: hashlib.sha256(d).hexdigest()
        for n, d in members.items()
        if n not in ("SHA256SUMS", "manifest.json")
    }
    manifest = json.loads(members["manifest.json"])
    manifest["content_hash"] = content_hash(hashes)
    members["manifest.json"] = dump_manifest(manifest)
    hashes["manifest.json"] = hashlib.sha256(members["manifest.json"]).hexdigest()
    members["SHA256SUMS"] = sums_text(hashes).encode()


def write_tar(out: Path, members: Members, extra: Extra = (), zst: bool = False) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    raw = buf.getvalue()
    if zst:
        import zstandard

        out.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(raw))
    else:
        out.write_bytes(gzip.compress(raw, mtime=0))


def rebuild(
    good: Path,
    out: Path,
    edit: Callable[[Members], None],
    *,
    rehashed: bool = False,
    extra: Extra = (),
) -> None:
    members = read_members(good)
    edit(members)
    if rehashed:
        rehash(members)
    write_tar(out, members, extra)


def _flip_byte(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


# --- builders: (good, out) -> None -------------------------------------------------------


def truncated(good: Path, out: Path) -> None:
    data = good.read_bytes()
    out.write_bytes(data[: len(data) * 2 // 3])


def corrupt_stream(good: Path, out: Path) -> None:
    data = good.read_bytes()
    out.write_bytes(_flip_byte(data, len(data) // 2))


def member_flipped(good: Path, out: Path) -> None:
    """One digit of a latency changed: still valid JSON, so only the checksum can tell."""

    def edit(m: Members) -> None:
        data = m["results/samples.jsonl"]
        at = data.index(b'"latency_ms":') + len(b'"latency_ms":')
        digit = data[at : at + 1]
        m["results/samples.jsonl"] = data[:at] + (b"9" if digit != b"9" else b"8") + data[at + 1 :]

    rebuild(good, out, edit)


def checksum_removed(good: Path, out: Path) -> None:
    def edit(m: Members) -> None:
        sums, _ = parse_sums(m["SHA256SUMS"].decode())
        del sums["results/cell_summary.csv"]
        m["SHA256SUMS"] = sums_text(sums).encode()

    rebuild(good, out, edit)


def member_removed(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: m.pop("results/phases.jsonl"))


def _special(name: str, kind: bytes, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    return info


def path_traversal(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: None, extra=[_special("../../evil.sh", tarfile.REGTYPE, size=4)])


def absolute_path(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: None, extra=[_special("/etc/evil", tarfile.REGTYPE, size=4)])


def symlink_member(good: Path, out: Path) -> None:
    extra = [_special("results/passwd", tarfile.SYMTYPE, linkname="/etc/passwd")]
    rebuild(good, out, lambda m: None, extra=extra)


def hardlink_member(good: Path, out: Path) -> None:
    extra = [_special("results/hard", tarfile.LNKTYPE, linkname="run.json")]
    rebuild(good, out, lambda m: None, extra=extra)


def device_member(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: None, extra=[_special("env/null", tarfile.CHRTYPE)])


def duplicate_member(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: None, extra=[_special("run.json", tarfile.REGTYPE, size=4)])


def _manifest_edit(**changes: object) -> Callable[[Members], None]:
    def edit(m: Members) -> None:
        manifest = json.loads(m["manifest.json"])
        manifest.update(changes)
        m["manifest.json"] = dump_manifest(manifest)
        sums, _ = parse_sums(m["SHA256SUMS"].decode())
        sums["manifest.json"] = hashlib.sha256(m["manifest.json"]).hexdigest()
        m["SHA256SUMS"] = sums_text(sums).encode()

    return edit


def wrong_schema(good: Path, out: Path) -> None:
    rebuild(good, out, _manifest_edit(schema=99))


def content_hash_wrong(good: Path, out: Path) -> None:
    rebuild(good, out, _manifest_edit(content_hash="sha256:" + "0" * 64))


def manifest_missing(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: m.pop("manifest.json"))


def summary_count_wrong(good: Path, out: Path) -> None:
    def edit(m: Members) -> None:
        lines = m["results/cell_summary.csv"].decode().splitlines()
        cols = lines[1].split(",")
        cols[2] = str(int(cols[2]) + 1)  # n_samples of the first row
        lines[1] = ",".join(cols)
        m["results/cell_summary.csv"] = ("\n".join(lines) + "\n").encode()

    rebuild(good, out, edit, rehashed=True)


def status_missing(good: Path, out: Path) -> None:
    def edit(m: Members) -> None:
        lines = m["results/statuses.jsonl"].decode().splitlines(keepends=True)
        m["results/statuses.jsonl"] = "".join(lines[1:]).encode()

    rebuild(good, out, edit, rehashed=True)


def telemetry_short(good: Path, out: Path) -> None:
    def edit(m: Members) -> None:
        lines = m["telemetry/gpu0.csv"].decode().splitlines(keepends=True)
        m["telemetry/gpu0.csv"] = "".join(lines[: len(lines) // 3]).encode()

    rebuild(good, out, edit, rehashed=True)


def sums_missing(good: Path, out: Path) -> None:
    rebuild(good, out, lambda m: m.pop("SHA256SUMS"))


def not_an_archive(good: Path, out: Path) -> None:
    out.write_bytes(b"this is not a bundle\n" * 10)


def empty_file(good: Path, out: Path) -> None:
    out.write_bytes(b"")


def zstd_truncated(good: Path, out: Path) -> None:
    tmp = out.with_suffix(".full")
    write_tar(tmp, read_members(good), zst=True)
    data = tmp.read_bytes()
    out.write_bytes(data[: len(data) // 2])


def zstd_corrupt(good: Path, out: Path) -> None:
    tmp = out.with_suffix(".full")
    write_tar(tmp, read_members(good), zst=True)
    out.write_bytes(_flip_byte(tmp.read_bytes(), 200))


CASES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "truncated": (truncated, "the gzip or tar stream ends early"),
    "corrupt_stream": (corrupt_stream, "compressed data does not decode"),
    "member_flipped": (member_flipped, "checksum mismatch: results/samples.jsonl"),
    "checksum_removed": (
        checksum_removed,
        "member not listed in SHA256SUMS: results/cell_summary.csv",
    ),
    "member_removed": (member_removed, "missing from the archive: results/phases.jsonl"),
    "path_traversal": (path_traversal, "path escapes the bundle"),
    "absolute_path": (absolute_path, "absolute path"),
    "symlink": (symlink_member, "link to '/etc/passwd'"),
    "hardlink": (hardlink_member, "link to 'run.json'"),
    "device": (device_member, "device or fifo"),
    "duplicate": (duplicate_member, "duplicate member 'run.json'"),
    "wrong_schema": (wrong_schema, "unsupported bundle schema 99"),
    "content_hash": (content_hash_wrong, "content hash mismatch"),
    "manifest_missing": (manifest_missing, "required member missing: manifest.json"),
    "sums_missing": (sums_missing, "required member missing: SHA256SUMS"),
    "summary_count": (summary_count_wrong, "sample count mismatch for cell"),
    "status_missing": (status_missing, "has no status"),
    "telemetry_short": (telemetry_short, "does not cover the run's time span"),
    "not_an_archive": (not_an_archive, "not a bundle archive"),
    "empty_file": (empty_file, "the file is empty (0 bytes)"),
    "zstd_truncated": (zstd_truncated, "the zstd stream ends mid-frame"),
    "zstd_corrupt": (zstd_corrupt, "zstd data does not decode"),
}
