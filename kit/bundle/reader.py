"""Reading bundle archives safely: never extracting to disk, never trusting member names.

`scan` walks an archive once, in stream mode, and hands every safe regular member to a
callback while it is being read; unsafe members (absolute paths, `..`, links, devices, members
over the size cap, duplicates) become problems and are never opened. `BundleFiles` gives
random access by name (for `kit report`), after the same safety checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

GZ_MAGIC = b"\x1f\x8b"
ZST_MAGIC = b"\x28\xb5\x2f\xfd"
DEFAULT_SIZE_CAP = 4 << 30  # 4 GiB per member


class ArchiveError(Exception):
    """The archive cannot be read on; the message is one line for the verify report."""


def compression_of(path: Path) -> str:
    """'gz', 'zst' or 'tar' by magic bytes; raise ArchiveError for anything else."""
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as err:
        raise ArchiveError(f"cannot read {path}: {err.strerror or err}") from None
    if head.startswith(GZ_MAGIC):
        return "gz"
    if head.startswith(ZST_MAGIC):
        return "zst"
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    if not head:
        raise ArchiveError("the file is empty (0 bytes)")
    raise ArchiveError("not a bundle archive (neither .tar.gz, .tar.zst nor .tar)")


@contextlib.contextmanager
def open_stream(path: Path) -> Iterator[IO[bytes]]:
    """The archive's decompressed tar stream (read sequentially)."""
    kind = compression_of(path)
    with path.open("rb") as raw:
        if kind == "zst":
            try:
                import zstandard
            except ImportError:
                raise ArchiveError("reading .tar.zst needs the 'zstandard' package") from None
            yield _ZstdStream(raw, zstandard.ZstdDecompressor())  # type: ignore[misc]
        elif kind == "gz":
            import gzip

            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw


class _ZstdStream(io.RawIOBase):
    """A readable zstd stream that raises EOFError when the input stops mid-frame.

    (zstandard's own stream_reader returns a quiet EOF on a truncated frame.)
    """

    def __init__(self, raw: IO[bytes], decompressor: Any) -> None:
        self._raw = raw
        self._new = decompressor.decompressobj
        self._obj = self._new()
        self._buf = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = size if size is not None and size >= 0 else 1 << 62
        parts: list[bytes] = []
        got = 0
        while got < want:
            if self._pos >= len(self._buf):
                if not self._fill():
                    break
                continue
            piece = self._buf[self._pos : self._pos + (want - got)]
            self._pos += len(piece)
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def _fill(self) -> bool:
        """Decompress the next input chunk into the buffer; False at a clean end."""
        chunk = self._raw.read(1 << 16)
        if not chunk:
            if not self._obj.eof:
                raise EOFError("zstd stream ended before the end of its frame")
            return False
        out: list[bytes] = []
        while chunk:
            if self._obj.eof:  # a following frame
                self._obj = self._new()
            out.append(self._obj.decompress(chunk))
            chunk = self._obj.unused_data if self._obj.eof else b""
        self._buf, self._pos = b"".join(out), 0
        return True

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def member_problem(info: tarfile.TarInfo, size_cap: int) -> str | None:
    """Why this member must not be read, or None when it is a safe file or directory."""
    name = info.name
    if name.startswith("/") or PurePosixPath(name).is_absolute() or (name[1:3] == ":\\"):
        return f"unsafe member {name!r}: absolute path"
    if ".." in PurePosixPath(name).parts or "\\" in name:
        return f"unsafe member {name!r}: path escapes the bundle (..)"
    if info.issym() or info.islnk():
        return f"unsafe member {name!r}: link to {info.linkname!r}"
    if info.ischr() or info.isblk() or info.isfifo():
        return f"unsafe member {name!r}: device or fifo"
    if not (info.isreg() or info.isdir()):
        return f"unsafe member {name!r}: not a regular file (type {info.type!r})"
    if info.size > size_cap:
        return f"member {name!r} is over the size cap ({info.size} > {size_cap} bytes)"
    return None


def classify_read_error(err: BaseException) -> str:
    """One line for an error raised while decompressing or walking the archive."""
    text = str(err) or type(err).__name__
    if "zstd stream ended" in text:
        return "archive is truncated: the zstd stream ends mid-frame"
    if isinstance(err, EOFError) or "unexpected end" in text or "end-of-stream" in text:
        return f"archive is truncated: the gzip or tar stream ends early ({text})"
    if isinstance(err, zlib.error) or "CRC" in text or "Not a gzipped" in text:
        return f"archive is corrupt: compressed data does not decode ({text})"
    if type(err).__name__ == "ZstdError":
        return f"archive is corrupt or truncated: zstd data does not decode ({text})"
    return f"archive is unreadable: {type(err).__name__}: {text}"


@dataclasses.dataclass
class ScanResult:
    members: list[str] = dataclasses.field(default_factory=list)  # regular files, in order
    problems: list[str] = dataclasses.field(default_factory=list)
    fatal: bool = False  # the archive could not be read to its end


