"""The report's tables, computed as rows (dicts); rendering is `report.py`'s business.

Published values come from the matrix file the run used (`matrix/source.yaml`, each group's
`published:` entries); "ours" is the same statistic over the pooled timed `ok` samples of every
cell the entry matches, with a seeded percentile-bootstrap 95% CI.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from kit.bundle.report_data import ReportData, _entry_matches, num
from kit.matrix import Cell
from kit.matrix.cell import matrix_key
from kit.stats import bootstrap_ci, ratio_of_medians_ci

RESAMPLES = 1000  # TR147's count; seed 42 (kit.stats default)
EAGER, COMPILED = "transformers-eager", "transformers-compile"
PROBLEM_STATUSES = ("degraded", "crash", "missing", "skipped")


def _matches(cell: dict[str, Any], entry: dict[str, Any]) -> bool:
    return _entry_matches(cell, entry)


def pooled(data: ReportData, cell_ids: list[str], phase: str | None = None) -> list[float]:
    out: list[float] = []
    for (cid, ph), values in data.ok_ms.items():
        if cid in cell_ids and (phase is None or ph == phase):
            out.extend(values)
    return out


def published_table(data: ReportData) -> list[dict[str, Any]]:
    """One row per published entry of which the run measured at least one cell.

    `cells_planned` counts the matrix cells the entry covers (its group and `match`, from
    matrix/source.yaml), `cells_measured` those the run measured. Only a full match gets a
    ratio: a published aggregate over a whole group says nothing about a subset of it, so a
    partial row is marked `partial k/K cells` and its ratio left empty.
    """
    rows = []
    for entry in data.published:
        ids = [cid for cid, cell in data.cells.items() if _matches(cell, entry)]
        statistic = str(entry.get("statistic"))
        value = float(entry.get("value", math.nan))
        row: dict[str, Any] = {
            "matrix": entry.get("matrix"),
            "group": entry.get("group"),
            "match": ", ".join(f"{k}={v}" for k, v in entry["match"].items()),
            "statistic": statistic,
            "unit": entry.get("unit", ""),
            "published": value,
            "ours": math.nan,
            "ratio": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "n": 0,
            "cells": len(ids),
            "cells_measured": 0,
            "cells_planned": entry.get("planned"),
            "coverage": "",
            "prompts": "",
            "source": entry.get("source", ""),
        }
        if statistic in ("mean", "median"):
            measured = [c for c in ids if any(pooled(data, [c]))]
            values = pooled(data, ids)
            row["n"] = len(values)
            if values:
                row["ours"] = float(np.mean(values) if statistic == "mean" else np.median(values))
                ci = bootstrap_ci(values, statistic, resamples=RESAMPLES)
                row["ci_low"], row["ci_high"] = ci.low, ci.high
            row["prompts"] = _prompt_kind(data, measured)
        elif statistic in ("crash_rate", "degraded_share"):
            wanted = "crash" if statistic == "crash_rate" else "degraded"
            finished_ids = [c for c in ids if c in data.statuses]
            finished_ids = [c for c in finished_ids if data.statuses[c].get("status") != "missing"]
            measured = finished_ids
            row["n"] = len(finished_ids)
            if finished_ids:
                hits = sum(data.statuses[c].get("status") == wanted for c in finished_ids)
                row["ours"] = hits / len(finished_ids)
        else:
            measured = []
        row["cells_measured"] = len(measured)
        planned = row["cells_planned"]
        if planned is None:
            row["coverage"] = f"{len(measured)} cells (matrix cells unknown)"
        elif len(measured) >= planned:
            row["coverage"] = f"full {len(measured)}/{planned} cells"
        else:
            row["coverage"] = f"partial {len(measured)}/{planned} cells"
        full = planned is not None and len(measured) >= planned
        if full and value and not math.isnan(row["ours"]):
            row["ratio"] = row["ours"] / value
        rows.append(row)
    return rows


def _prompt_kind(data: ReportData, ids: list[str]) -> str:
    """`exact`, or `approximate k/n` when k of the n cells were fed approximate prompt ids
    of scenario prompts (no tokenizer of their model: token counts may differ from the
    published run's); empty when the journal does not say."""
    if not ids or any(c not in data.inputs for c in ids):
        return ""
    approximate = sum(
        data.inputs[c].token_method == "approximate" and data.cells[c].get("token_len") is None
        for c in ids
    )
    return f"approximate {approximate}/{len(ids)}" if approximate else "exact"


def not_run(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split published rows into (measured at least one cell, measured none)."""
    shown = [r for r in rows if r["cells_measured"] > 0]
    return shown, [r for r in rows if r["cells_measured"] == 0]


def eager_vs_compiled(data: ReportData) -> list[dict[str, Any]]:
    """Prefill per (group, model, dtype): eager and compiled pooled over scenarios."""
    groups: dict[tuple[str, str, str], dict[str, list[str]]] = defaultdict(
        lambda: {EAGER: [], COMPILED: []}
    )
    for cid, cell in data.cells.items():
        if cell.get("mode") == "prefill" and cell.get("backend") in (EAGER, COMPILED):
            key = (str(cell.get("group")), str(cell.get("model")), str(cell.get("dtype")))
            groups[key][str(cell["backend"])].append(cid)
    rows = []
    for (group, model, dtype), by_backend in sorted(groups.items()):
        eager = pooled(data, by_backend[EAGER], "prefill")
        compiled = pooled(data, by_backend[COMPILED], "prefill")
        row: dict[str, Any] = {"group": group, "model": model, "dtype": dtype}
        row["eager_mean_ms"] = float(np.mean(eager)) if eager else math.nan
        row["compiled_mean_ms"] = float(np.mean(compiled)) if compiled else math.nan
        row["eager_median_ms"] = float(np.median(eager)) if eager else math.nan
        row["compiled_median_ms"] = float(np.median(compiled)) if compiled else math.nan
        row["n_eager"], row["n_compiled"] = len(eager), len(compiled)
        if eager and compiled:
            ratio = ratio_of_medians_ci(compiled, eager, resamples=RESAMPLES)
            row["compiled_over_eager"] = ratio.ratio
            row["ci_low"], row["ci_high"] = ratio.low, ratio.high
        else:
            row["compiled_over_eager"] = row["ci_low"] = row["ci_high"] = math.nan
        rows.append(row)
    return rows


def gpt2_family(data: ReportData) -> tuple[list[dict[str, Any]], str]:
    """Median latency per GPT-2 model, backend and mode with depth and parameter count."""
    try:
        from kit.matrix.models import registry

        models = registry()
    except Exception as err:  # the registry is optional for reading a bundle
        return [], f"model registry unavailable ({type(err).__name__}: {err})"
    cells_by: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for cid, cell in data.cells.items():
        spec = models.get(str(cell.get("model")))
        if spec is not None and spec.family == "gpt2":
            cells_by[(spec.id, str(cell.get("backend")), str(cell.get("mode")))].append(cid)
    rows = []
    for (model, backend, mode), ids in sorted(cells_by.items()):
        values = pooled(data, ids, mode)
        spec = models[model]
        rows.append(
            {
                "model": model,
                "n_layer": spec.n_layer,
                "params": spec.params,
                "backend": backend,
                "mode": mode,
                "median_ms": float(np.median(values)) if values else math.nan,
                "n": len(values),
            }
        )
    return rows, ""


def energy_by_backend(data: ReportData) -> list[dict[str, Any]]:
    """Energy per token per (backend, mode, phase) over the timed, `ok`, non-warmup samples
    only (kit.gpu.join's `cell_phase` records): no load, compile, export or warmup energy and
    no idle gaps between repetitions. Cells whose energy is unknown (telemetry not covering
    every sample) are counted apart and left out of the sums."""
    sums: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in data.energy:
        cell = data.cell_fields(row["cell"])
        key = (str(cell.get("backend")), str(cell.get("mode")), str(row.get("phase")))
        acc = sums.setdefault(
            key, {"cells": 0, "no_energy": 0, "energy_j": 0.0, "tokens": 0, "seconds": 0.0}
        )
        energy = num(row.get("energy_j"))
        if math.isnan(energy):
            acc["no_energy"] += 1
            continue
        acc["cells"] += 1
        acc["energy_j"] += energy
        acc["tokens"] += int(num(row.get("tokens")) or 0)
        acc["seconds"] += num(row.get("duration_ms")) / 1000.0
    rows = []
    for (backend, mode, phase), acc in sorted(sums.items()):
        energy, tokens, seconds = acc["energy_j"], acc["tokens"], acc["seconds"]
        rows.append(
            {
                "backend": backend,
                "mode": mode,
                "phase": phase,
                "cells": acc["cells"],
                "cells_no_energy": acc["no_energy"],
                "timed_s": seconds,
                "energy_j": energy,
                "mean_power_w": energy / seconds if seconds > 0 else math.nan,
                "tokens": tokens,
                "mj_per_token": 1000.0 * energy / tokens if tokens else math.nan,
            }
        )
    return rows


def oneoff_energy_by_backend(data: ReportData) -> list[dict[str, Any]]:
    """Energy of the one-off phases (load, compile, export, ...) per (backend, mode, phase):
    reported on its own, never folded into the per-token figures."""
    sums: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for row in data.oneoff:
        if row.get("cell"):
            cell = data.cell_fields(row["cell"])
            backend, mode = str(cell.get("backend")), str(cell.get("mode"))
        else:  # e.g. a model load shared by the cells of a group
            backend, mode = "(no cell: shared by a group)", "-"
        acc = sums[(backend, mode, str(row.get("phase")))]
        energy = num(row.get("energy_j"))
        acc[0] += 1
        acc[3] += num(row.get("duration_ms")) / 1000.0
        if math.isnan(energy):
            continue
        acc[1] += 1
        acc[2] += energy
    return [
        {
            "backend": backend,
            "mode": mode,
            "phase": phase,
            "events": int(n),
            "events_with_energy": int(k),
            "seconds": seconds,
            "energy_j": energy if k else math.nan,
            "mean_j_per_event": energy / k if k else math.nan,
        }
        for (backend, mode, phase), (n, k, energy, seconds) in sorted(sums.items())
    ]


def window_energy_total(data: ReportData) -> float | None:
    """GPU energy summed over whole cell windows (cell_started..cell_finished)."""
    values = [num(r.get("energy_j")) for r in data.window_energy]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) if values else None


def problem_cells(data: ReportData) -> list[dict[str, Any]]:
    rows = []
    for cid, status in data.statuses.items():
        if status.get("status") not in PROBLEM_STATUSES:
            continue
        cell = data.cell_fields(cid)
        rows.append(
            {
                "cell": cid,
                "status": status.get("status"),
                "group": cell.get("group"),
                "model": cell.get("model"),
                "backend": cell.get("backend"),
                "mode": cell.get("mode"),
                "scenario": cell.get("scenario"),
                "reasons": "; ".join(status.get("reasons") or []),
            }
        )
    return rows


def integrity_summary(data: ReportData) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str]] = Counter((c["check"], c["result"]) for c in data.checks)
    names = sorted({check for check, _ in counts})
    return [
        {
            "check": name,
            "pass": counts[(name, "pass")],
            "fail": counts[(name, "fail")],
            "unknown": counts[(name, "unknown")],
        }
        for name in names
    ]


STATUS_RANK = ("ok", "degraded", "crash", "skipped", "missing")


NOT_IN_RUN_FIELDS = ("group", "model", "backend", "mode", "scenario", "dtype", "quantization",
                     "batch_size", "token_len", "prompt_index")  # fmt: skip


def coverage(
    data: ReportData,
) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """One row per group of the matrix: its cells, how many this run covers, their final
    statuses, and the commonest reason of its skipped or crashed cells; plus notes; plus one
    row per matrix cell the run does not cover (its matrix id and identifying fields, in
    matrix order). Empty when the matrix file does not load here."""
    if data.matrix_cells is None:
        return [], [], []
    matrix_keys = [matrix_key(cell) for cell in data.matrix_cells]
    known = set(matrix_keys)
    statuses: dict[str, str] = {}  # cover key -> the best status among the run's cells
    reasons: dict[str, list[str]] = {}
    unmatched = 0
    for cid, fields in data.cells.items():
        try:
            full = dataclasses.asdict(Cell.from_dict(fields))
        except (TypeError, ValueError):  # a cell of another kit version
            full = dict(fields)
        key = matrix_key(full)
        if key not in known:
            unmatched += 1
            continue
        status = str((data.statuses.get(cid) or {}).get("status") or "missing")
        if status not in STATUS_RANK:
            status = "missing"
        best = statuses.get(key)
        if best is None or STATUS_RANK.index(status) < STATUS_RANK.index(best):
            statuses[key] = status
        if status in ("skipped", "crash"):
            why = "; ".join((data.statuses.get(cid) or {}).get("reasons") or [])
            reasons.setdefault(key, []).append(why)
    groups: dict[str, dict[str, Any]] = {}
    uncovered: list[dict[str, Any]] = []
    for cell, key in zip(data.matrix_cells, matrix_keys, strict=True):
        group = str(cell.get("group"))
        row = groups.setdefault(group, {"group": group, "matrix_cells": 0, "run": 0,
                                        **{s: 0 for s in STATUS_RANK}, "not_in_run": 0,
                                        "_why": Counter()})  # fmt: skip
        row["matrix_cells"] += 1
        if key not in statuses:
            row["not_in_run"] += 1
            uncovered.append({"matrix_cell": cell.get("id", ""),
                              **{k: cell.get(k) for k in NOT_IN_RUN_FIELDS}})  # fmt: skip
            continue
        row["run"] += 1
        row[statuses[key]] += 1
        for why in reasons.get(key, []):
            row["_why"][why[:160] if why else "(no reason recorded)"] += 1
    rows = []
    for row in groups.values():
        why = row.pop("_why")
        row["commonest_reason"] = (
            f"{why.most_common(1)[0][0]} ({why.most_common(1)[0][1]} cells)" if why else ""
        )
        rows.append(row)
    notes = []
    if unmatched:
        notes.append(
            f"{unmatched} cells of this run match no cell of matrix/source.yaml (the matrix "
            "file changed after they ran, or they came from another matrix)"
        )
    return rows, notes, uncovered
