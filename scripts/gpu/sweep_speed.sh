#!/usr/bin/env bash
# Sweep speed (issue 13) on the H200, in ONE device call of at most 9.5 minutes.
# Run from the repository root:  OUT=/some/dir bash scripts/gpu/sweep_speed.sh
# On the H200 (2026-12-02) a loop run took 113-117 s and a kit run 132 s before parking: the two
# interleaved pairs take about 400 s, the benches after them about 130 s (BUDGET, default 560).
# 1. the 54-cell TR126 phase-2-dynamic selection (gpt2-25m/50m/100m, eager + compiled), run
#    loop, kit, loop, kit (SEQ=...,kitsep adds kit --park-max 0) as the deadline allows (scripts/bench/sweep_wall.py:
#    walls, kit/loop, medians side by side);
# 2. the compiled (reduce-overhead, dynamic) sub-ms overhead bench, gpt2-25m, prefill of 1 to 64
#    tokens (kit/bare with per-round spreads), the same split into its parts, and kv_decode
#    per-token steps (compile mode default).
# Writes into $OUT: sweep_speed.tar.gz (all logs, tables, the kit runs' journals/summaries) and
# summary.txt (the tables). Needs torch with CUDA, transformers, pyyaml; no textual, no docker.
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
export KIT_CACHE=${KIT_CACHE:-/tmp/kit-cache}
OUT=${OUT:-/tmp/kit-sweep-speed}
WORK=/tmp/kit-sweep-speed-work
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
T0=$(date +%s)
log() { echo "== $(date +%T) (+$(( $(date +%s) - T0 ))s) $*"; }
SEL=${SEL:-'group=phase2-dynamic,model=gpt2-25m|gpt2-50m|gpt2-100m'}
# A CPU dry run of the script's mechanics: DEVICE=cpu SEL='...' EXTRA='--reps 3'
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
WALL_DEVICE=""; [ "$DEVICE" = cpu ] && WALL_DEVICE="--device cpu"

{
log "environment"
python -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"
nproc
log "prepare the three models (random weights, cached for every run below)"
timeout 120 python -m kit models prepare gpt2-25m gpt2-50m gpt2-100m --weights random | tail -n 3

log "sweep wall: ${SEQ:-loop,kit,loop,kit} ($SEL)"
timeout 460 python scripts/bench/sweep_wall.py --matrix tr126 --select "$SEL" --weights random \
  --sequence "${SEQ:-loop,kit,loop,kit}" --deadline-s ${WALL_DEADLINE:-420} --out "$WORK/wall" $WALL_DEVICE $EXTRA
log "sweep wall exit $?"
for d in "$WORK"/wall/kit-* "$WORK"/wall/kitnp-* "$WORK"/wall/kitsep-*; do
  [ -d "$d" ] || continue
  echo "-- $d"
  grep -h '"event":"run_finished"\|"event":"precompile_phase_finished"' "$d/journal.jsonl" | cut -c1-400
  grep -h '"event":"group_started"' "$d/journal.jsonl" | grep -o '"startup_ms":[0-9.]*,"start_method":"[a-z]*"'
  grep -h '"event":"phase"' "$d/journal.jsonl" | grep -o '"phase":"\(load\|compile\)","cell":[^,]*,"t0_ns":[0-9]*,"t1_ns":[0-9]*,"ms":[0-9.]*' | sed 's/"t0_ns":[0-9]*,"t1_ns":[0-9]*,//' | head -n 20
done

REMAIN=$(( ${BUDGET:-560} - ($(date +%s) - T0) ))
log "compiled overhead bench (prefill 1..64 tokens), ${REMAIN}s left"
if [ "$REMAIN" -gt 60 ]; then
  timeout $(( REMAIN - 35 )) python scripts/bench/overhead.py --model gpt2-25m --device "$DEVICE" \
    --backend compiled --token-lens 1,4,16,64 --rounds 10 --chunk 20
fi
REMAIN=$(( ${BUDGET:-560} - ($(date +%s) - T0) ))
log "compiled prefill overhead by parts (scripts/bench/overhead_parts.py), ${REMAIN}s left"
if [ "$REMAIN" -gt 60 ]; then
  timeout $(( REMAIN - 40 )) python scripts/bench/overhead_parts.py --model gpt2-25m --device "$DEVICE" \
    --token-lens 1,16 --rounds 10 --chunk 20
fi
REMAIN=$(( ${BUDGET:-560} - ($(date +%s) - T0) ))
log "compiled (mode default: reduce-overhead decode raises TR126's CUDAGraphs error) kv_decode per-token steps, ${REMAIN}s left"
if [ "$REMAIN" -gt 30 ]; then
  timeout $(( REMAIN - 10 )) python scripts/bench/overhead.py --model gpt2-25m --device "$DEVICE" \
    --backend compiled --compile-mode default --mode kv_decode --new-tokens 16 --token-lens 16 --rounds 8 --chunk 10
fi
log "done"
} 2>&1 | tee "$WORK/sweep_speed.log" | grep --line-buffered -v "Loading weights" > "$OUT/summary.txt"

cd "$WORK" && tar --exclude='compile-cache-*' --exclude='input-*.json' \
  --exclude='forkserver-cache-never-used' -czf "$OUT/sweep_speed.tar.gz" . 2>/dev/null
ls -la "$OUT"
