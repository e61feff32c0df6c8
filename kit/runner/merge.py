"""Join run directories into one ordinary run directory (docs/FORMATS.md, "Merged run").

The inputs are Slurm tasks of one sweep (`kit merge SWEEP`) or separate `kit run` calls
(`kit merge DIR1 DIR2 ...`). The output is a run directory that `kit bundle`, `kit verify`
and `kit report` read as they read any other: one `cells.jsonl` (each cell's final record,
with the task that finished it), one `journal.jsonl` (every task's events, each naming its
task), telemetry concatenated per GPU, and beside them every task's own files verbatim under
`tasks/<task>/` and each node's fingerprint once under `env/nodes/<hash>.json`.

Monotonic clocks of different machines (or of one machine across reboots) overlap, and the
bundle joins telemetry to cells by time: a task whose clock range begins before the previous
task's range ends is shifted (journal `t_ns`/`t0_ns`/`t1_ns`, telemetry `t_ns`) to start one
second after it; `run.json` `merged.inputs[].t_ns_offset` records each shift. A task already
later than the one before is not shifted.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kit import __version__
from kit.errors import KitError
from kit.runner.journal import read_jsonl, write_json_atomic

TIME_KEYS = ("t_ns", "t0_ns", "t1_ns")
GAP_NS = 1_000_000_000
LIFECYCLE = ("run_started", "run_resumed", "run_finished", "interrupted")
FINAL_STATUSES = ("ok", "degraded", "crash", "skipped")
VOLATILE_GPU_KEYS = ("temperature_c", "pstate", "fan_speed_pct")


@dataclasses.dataclass(frozen=True)
class MergeInput:
    """One run directory to merge; `name` is its folder under the merged run's `tasks/`."""

    name: str
    path: Path
    run: dict[str, Any]
    # A bundle the run directory was rebuilt from (`from_bundle`): its path and content hash.
    origin: dict[str, Any] | None = None

    @classmethod
    def open(cls, path: Path, name: str) -> MergeInput:
        run_json = path / "run.json"
        if not run_json.is_file() or not (path / "matrix" / "cells.json").is_file():
            raise KitError(
                f"{path} is not a run directory (no run.json or matrix/cells.json)",
                "give the --out folders of `kit run` calls, or a sweep folder of `kit submit`",
            )
        try:
            run = json.loads(run_json.read_text(encoding="utf-8"))
        except ValueError as err:
            raise KitError(f"{run_json} is not readable JSON: {err}") from None
        return cls(name=name, path=path, run=run if isinstance(run, dict) else {})

    def final_records(self) -> dict[str, dict[str, Any]]:
        """cell id -> its last cells.jsonl line, for final statuses only."""
        last: dict[str, dict[str, Any]] = {}
        for rec in read_jsonl(self.path / "cells.jsonl"):
            if "cell" in rec:
                last[str(rec["cell"])] = rec
        return {c: r for c, r in last.items() if r.get("status") in FINAL_STATUSES}

    def cells(self) -> list[dict[str, Any]]:
        raw = json.loads((self.path / "matrix" / "cells.json").read_text(encoding="utf-8"))
        return [c for c in raw if isinstance(c, dict)]


@dataclasses.dataclass(frozen=True)
class MergeResult:
    out: Path
    inputs: list[str]
    counts: dict[str, int]
    total: int
    missing_cells: list[str]
    missing_groups: list[str]
    shifted: dict[str, int]

    @property
    def complete(self) -> bool:
        return not self.missing_cells


def mixed_tokenization(run_dir: Path) -> list[str]:
    """One sentence per model whose scenario prompts the merged run fed both exactly (its own
    tokenizer) and approximately (none found), from the journal's `cell_started`; such cells
    can have other token counts for one prompt (claims and `kit compare` then refuse to pool
    or compare them). Token-length cells get exactly `token_len` ids either way: not counted."""
    cells = {c["id"]: c for c in json.loads((run_dir / "matrix" / "cells.json").read_text())}
    methods: dict[str, dict[str, int]] = {}
    for event in read_jsonl(run_dir / "journal.jsonl"):
        cell = cells.get(str(event.get("cell")))
        method = event.get("token_method")
        if event.get("event") != "cell_started" or cell is None or cell.get("token_len"):
            continue
        if method in ("exact", "approximate"):
            counts = methods.setdefault(str(cell.get("model")), {})
            counts[method] = counts.get(method, 0) + 1
    return [
        f"{model}: prompts tokenized exactly in {m['exact']} cell starts and approximately "
        f"in {m['approximate']} (inputs made with and without its tokenizer)"
        for model, m in sorted(methods.items())
        if len(m) == 2
    ]


