#!/usr/bin/env python3
"""Weight synthesis speed (`--weights random`): one thread against the chunk workers.

Every device call starts on a bare machine, so each call synthesizes its models again (on the
H200, 2026-12-03: 37 s for qwen2.5-1.5b and 69 s for qwen2.5-3b, one thread). Chunks of a
tensor are independent (the generator jumps ahead), so `write_safetensors` computes them on
up to 8 threads and writes them in order. This prints the wall time of each setting,
alternating (1, N, 1, N, ...) and the file's sha256, which must be the same for all.

    python scripts/bench/synth_speed.py --model gpt2-100m --rounds 2
    python scripts/bench/synth_speed.py --model qwen2.5-3b --rounds 1 --threads 1,16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kit.matrix.models import get_model
from kit.models import synth


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="gpt2-100m")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", default="1,8", help="comma-separated thread limits")
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    settings = [int(t) for t in args.threads.split(",")]
    spec = get_model(args.model)
    walls: dict[int, list[float]] = {t: [] for t in settings}
    digests: set[str] = set()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for r in range(args.rounds):
            for t in settings:
                synth._THREADS = t
                t0 = time.perf_counter()
                result = synth.synthesize(spec, Path(scratch) / f"{r}-{t}")
                walls[t].append(time.perf_counter() - t0)
                digests.add(result.sha256)
                result.weights_file.unlink()
    n_params = result.n_params
    print(f"model {args.model}: {n_params / 1e6:.1f} M parameters, {result.dtype}")
    print(f"{'threads':>8} {'median s':>9} {'min s':>7} {'M params/s':>11} {'vs 1':>6}")
    base = statistics.median(walls[settings[0]])
    for t in settings:
        med = statistics.median(walls[t])
        rate = n_params / 1e6 / med
        print(f"{t:>8} {med:>9.2f} {min(walls[t]):>7.2f} {rate:>11.1f} {base / med:>6.2f}")
    same = len(digests) == 1
    print(f"sha256: {'the same for every setting' if same else 'DIFFERENT'} ({digests.pop()[:16]})")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
