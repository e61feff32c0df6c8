"""`kit summarize RUN_DIR [--json|--csv]`: per cell and phase statistics of a run.

Computes the summary (kit.stats.run_summary), writes `summary.json` and `summary.csv` into the
run directory unless `--no-write`, then renders it on stdout: an aligned text table by
default, or the exact summary.json / summary.csv text.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kit.errors import ExitCode

if TYPE_CHECKING:  # kit.stats loads scipy (~1 s): imported in run(), so `kit` starts fast
    from kit.stats.run_summary import PhaseSummary, RunSummary

HELP = "print per-cell statistics of a run directory (and write summary.json/.csv)"

TABLE_HEADERS = ("cell", "model", "backend", "dtype", "scenario", "phase", "tok_len", "status",
                 "n", "excl", "median_ms", "95% CI median", "mean_ms", "p95_ms", "cv_%",
                 "outl", "tok/s")  # fmt: skip
RIGHT_ALIGNED = frozenset({"tok_len", "n", "excl", "median_ms", "mean_ms", "p95_ms", "cv_%",
                           "outl", "tok/s"})  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print summary.json instead")
    fmt.add_argument("--csv", action="store_true", help="print summary.csv instead")
    parser.add_argument(
        "--resamples", type=int, default=None, help="bootstrap resamples (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=None, help="bootstrap seed (default 42)")
    parser.add_argument(
        "--no-write", action="store_true", help="do not write summary files into RUN_DIR"
    )


def _num(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def table_row(row: PhaseSummary) -> tuple[str, ...]:
    """The text cells of one table row, in TABLE_HEADERS order."""
    d, f = row.latency, row.fields
    ci = d.ci_median_bootstrap
    token_len = f.get("token_len")
    return (
        row.cell,
        str(f.get("model", "?")),
        str(f.get("backend", "?")),
        str(f.get("dtype", "?")),
        str(f.get("scenario", "?")),
        row.phase or "-",
        "-" if token_len is None else str(token_len),
        row.status,
        str(d.n),
        str(row.n_excluded),
        _num(d.median),
        f"[{_num(ci.low)}, {_num(ci.high)}]" if ci.defined else "-",
        _num(d.mean),
        _num(d.p95),
        _num(d.cv * 100.0, 1),
        str(d.outliers),
        _num(row.throughput.tokens_per_s_median, 1),
    )


def render_table(summary: RunSummary) -> str:
    """The plain aligned table plus a short footer (statuses, journal problems)."""
    rows = [TABLE_HEADERS, *(table_row(r) for r in summary.rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADERS))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if h in RIGHT_ALIGNED else c.ljust(w)
            for c, w, h in zip(cells, widths, TABLE_HEADERS, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(rows[0]), line(["-" * w for w in widths]), *(line(r) for r in rows[1:])]
    statuses = ", ".join(f"{k} {v}" for k, v in summary.cells_by_status.items())
    out.append("")
    out.append(
        f"cells: {statuses or 'none'}; run {'complete' if summary.complete else 'INCOMPLETE'}"
    )
    out.append(
        f"latency_ms of ok, non-warmup samples; CI: {summary.confidence:.0%} percentile "
        f"bootstrap ({summary.resamples} resamples, seed {summary.seed}); tok/s: prefill "
        "tokens_in/latency, decode tokens_out/latency"
    )
    if summary.journal_truncated_tail or summary.journal_bad_lines:
        out.append(
            f"journal: {summary.journal_bad_lines} unreadable line(s)"
            + ("; last line cut mid-write (ignored)" if summary.journal_truncated_tail else "")
        )
    if summary.unknown_cells:
        out.append(f"cells not in matrix/cells.json: {', '.join(summary.unknown_cells)}")
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    from kit.stats.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
    from kit.stats.run_summary import summarize_run
    from kit.stats.summary_files import summary_csv_text, summary_json_text, write_summary_files

    resamples = DEFAULT_RESAMPLES if args.resamples is None else args.resamples
    seed = DEFAULT_SEED if args.seed is None else args.seed
    summary = summarize_run(args.run_dir, resamples=resamples, seed=seed)
    if not args.no_write:
        write_summary_files(summary, Path(args.run_dir))
    if args.json:
        text = summary_json_text(summary)
    elif args.csv:
        text = summary_csv_text(summary)
    else:
        text = render_table(summary)
    sys.stdout.write(text)
    return int(ExitCode.OK)