def task_names(paths: Iterable[Path]) -> list[str]:
    """Unique folder names for `tasks/`: each directory's own name, numbered on clashes."""
    names: list[str] = []
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name).strip("-.") or "run"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def check_compatible(inputs: list[MergeInput], force: bool) -> list[str]:
    """Refuse inputs of different matrices or kit versions (unless `force`); the differences."""
    differences: list[str] = []
    first = inputs[0]
    for other in inputs[1:]:
        for what, get in (
            ("matrix", lambda s: (s.run.get("matrix") or {}).get("sha256")),
            ("kit version", lambda s: s.run.get("kit_version")),
            ("GPU models", gpu_models),
        ):
            a, b = get(first), get(other)
            if what == "GPU models" and None in (a, b):
                continue  # an input without a fingerprint (only hand-made runs lack one)
            if a != b:
                differences.append(f"{what}: {first.name} has {a}, {other.name} has {b}")
    if differences and not force:
        raise KitError(
            "the runs differ: " + "; ".join(differences),
            "merge only runs of one matrix, kit version and GPU model (one run is read as one "
            "machine's numbers), or pass --force (recorded in run.json)",
        )
    return differences


def gpu_models(source: MergeInput) -> str | None:
    """The GPU models the input's fingerprint lists (gpu_models_at). Cells of two GPU models
    in one run would be read as one machine's numbers."""
    return gpu_models_at(source.path)


def gpu_models_at(run_dir: Path) -> str | None:
    """The GPU models a run directory's env/gpu.json lists ("NVIDIA H200", "2x NVIDIA H100
    80GB HBM3"; "none" for a machine without one), None where it has no fingerprint."""
    path = Path(run_dir) / "env" / "gpu.json"
    return gpu_models_in(path.read_bytes()) if path.is_file() else None


