"""The harness's event stream: one JSON object per line on a private copy of stdout.

At start the harness moves the real stdout aside and points fd 1 at stderr, so that a library
that prints (or a C extension writing to fd 1) can never corrupt the protocol.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, TextIO


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Emitter:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    @classmethod
    def take_stdout(cls) -> Emitter:
        """Keep the protocol on a duplicate of fd 1; send everything else to stderr."""
        sys.stdout.flush()
        proto_fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(os.fdopen(proto_fd, "w", buffering=1, encoding="utf-8"))

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "t_ns": time.monotonic_ns(), **fields}
        self._stream.write(json.dumps(_clean(record), separators=(",", ":")) + "\n")
        self._stream.flush()

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)
