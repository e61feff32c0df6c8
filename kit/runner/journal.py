"""The run's journal (append-only JSONL, flushed and fsynced per event) and cell statuses."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class Journal:
    """Appends events to a JSONL file; each write is flushed and fsynced, so a crash loses at
    most the event being written (readers skip a cut last line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._repair_tail()

    def _repair_tail(self) -> None:
        # A crash mid-write can leave a last line without a newline: end it so the next
        # event starts on its own line (the cut line stays, readers skip it).
        if self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write("\n")
                    self._file.flush()

    def append(self, record: dict[str, Any]) -> None:
        record.setdefault("t_ns", time.monotonic_ns())
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file, skipping blank and damaged lines."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        yield from jsonl_objects(f)


def jsonl_objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of JSONL lines, skipping blank and damaged lines (a crash mid-write
    leaves half a line)."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            yield value


def finished_cells(run_dir: Path) -> dict[str, dict[str, Any]]:
    """cell id -> its last line in cells.jsonl."""
    return {rec["cell"]: rec for rec in read_jsonl(run_dir / "cells.jsonl") if "cell" in rec}


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
