"""The UI's plain logic (kit.tui.models): run progress, runnable cells, estimates, runs list."""

from __future__ import annotations

from pathlib import Path

from runfactory import make_run_dir

from kit.matrix import load_matrix
from kit.tui.models.gpu import reasons_in_words
from kit.tui.models.matrix_tree import build_tree, cell_problem, estimate_s
from kit.tui.models.progress import RunProgress
from kit.tui.models.results import histogram
from kit.tui.models.runs import list_runs


def _cells(n: int = 3) -> list:
    return [c.replace(device="cpu", repetitions=4) for c in load_matrix("tr126").cells[:n]]


def test_progress_follows_events_and_keeps_failures() -> None:
    now = [0.0]
    cells = _cells()
    progress = RunProgress(cells, clock=lambda: now[0])
    a, b = cells[0].id, cells[1].id
    progress.apply({"event": "cell_started", "cell": a})
    progress.apply({"event": "sample", "cell": a, "phase": "prefill", "rep": 0, "warmup": True,
                    "status": "ok", "latency_ms": 50.0})  # fmt: skip
    for rep, ms in enumerate((3.0, 1.0, 2.0), start=1):
        progress.apply({"event": "sample", "cell": a, "phase": "prefill", "rep": rep,
                        "warmup": False, "status": "ok", "latency_ms": ms})  # fmt: skip
    live = progress.current_cell()
    assert live is not None and live.median_ms == 2.0  # the warmup is left out
    assert progress.eta_s() is None
    now[0] = 10.0
    progress.apply({"event": "cell_finished", "cell": a, "status": "ok", "reasons": []})
    progress.apply({"event": "cell_started", "cell": b})
    progress.apply({"event": "cell_finished", "cell": b, "status": "crash", "reasons": ["OOM"]})
    assert progress.done == 2 and progress.current is None
    assert progress.eta_s() == 5.0  # 5 s per cell, one left
    assert progress.failures == [(b, "crash: OOM")]
    assert ("error", f"{b} crash: OOM") in progress.log
    progress.apply({"event": "interrupted"})
    assert progress.state == "interrupted"


def test_resumed_progress_counts_earlier_cells_but_not_in_the_eta() -> None:
    cells = _cells()
    progress = RunProgress(cells, finished=[cells[0].id], clock=lambda: 0.0)
    assert progress.done == 1 and progress.eta_s() is None


def test_cells_that_cannot_run_here_say_why() -> None:
    cell = load_matrix("tr126").cells[0]
    assert cell.device == "cuda"
    assert "needs a GPU" in (cell_problem(cell, False, None, "host") or "")
    assert cell_problem(cell, False, "cpu", "host") is None
    assert cell_problem(cell, True, None, "host") is None
    tensorrt = next(c for c in load_matrix("tr117").cells if c.backend == "tensorrt")
    # TensorRT is implemented, but this host has no `tensorrt` module: the cell says so.
    assert "needs Python module 'tensorrt'" in (cell_problem(tensorrt, True, None, "host") or "")
    # What a backend needs comes from the backends' data (kit/matrix/builtin/backends.yaml).
    ollama = next(c for c in load_matrix("tr126").cells if c.backend == "ollama")
    problem = cell_problem(ollama, True, None, "host")
    assert problem is None or "needs Python module 'ollama'" in problem


def test_tree_levels_and_estimate_refined_by_past_runs() -> None:
    matrix = load_matrix("tr126")
    root = build_tree(matrix.id, matrix.cells)
    group = root.children[0]
    backend = group.children[0]
    model = backend.children[0]
    leaf = model.children[0]
    assert root.label == "TR126" and group.label == "phase2-baseline"
    assert backend.label.startswith("transformers-eager") and model.label.startswith("gpt2-")
    assert " / " in leaf.label and not leaf.children
    assert len(root.cell_ids) == len(matrix.cells)
    cell = matrix.cells[0]
    guess, from_past = estimate_s([cell], "cpu", 10, 0, {})
    key = (cell.backend, cell.model, cell.mode, "cpu")
    refined, from_past2 = estimate_s([cell], "cpu", 10, 0, {key: 1.0})
    assert from_past == 0 and from_past2 == 1 and refined > guess


def test_throttle_reasons_in_words_leave_idle_out() -> None:
    assert reasons_in_words(0x1) == []
    assert reasons_in_words(0x4 | 0x40) == ["power cap (software)", "thermal slowdown (hardware)"]


