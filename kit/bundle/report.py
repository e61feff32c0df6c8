"""`kit report`: REPORT.md, PNG plots and CSV exports from a bundle (or a run directory).

The same code writes `report/` inside a bundle while it is built (from the member plan) and
regenerates it from an archive alone (members read, never extracted), so a reviewer can
check that every table and figure follows from the bundle's data.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.bundle import plots, report_tables
from kit.bundle.archive import Source as MemberSource
from kit.bundle.report_data import MappingSource, ReportData, Source, load
from kit.bundle.report_header import header_lines
from kit.bundle.results import fmt
from kit.errors import KitError
from kit.paths import inside

if TYPE_CHECKING:
    from kit.claims.engine import ClaimsReport

Column = tuple[str, str, Callable[[Any], str] | None]


def _f(digits: int) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:.{digits}f}"

    return render


def _ci(row: dict[str, Any]) -> str:
    low, high = row.get("ci_low", math.nan), row.get("ci_high", math.nan)
    if math.isnan(low) or math.isnan(high):
        return "-"
    return f"[{low:.3f}, {high:.3f}]"


def md_table(rows: list[dict[str, Any]], columns: list[Column]) -> str:
    if not rows:
        return "_none_\n"
    head = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = []
    for row in rows:
        cells = []
        for key, _, render in columns:
            value = row if key == "*" else row.get(key)
            text = render(value) if render else ("-" if value in (None, "") else str(value))
            cells.append(text.replace("|", "\\|").replace("\n", " "))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body]) + "\n"


def write_csv(
    path: Path,
    rows: list[dict[str, Any]],
    stamp: str | None = None,
    columns: list[str] | None = None,
) -> None:
    """A CSV of `rows`; `stamp` (an UNVERIFIED line) comes first, before the header row.
    `columns` names the header when `rows` may be empty (else the first row's keys)."""
    path = inside(path.parent, path.name)
    columns = columns or (list(rows[0]) if rows else ["empty"])
    with path.open("w", newline="", encoding="utf-8") as fh:
        if stamp:
            fh.write(stamp.replace("\n", " ") + "\n")
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([fmt(row.get(c)) for c in columns])


PUBLISHED_COLUMNS: list[Column] = [
    ("group", "group", None),
    ("match", "cells matched", None),
    ("statistic", "statistic", None),
    ("published", "published", _f(3)),
    ("ours", "ours", _f(3)),
    ("coverage", "cells run / matrix cells", None),
    ("ratio", "ours / published (full coverage only)", _f(2)),
    ("*", "our 95% CI", _ci),
    ("n", "n", None),
    ("prompts", "prompt ids", None),
    ("source", "source", None),
]
EAGER_COLUMNS: list[Column] = [
    ("group", "group", None),
    ("model", "model", None),
    ("dtype", "dtype", None),
    ("eager_mean_ms", "eager mean ms", _f(3)),
    ("compiled_mean_ms", "compiled mean ms", _f(3)),
    ("eager_median_ms", "eager median ms", _f(3)),
    ("compiled_median_ms", "compiled median ms", _f(3)),
    ("compiled_over_eager", "compiled/eager (medians)", _f(3)),
    ("*", "95% CI", _ci),
]

ENERGY_COLUMNS: list[Column] = [
    ("backend", "backend", None),
    ("mode", "mode", None),
    ("phase", "phase", None),
    ("cells", "cells", None),
    ("cells_no_energy", "cells without energy", None),
    ("timed_s", "timed s", _f(3)),
    ("energy_j", "timed energy J", _f(3)),
    ("mean_power_w", "mean power W", _f(1)),
    ("tokens", "tokens", None),
    ("mj_per_token", "mJ/token", _f(3)),
]
ONEOFF_COLUMNS: list[Column] = [
    ("backend", "backend", None),
    ("mode", "mode", None),
    ("phase", "one-off phase", None),
    ("events", "events", None),
    ("seconds", "duration s", _f(3)),
    ("energy_j", "one-off energy J", _f(3)),
    ("mean_j_per_event", "J per event", _f(3)),
]
COSCHEDULE_COLUMNS: list[Column] = [
    ("group", "group", None),
    ("attempt", "attempt", None),
    ("gpu", "GPU", None),
    ("device", "cells on", None),
    ("start_s", "start s", _f(1)),
    ("end_s", "end s", _f(1)),
    ("beside", "ran beside (group, attempt, GPU: overlap)", None),
]
COSCHEDULE_NOTE = (
    "Group processes that ran at the same time as another (`kit run --gpus ... --isolation "
    "per-gpu`), from the journal's group_spawned and child_exited events; times in seconds "
    "from the first spawn. Neighbours share PCIe, host CPU cores and memory bandwidth: each "
    "cell's own neighbours are `co_scheduled` in results/statuses.jsonl, and the claims do "
    "not pool cells measured alone with cells measured beside a busy neighbour."
)
COVERAGE_NOTE = (
    "Every group of the run's matrix (matrix/source.yaml): its cells, how many this run "
    "covers (a cell run with overrides such as --device or --reps covers its matrix cell), "
    "their final statuses, and the commonest reason of the group's skipped or crashed cells. "
    "`not in run`: cells the run's selection left out. Per cell: `problem_cells.csv` (each "
    "run cell without an ok result, with its reasons) and `not_in_run.csv` (each matrix cell "
    "the run does not cover, with its matrix id: `kit matrix show MATRIX --json` lists them)."
)
COVERAGE_COLUMNS: list[Column] = [
    ("group", "group", None),
    ("matrix_cells", "matrix cells", None),
    ("run", "run", None),
    ("ok", "ok", None),
    ("degraded", "degraded", None),
    ("crash", "crash", None),
    ("skipped", "skipped", None),
    ("missing", "missing", None),
    ("not_in_run", "not in run", None),
    ("commonest_reason", "commonest reason (skipped, crash)", None),
]
PUBLISHED_NOTE = (
    "Each published entry covers the matrix cells of its group that match its fields "
    "(matrix/source.yaml). A ratio is given only when the run measured every one of them; "
    "a partial row compares a published figure over more cells than ours, so it has no ratio. "
    "`prompt ids`: `approximate k/n` when k of the n cells measured had no tokenizer of their "
    "model here, so their prompts' token counts may differ from the published run's."
)
ENERGY_NOTE = (
    "Energy here covers only the timed, status-ok, non-warmup repetitions of each cell's phase "
    "(the union of their [t0, t1] intervals, from NVML's energy counter interpolated at each "
    "interval's ends, else the trapezoid of power; kit.gpu.join `cell_phase` records, "
    "`results/cell_energy.csv`). It excludes model load, torch.compile/export, warmups and the "
    "gaps between repetitions; those one-off phases are in the next table. Tokens are input "
    "tokens for prefill, output tokens otherwise. A cell whose samples the telemetry does not "
    'fully cover has no energy and is counted under "cells without energy".'
)
ONEOFF_NOTE = (
    "Energy of each one-off `phase` event (model load, torch.compile, export, ...) over its own "
    "[t0, t1] interval (`results/oneoff_energy.csv`). Not included in the per-token figures above."
)


def image_pinning_line(run: dict[str, Any]) -> str:
    """run.json's images and how they were pinned, as one header line ("" for the host runner
    and for runs from before run.json recorded it)."""
    pinning = run.get("image_pinning")
    if pinning in (None, "host"):
        return ""
    shown = "; ".join(
        f"`{i.get('image')}` {str(i.get('image_id'))[:19]} "
        + (f"({i.get('pin')})" if i.get("pinned") else f"(unpinned: {i.get('unpinned_reason')})")
        for i in run.get("images") or []
    )
    word = "pinned" if pinning == "pinned" else "**UNPINNED** (accepted for this run)"
    return f"- image pinning: {word}: {shown}"


def _run_json(data: ReportData) -> dict[str, Any]:
    run = data.env.get("run")
    return run if isinstance(run, dict) else {}


CLAIMS_NOTE = (
    "One verdict per published finding (`kit claims`; claims as data in "
    "kit/matrix/builtin/claims/): reproduced, direction only (direction reproduced, magnitude "
    "differs), not reproduced, inconclusive, not run, or partial k of K cells (the verdict on "
    "the cells run is in the why column). Ratios are A/B of medians with seeded bootstrap CIs."
)


def _header(data: ReportData, verification: str | None = None) -> list[str]:
    m = data.manifest
    counts = ", ".join(f"{n} {s}" for s, n in sorted(m["cells"]["by_status"].items()))
    energy = (m.get("energy_j") or {}).get("cells")
    stamp = [verification, ""] if verification and verification.startswith("UNVERIFIED") else []
    lines = [
        *stamp,
        f"# Report: {m['matrix'].get('id')} run of {m.get('created_utc')}",
        "",
        *header_lines(data, verification),
        image_pinning_line(_run_json(data)),
        f"- cells: {counts}" + ("; **INCOMPLETE run**" if m.get("incomplete") else ""),
        f"- GPU energy over whole cell windows (cell_started..cell_finished: load, compile, "
        f"warmups and gaps included): {_f(1)(energy)} J"
        if energy is not None
        else "",
        f"- bundle content hash: `{m.get('content_hash', '(computed when bundled)')}`",
        *_stack_lines(m),
        "",
    ]
    if stamp:
        return lines[:2] + [line for line in lines[2:] if line != ""] + [""]
    return [line for line in lines if line != ""] + [""]


def _stack_lines(manifest: dict[str, Any]) -> list[str]:
    """One "- stack: ..." line per distinct measuring stack (kit/images/stacks.py)."""
    from kit.images.stacks import stack_line

    return [f"- {stack_line(s)}" for s in manifest.get("stacks") or [] if isinstance(s, dict)]


def claims_of(source: Source) -> ClaimsReport | None:
    """The claims verdicts of a bundle's members (kit.claims), or None when its matrix has no
    claims or they cannot be evaluated (a bundle from another kit version)."""
    from kit.claims import claims_for_source

    try:
        return claims_for_source(source)
    except (KitError, KeyError, ValueError):
        return None


def render_report(
    data: ReportData,
    out_dir: Path,
    with_plots: bool = True,
    verification: str | None = None,
    claims: ClaimsReport | None = None,
) -> None:
    """Write REPORT.md, PNGs and CSVs into `out_dir` (created).

    `verification` is the header's verification line (None: none, as in a bundle's own
    report); one starting with UNVERIFIED also heads REPORT.md and every CSV. `claims` (a
    kit.claims ClaimsReport) opens the report and is written as claims.json.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    published, unrun = report_tables.not_run(report_tables.published_table(data))
    eager = report_tables.eager_vs_compiled(data)
    family, family_note = report_tables.gpt2_family(data)
    energy = report_tables.energy_by_backend(data)
    oneoff = report_tables.oneoff_energy_by_backend(data)
    problems = report_tables.problem_cells(data)
    covered, coverage_notes, uncovered = report_tables.coverage(data)
    integrity = report_tables.integrity_summary(data)
    figures: dict[str, str | None] = {}
    if with_plots:
        figures["eager"] = plots.eager_vs_compiled(eager, out_dir)
        figures["family"] = plots.gpt2_family(family, out_dir)
        figures["energy"] = plots.energy_per_token(energy, out_dir)
        figures["timeline"] = plots.telemetry_timeline(data, out_dir)

    def figure(key: str) -> list[str]:
        name = figures.get(key)
        return [f"![{key}]({name})", ""] if name else []

    md = _header(data, verification)
    if claims is not None:
        from kit.claims.render import dumps, render_markdown

        md += ["## Claims", "", CLAIMS_NOTE, "", render_markdown(claims)]
        (out_dir / "claims.json").write_text(dumps(claims), encoding="utf-8")
    if covered:
        total = {k: sum(r[k] for r in covered) for k in ("matrix_cells", "run", "ok")}
        md += ["## Coverage of the matrix", "", COVERAGE_NOTE, ""]
        md += [f"{total['run']} of the matrix's {total['matrix_cells']} cells in this run, "
               f"{total['ok']} ok.", ""]  # fmt: skip
        md += [md_table(covered, COVERAGE_COLUMNS)]
        md += [f"- {n}" for n in coverage_notes] + ([""] if coverage_notes else [])
    line, rows = data.coschedule
    md += ["## Co-scheduling", "", f"{line or 'exclusive: one group at a time'}.", ""]
    if rows:
        md += [COSCHEDULE_NOTE, "", md_table(rows, COSCHEDULE_COLUMNS)]
    md += ["## Published values vs ours", "", PUBLISHED_NOTE, ""]
    md += [md_table(published, PUBLISHED_COLUMNS)]
    if unrun:
        names = "; ".join(f"{r['group']} ({r['match']}) {r['statistic']}" for r in unrun)
        md += [f"Not run (no cell of theirs measured, {len(unrun)} entries): {names}", ""]
    md += ["## Prefill: eager vs compiled, per model", "", md_table(eager, EAGER_COLUMNS)]
    md += figure("eager")
    md += ["## GPT-2 family: latency vs depth and parameters", ""]
    md += [family_note, ""] if family_note else []
    md += [
        md_table(
            family,
            [(k, k, _f(3) if k == "median_ms" else None) for k in
             ("model", "n_layer", "params", "backend", "mode", "median_ms", "n")],
        )
    ]  # fmt: skip
    md += figure("family")
    md += ["## Energy per token by backend", ""]
    md += [ENERGY_NOTE, ""]
    md += [md_table(energy, ENERGY_COLUMNS) if energy else "_no telemetry in this run_\n"]
    md += figure("energy")
    md += ["## One-off phases: load, compile, export energy", ""]
    md += [ONEOFF_NOTE, ""]
    md += [md_table(oneoff, ONEOFF_COLUMNS) if oneoff else "_none recorded_\n"]
    md += ["## Telemetry timeline", ""]
    md += figure("timeline") or ["_no telemetry in this run_", ""]
    md += [f"Throttle intervals: {len(data.throttle)}", ""]
    md += ["## Degraded, crashed, skipped and missing cells", ""]
    md += [md_table(problems, [(k, k, None) for k in
                               ("cell", "status", "group", "model", "backend", "mode", "scenario", "reasons")])]  # fmt: skip
    md += ["## Integrity checks", ""]
    md += [md_table(integrity, [(k, k, None) for k in ("check", "pass", "fail", "unknown")])]
    md += ["Every check per cell: `integrity/checks.csv` in the bundle.", ""]
    if data.notes:
        md += ["## Notes", "", *[f"- {n}" for n in data.notes], ""]
    inside(out_dir, "REPORT.md").write_text("\n".join(md), encoding="utf-8")
    stamp = verification if verification and verification.startswith("UNVERIFIED") else None
    write_csv(out_dir / "published.csv", published, stamp)
    write_csv(out_dir / "eager_vs_compiled.csv", eager, stamp)
    write_csv(out_dir / "gpt2_family.csv", family, stamp)
    write_csv(out_dir / "energy_by_backend.csv", energy, stamp)
    write_csv(out_dir / "oneoff_energy_by_backend.csv", oneoff, stamp)
    write_csv(out_dir / "problem_cells.csv", problems, stamp)
    if covered:
        write_csv(out_dir / "coverage.csv", covered, stamp)
        write_csv(out_dir / "not_in_run.csv", uncovered, stamp,
                  ["matrix_cell", *report_tables.NOT_IN_RUN_FIELDS])  # fmt: skip
    if rows:
        write_csv(out_dir / "co_scheduling.csv", rows, stamp)


def write_report_into(
    members: Mapping[str, MemberSource],
    manifest: Mapping[str, Any],
    out_dir: Path,
    with_plots: bool = True,
) -> None:
    """Render the report of a bundle being built (its member plan and manifest)."""
    source = MappingSource(members)
    render_report(load(source, manifest), out_dir, with_plots, claims=claims_of(source))


def report_from_path(
    path: Path, out_dir: Path | None, with_plots: bool = True, unverified: bool = False
) -> Path:
    """Report a bundle archive (verified first, see `open_verified`) or a run directory;
    return the folder written. Raises KitError."""
    from kit.bundle.reader import open_verified

    if out_dir is None:
        out_dir = (
            path / "report"
            if path.is_dir()
            else path.with_name(path.name.split(".")[0] + "-report")
        )
    with open_verified(path, unverified=unverified) as opened:
        try:
            data = load(opened.source, opened.manifest)
        except (KeyError, ValueError) as err:
            raise KitError(
                f"{path} lacks or mangles a member the report needs ({err})",
                f"run `kit verify {path}`",
            ) from None
        verification = opened.stamp or f"verified ({path.name}: kit verify found no problem)"
        render_report(data, out_dir, with_plots, verification, claims_of(opened.source))
    return out_dir
