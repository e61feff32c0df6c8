#!/usr/bin/env bash
# Issue 12 on the H200 (host runner, no Docker): real runs of the claims' cells, each bundled,
# with `kit claims` (text and JSON) on each bundle. One PHASE per call (each must stay under
# 9.5 minutes); the phases together cover TR147 v1 and v4A (both compile modes, prefill and
# kv_decode) and TR126 phase-2 dynamic + baseline on the GPT-2 family.
#
#   bash scripts/gpu/claims_h200.sh tr147-v1    # TR147 v1, GPT-2 family, full: 40 cells
#   bash scripts/gpu/claims_h200.sh tr147-v4a   # TR147 v4A default + reduce-overhead (on_error: continue)
#   bash scripts/gpu/claims_h200.sh tr126       # TR126 phase-2 dynamic (GPT-2) + baseline decode
#   bash scripts/gpu/claims_h200.sh tr126 gate  # the same, plus `kit gate tr126 --record` (+1-2 min:
#                                               # only when the tr126 phase ran well under its limits)
#
# Estimates (issue journal numbers: spawn ~5 s, load 7-10 s, compile 7-18 s per shape per
# compiled group; 16 cores):
# - tr147-v1: 8 groups x ~15 s spawn+load = 120 s; 4 compiled groups x 5 token_len shapes x
#   7-18 s = 140-360 s; 40 cells x 63 prefill calls (a few ms) ~ 15 s => 4.5-8.5 min.
# - tr147-v4a: both v4A groups, gpt2-25m and gpt2-100m fp16, token_len 8|128, 30 timed reps
#   (of 60; 3 warmup): 8 groups x 15 s = 120 s; 4 compiled groups x 4 shapes (2 prefill, 2
#   decode) x 7-18 s = 110-290 s; 16 kv_decode cells x 33 calls x 64 tokens x ~2 ms ~ 70 s
#   => 5-8 min. The full v4A GPT-2 family (16 groups, 160 cells) needs ~25 min: not one call.
# - tr126: phase2-dynamic GPT-2 (54 cells; 229 s on the H100) + phase2-baseline gpt2-25m
#   kv_decode on 3 scenarios (12 cells): every compiled reduce-overhead decode cell crashed on
#   the H100, and a compiled process ends after a crash, so each of its 6 cells costs a fresh
#   process (~5 + 8 + 10 s) ~ 140 s; eager 6 cells x 33 x 64 x ~1.5 ms ~ 20 s => 6.5-8 min.
#   The whole baseline GPT-2 family (216 cells, 72 compiled decode crashes) needs ~40 min.
# Each `kit run` is under `timeout -s TERM` (the run then ends `interrupted` and its bundle
# says INCOMPLETE, still verifiable and claim-able).
#
# Writes under $OUT (or /tmp/kit-claims-h200 when unset) one tar, claims-<PHASE>.tar, with:
# <phase>.tar.gz (the bundle; report/REPORT.md opens with the claims table), claims.txt,
# claims.json, run.log; and prints claims.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
PHASE="${1:-}"
OUT="${OUT:-/tmp/kit-claims-h200}"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" KIT_CACHE="${KIT_CACHE:-/tmp/kit-cache}" HF_HUB_OFFLINE=1
WORK="$(mktemp -d /tmp/kit-claims-XXXX)"
mkdir -p "$OUT"

runs=()
declare -A claims_of=()  # run name -> a claims file, for a matrix without built-in claims
kit_run() {  # NAME LIMIT_S MATRIX SELECT [EXTRA...]
  local name="$1" limit="$2" matrix="$3" select="$4"
  shift 4
  echo "== $name: kit run --matrix $matrix --select '$select' $* (limit ${limit}s)"
  local t0=$SECONDS
  timeout -s TERM "$limit" $PY -m kit run --matrix "$matrix" --select "$select" --weights random \
    --idle-baseline 0 ${KIT_DEVICE:+--device "$KIT_DEVICE"} --out "$WORK/$name" "$@" >>"$WORK/run.log" 2>&1
  echo "   exit $? after $((SECONDS - t0)) s"
  runs+=("$name")
}

