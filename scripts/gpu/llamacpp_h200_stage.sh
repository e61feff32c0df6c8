#!/usr/bin/env bash
# Stage what scripts/gpu/llamacpp_h200.sh carries to the GPU machine (it has no registry):
# the llama-cpp-python sdist WITHOUT its vendored models/ and docs/ folders and its .git
# (77 MB -> about 15 MB, under the 64 MiB a call carries) and the wheels of its build and
# runtime dependencies the GPU host lacks, and the GPT-2 tokenizer files. Run here, from the repository root; then carry
# [".whl/llamacpp-h200"]. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
DEST=.whl/llamacpp-h200
PIP=${PIP:-.venv/bin/pip}
mkdir -p "$DEST" /tmp/llamacpp-stage
if [[ ! -f $DEST/llama_cpp_python-$VERSION.tar.gz ]]; then
  $PIP download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d /tmp/llamacpp-stage
  rm -rf /tmp/llamacpp-stage/src && mkdir /tmp/llamacpp-stage/src
  tar xzf "/tmp/llamacpp-stage/llama_cpp_python-$VERSION.tar.gz" -C /tmp/llamacpp-stage/src
  root=/tmp/llamacpp-stage/src/llama_cpp_python-$VERSION
  rm -rf "$root/vendor/llama.cpp/models" "$root/vendor/llama.cpp/docs" "$root/.git"
  tar czf "$DEST/llama_cpp_python-$VERSION.tar.gz" -C /tmp/llamacpp-stage/src "llama_cpp_python-$VERSION"
fi
# Build backend (no build isolation there: no registry) and runtime deps, for CPython 3.12.
$PIP download -q --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --no-deps -d "$DEST" "scikit-build-core==0.11.6" "pathspec" "diskcache>=5.6.1" "gguf==0.19.0"
# The GPT-2 tokenizer (the GGUF export refuses to invent a vocabulary; the GPU machine has no
# hub): the shared folder's vocab.json + merges.txt.
TOK=${KIT_GPT2_TOKENIZER_DIR:-../shared/data/gpt2-tokenizer}
mkdir -p "$DEST/gpt2-tokenizer" && cp "$TOK/vocab.json" "$TOK/merges.txt" "$DEST/gpt2-tokenizer/"
du -sh "$DEST"; ls -l "$DEST"