def test_histogram_counts_every_value() -> None:
    lines = histogram([1.0, 1.1, 2.0, 2.0], bins=4, width=8)
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == 4


def test_runs_list_status(tmp_path: Path) -> None:
    make_run_dir(tmp_path / "a", n_cells=2)
    make_run_dir(tmp_path / "b", n_cells=2, statuses=["ok", "not_run"], finished=False)
    runs = {r.path.name: r for r in list_runs(tmp_path)}
    assert runs["a"].status == "finished" and not runs["a"].resumable
    assert runs["b"].resumable and runs["b"].finished == 1


def test_docker_runner_marks_cells_whose_image_is_missing() -> None:
    from kit.matrix import load_matrix
    from kit.tui.models.matrix_tree import LocalImages

    cell = next(c for c in load_matrix("tr126").cells if c.backend == "transformers-eager")
    missing = cell_problem(cell, True, "cpu", "docker", LocalImages(tags=frozenset()))
    assert missing is not None and "kit images build torch" in missing
    present = cell_problem(
        cell, True, "cpu", "docker", LocalImages(tags=frozenset({"llm-repro-kit/torch:cpu"}))
    )
    assert present is None
    down = cell_problem(
        cell, True, "cpu", "docker", LocalImages(reason="the daemon cannot be reached")
    )
    assert down is not None and down.startswith("docker:")
    assert cell_problem(cell, True, "cpu", "host", LocalImages(tags=frozenset())) is None


def test_progress_says_groups_compile_ahead_and_wait_their_turn() -> None:
    cells = _cells()
    progress = RunProgress(cells, clock=lambda: 0.0)
    gid = cells[0].group_id()
    progress.apply({"event": "precompile_phase_started", "groups": [gid], "parallel": 1, "park": True})  # fmt: skip
    assert progress.phase == "compiling 1 group(s) ahead"
    progress.apply({"event": "group_parked", "group_id": gid, "pid": 1, "wall_ms": 12500.0})
    text = "\n".join(str(line) for line in progress.log)
    assert "nothing measured meanwhile" in text
    assert f"group {gid} compiled, waiting its turn (12.5 s)" in text
    progress.apply({"event": "group_ended_unparked", "group_id": gid, "pid": 2, "wall_ms": 30844.6,
                    "returncode": 3, "signal": None, "finished": {"crash": 1},
                    "first_crash": "exception: RuntimeError: CUDA error"})  # fmt: skip
    level, last = progress.log[-1]
    assert level == "warning"
    assert f"group {gid} ended while compiling ahead (30.8 s): exception: RuntimeError: CUDA error" in last  # fmt: skip


def test_estimate_counts_one_compile_per_shape_growing_with_the_model() -> None:
    """A compiled group costs a compile per input shape (two when shapes are dynamic), more
    for a larger model; its eager twin costs none (same reps, same per-rep guess)."""
    from kit.matrix import load_matrix, parse_selection, select_cells
    from kit.matrix.estimate import COMPILE_BASE_S, COMPILE_PER_BPARAM_S, parameters

    def est(matrix: str, selection: str) -> tuple[float, int]:
        cells = select_cells(load_matrix(matrix).cells, parse_selection(selection))
        return estimate_s(cells, None, None, None, {})[0], len(cells)

    def compile_s(model: str) -> float:
        return COMPILE_BASE_S + COMPILE_PER_BPARAM_S * parameters(model) / 1e9

    assert 3.0e9 < parameters("qwen2.5-3b") < 3.2e9 and parameters("llama3.2:1b") == 0
    for model in ("gpt2-25m", "qwen2.5-3b"):  # v1: dynamic=False, five token lengths
        compiled, n = est("tr147", f"group=v1-prefill,model={model},backend=transformers-compile")
        eager, _ = est("tr147", f"group=v1-prefill,model={model},backend=transformers-eager")
        assert n == 5 and abs((compiled - eager) - 5 * compile_s(model)) < 1e-6
    # phase-2 dynamic: nine prompts, dynamic=True: two compiles
    compiled, n = est("tr126", "group=phase2-dynamic,model=gpt2-25m,backend=transformers-compile")
    eager, _ = est("tr126", "group=phase2-dynamic,model=gpt2-25m,backend=transformers-eager")
    assert n == 9 and abs((compiled - eager) - 2 * compile_s("gpt2-25m")) < 1e-6
