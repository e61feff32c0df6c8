"""A deterministic tar writer: the same members give a byte-identical archive.

Every member has uid/gid 0, empty owner names, mode 0644 (files) or 0755 (directories) and one
fixed mtime; members come in one fixed order (`manifest.json`, `SHA256SUMS`, then every other
path sorted, each directory just before its contents); gzip headers carry mtime 0 and no file
name; zstd frames are written single-threaded with a fixed level. File contents are streamed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from kit.errors import KitError
from kit.paths import inside

CHUNK = 1 << 20
FIRST = ("manifest.json", "SHA256SUMS")
Source = Path | bytes


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_source(source: Source) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    return sha256_file(source)


def member_order(names: Iterable[str]) -> list[str]:
    """Names in archive order, directories (ending in '/') inserted before their contents."""
    files = set(names)
    rest = sorted(n for n in files if n not in FIRST)
    ordered = [n for n in FIRST if n in files]
    seen_dirs: set[str] = set()
    for name in rest:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth]) + "/"
            if folder not in seen_dirs:
                seen_dirs.add(folder)
                ordered.append(folder)
        ordered.append(name)
    return ordered


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    if name.endswith("/"):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def _open_compressed(raw: IO[bytes], compression: str) -> Any:
    # Any: GzipFile and zstandard's writer share only write/close, which is all tarfile uses.
    if compression == "gz":
        # filename="" and mtime=0: the gzip header names nothing and dates nothing.
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
    if compression == "zst":
        try:
            import zstandard
        except ImportError:
            raise KitError(
                "zstd output needs the 'zstandard' package", "pip install zstandard"
            ) from None
        writer = zstandard.ZstdCompressor(level=10, threads=0, write_checksum=True).stream_writer(
            raw, closefd=False
        )
        return writer
    raise KitError(f"unknown compression {compression!r}", "use gz or zst")


def write_archive(
    out: Path, members: Mapping[str, Source], mtime: int, compression: str = "gz"
) -> None:
    """Write `members` (arcname -> file path or bytes) to `out`, atomically."""
    tmp = out.with_name(f".{out.name}.partial")
    try:
        with tmp.open("wb") as raw:
            stream = _open_compressed(raw, compression)
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in member_order(members):
                    inside(
                        out.parent, *name.rstrip("/").split("/")
                    )  # a member name, not a path out
                    if name.endswith("/"):
                        tar.addfile(_info(name, 0, mtime))
                        continue
                    source = members[name]
                    if isinstance(source, bytes):
                        tar.addfile(_info(name, len(source), mtime), io.BytesIO(source))
                    else:
                        with source.open("rb") as fh:
                            size = os.fstat(fh.fileno()).st_size
                            tar.addfile(_info(name, size, mtime), fh)
            stream.close()
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise KitError(
            f"cannot write the bundle {out}: {err}", "check the folder and disk"
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
