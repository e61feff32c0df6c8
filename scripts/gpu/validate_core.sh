#!/usr/bin/env bash
# GPU validation of the measurement core (issue 3) and telemetry (issue 4), on the H100 machine
# without Docker. Run from the repository root:  OUT=/some/dir bash scripts/gpu/validate_core.sh
# Writes (at most 8 files) into $OUT: gpu.json, the two runs' summaries and journals (tarred),
# the overhead table. Needs: torch with CUDA, transformers, pyyaml, scipy, nvidia-ml-py.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export KIT_CACHE=${KIT_CACHE:-/tmp/kit-cache}
OUT=${OUT:-/tmp/kit-validation}
mkdir -p "$OUT"
RUNS=/tmp/kit-runs
rm -rf "$RUNS"; mkdir -p "$RUNS"
log() { echo "== $(date +%T) $*"; }

log "kit gpu --json"
python -m kit gpu --json > "$OUT/gpu.json" || echo "kit gpu failed"
python -m kit models prepare gpt2-25m gpt2-50m gpt2-100m --weights random

log "TR126 phase-2 dynamic prefill, gpt2-25m/50m/100m, eager vs compiled, 30 reps"
python -m kit run --matrix tr126 --select 'group=phase2-dynamic,model=gpt2-25m|gpt2-50m|gpt2-100m' \
  --weights random --group-timeout 600 --out "$RUNS/dynamic" 2>&1 | tail -n 12
log "TR126 phase-2 baseline kv_decode and e2e_kv, gpt2-25m"
python -m kit run --matrix tr126 --select 'group=phase2-baseline,model=gpt2-25m,mode=kv_decode|e2e_kv' \
  --weights random --group-timeout 900 --out "$RUNS/baseline" 2>&1 | tail -n 12

for r in dynamic baseline; do
  python -m kit summarize "$RUNS/$r" > "$RUNS/$r/summary.txt" 2>&1
  grep -h '"event":"run_finished"\|"event":"interrupted"' "$RUNS/$r/journal.jsonl" | tail -1
done
tar -C "$RUNS" --exclude='compile-cache-*' --exclude='input-*.json' -czf "$OUT/runs.tar.gz" dynamic baseline
log "overhead: kit vs bare loop, gpt2-25m prefill on cuda"
python scripts/bench/overhead.py --device cuda --rounds 8 --reps 30 | tee "$OUT/overhead.txt"
log "done"
