"""Every check the run made, as rows with a result (`pass`, `fail`, `unknown`).

The run itself records evidence in `cell_finished` (status, reasons, an `evidence` dict: compile
proof, counters, parity) and in each sample's status (`length_mismatch`, `suspicious_fast`);
the telemetry join adds throttling. This module turns all of it into one table, so a reviewer
reads every check in one place (`integrity/checks.jsonl`, `integrity/checks.csv`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kit.bundle.results import JournalFacts
from kit.bundle.rundir import CellStatus

CHECK_COLUMNS = ("cell", "check", "result", "detail")
_PROOF_FLAGS = ("passed", "ok", "real_inductor", "verified", "compiled")


# How a cell's prompt ids were made (kit.runner.plan.prompt_ids): by the model's own tokenizer,
# by the server (Ollama tokenizes itself), or approximately (no tokenizer of the model here).
TOKEN_METHODS_OK = ("exact", "server")
TOKEN_METHOD_DETAIL = {
    "exact": "the model's own tokenizer",
    "server": "the server tokenizes the prompt text itself",
    "approximate": "approximate: no tokenizer of this model was found, so the prompt's token "
    "count may differ from what the model's tokenizer gives (the same ids on every backend)",
}
# A token_len cell (TR147's sweeps) gets exactly token_len ids whichever tokenizer made them.
TOKEN_LEN_DETAIL = (
    "exactly token_len ids; their values are approximate (no tokenizer of this model was found)"
)


def _row(cell: str, check: str, ok: bool | None, detail: str) -> dict[str, str]:
    result = "unknown" if ok is None else ("pass" if ok else "fail")
    return {"cell": cell, "check": check, "result": result, "detail": detail}


def _graph_breaks(evidence: dict[str, Any]) -> int | None:
    for key in ("group_counters", "first_call_counters"):
        counters = evidence.get(key)
        if isinstance(counters, dict) and isinstance(counters.get("graph_breaks"), int):
            return int(counters["graph_breaks"])
    value = evidence.get("graph_breaks")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _compile_proof(evidence: dict[str, Any]) -> tuple[bool | None, str]:
    """Real Inductor (TR126 pitfall 1): compiled, no graph breaks, generated code on disk.

    Reads the harness's evidence (`compiled`, `group_counters.graph_breaks`,
    `inductor_artifacts`); other shapes fall back to any boolean flag under a key naming
    'compile'.
    """
    compiled = evidence.get("compiled")
    breaks = _graph_breaks(evidence)
    artifacts = evidence.get("inductor_artifacts")
    if isinstance(compiled, bool):
        parts = [f"compiled={compiled}"]
        ok = compiled
        if breaks is not None:
            parts.append(f"graph_breaks={breaks}")
            ok = ok and breaks == 0
        if isinstance(artifacts, dict):
            modules = int(artifacts.get("output_code_modules") or 0)
            kernels = sum(int(v) for k, v in artifacts.items() if k.endswith("_kernels"))
            parts.append(f"inductor output modules={modules}, kernels={kernels}")
            ok = ok and modules > 0
        return ok, ", ".join(parts)
    entries = {k: v for k, v in evidence.items() if "compile" in k.lower()}
    for key, value in sorted(entries.items()):
        if isinstance(value, bool):
            return value, f"{key}={value}"
        if isinstance(value, dict):
            for flag in _PROOF_FLAGS:
                if isinstance(value.get(flag), bool):
                    return bool(value[flag]), f"{key}.{flag}={value[flag]}"
    if breaks is not None:
        return breaks == 0, f"graph_breaks={breaks}"
    if entries:
        return None, "compile evidence recorded but no pass/fail flag in it"
    return False, "no compile proof recorded"


def _evidence_flags(evidence: dict[str, Any]) -> Iterable[tuple[str, bool, str]]:
    for key, value in sorted(evidence.items()):
        if "compile" in key.lower():
            continue
        if isinstance(value, bool):
            yield key, value, f"{key}={value}"
        elif isinstance(value, dict) and isinstance(value.get("passed"), bool):
            detail = str(value.get("detail", "")) or f"{key}.passed={value['passed']}"
            yield key, bool(value["passed"]), detail


def derive_checks(
    cells: list[dict[str, Any]],
    statuses: dict[str, CellStatus],
    facts: JournalFacts,
    throttle: dict[str, set[str]] | None,
) -> list[dict[str, str]]:
    """Checks per cell in `cells` order. `throttle` is None when there is no telemetry."""
    rows: list[dict[str, str]] = []
    for cell in cells:
        cid = str(cell.get("id"))
        status = statuses.get(cid)
        if status is None:
            rows.append(_row(cid, "cell_status", False, "missing: the cell never finished"))
            continue
        reasons = "; ".join(status.reasons)
        rows.append(_row(cid, "cell_status", status.status == "ok", f"{status.status}: {reasons}"))
        counts = {"length_mismatch": 0, "suspicious_fast": 0, "timed": 0}
        for (c, _), acc in facts.phases.items():
            if c == cid:
                counts["timed"] += acc.n_samples
                counts["length_mismatch"] += acc.by_status.get("length_mismatch", 0)
                counts["suspicious_fast"] += acc.by_status.get("suspicious_fast", 0)
        timed = counts["timed"]
        bad = counts["length_mismatch"]
        rows.append(_row(cid, "output_length", bad == 0, f"{bad} of {timed} timed samples"))
        fast = counts["suspicious_fast"]
        rows.append(_row(cid, "plausible_timing", fast == 0, f"{fast} of {timed} timed samples"))
        # a skipped cell never ran its prompt
        method = facts.token_methods.get(cid) if status.status != "skipped" else None
        if method == "approximate" and cell.get("token_len") is not None:
            rows.append(_row(cid, "prompt_tokens", True, TOKEN_LEN_DETAIL))
        elif method is not None:
            rows.append(_row(cid, "prompt_tokens", method in TOKEN_METHODS_OK,
                             TOKEN_METHOD_DETAIL.get(method, method)))  # fmt: skip
        finished = facts.finished.get(cid, {})
        evidence = finished.get("evidence") if isinstance(finished, dict) else None
        evidence = evidence if isinstance(evidence, dict) else {}
        if cell.get("compile"):
            ok, detail = _compile_proof(evidence)
            rows.append(_row(cid, "compile_proof", ok, detail))
        for key, ok_flag, detail in _evidence_flags(evidence):
            rows.append(_row(cid, f"evidence.{key}", ok_flag, detail))
        if throttle is not None:
            seen = throttle.get(cid)
            if seen is None:
                rows.append(_row(cid, "no_throttle", None, "no telemetry in the cell's window"))
            else:
                detail = "+".join(sorted(seen)) if seen else "no throttle reasons"
                rows.append(_row(cid, "no_throttle", not seen, detail))
    return rows