def gpu_models_in(text: str | bytes | None) -> str | None:
    """models_of an env/gpu.json text (a file's or a bundle member's); None without one or
    when it is not a JSON object."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return models_of(record) if isinstance(record, dict) else None


def models_of(gpu_json: dict[str, Any]) -> str:
    """The GPU models of an env/gpu.json record, counted ("2x NVIDIA H200"; "none")."""
    gpus = gpu_json.get("gpus") or []
    names: dict[str, int] = {}
    for gpu in gpus:
        name = str(gpu.get("name") or "unknown") if isinstance(gpu, dict) else "unknown"
        names[name] = names.get(name, 0) + 1
    if not names:
        return "none"
    return ", ".join(f"{n}x {name}" if n > 1 else name for name, n in sorted(names.items()))


def latest_input(inputs: list[MergeInput]) -> MergeInput:
    """The input created last (run.json created_utc; on a tie or without one, the later
    given). Its matrix is the merged run's: a forced merge of a matrix that changed between
    calls is described by the newest definition."""
    best = inputs[0]
    for source in inputs[1:]:
        if str(source.run.get("created_utc") or "") >= str(best.run.get("created_utc") or ""):
            best = source
    return best


def final_owner(
    inputs: list[MergeInput], later_wins: bool = False, replaced: list[dict[str, Any]] | None = None
) -> dict[str, tuple[int, dict[str, Any]]]:
    """cell id -> (index of the input that finished it, its final record). Two inputs with a
    final result for one cell are refused (which one is right is not the kit's to guess),
    unless `later_wins`: then the later input's result is kept and each replaced one is
    appended to `replaced` (recorded in run.json; its files stay under tasks/)."""
    owner: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, source in enumerate(inputs):
        for cell, rec in source.final_records().items():
            if cell in owner:
                j = owner[cell][0]
                if not later_wins:
                    raise KitError(
                        f"cell {cell} has a final result in both {inputs[j].name} "
                        f"({owner[cell][1].get('status')}) and {source.name} ({rec.get('status')})",
                        "merge only one of these runs, rerun that cell in one of them, or pass "
                        "--later-wins to keep the later run's result (recorded in run.json)",
                    )
                if replaced is not None:
                    replaced.append({
                        "cell": cell, "kept": source.name, "kept_status": rec.get("status"),
                        "dropped": inputs[j].name, "dropped_status": owner[cell][1].get("status"),
                    })  # fmt: skip
            owner[cell] = (i, rec)
    return owner


def merge_runs(
    inputs: list[MergeInput],
    out: Path,
    *,
    force: bool = False,
    cell_ids: list[str] | None = None,
    cells: list[dict[str, Any]] | None = None,
    groups_of: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    argv: tuple[str, ...] = (),
    later_wins: bool = False,
) -> MergeResult:
    """Write the merged run directory `out` (must not hold a run) from `inputs` (in order).

    `cell_ids`/`cells`: the planned cells (a sweep's plan); default the union of the inputs'.
    `groups_of`: cell id -> planned group, to name the groups with missing cells.
    Raises KitError on incompatible inputs or two final results for one cell."""
    if not inputs:
        raise KitError("nothing to merge", "give run directories or a sweep folder")
    if out.exists() and any(out.iterdir()):
        raise KitError(f"{out} exists and is not empty", "choose a new --out folder")
    differences = check_compatible(inputs, force)
    replaced: list[dict[str, Any]] = []
    owner = final_owner(inputs, later_wins, replaced)
    latest = latest_input(inputs)
    if cells is None:
        seen: dict[str, dict[str, Any]] = {}
        for source in [latest, *(s for s in inputs if s is not latest)]:
            for cell in source.cells():  # a cell defined by several inputs: the latest's
                seen.setdefault(str(cell.get("id")), cell)
        order = [cid for source in inputs for cid in _cell_order(source)]
        cell_ids = list(dict.fromkeys(order + list(seen)))
        cells = [seen[c] for c in cell_ids if c in seen]
    assert cell_ids is not None
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix").mkdir()
    # The matrix of the latest input (the same file for all unless --force let them differ)
    shutil.copyfile(latest.path / "matrix" / "source.yaml", out / "matrix" / "source.yaml")
    write_json_atomic(out / "matrix" / "cells.json", cells)

    spans = [_clock_span(s.path) for s in inputs]
    offsets = _offsets(spans)
    _copy_verbatim(inputs, out)
    starts = [span[0] + offsets[i] for i, span in enumerate(spans) if span is not None]
    dropped = _write_journal(inputs, out, offsets, owner, len(cell_ids), min(starts, default=0),
                             {(r["cell"], r["dropped"]) for r in replaced})  # fmt: skip
    _write_cells(inputs, out, owner, cell_ids)
    _write_telemetry(inputs, out, offsets)
    _write_env(inputs, out)
    _write_group_logs(inputs, out)

    missing = [c for c in cell_ids if c not in owner]
    missing_groups = sorted({(groups_of or {}).get(c, "?") for c in missing}) if missing else []
    counts: dict[str, int] = {}
    for cid in cell_ids:
        status = owner[cid][1].get("status", "unknown") if cid in owner else "missing"
        counts[str(status)] = counts.get(str(status), 0) + 1
    first = inputs[0].run
    header = {
        "schema": first.get("schema", 1),
        "kit_version": first.get("kit_version"),
        "git_commit": first.get("git_commit"),
        "git_dirty": first.get("git_dirty"),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(argv),
        "matrix": latest.run.get("matrix"),
        **{
            k: first.get(k)
            for k in ("selection", "overrides", "runner", "device", "order", "order_seed")
        },
        "settings": first.get("settings", {}),
        "cell_ids": cell_ids,
        "merged": {
            "merged_by": __version__,
            "complete": not missing,
            "missing_cells": missing,
            "missing_groups": missing_groups,
            "forced_differences": differences,
            "matrix_from": latest.name,
            "dropped_partial_events": dropped,
            "replaced_results": replaced,
            "inputs": [
                {
                    "task": s.name,
                    "path": str(s.origin["path"]) if s.origin else str(s.path),
                    **({"bundle": s.origin} if s.origin else {}),
                    "kit_version": s.run.get("kit_version"),
                    "git_commit": s.run.get("git_commit"),
                    "created_utc": s.run.get("created_utc"),
                    "selection": s.run.get("selection"),
                    "slurm": s.run.get("slurm"),
                    "t_ns_offset": offsets[i],
                    "cells_finished": sum(1 for o in owner.values() if o[0] == i),
                }
                for i, s in enumerate(inputs)
            ],
            **(extra or {}),
        },
    }
    write_json_atomic(out / "run.json", header)
    _post_process(out)
    return MergeResult(
        out=out,
        inputs=[s.name for s in inputs],
        counts=counts,
        total=len(cell_ids),
        missing_cells=missing,
        missing_groups=missing_groups,
        shifted={s.name: offsets[i] for i, s in enumerate(inputs) if offsets[i]},
    )


def _cell_order(source: MergeInput) -> list[str]:
    ids = source.run.get("cell_ids")
    if isinstance(ids, list):
        return [str(i) for i in ids]
    return [str(c.get("id")) for c in source.cells()]


# -- clocks ----------------------------------------------------------------------------------
def _clock_span(run_dir: Path) -> tuple[int, int] | None:
    low: int | None = None
    high: int | None = None
    for value in _times(run_dir):
        low = value if low is None else min(low, value)
        high = value if high is None else max(high, value)
    return None if low is None or high is None else (low, high)


def _times(run_dir: Path) -> Iterator[int]:
    for event in read_jsonl(run_dir / "journal.jsonl"):
        for key in TIME_KEYS:
            value = event.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                yield value
    for path in sorted((run_dir / "telemetry").glob("gpu*.csv")):
        for row in _csv_rows(path):
            if row.get("t_ns", "").isdigit():
                yield int(row["t_ns"])


def _offsets(spans: list[tuple[int, int] | None]) -> list[int]:
    offsets: list[int] = []
    end: int | None = None
    for span in spans:
        if span is None:
            offsets.append(0)
            continue
        low, high = span
        offset = 0 if end is None or low > end else end + GAP_NS - low
        offsets.append(offset)
        end = high + offset
    return offsets


def _shift(event: dict[str, Any], offset: int) -> dict[str, Any]:
    if not offset:
        return event
    shifted = dict(event)
    for key in TIME_KEYS:
        value = shifted.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            shifted[key] = value + offset
    return shifted


# -- files -----------------------------------------------------------------------------------
def _copy_verbatim(inputs: list[MergeInput], out: Path) -> None:
    """tasks/<task>/: each input's run.json, cells.jsonl and journal.jsonl byte for byte."""
    for source in inputs:
        folder = out / "tasks" / source.name
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("run.json", "cells.jsonl", "journal.jsonl"):
            if (source.path / name).is_file():
                shutil.copyfile(source.path / name, folder / name)


def _write_journal(
    inputs: list[MergeInput],
    out: Path,
    offsets: list[int],
    owner: dict[str, tuple[int, dict[str, Any]]],
    total: int,
    first_t: int,
    replaced: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> int:
    """The merged journal; returns how many events were left out (a cell's events from an
    input that did not finish it, placed after the input that did: they would reset it; and
    every event of a result replaced under --later-wins)."""
    dropped = 0
    last_t = first_t
    with (out / "journal.jsonl").open("w", encoding="utf-8") as journal:

        def put(event: dict[str, Any]) -> None:
            journal.write(json.dumps(event, separators=(",", ":")) + "\n")

        put({"event": "run_started", "cells": total, "finished": 0, "merged": True,
             "tasks": [s.name for s in inputs], "kit_version": __version__, "t_ns": first_t})  # fmt: skip
        for i, source in enumerate(inputs):
            for event in read_jsonl(source.path / "journal.jsonl"):
                cell = event.get("cell")
                if isinstance(cell, str) and (
                    (cell in owner and owner[cell][0] < i) or (cell, source.name) in replaced
                ):
                    dropped += 1
                    continue
                merged = _shift(event, offsets[i])
                name = str(merged.get("event"))
                if name in LIFECYCLE:
                    merged["event"] = f"task_{name}"
                merged["task"] = source.name
                if isinstance(merged.get("t_ns"), int):
                    last_t = max(last_t, int(merged["t_ns"]))
                put(merged)
        counts: dict[str, int] = {}
        for _, rec in owner.values():
            counts[str(rec.get("status"))] = counts.get(str(rec.get("status")), 0) + 1
        final = "run_finished" if len(owner) >= total else "interrupted"
        put({"event": final, "merged": True, "counts": counts, "t_ns": last_t + 1})
    return dropped


def _write_cells(
    inputs: list[MergeInput],
    out: Path,
    owner: dict[str, tuple[int, dict[str, Any]]],
    cell_ids: list[str],
) -> None:
    with (out / "cells.jsonl").open("w", encoding="utf-8") as fh:
        for cid in cell_ids + sorted(set(owner) - set(cell_ids)):
            if cid in owner:
                i, rec = owner[cid]
                fh.write(json.dumps({**rec, "task": inputs[i].name}, separators=(",", ":")) + "\n")


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _write_telemetry(inputs: list[MergeInput], out: Path, offsets: list[int]) -> None:
    """telemetry/gpuN.csv: every input's rows for GPU N, in input order, clocks shifted."""
    headers: dict[str, list[str]] = {}
    for i, source in enumerate(inputs):
        for path in sorted((source.path / "telemetry").glob("gpu*.csv")):
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None:
                    continue
                target = out / "telemetry" / path.name
                if path.name not in headers:
                    headers[path.name] = header
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("w", newline="", encoding="utf-8") as new:
                        csv.writer(new, lineterminator="\n").writerow(header)
                elif headers[path.name] != header:
                    raise KitError(
                        f"telemetry/{path.name} of {source.name} has other columns than the first input's",
                        "merge runs of one kit version",
                    )
                col = header.index("t_ns") if "t_ns" in header else None
                with target.open("a", newline="", encoding="utf-8") as new:
                    writer = csv.writer(new, lineterminator="\n")
                    for row in reader:
                        if col is not None and offsets[i] and row[col].isdigit():
                            row[col] = str(int(row[col]) + offsets[i])
                        writer.writerow(row)


def node_hash(host: dict[str, Any], gpu: dict[str, Any]) -> str:
    """A node's identity: its host record (less the environment variables, which name the
    job) and its GPUs' fixed facts (less temperature, performance state, fan)."""
    stable_host = {k: v for k, v in host.items() if k != "env"}
    gpus = [
        {k: v for k, v in g.items() if k not in VOLATILE_GPU_KEYS}
        for g in gpu.get("gpus") or []
        if isinstance(g, dict)
    ]
    text = json.dumps({"host": stable_host, "gpus": gpus}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_env(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_env(inputs: list[MergeInput], out: Path) -> None:
    """env/host.json and env/gpu.json of the first input; env/nodes/<hash>.json once per
    node, listing its tasks; each input's process and container records under env/tasks/<task>/;
    `kit gate --record` records (env/gate-<matrix>.json) from the latest input that has one,
    every input's also under env/tasks/<task>/."""
    env = out / "env"
    env.mkdir(parents=True, exist_ok=True)
    nodes: dict[str, dict[str, Any]] = {}
    for source in inputs:
        src_env = source.path / "env"
        host, gpu = _read_env(src_env / "host.json"), _read_env(src_env / "gpu.json")
        for name in ("host.json", "gpu.json", "nvidia-smi.xml"):
            if (src_env / name).is_file() and not (env / name).exists():
                shutil.copyfile(src_env / name, env / name)
        if host or gpu:
            digest = node_hash(host, gpu)
            slurm = source.run.get("slurm") or {}
            node = nodes.setdefault(
                digest,
                {"schema": 1, "hash": digest, "host": host, "gpu": gpu, "tasks": []},
            )
            node["tasks"].append(
                {
                    "task": source.name,
                    "node": slurm.get("node"),
                    "slurm_job_id": slurm.get("job_id"),
                    "slurm_array_job_id": slurm.get("array_job_id"),
                    "slurm_array_task_id": slurm.get("array_task_id"),
                    "slurm_restart_count": slurm.get("restart_count"),
                    "container": _read_env(src_env / "container.json") or None,
                }
            )
        for gate in sorted(src_env.glob("gate-*.json")):
            shutil.copyfile(gate, env / gate.name)  # inputs are chronological: the latest wins
        own = [
            *src_env.glob("process-*.json"),
            *src_env.glob("gate-*.json"),
            src_env / "container.json",
        ]
        for path in sorted(p for p in own if p.is_file()):
            (env / "tasks" / source.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, env / "tasks" / source.name / path.name)
    for digest, record in nodes.items():
        (env / "nodes").mkdir(exist_ok=True)
        write_json_atomic(env / "nodes" / f"{digest}.json", record)


def _write_group_logs(inputs: list[MergeInput], out: Path) -> None:
    """groups/<group>/stderr.log: every input's log for that group, each under a header line."""
    for source in inputs:
        for path in sorted((source.path / "groups").glob("*/stderr.log")):
            target = out / "groups" / path.parent.name / "stderr.log"
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("ab") as fh:
                fh.write(f"==> task {source.name} <==\n".encode())
                fh.write(path.read_bytes())


def _post_process(out: Path) -> None:
    """The summary and the telemetry join of the merged run, as a run's own end writes them."""
    from kit.runner.service import post_process

    post_process(out, (out / "telemetry").is_dir())
