"""Timing one call: synchronized perf_counter always, CUDA events as well on a GPU."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from collections.abc import Callable, Iterator
from typing import Any


@dataclasses.dataclass(frozen=True)
class Timed:
    latency_ms: float  # synchronized perf_counter
    cuda_event_ms: float | None
    t0_ns: int  # monotonic stamps, to join telemetry
    t1_ns: int
    result: Any


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one cell's calls (warmup and timed), as timeit
    and pyperf do: a collection otherwise lands inside a random timed call (tens of us to ms,
    against sub-ms compiled calls). Before it, the young generations are collected (what the
    previous cell left), not all three: a full collection of a process holding torch, dynamo
    and a model takes 200-500 ms (0.2-0.5 s per cell on the H200, 20 s of a 54-cell sweep).
    Reference counting still frees everything acyclic; the collector is back on after."""
    was = gc.isenabled()
    gc.collect(1)
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Timer:
    """`measure(fn, state)`: sync, stamp, run, sync, stamp. On CUDA also records events."""

    def __init__(self, torch: Any, device: str) -> None:
        self._torch = torch
        self._cuda = device == "cuda"

    def sync(self) -> None:
        if self._cuda:
            self._torch.cuda.synchronize()

    def measure(self, fn: Callable[[Any], Any], state: Any) -> Timed:
        torch = self._torch
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            # The start event is enqueued on the idle stream before the first stamp: its host
            # cost (a driver call, 10-20 us on the lent H200 VMs) stays out of latency_ms.
            # The end event must precede the final sync, so its cost is inside (FORMATS.md).
            start.record()
            t0_ns = time.monotonic_ns()
            p0 = time.perf_counter_ns()
            result = fn(state)
            end.record()
            torch.cuda.synchronize()
            p1 = time.perf_counter_ns()
            t1_ns = time.monotonic_ns()
            return Timed((p1 - p0) / 1e6, float(start.elapsed_time(end)), t0_ns, t1_ns, result)
        t0_ns = time.monotonic_ns()
        p0 = time.perf_counter_ns()
        result = fn(state)
        p1 = time.perf_counter_ns()
        t1_ns = time.monotonic_ns()
        return Timed((p1 - p0) / 1e6, None, t0_ns, t1_ns, result)