case "$PHASE" in
  tr147-v1)
    kit_run tr147-v1 480 tr147 "group=v1-prefill,model=gpt2-*"
    ;;
  tr147-v4a)
    kit_run tr147-v4a 480 tr147 \
      "group=v4a-*,model=gpt2-25m|gpt2-100m,dtype=fp16,token_len=8|128" --reps 30
    ;;
  tr126)
    kit_run tr126-dynamic 270 tr126 "group=phase2-dynamic,model=gpt2-*"
    if [[ "${2:-}" == gate && -d "$WORK/tr126-dynamic" ]]; then  # +60-120 s: claim tr126-phase1-gate
      echo "== kit gate tr126 --record tr126-dynamic"
      timeout 150 $PY -m kit gate tr126 --record "$WORK/tr126-dynamic" >>"$WORK/run.log" 2>&1
      echo "   gate exit $?"
    fi
    kit_run tr126-baseline 210 tr126 \
      "group=phase2-baseline,model=gpt2-25m,mode=kv_decode,scenario=single_micro|single_short|single_medium"
    ;;
  tr126-baseline-a)  # the rest of phase-2 baseline, GPT-2, split to fit calls (kit merge joins them)
    kit_run tr126-baseline-prefill 200 tr126 "group=phase2-baseline,model=gpt2-*,mode=prefill"
    kit_run tr126-baseline-eager-decode "${LIMIT_B:-320}" tr126 \
      "group=phase2-baseline,model=gpt2-25m|gpt2-50m|gpt2-100m,dtype=fp32,backend=transformers-eager,mode=kv_decode|e2e_kv"
    ;;
  tr126-baseline-b)  # run by hand on 2026-12-02: fp16 eager decode (18 cells, about 200 s)
    kit_run tr126-baseline-fp16-decode 240 tr126 \
      "group=phase2-baseline,model=gpt2-100m,dtype=fp16,backend=transformers-eager,mode=kv_decode|e2e_kv"
    ;;
  tr126-baseline-c)  # compiled reduce-overhead decode, not yet run: 48 of the 66 cells left (each
    # crashes at its first timed call and costs a fresh process, about 14 s: ~11 min; LIMIT_B)
    kit_run tr126-baseline-compiled-decode "${LIMIT_B:-540}" tr126 \
      "group=phase2-baseline,model=gpt2-50m|gpt2-100m,backend=transformers-compile,mode=kv_decode|e2e_kv"
    ;;
  tr126-decode-crash)  # compiled decode of gpt2-50m/100m on one scenario (6 cells, ~2 min):
    # claim tr126-p2-baseline-decode-equal then has side A for every key (gpt2-25m has all 30)
    kit_run tr126-compiled-decode-micro "${LIMIT_B:-200}" tr126 \
      "group=phase2-baseline,model=gpt2-50m|gpt2-100m,backend=transformers-compile,mode=kv_decode,scenario=single_micro"
    ;;
  tr121)  # TR121's gpt2-5m vs gpt2-25m decode inversion (4 cells, under a minute); claims of tr126
    kit_run tr121-inversion "${LIMIT_B:-150}" scripts/gpu/matrices/tr121-inversion.yaml "group=decode-inversion"
    claims_of[tr121-inversion]=kit/matrix/builtin/claims/tr126.yaml
    ;;
  tr147-v4a-b)  # v4A gpt2-50m, token_len 8|128 (16 cells)
    kit_run tr147-v4a-50m "${LIMIT_B:-480}" tr147 "group=v4a-*,model=gpt2-50m,token_len=8|128" --reps 30
    ;;
  *)
    echo "usage: $0 tr147-v1|tr147-v4a|tr147-v4a-b|tr126|tr126-baseline-a|tr126-baseline-b|tr126-baseline-c|tr126-decode-crash|tr121" >&2
    exit 2
    ;;
esac

files=(run.log claims.txt claims.json)
: >"$WORK/claims.txt"
: >"$WORK/claims.json"
for name in "${runs[@]}"; do
  [[ -d "$WORK/$name" ]] || { echo "!! $name: no run directory" | tee -a "$WORK/claims.txt"; continue; }
  timeout 120 $PY -m kit bundle "$WORK/$name" -o "$WORK/$name.tar.gz" >>"$WORK/run.log" 2>&1 \
    || echo "!! bundle of $name failed" | tee -a "$WORK/claims.txt"
  timeout 60 $PY -m kit verify "$WORK/$name.tar.gz" >>"$WORK/claims.txt" 2>&1
  cl=(); [[ -n "${claims_of[$name]:-}" ]] && cl=(--claims "${claims_of[$name]}")
  timeout 120 $PY -m kit claims "$WORK/$name.tar.gz" "${cl[@]}" >>"$WORK/claims.txt" 2>&1
  echo >>"$WORK/claims.txt"
  timeout 120 $PY -m kit claims "$WORK/$name.tar.gz" "${cl[@]}" --json >>"$WORK/claims.json" 2>>"$WORK/run.log"
  timeout 60 $PY -m kit summarize "$WORK/$name" >>"$WORK/run.log" 2>&1
  files+=("$name.tar.gz")
done
tar -C "$WORK" -cf "$OUT/claims-$PHASE.tar" "${files[@]}"
cat "$WORK/claims.txt"
ls -la "$OUT"