def scan(
    path: Path,
    on_file: Callable[[tarfile.TarInfo, IO[bytes]], None],
    size_cap: int = DEFAULT_SIZE_CAP,
) -> ScanResult:
    """Walk `path` once; call `on_file(info, stream)` for each safe regular member."""
    result = ScanResult()
    seen: set[str] = set()
    try:
        # A plain tar is read seekable, so that the data of a member that is not read (an
        # unlisted huge one) is seeked over rather than read; compressed ones stream.
        seekable = compression_of(path) == "tar"
        with (
            open_stream(path) as stream,
            tarfile.open(fileobj=stream, mode="r:" if seekable else "r|") as tar,  # type: ignore[call-overload]
        ):
            for info in tar:
                problem = member_problem(info, size_cap)
                if problem:
                    result.problems.append(problem)
                    continue
                if info.isdir():
                    continue
                name = PurePosixPath(info.name).as_posix()
                if name in seen:
                    result.problems.append(f"duplicate member {name!r}")
                    continue
                seen.add(name)
                result.members.append(name)
                fh = tar.extractfile(info)
                if fh is not None:
                    on_file(info, fh)
            # tarfile stops quietly at a damaged header; reading the compressed stream to its
            # end makes gzip/zstd check their checksums over everything.
            while stream.read(1 << 20):
                pass
    except ArchiveError as err:
        result.problems.append(str(err))
        result.fatal = True
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as err:
        result.problems.append(classify_read_error(err))
        result.fatal = True
    except Exception as err:
        if type(err).__name__ != "ZstdError":
            raise
        result.problems.append(classify_read_error(err))
        result.fatal = True
    return result


class BundleFiles:
    """Random access to a bundle's members by name (members are read, never extracted)."""

    def __init__(self, path: Path, size_cap: int = DEFAULT_SIZE_CAP) -> None:
        self._stack = contextlib.ExitStack()
        kind = compression_of(path)
        try:
            if kind == "zst":
                # zstd streams cannot seek: decompress the tar (not its members) to a temp file.
                tmp = self._stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
                with open_stream(path) as stream:
                    while chunk := stream.read(1 << 20):
                        tmp.write(chunk)
                tmp.seek(0)
                self._tar = tarfile.open(fileobj=tmp, mode="r:")  # noqa: SIM115
            else:
                # closed by close(), through the exit stack
                if kind == "gz":
                    self._tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115
                else:
                    self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115
            self._stack.callback(self._tar.close)
            self._infos: dict[str, tarfile.TarInfo] = {}
            for info in self._tar.getmembers():
                problem = member_problem(info, size_cap)
                if problem:
                    raise ArchiveError(problem + "; run kit verify")
                if info.isreg():
                    self._infos[PurePosixPath(info.name).as_posix()] = info
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            self._stack.close()
            raise ArchiveError(classify_read_error(err)) from None

    def names(self) -> list[str]:
        return list(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def open(self, name: str) -> IO[bytes]:
        fh = self._tar.extractfile(self._infos[name])
        if fh is None:
            raise ArchiveError(f"member {name!r} cannot be read")
        return fh

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> BundleFiles:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- the one door for readers of results: report, compare, claims ------------------------

NOT_A_BUNDLE = "not a bundle: unverified"


@dataclasses.dataclass
class Opened:
    """A bundle (verified, or accepted unverified) or a run directory, ready to read.

    `source` gives the members by name (`kit.bundle.report_data.Source`); `manifest` is the
    manifest built from the run for a run directory and None for an archive (read it from the
    `manifest.json` member); `stamp` is None for a verified bundle, else the line every
    output made from it must carry (`UNVERIFIED: <reason>` or `not a bundle: unverified`).
    """

    path: Path
    kind: str  # "bundle" | "run"
    source: Any
    manifest: dict[str, Any] | None
    stamp: str | None

    @property
    def verified(self) -> bool:
        return self.stamp is None


def verification_reason(problems: list[str]) -> str:
    """The verifier's problems as one line: the first, and how many more there are."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else "")


@contextlib.contextmanager
def open_verified(path: Path, *, unverified: bool = False) -> Iterator[Opened]:
    """Open a bundle archive after `kit verify`'s checks, or a run directory.

    A bundle that fails verification raises KitError with the verifier's one-line reason,
    unless `unverified` is set: then it opens anyway, stamped `UNVERIFIED: <reason>`.
    A run directory is staged as a bundle would be (members, manifest) and stamped
    `not a bundle: unverified`. Raises KitError for a path that is neither.
    """
    from kit.errors import KitError

    path = Path(path)
    if path.is_dir():
        from kit.bundle.build import build_manifest
        from kit.bundle.report_data import MappingSource
        from kit.bundle.rundir import RunDir
        from kit.bundle.stage import stage

        with tempfile.TemporaryDirectory(prefix="kit-read-") as tmp:
            staged = stage(RunDir.open(path), Path(tmp))
            yield Opened(
                path, "run", MappingSource(staged.members), build_manifest(staged), NOT_A_BUNDLE
            )
        return
    if not path.exists():
        raise KitError(f"not found: {path}", "give a bundle (.tar.gz/.tar.zst) or a run directory")
    from kit.bundle.verify import verify_bundle

    result = verify_bundle(path)
    stamp = None
    if result.problems:
        reason = verification_reason(result.problems)
        if not unverified:
            raise KitError(
                f"{path} fails verification: {reason}",
                f"`kit verify {path}` lists every problem; --unverified renders it anyway, "
                "stamped UNVERIFIED",
            )
        stamp = f"UNVERIFIED: {reason}"
    try:
        files = BundleFiles(path)
    except ArchiveError as err:
        raise KitError(f"cannot read {path}: {err}", f"run `kit verify {path}`") from None
    with files:
        yield Opened(path, "bundle", files, None, stamp)
