"""`python -m kit.harness --input FILE --precompile`: compile a compiled group's shapes ahead
of its measurement, into that group's own (fresh) compiler cache, then exit.

Each cell's first call is made exactly as the measuring process's compile phase makes it
(same cells, same order, same inputs), so the measuring process that later starts from the
same cache directory finds Inductor's FX-graph and Triton kernel caches warm for its own
shapes only. Nothing is timed for the results: the events are `phase` records named
`precompile`, kept in the journal as evidence of what was compiled, where and how long.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from kit.harness.events import Emitter
from kit.harness.group import device_fatal, error_text, first_call, recover
from kit.harness.timing import Timed


def precompile_group(backend_cls: type | None, spec: dict[str, Any], out: Emitter) -> int:
    """Returns 0 when every cell's shapes compiled, 3 after any error (the measuring process
    then compiles what is missing itself). A cell whose first call raises is recorded (its
    `precompile` phase has `error`) and the next cells still compile, unless the error is a
    fatal device error."""
    if backend_cls is None:
        out.log("precompile: backend unavailable", level="warning")
        return 3
    try:
        backend: Any = backend_cls(spec)
        reason = backend.unavailable()
        if reason or not backend.compiles:
            out.log(f"precompile: nothing to compile ({reason or 'eager backend'})")
            return 0
        t0 = time.monotonic_ns()
        details = backend.load()
        t1 = time.monotonic_ns()
        out.emit(
            "phase",
            phase="precompile_load",
            cell=None,
            t0_ns=t0,
            t1_ns=t1,
            ms=(t1 - t0) / 1e6,
            detail=details,
        )
    except Exception as err:
        out.log(f"precompile: load failed: {type(err).__name__}: {err}", level="error")
        return 3
    failed = 0
    for cell in spec["cells"]:
        ids = spec["prompts"][cell["id"]]
        if backend.skip_reason(cell):
            continue
        try:  # tests: the hook may fail a precompile call (repetition -1)
            timed, delta, error = first_call(backend, cell, ids, hooked=True)
        except Exception as err:  # the call's construction or setup raised
            now = time.monotonic_ns()
            timed, delta, error = Timed(0.0, None, now, now, None), {"error": error_text(err)}, err
        out.emit("phase", phase="precompile", cell=cell["id"], t0_ns=timed.t0_ns,
                 t1_ns=timed.t1_ns, ms=timed.latency_ms, detail=delta)  # fmt: skip
        if error is None:
            continue
        out.log("".join(traceback.format_exception(error)), level="error")
        failed += 1
        if device_fatal(error):  # a poisoned CUDA context compiles nothing more
            out.log(f"precompile stopped at cell {cell['id']}: {delta['error']}", level="warning")
            return 3
        # The graphs compiled before the error are in the cache; the cells after it still
        # compile ahead (the measuring process meets the same error in its turn).
        out.log(f"precompile: cell {cell['id']} failed, going on: {delta['error']}",
                level="warning")  # fmt: skip
        recover(backend)
    return 3 if failed else 0


def cache_dirs() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
