#!/usr/bin/env bash
# Issue 16 on the GPU machine (one call, about 2-3 minutes): does a GPU run's report name its
# stack, and does the host's stack match the locked image torch:cuda-2.11?
#   1. `python -m kit.harness --self-check torch` on the host (CUDA libraries, GPU visible);
#   2. a tiny TR126 run (gpt2-25m, phase2-dynamic, eager, 3 reps) bundled; its REPORT.md
#      must carry "stack: torch 2.11.0+cu130, ... (= image torch:cuda-2.11, lock sha256 ...)";
#   3. one tensorrt cell of TR117, which must come out `skipped` (no tensorrt on that host):
#      no engine is built or timed there either.
# Usage from the repository root:  bash scripts/gpu/stack_report.sh
# (KIT_STACK_DEVICE=cpu runs the same on a CPU machine, as a dry run of the script itself.)
# Results under $OUT (or /tmp/kit-stack-report): self-check.json, stack.txt, report.md,
# tensorrt.txt, run.log, and stack-report.tar.gz holding them.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/kit-stack-report}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export KIT_CACHE="$OUT/cache" HF_HUB_OFFLINE=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

timeout 120 $PY -m kit.harness --self-check torch > "$OUT/self-check.json" 2>&1
echo "self-check rc $?" > "$OUT/stack.txt"

timeout 300 $PY -m kit run --matrix tr126 --weights random --out "$OUT/run" \
  --select 'group=phase2-dynamic,model=gpt2-25m,backend=transformers-eager,scenario=single_short' \
  --reps 3 ${KIT_STACK_DEVICE:+--device "$KIT_STACK_DEVICE"} > "$OUT/run.log" 2>&1
echo "run rc $?" >> "$OUT/stack.txt"
timeout 120 $PY -m kit bundle "$OUT/run" >> "$OUT/run.log" 2>&1
timeout 120 $PY -m kit report "$OUT/run.tar.gz" --output "$OUT/report" --no-plots >> "$OUT/run.log" 2>&1
cp "$OUT/report/REPORT.md" "$OUT/report.md" 2>/dev/null
grep -h "stack:" "$OUT/report.md" >> "$OUT/stack.txt" 2>/dev/null || echo "no stack line" >> "$OUT/stack.txt"
$PY - "$OUT/run/env" >> "$OUT/stack.txt" 2>&1 <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("process-*.json")):
    print(path.name, json.dumps(json.loads(path.read_text()).get("stack")))
PY

timeout 300 $PY -m kit run --matrix tr117 --weights random --out "$OUT/trt" \
  --select 'backend=tensorrt,quantization=fp32,scenario=single_short,prompt_index=0' --reps 1 \
  ${KIT_STACK_DEVICE:+--device "$KIT_STACK_DEVICE"} \
  > "$OUT/tensorrt.txt" 2>&1
echo "tensorrt run rc $?" >> "$OUT/tensorrt.txt"
cat "$OUT/trt/cells.jsonl" >> "$OUT/tensorrt.txt" 2>/dev/null

tar -C "$OUT" -czf "$OUT/stack-report.tar.gz" self-check.json stack.txt report.md tensorrt.txt run.log 2>/dev/null
rm -rf "$OUT/cache" "$OUT/run" "$OUT/trt" "$OUT/report" "$OUT/run.tar.gz"
cat "$OUT/stack.txt"
