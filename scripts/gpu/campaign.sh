#!/usr/bin/env bash
# The H200 campaign (issue 17), one device call: `kit gate tr126` first (when asked), then one
# `kit run` per RUN argument, each cut by what is left of the call's budget (SIGTERM: the run
# ends `interrupted` and resumes with `kit run --resume`, or is joined later with `kit merge`).
#   OUT=/dir bash scripts/gpu/campaign.sh BUDGET_S [gate] NAME@MATRIX@SELECT[@EXTRA] ...
# EXTRA: more `kit run` options for that run, split at spaces (e.g. `--reps 30`, or
# `--skip-done docs/validation/h200-tr126.tar.gz`: only the cells that bundle has not finished).
# Back-to-back calls find the machine warm, its /tmp/kit-cache (synthesized weights) kept:
# put the selections of one model family in one session's consecutive calls.
# ONNX Runtime cells need the onnx wheels carried: `bash scripts/gpu/fetch_wheels.sh` first,
# then carry [".whl/h100"].
# Writes $OUT/gpu.json, $OUT/gate.txt and $OUT/runs.tar.gz (the run directories without their
# compiler caches and harness inputs). Host runner, synthesized weights (--weights random).
# The runs live in $KIT_CAMPAIGN_RUNS (default /tmp/kit-runs): a NAME already there resumes.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
source scripts/gpu/onnx_site.sh  # ONNX Runtime cells: the carried onnx wheels, when present
# llama.cpp cells: the CUDA llama-cpp-python that scripts/gpu/llamacpp_h200.sh built and
# installed on this machine in an earlier call (ignored folders stay on a warm machine), and
# the GPT-2 tokenizer files its GGUF export needs (carried in .whl/llamacpp-h200).
if [[ -d .whl/llamacpp-h200-site/llama_cpp ]]; then
  export PYTHONPATH="$PYTHONPATH:$PWD/.whl/llamacpp-h200-site"
fi
for d in .whl/llamacpp-h200/gpt2-tokenizer ../shared/data/gpt2-tokenizer; do
  if [[ -z ${KIT_GPT2_TOKENIZER_DIR:-} && -f $d/vocab.json ]]; then
    export KIT_GPT2_TOKENIZER_DIR="$(cd "$d" && pwd)"
  fi
done
export KIT_CACHE=${KIT_CACHE:-/tmp/kit-cache}
OUT=${OUT:-/tmp/kit-campaign}
RUNS=${KIT_CAMPAIGN_RUNS:-/tmp/kit-runs}  # kept on a warm machine: a run cut off resumes there
mkdir -p "$OUT" "$RUNS"
start=$(date +%s)
budget=$1; shift
left() { echo $(( budget - ($(date +%s) - start) )); }
log() { echo "== $(date +%T) [$(left) s left] $*"; }

timeout 30 python -m kit gpu --json > "$OUT/gpu.json" 2>&1 || log "kit gpu failed"
names=()
for arg in "$@"; do
  if [[ $arg == gate ]]; then
    log "kit gate tr126"
    timeout 150 python -m kit gate tr126 > "$OUT/gate.txt" 2>&1; echo "gate exit $?" >> "$OUT/gate.txt"
    tail -n 12 "$OUT/gate.txt"
    continue
  fi
  IFS=@ read -r name matrix select extra <<< "$arg"
  read -r -a extra_args <<< "${extra:-}"
  names+=("$name")
  t=$(( $(left) - 25 ))
  if (( t < 30 )); then log "no time left for $name"; continue; fi
  if [[ -f $RUNS/$name/run.json ]]; then  # an earlier call on this machine made it
    log "resume $name: kit run --resume $RUNS/$name (timeout $t s)"
    timeout -s TERM -k 20 "$t" python -m kit run --resume "$RUNS/$name" 2>&1 | tail -n 6
  else
    log "run $name: --matrix $matrix --select '$select' ${extra:+$extra }(timeout $t s)"
    timeout -s TERM -k 20 "$t" python -m kit run --matrix "$matrix" --select "$select" \
      --weights random --group-timeout 600 --yes "${extra_args[@]}" --out "$RUNS/$name" 2>&1 | tail -n 6
  fi
done
made=()  # a run that planned nothing (e.g. --skip-done found every cell done) has no folder
for n in "${names[@]}"; do [[ -d $RUNS/$n ]] && made+=("$n"); done
log "packing ${made[*]:-nothing}"
if ((${#made[@]})); then
  tar -C "$RUNS" --exclude='compile-cache*' --exclude='input-*.json' -czf "$OUT/runs.tar.gz" "${made[@]}"
fi
ls -la "$OUT"
log "done"
