"""Everything a report needs, read from a bundle's members (archive, staging or run dir).

A `Source` is anything with `names()`, `open(name)`, `read(name)` and `in`: `BundleFiles` for
an archive, `MappingSource` for a bundle being built. Samples are streamed; only the timed
`ok` latencies of each cell's last attempt are kept (numbers, for medians and CIs).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from kit.bundle.archive import Source as MemberSource

PROCESS_MEMBER = re.compile(r"env/(?:tasks/(?P<task>[^/]+/))?process-(?P<name>[^/]+)\.json")


class Source(Protocol):
    def names(self) -> list[str]: ...
    def open(self, name: str) -> IO[bytes]: ...
    def read(self, name: str) -> bytes: ...
    def __contains__(self, name: object) -> bool: ...


class MappingSource:
    """A Source over a member plan (arcname -> file path or bytes)."""

    def __init__(self, members: Mapping[str, MemberSource]) -> None:
        self._members = members

    def names(self) -> list[str]:
        return sorted(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def open(self, name: str) -> IO[bytes]:
        source = self._members[name]
        if isinstance(source, bytes):
            return io.BytesIO(source)
        return Path(source).open("rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as fh:
            return fh.read()


def csv_rows(source: Source, name: str) -> list[dict[str, str]]:
    if name not in source:
        return []
    with source.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline="")))


def jsonl_rows(source: Source, name: str) -> list[dict[str, Any]]:
    if name not in source:
        return []
    rows = []
    with source.open(name) as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def num(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _tokens(n: Any) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


@dataclasses.dataclass(frozen=True)
class CellInputs:
    """What one cell was fed: its prompt ids (a digest of the last attempt's `prompt_ids`),
    how they were made, and the weights of its model (model_prepared's sha256)."""

    prompt: str  # sha256 of the JSON of prompt_ids, 16 hex digits
    tokens_in: Any
    token_method: str | None
    weights: str | None  # None: not recorded, or several digests for one model in the run

    def differences(self, other: CellInputs) -> list[str]:
        """What differs from `other`, in words (empty when the inputs are the same)."""
        out = []
        if self.prompt != other.prompt:
            out.append(
                f"prompt ids ({_tokens(self.tokens_in)}, {self.token_method or 'unrecorded'} vs "
                f"{_tokens(other.tokens_in)}, {other.token_method or 'unrecorded'})"
            )
        if self.weights and other.weights and self.weights != other.weights:
            out.append(f"weights (sha256 {self.weights[:12]} vs {other.weights[:12]})")
        return out

    def same_work(self, other: CellInputs) -> bool:
        """The same weights (where both recorded them) and prompts of the same length: the
        same shapes and the same work, even where the ids themselves differ."""
        weights_differ = bool(self.weights and other.weights and self.weights != other.weights)
        return not weights_differ and self.tokens_in == other.tokens_in


@dataclasses.dataclass
class ReportData:
    manifest: dict[str, Any]
    cells: dict[str, dict[str, Any]]  # id -> cell, in run order
    statuses: dict[str, dict[str, Any]]
    summary: list[dict[str, str]]  # results/cell_summary.csv
    ok_ms: dict[tuple[str, str], list[float]]  # (cell, phase) -> timed ok latencies
    published: list[dict[str, Any]]  # entries with their `group` added
    energy: list[dict[str, str]]  # results/cell_energy.csv: timed ok non-warmup samples
    oneoff: list[dict[str, str]]  # results/oneoff_energy.csv: load, compile, export, ...
    window_energy: list[dict[str, str]]  # results/cell_window_energy.csv: whole cell windows
    timeline: list[dict[str, str]]
    throttle: list[dict[str, str]]
    windows: list[dict[str, str]]
    checks: list[dict[str, str]]
    notes: list[str]
    # run.json, env/gpu.json and each env/process-*.json (name -> record), for the header
    env: dict[str, Any] = dataclasses.field(default_factory=dict)
    verification: str | None = None  # kit.bundle.reader.Opened.stamp of where it was read
    # kit.stats.coschedule: the sentence and the table rows of the report's Co-scheduling
    coschedule: tuple[str, list[dict[str, Any]]] = ("", [])
    # cell -> what it was fed (CellInputs), from the journal; cells the journal does not
    # describe (an older kit's) are absent
    inputs: dict[str, CellInputs] = dataclasses.field(default_factory=dict)
    # every cell matrix/source.yaml defines (dataclasses.asdict of kit.matrix.Cell, with its
    # id), in matrix order; None when the file does not load here (coverage is then unknown)
    matrix_cells: list[dict[str, Any]] | None = None

    def cell_fields(self, cid: str) -> dict[str, Any]:
        return self.cells.get(cid, {"id": cid})


def _ok_latencies(source: Source) -> dict[tuple[str, str], list[float]]:
    best_attempt: dict[str, int] = {}
    values: dict[tuple[str, str], list[float]] = {}
    if "results/samples.jsonl" not in source:
        return values
    with source.open("results/samples.jsonl") as fh:
        for line in fh:
            row = json.loads(line)
            cell, attempt = str(row.get("cell")), int(row.get("attempt", 1))
            if attempt < best_attempt.get(cell, 0):
                continue
            if attempt > best_attempt.get(cell, 0):
                best_attempt[cell] = attempt
                for key in [k for k in values if k[0] == cell]:
                    del values[key]
            latency = row.get("latency_ms")
            if row.get("warmup") or row.get("status") != "ok" or latency is None:
                continue
            values.setdefault((cell, str(row.get("phase"))), []).append(float(latency))
    return values


def _published(
    source: Source, planned: list[dict[str, Any]] | None, notes: list[str]
) -> list[dict[str, Any]]:
    if "matrix/source.yaml" not in source:
        notes.append("no matrix/source.yaml: published values unavailable")
        return []
    import yaml

    try:
        spec = yaml.safe_load(source.read("matrix/source.yaml"))
    except yaml.YAMLError as err:
        notes.append(f"matrix/source.yaml does not parse ({err}): published values unavailable")
        return []
    found = []
    groups = spec.get("groups") if isinstance(spec, dict) else None
    for group in groups or []:
        for entry in (group or {}).get("published") or []:
            if isinstance(entry, dict) and isinstance(entry.get("match"), dict):
                row = {**entry, "group": group.get("id"), "matrix": spec.get("id")}
                if planned is not None:
                    row["planned"] = sum(_entry_matches(c, row) for c in planned)
                found.append(row)
    return found


def _entry_matches(cell: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """A cell (as a dict) falls under a published entry: same group, every `match` field."""
    if entry.get("group") is not None and cell.get("group") != entry["group"]:
        return False
    if entry.get("matrix") is not None and cell.get("matrix") not in (None, entry["matrix"]):
        return False
    return all(str(cell.get(k)) == str(v) for k, v in entry["match"].items())


def _matrix_cells(text: bytes, notes: list[str]) -> list[dict[str, Any]] | None:
    """Every cell the matrix file defines (kit.matrix.load_matrix), as dicts; None if the
    file does not load here (then published coverage is unknown)."""
    import tempfile

    try:
        from kit.matrix.spec import load_matrix

        with tempfile.TemporaryDirectory(prefix="kit-report-matrix-") as tmp:
            path = Path(tmp) / "source.yaml"
            path.write_bytes(text)
            matrix = load_matrix(str(path))
    except Exception as err:  # a bundle from another kit version, a broken file
        notes.append(
            f"matrix/source.yaml does not load ({type(err).__name__}: {err}): "
            "the share of each published entry's cells that ran is unknown"
        )
        return None
    return [{**dataclasses.asdict(c), "id": c.id} for c in matrix.cells]


def load(source: Source, manifest: Mapping[str, Any] | None = None) -> ReportData:
    """Read a bundle's members into a ReportData (the manifest may be given when building)."""
    notes: list[str] = []
    if manifest is None:
        manifest = json.loads(source.read("manifest.json"))
    cells_list = json.loads(source.read("matrix/cells.json"))
    env = _env_records(source, notes)
    planned = (
        _matrix_cells(source.read("matrix/source.yaml"), notes)
        if "matrix/source.yaml" in source
        else None
    )
    return ReportData(
        manifest=dict(manifest),
        cells={str(c["id"]): c for c in cells_list},
        statuses={str(r["cell"]): r for r in jsonl_rows(source, "results/statuses.jsonl")},
        summary=csv_rows(source, "results/cell_summary.csv"),
        ok_ms=_ok_latencies(source),
        published=_published(source, planned, notes),
        energy=csv_rows(source, "results/cell_energy.csv"),
        oneoff=csv_rows(source, "results/oneoff_energy.csv"),
        window_energy=csv_rows(source, "results/cell_window_energy.csv"),
        timeline=csv_rows(source, "results/telemetry_timeline.csv"),
        throttle=csv_rows(source, "results/throttle_intervals.csv"),
        windows=csv_rows(source, "results/cell_windows.csv"),
        checks=csv_rows(source, "integrity/checks.csv"),
        notes=notes,
        env=env,
        coschedule=_coschedule(source, env.get("run")),
        matrix_cells=planned,
        inputs=cell_inputs(source, cells_list),
    )


def cell_inputs(source: Source, cells: list[dict[str, Any]]) -> dict[str, CellInputs]:
    """Each cell's CellInputs from the journal's cell_started (the last attempt's; a process
    continuing a suspended cell feeds the same ids) and model_prepared events."""
    import hashlib

    if "results/journal.jsonl" not in source:
        return {}
    prompts: dict[str, tuple[str, Any, str | None]] = {}
    weights: dict[str, set[str]] = {}
    with source.open("results/journal.jsonl") as fh:
        for line in fh:
            if b'"cell_started"' not in line and b'"model_prepared"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(event, dict):
                continue
            if event.get("event") == "cell_started" and "prompt_ids" in event:
                digest = hashlib.sha256(
                    json.dumps(event["prompt_ids"], separators=(",", ":")).encode()
                ).hexdigest()[:16]
                method = event.get("token_method")
                prompts[str(event.get("cell"))] = (
                    digest,
                    event.get("tokens_in"),
                    method if isinstance(method, str) else None,
                )
            elif event.get("event") == "model_prepared":
                model = event.get("model")
                model_id = model.get("model_id") if isinstance(model, dict) else None
                sha = model.get("sha256") if isinstance(model, dict) else None
                if isinstance(model_id, str) and isinstance(sha, str):
                    weights.setdefault(model_id, set()).add(sha)
    out = {}
    for cell in cells:
        cid = str(cell.get("id"))
        if cid not in prompts:
            continue
        shas = weights.get(str(cell.get("model")), set())
        digest, tokens_in, method = prompts[cid]
        out[cid] = CellInputs(
            digest, tokens_in, method, next(iter(shas)) if len(shas) == 1 else None
        )
    return out


def _coschedule(source: Source, run_json: Any) -> tuple[str, list[dict[str, Any]]]:
    """The Co-scheduling sentence and rows, from the journal's group_spawned/child_exited."""
    from kit.stats.coschedule import coschedule_line, coschedule_rows, group_runs, relevant_lines

    runs = []
    if "results/journal.jsonl" in source:
        with source.open("results/journal.jsonl") as fh:
            runs = group_runs(relevant_lines(fh))
    run = run_json if isinstance(run_json, dict) else {}
    return coschedule_line(run, runs), coschedule_rows(runs)


def _json_member(source: Source, name: str, notes: list[str]) -> Any:
    if name not in source:
        return None
    try:
        return json.loads(source.read(name))
    except ValueError:
        notes.append(f"{name} is not readable JSON: left out of the header")
        return None


def _env_records(source: Source, notes: list[str]) -> dict[str, Any]:
    """run.json, env/gpu.json and the measuring processes' records: env/process-*.json, and
    in a merged run each input's env/tasks/<task>/process-*.json (keyed `<task>/<name>`)."""
    processes = {}
    for name in sorted(source.names()):
        match = PROCESS_MEMBER.fullmatch(name)
        if match:
            record = _json_member(source, name, notes)
            if isinstance(record, dict):
                processes[(match["task"] or "") + match["name"]] = record
    return {
        "run": _json_member(source, "run.json", notes),
        "gpu": _json_member(source, "env/gpu.json", notes),
        "processes": processes,
    }
