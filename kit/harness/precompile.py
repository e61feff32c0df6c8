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
from kit.harness.group import _hooked, _recover, _test_hook, device_fatal


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
        before = backend.compile_counters()
        t0 = time.monotonic_ns()
        try:
            call = backend.call(cell, ids, -1)
            hook = _test_hook(cell)  # tests: a compile call that fails (repetition -1)
            run = _hooked(call.run, -1, hook) if hook else call.run
            timed = backend.timer.measure(run, call.setup())
        except Exception as err:
            out.log(traceback.format_exc(), level="error")
            now = time.monotonic_ns()
            after = backend.compile_counters()
            delta = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
            delta["error"] = f"{type(err).__name__}: {err}".strip()[:300]
            out.emit("phase", phase="precompile", cell=cell["id"], t0_ns=t0, t1_ns=now,
                     ms=(now - t0) / 1e6, detail=delta)  # fmt: skip
            failed += 1
            if device_fatal(err):  # a poisoned CUDA context compiles nothing more
                out.log(
                    f"precompile stopped at cell {cell['id']}: {delta['error']}", level="warning"
                )
                return 3
            # The graphs compiled before the error are in the cache; the cells after it
            # still compile ahead (the measuring process meets the same error in its turn).
            out.log(f"precompile: cell {cell['id']} failed, going on: {delta['error']}",
                    level="warning")  # fmt: skip
            _recover(backend)
            continue
        after = backend.compile_counters()
        delta = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
        out.emit(
            "phase",
            phase="precompile",
            cell=cell["id"],
            t0_ns=timed.t0_ns,
            t1_ns=timed.t1_ns,
            ms=timed.latency_ms,
            detail=delta,
        )
    return 3 if failed else 0


def cache_dirs() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
