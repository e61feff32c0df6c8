#!/usr/bin/env bash
# Issue 14 on the GPU machine: llama-cpp-python built with CUDA for CMAKE_CUDA_ARCHITECTURES=90
# only (H100/H200), flash-attention kernels off (GGML_CUDA_FA=OFF), then gpt2-25m and gpt2-100m
# on llama-cpp vs transformers (prefill and per-token decode medians, one table).
# Carry [".whl/llamacpp-h200"], staged here by scripts/gpu/llamacpp_h200_stage.sh (the sdist
# without its vendored models/ and docs/, ~13 MB, and the build/runtime wheels the host lacks).
# Expected: build 4-7 min on 16 cores (one architecture, no FA kernels), table ~2 min: likely
# one call of <= 9.5 min, not certain. The CMake build folder (.whl/llamacpp-h200-build) and
# the wheel stay on a warm machine, so a second call resumes the build incrementally and skips
# it once the wheel exists. Writes under $OUT: build.log, table-cuda.md, run.tar.gz, steps.log.
# Usage from the repository root:  bash scripts/gpu/llamacpp_h200.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/kit-llamacpp-h200}"
PY="${PYTHON:-python}"
STAGE=.whl/llamacpp-h200
SITE="$PWD/.whl/llamacpp-h200-site"
WHEELS="$PWD/.whl/llamacpp-h200-wheel"
BUILD="$PWD/.whl/llamacpp-h200-build"
BUDGET_S=${BUDGET_S:-540}
t0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - t0) )); }
mkdir -p "$OUT" "$SITE" "$WHEELS"
exec > >(tee -a "$OUT/steps.log") 2>&1
export KIT_CACHE="$OUT/cache" HF_HUB_OFFLINE=1
timeout 60 $PY -m pip install -q --no-deps --no-index --target "$SITE" "$STAGE"/*.whl || echo "!! deps"
# --target puts the wheels' packages in $SITE; cmake and nvcc come from the machine.
export PYTHONPATH="$PWD:$SITE"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nvcc --version | tail -1; cmake --version | head -1
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  b0=$(date +%s)
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    timeout $(( $(left) - 120 )) $PY -m pip wheel --no-deps --no-build-isolation --no-index \
      -C "build-dir=$BUILD" -w "$WHEELS" "$STAGE"/llama_cpp_python-*.tar.gz > "$OUT/build.log" 2>&1
  echo "build: rc $? after $(( $(date +%s) - b0 )) s"
fi
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "!! no wheel yet (see build.log); call again on the warm machine to resume the build"
  tail -n 20 "$OUT/build.log"
  exit 0
fi
timeout 60 $PY -m pip install -q --no-deps --no-index --target "$SITE" "$WHEELS"/llama_cpp_python-*.whl
$PY -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__, 'gpu offload', llama_cpp.llama_supports_gpu_offload())"
for d in "$STAGE/gpt2-tokenizer" shared/data/gpt2-tokenizer; do
  [[ -f $d/vocab.json ]] && export KIT_GPT2_TOKENIZER_DIR="$(cd "$d" && pwd)"
done
echo "tokenizer: ${KIT_GPT2_TOKENIZER_DIR:-none (the export will refuse)}; $(left) s left"
timeout $(( $(left) - 20 )) $PY scripts/bench/llamacpp_vs_transformers.py --out "$OUT/cuda" \
  --device cuda --reps 20 --warmup 3 --max-new-tokens 64 > "$OUT/table-cuda.md"
echo "bench: rc $?"; cat "$OUT/table-cuda.md"
tar czf "$OUT/run.tar.gz" -C "$OUT" --exclude=cache --exclude='compile-cache-*' cuda 2>/dev/null
rm -rf "$OUT/cache" "$OUT/cuda"
echo "total $(( $(date +%s) - t0 )) s"
