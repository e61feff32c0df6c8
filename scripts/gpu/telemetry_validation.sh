#!/usr/bin/env bash
# Issue 4 validation on the GPU machine, in one call (about 3 minutes):
#   1. `kit gpu --json` (every command module must import with no textual/docker installed)
#   2. a 10-second sampler trace during a real gpt2-25m workload, joined per cell and phase
#   3. the sampler perturbation bench (off / 20 Hz / 100 Hz, interleaved rounds)
# Usage from the repository root:  bash scripts/gpu/telemetry_validation.sh
# Results go under $OUT (or /tmp/kit-telemetry-validation when $OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=.
OUT="${OUT:-/tmp/kit-telemetry-validation}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
status=0

echo "== kit gpu --json"
if ! $PY -m kit gpu --json | tee "$OUT/kit-gpu.json"; then
  # kit/cli.py imports every command module; one with a heavy top-level import (e.g.
  # scipy) breaks the whole CLI on this machine. Say so, then show the snapshot directly.
  status=1
  echo "!! python -m kit failed (a command module's import?); the snapshot without the CLI:"
  $PY -c "import json; from kit.gpu import detect; print(json.dumps(detect().to_dict(), indent=2))" | tee "$OUT/kit-gpu.json"
fi
echo "== kit gpu (table)"
$PY -m kit gpu || status=1
echo "== kit env --json (redacted; the package list is in the file)"
if ! $PY -m kit env --json > "$OUT/kit-env.json"; then
  status=1
  $PY -c "import json; from kit.env import host_fingerprint, redact; from kit.env.write import gpu_record; d=host_fingerprint(); d['gpu']=gpu_record(); print(json.dumps(redact(d)))" > "$OUT/kit-env.json"
fi
$PY -c "import json,sys; d=json.load(open('$OUT/kit-env.json')); d['packages']=len(d['packages'] or []); print(json.dumps(d, indent=1)[:3000])"

echo "== 10-second sampler trace during a gpt2-25m workload"
timeout 120 $PY scripts/gpu/trace_workload.py --out "$OUT/trace-run" --seconds 10 --hz 20 || status=1
head -5 "$OUT/trace-run/telemetry/gpu0.csv" 2>/dev/null
echo "rows: $(($(wc -l < "$OUT/trace-run/telemetry/gpu0.csv" 2>/dev/null || echo 1) - 1))"
cat "$OUT/trace-run/telemetry/sampler.json" 2>/dev/null

echo "== sampler perturbation (interleaved rounds)"
timeout 240 $PY scripts/bench/sampler_perturbation.py --rounds 30 --chunk 15 \
  --telemetry "$OUT/perturbation-telemetry" --json "$OUT/perturbation.json" || status=1
exit $status
