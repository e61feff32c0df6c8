"""Build synthetic run directories that follow docs/FORMATS.md exactly, for tests.

    from runfactory import make_run_dir  # pytest puts tests/ on sys.path (no __init__.py)
    run = make_run_dir(tmp_path / "run", n_cells=3, n_samples=10,
                       statuses=["ok", "crash", "not_run"], telemetry_rows=50)
    run.path          # the run directory
    run.cells         # the cells as in matrix/cells.json (dicts with ids)
    run.kept[cell_id] # latencies (ms) that should enter statistics, in order
    run.kept_cuda[cell_id], run.span_ns  # CUDA-event times kept; (first, last) t_ns

Everything is deterministic for a given set of arguments (latencies come from a seeded
numpy generator, t_ns from a fixed start), so the same call writes byte-identical files.
Files are written in one pass without fsync, so large runs (10,000 samples, 100,000
telemetry rows) take well under a second or two.

Per-cell `statuses` (default all "ok"):
- `ok`: all warmup and timed samples, `cell_finished` ok, a `cells.jsonl` line.
- `degraded`: like ok, finished `degraded` with a reason.
- `crash`: half of the timed samples, then `cell_finished` crash with a reason.
- `skipped`: no samples; `cell_finished` skipped with a reason.
- `incomplete`: `cell_started` and half the timed samples, no finish, no `cells.jsonl` line.
- `not_run`: nothing in the journal or `cells.jsonl`.
`run_finished` is written only when no cell is `incomplete` or `not_run` and `finished`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

TELEMETRY_HEADER = (
    "t_ns,gpu,sm_clock_mhz,graphics_clock_mhz,mem_clock_mhz,power_w,power_kind,energy_mj,"
    "temp_c,clock_event_reasons,power_violation_ns,thermal_violation_ns,util_gpu_pct,"
    "util_mem_pct,mem_used_mib,pstate"
)
START_NS = 1_000_000_000_000
MODELS = ("gpt2-25m", "gpt2-50m", "gpt2-100m")
DECODE_TOKENS = 64
FINAL_STATUSES = ("ok", "degraded", "crash", "skipped")


def cell_id(fields: dict[str, Any]) -> str:
    """FORMATS.md: the first 16 hex digits of sha256 of the canonical JSON of the fields."""
    body = {k: v for k, v in fields.items() if k != "id"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def make_cell(index: int, mode: str = "prefill", **overrides: Any) -> dict[str, Any]:
    """A complete TR126-like cell (every FORMATS.md field), varied by `index`, with its id."""
    fields: dict[str, Any] = {
        "matrix": "tr126",
        "group": "phase2-dynamic",
        "backend": "transformers-eager",
        "backend_label": "eager",
        "device": "cpu",
        "model": MODELS[index % len(MODELS)],
        "dtype": "fp32",
        "quantization": None,
        "scenario": "token_len",
        "prompt_index": 0,
        "batch_size": 1,
        "concurrency": 1,
        "mode": mode,
        "repetitions": 10,
        "warmup": 2,
        "max_new_tokens": DECODE_TOKENS,
        "token_len": 8 * (index + 1),
        "compile": None,
        "cache": "dynamic",
        "pad_to_multiple": None,
        "cudagraphs": False,
        "sampling": {"do_sample": False, "temperature": 1.0, "top_p": 1.0},
        "seed": 42,
        "extension": False,
    }
    fields.update(overrides)
    return {"id": cell_id(fields), **fields}


@dataclasses.dataclass
class SyntheticRun:
    path: Path
    cells: list[dict[str, Any]]
    kept: dict[str, list[float]]  # per cell: latencies that must enter statistics
    kept_cuda: dict[str, list[float]]
    span_ns: tuple[int, int] = (START_NS, START_NS)


class _Journal:
    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.t_ns = START_NS

    def emit(self, event: str, **fields: Any) -> None:
        self.t_ns += 1000
        record = {"event": event, "t_ns": self.t_ns, **fields}
        self.handle.write(json.dumps(record, separators=(",", ":")) + "\n")


def _samples(journal: _Journal, run: SyntheticRun, cell: dict[str, Any], index: int,
             timed: int, warmup: int, latency: np.ndarray, cuda: bool,
             sample_status: Callable[[int, int], str] | None, keep: bool) -> None:  # fmt: skip
    mode = cell["mode"]
    tokens_in = cell["token_len"] or 16
    tokens_out = 1 if mode == "prefill" else cell["max_new_tokens"]
    for rep in range(warmup + timed):
        is_warmup = rep < warmup
        ms = float(latency[rep])
        status = "ok"
        if not is_warmup and sample_status is not None:
            status = sample_status(index, rep - warmup)
        t0 = journal.t_ns + 500
        t1 = t0 + int(ms * 1e6)
        cuda_ms = round(ms * 0.98, 6) if cuda else None
        journal.emit(
            "sample", cell=cell["id"], phase=mode, rep=rep, warmup=is_warmup, latency_ms=ms,
            cuda_event_ms=cuda_ms, tokens_in=tokens_in, tokens_out=tokens_out, t0_ns=t0,
            t1_ns=t1, status=status, flags=[] if status == "ok" else [status],
        )  # fmt: skip
        journal.t_ns = t1
        if keep and not is_warmup and status == "ok":
            run.kept[cell["id"]].append(ms)
            if cuda_ms is not None:
                run.kept_cuda[cell["id"]].append(cuda_ms)


def _write_telemetry(path: Path, rows: int, span: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    length = span[1] - span[0]
    with path.open("w", encoding="utf-8") as out:
        out.write(TELEMETRY_HEADER + "\n")
        for i in range(rows):
            t = span[0] + length * i // max(1, rows - 1)  # first row at start, last at end
            out.write(
                f"{t},0,{1980 - i % 7},{1980 - i % 7},2619,{250.0 + i % 13:.1f},instant,"
                f"{1_000_000 + i * 25},{55 + i % 5},0,0,0,{90 + i % 10},{40 + i % 7},"
                f"{8192 + i % 3},0\n"
            )


def make_run_dir(
    path: Path,
    n_cells: int = 2,
    n_samples: int = 10,
    *,
    warmup: int = 2,
    statuses: Sequence[str] | None = None,
    modes: Sequence[str] = ("prefill",),
    telemetry_rows: int = 0,
    sample_status: Callable[[int, int], str] | None = None,
    cuda_events: bool = False,
    base_latency_ms: float = 2.0,
    seed: int = 0,
    resumed_first_cell: bool = False,
    truncate_journal: bool = False,
    finished: bool = True,
) -> SyntheticRun:
    """Write a run directory at `path` (created) and return what a reader should find.

    Cell i has mode `modes[i % len(modes)]`, status `statuses[i]`, `warmup` warmup and
    `n_samples` timed repetitions; `sample_status(cell_index, timed_rep)` may mark timed
    samples non-ok (e.g. `length_mismatch`). `resumed_first_cell` writes an interrupted first
    attempt at cell 0 (half its samples), then `interrupted` and `run_resumed`, then the full
    attempt. `truncate_journal` appends half a JSON line without newline, as a crash mid-write
    leaves it. `telemetry_rows` > 0 writes `telemetry/gpu0.csv` covering the run's span.
    """
    statuses = list(statuses) if statuses is not None else ["ok"] * n_cells
    if len(statuses) != n_cells:
        raise ValueError("statuses needs one entry per cell")
    path.mkdir(parents=True, exist_ok=True)
    (path / "matrix").mkdir(exist_ok=True)
    (path / "env").mkdir(exist_ok=True)
    cells = [
        make_cell(i, modes[i % len(modes)], repetitions=n_samples, warmup=warmup)
        for i in range(n_cells)
    ]
    run = SyntheticRun(path, cells, {c["id"]: [] for c in cells}, {c["id"]: [] for c in cells})
    source = b"id: tr126\n# synthetic matrix for tests\n"
    (path / "matrix" / "source.yaml").write_bytes(source)
    (path / "matrix" / "cells.json").write_text(json.dumps(cells, indent=2) + "\n")
    (path / "env" / "host.json").write_text(json.dumps({"hostname": "synthetic"}) + "\n")
    (path / "run.json").write_text(
        json.dumps(
            {
                "schema": 1, "kit_version": "0.1.0", "git_commit": "0" * 40, "git_dirty": False,
                "created_utc": "2025-01-01T00:00:00Z", "argv": ["kit", "run", "--matrix", "tr126"],
                "matrix": {"id": "tr126", "source": "matrix/source.yaml",
                           "sha256": hashlib.sha256(source).hexdigest()},
                "selection": None, "overrides": {}, "runner": "host", "device": "cpu",
                "order": "listed", "order_seed": None, "cell_ids": [c["id"] for c in cells],
            },
            indent=2,
        ) + "\n"
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    final_lines: list[str] = []
    with (path / "journal.jsonl").open("w", encoding="utf-8") as handle:
        journal = _Journal(handle)
        journal.emit("run_started", cells=len(cells))
        journal.emit("group_spawned", group="g0", pid=4242)
        journal.emit("group_started", group={"model": "synthetic"}, pid=4242, ml_stack={})
        for i, (cell, status) in enumerate(zip(cells, statuses, strict=True)):
            if status == "not_run":
                continue
            base = base_latency_ms * (1.0 + 0.5 * i)
            latency = np.round(base * rng.lognormal(0.0, 0.05, warmup + n_samples), 6)
            started = {"cell": cell["id"], "tokens_in": cell["token_len"], "prompt_ids": [1]}
            if i == 0 and resumed_first_cell:
                journal.emit("cell_started", **started)
                _samples(journal, run, cell, i, n_samples // 2, warmup, latency, cuda_events,
                         sample_status, keep=False)  # fmt: skip
                journal.emit("interrupted", signal="SIGINT")
                journal.emit("run_resumed", done=0)
            if status == "skipped":
                reasons = ["backend unavailable on this machine"]
                journal.emit("cell_finished", cell=cell["id"], status=status, reasons=reasons,
                             evidence={})  # fmt: skip
                final_lines.append(json.dumps({"cell": cell["id"], "status": status,
                    "reasons": reasons, "n_samples": 0, "n_ok": 0, "attempt": 1}))  # fmt: skip
                continue
            journal.emit("cell_started", **started)
            timed = n_samples if status in ("ok", "degraded") else n_samples // 2
            _samples(journal, run, cell, i, timed, warmup, latency, cuda_events, sample_status,
                     keep=True)  # fmt: skip
            if status == "incomplete":
                continue
            reasons = {"ok": [], "degraded": ["compile fell back to eager"],
                       "crash": ["child killed by signal 9"]}[status]  # fmt: skip
            journal.emit("cell_finished", cell=cell["id"], status=status, reasons=reasons,
                         evidence={})  # fmt: skip
            final_lines.append(json.dumps({"cell": cell["id"], "status": status,
                "reasons": reasons, "n_samples": warmup + timed,
                "n_ok": len(run.kept[cell["id"]]), "attempt": 1}))  # fmt: skip
        journal.emit("group_finished", group="g0")
        journal.emit("child_exited", group="g0", returncode=0)
        if finished and all(s in FINAL_STATUSES for s in statuses):
            journal.emit("run_finished", cells=len(cells))
        if truncate_journal:
            handle.write('{"event":"sample","cell":"' + cells[0]["id"] + '","phase":"pre')
        run.span_ns = (START_NS, journal.t_ns)
    (path / "cells.jsonl").write_text("".join(line + "\n" for line in final_lines))
    if telemetry_rows > 0:
        _write_telemetry(path / "telemetry" / "gpu0.csv", telemetry_rows, run.span_ns)
    return run
