#!/usr/bin/env bash
# Issue 8 on the GPU machine (one call, about 5 minutes): ONNX Runtime CPU-provider cells and
# transformers cells of the same models in ONE run, as a consistency table:
#   gpt2-25m and gpt2-50m (synthesized weights), single_short prompt 0, prefill / kv_decode /
#   e2e_kv: transformers-eager cpu, onnxruntime cpu, transformers-eager cuda, and one
#   onnxruntime cuda group that MUST come out degraded there (onnxruntime 1.30 has the CPU
#   provider only: the fallback check, on a real GPU machine).
# That machine lacks the `onnx` package: `bash scripts/gpu/fetch_wheels.sh` here, then carry
# [".whl/h100"] (scripts/gpu/onnx_site.sh installs it beside the system's packages).
# Usage from the repository root:  bash scripts/gpu/ort_consistency.sh
# Results go under $OUT (or /tmp/kit-ort-consistency when $OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/kit-ort-consistency}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export KIT_CACHE="$OUT/cache" HF_HUB_OFFLINE=1

source scripts/gpu/onnx_site.sh
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch, transformers, onnxruntime, onnx; print('torch', torch.__version__, 'transformers', transformers.__version__, 'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), 'onnx', onnx.__version__)"

cat > "$OUT/matrix.yaml" <<'EOF'
schema: 1
id: ort-consistency
title: "issue 8: ONNX Runtime CPU provider vs transformers, same models, one run"
defaults: {repetitions: 20, warmup: 3, max_new_tokens: 32, seed: 42, sampling: {do_sample: false}}
groups:
  - id: consistency
    extension: true
    backends:
      - {backend: transformers-eager, label: eager-cpu, device: cpu}
      - {backend: onnxruntime, label: ort-cpu, device: cpu}
      - {backend: transformers-eager, label: eager-cuda, device: cuda}
    models: [{model: gpt2-25m, dtype: fp32}, {model: gpt2-50m, dtype: fp32}]
    scenarios: [single_short]
    modes: [prefill, kv_decode, e2e_kv]
  - id: fallback
    extension: true
    repetitions: 3
    warmup: 1
    backends:
      - {backend: onnxruntime, label: ort-cuda-asked, device: cuda}
    models: [{model: gpt2-25m, dtype: fp32}]
    scenarios: [single_short]
    modes: [prefill]
EOF
rm -rf "$OUT/run"
timeout 1500 $PY -m kit run --matrix "$OUT/matrix.yaml" --select prompt_index=0 --weights random \
  --idle-baseline 0 --out "$OUT/run"
echo "run exit: $?"

$PY - "$OUT/run" <<'EOF'
import json, statistics, sys
from pathlib import Path
run = Path(sys.argv[1])
cells = {c["id"]: c for c in json.loads((run / "matrix" / "cells.json").read_text())}
ok, ends = {}, {}
for line in (run / "journal.jsonl").read_text().splitlines():
    e = json.loads(line)
    if e.get("event") == "sample" and not e["warmup"] and e["status"] == "ok":
        ok.setdefault(e["cell"], []).append(e["latency_ms"])
    elif e.get("event") == "cell_finished":
        ends[e["cell"]] = e
    elif e.get("event") == "phase" and e["phase"] in ("export", "session"):
        print(f"phase {e['phase']}: {e['ms']:.0f} ms {json.dumps(e['detail'])[:300]}")
print("| model | backend | device | mode | median ms | ms/token | n ok | status | parity max diff | providers used |")
print("|---|---|---|---|---|---|---|---|---|---|")
for cid, c in sorted(cells.items(), key=lambda kv: (kv[1]["group"], kv[1]["model"], kv[1]["mode"], kv[1]["backend_label"])):
    xs, end = ok.get(cid, []), ends.get(cid, {})
    med = statistics.median(xs) if xs else float("nan")
    per = med / (1 if c["mode"] == "prefill" else c["max_new_tokens"])
    ev = end.get("evidence", {})
    parity = ev.get("parity", {}).get("max_abs_diff")
    status = end.get("status", "not run") + (" (" + "; ".join(end.get("reasons", [])) + ")" if end.get("reasons") else "")
    print(f"| {c['model']} | {c['backend_label']} | {c['device']} | {c['mode']} | {med:.2f} | {per:.3f} | {len(xs)} "
          f"| {status} | {parity if parity is not None else '-'} | {ev.get('providers_used', '-')} |")
EOF
cp -r "$OUT/run/journal.jsonl" "$OUT/run/cells.jsonl" "$OUT/" 2>/dev/null
