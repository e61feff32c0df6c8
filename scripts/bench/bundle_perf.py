#!/usr/bin/env python3
"""Bundle, verify and report a synthetic run of 10,000 samples and 100,000 telemetry rows.

Prints a table: wall time of each step against the issue's limits (bundle <= 5 s, verify
<= 2 s, report <= 15 s) and the Python heap's peak (tracemalloc) at a tenth of the size and
at full size: a flat peak shows that the large files are streamed, not loaded whole.
Timings are taken without tracemalloc (it slows Python down); peaks in a second pass.

    .venv/bin/python scripts/bench/bundle_perf.py [--samples 10000] [--rows 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from runfactory import make_run_dir  # noqa: E402

from kit.bundle.build import build_bundle  # noqa: E402
from kit.bundle.report import report_from_path  # noqa: E402
from kit.bundle.verify import verify_bundle  # noqa: E402

LIMITS = {"bundle": 5.0, "verify": 2.0, "report": 15.0}
CELLS = 100
WARMUP = 2


def _steps(run: Path, work: Path) -> dict[str, Callable[[], Any]]:
    bundle = work / "run.tar.gz"
    return {
        "bundle": lambda: build_bundle(run, bundle),
        "verify": lambda: _check(verify_bundle(bundle).problems),
        "report": lambda: report_from_path(bundle, work / "report"),
    }


def _check(problems: list[str]) -> None:
    if problems:
        raise SystemExit("verify found problems: " + "; ".join(problems[:5]))


def _make(root: Path, samples: int, rows: int) -> Path:
    per_cell = samples // CELLS - WARMUP  # timed reps; warmups count as samples too
    run = make_run_dir(
        root / "run", n_cells=CELLS, n_samples=per_cell, warmup=WARMUP, telemetry_rows=rows
    )
    return run.path


def measure(samples: int, rows: int, traced: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kit-bundle-perf-") as tmp:
        run = _make(Path(tmp), samples, rows)
        for name, step in _steps(run, Path(tmp)).items():
            if traced:
                tracemalloc.start()
                step()
                out[name] = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
            else:
                t0 = time.perf_counter()
                step()
                out[name] = time.perf_counter() - t0
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    # Warm matplotlib's font cache and imports so the first step does not pay for them.
    measure(CELLS * (WARMUP + 1), 100, traced=False)
    times = measure(args.samples, args.rows, traced=False)
    small = measure(args.samples // 10, args.rows // 10, traced=True)
    full = measure(args.samples, args.rows, traced=True)
    print(f"synthetic run: {args.samples} samples in {CELLS} cells, {args.rows} telemetry rows")
    print(f"{'step':8} {'seconds':>8} {'limit':>6} {'ok':>3} "
          f"{'peak MiB @1/10':>15} {'peak MiB @full':>15}")  # fmt: skip
    failed = False
    for name, limit in LIMITS.items():
        ok = times[name] <= limit
        failed |= not ok
        print(
            f"{name:8} {times[name]:8.2f} {limit:6.1f} {'yes' if ok else 'NO':>3} "
            f"{small[name]:15.1f} {full[name]:15.1f}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
