"""Container overhead per cell group of the Docker runner: start to first event, and stop.

Runs N groups of a minimal harness stand-in (prints one event, exits) through `DockerRunner`
in each given image, so the numbers exclude model load. Prints a table (milliseconds).
Target on the 2-core dev/CI machine: under 2 s per group (start + stop).

    .venv/bin/python scripts/bench/container_overhead.py [--groups 10] [IMAGE ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kit.runner.base import GroupJob
from kit.runner.docker import ContainerOptions, DockerRunner

STAND_IN = (
    "import json, time; "
    "print(json.dumps({'event': 'group_started', 't_ns': time.monotonic_ns()}), flush=True)"
)


def measure(image: str, groups: int) -> list[tuple[float, float]]:
    runner = DockerRunner(
        allow_unpinned=True,
        image_overrides={"torch:cpu": image},
        options=ContainerOptions(command=("python", "-c", STAND_IN)),
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(groups + 1):  # the first is a warmup (image facts, fingerprint)
            group = Path(tmp) / f"g{index}"
            (group / "cache").mkdir(parents=True)
            job = GroupJob(f"g{index}", group / "in.json", group, group, group / "cache",
                           "transformers-eager", "cpu", None, 60.0)  # fmt: skip
            runner.preflight([job])
            t0 = time.perf_counter()
            process = runner.start(job)
            lines = process.lines()
            next(lines)
            t1 = time.perf_counter()
            list(lines)
            t2 = time.perf_counter()
            info = process.wait()
            t3 = time.perf_counter()
            assert info.clean, info
            if index:
                rows.append(((t1 - t0) * 1e3, (t3 - t2) * 1e3))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=["llm-repro-kit/kit:default",
                                                      "llm-repro-kit/torch:cpu"])  # fmt: skip
    parser.add_argument("--groups", type=int, default=10)
    args = parser.parse_args()
    print(f"{'image':<28} {'groups':>6} {'start->1st event ms (median, max)':>34} "
          f"{'stop+remove ms (median, max)':>30} {'total ms':>9}")  # fmt: skip
    for image in args.images:
        rows = measure(image, args.groups)
        start = [r[0] for r in rows]
        stop = [r[1] for r in rows]
        total = statistics.median(a + b for a, b in rows)
        print(
            f"{image:<28} {len(rows):>6} "
            f"{statistics.median(start):>22.0f} {max(start):>11.0f} "
            f"{statistics.median(stop):>18.0f} {max(stop):>11.0f} {total:>9.0f}"
        )


if __name__ == "__main__":
    main()
