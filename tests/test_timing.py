"""The garbage collector is paused for a cell's calls (warmup and timed) and back on after."""

from __future__ import annotations

import gc
import io
import json
from typing import Any

import pytest

from kit.harness.backends.base import Call, Verdict
from kit.harness.events import Emitter
from kit.harness.group import run_cell
from kit.harness.timing import Timer
from kit.matrix import load_matrix, parse_selection, select_cells


class Recording:
    """A backend whose calls note whether the collector was on, and leave a reference cycle."""

    compiles = False

    def __init__(self, fail_at: int | None = None) -> None:
        self.timer = Timer(None, "cpu")
        self.seen: list[bool] = []
        self.fail_at = fail_at

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        def run(_state: Any) -> int:
            self.seen.append(gc.isenabled())
            if rep == self.fail_at:
                raise RuntimeError("planted failure")
            a: list[Any] = []
            a.append(a)  # cyclic garbage: only the collector frees it
            return 1

        return Call(lambda: None, run, lambda r: [r])

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        return Verdict()


def _cell() -> dict[str, Any]:
    cell = select_cells(load_matrix("tr147").cells, parse_selection("group=v1-prefill"))[0]
    return cell.replace(device="cpu", repetitions=5, warmup=2).to_dict()


def test_collector_is_off_for_every_call_of_a_cell_and_back_on_after() -> None:
    assert gc.isenabled()
    backend = Recording()
    sink = io.StringIO()
    run_cell(backend, _cell(), [[1, 2, 3]], Emitter(sink))  # type: ignore[arg-type]
    assert backend.seen == [False] * 7  # 2 warmup + 5 timed calls
    assert gc.isenabled()
    events = [json.loads(line) for line in sink.getvalue().splitlines()]
    finished = next(e for e in events if e["event"] == "cell_finished")
    assert finished["status"] == "ok"
    assert finished["evidence"]["timing"] == "perf_counter; gc paused"


def test_collector_is_back_on_when_a_call_raises() -> None:
    backend = Recording(fail_at=3)
    with pytest.raises(RuntimeError, match="planted failure"):
        run_cell(backend, _cell(), [[1, 2, 3]], Emitter(io.StringIO()))  # type: ignore[arg-type]
    assert backend.seen == [False] * 4
    assert gc.isenabled()
