#!/usr/bin/env bash
# Fetch, on a machine with a package registry, the wheels the lent GPU machine lacks (it
# cannot download): `onnx` and its dependencies for its Python 3.12, into .whl/h100 (ignored
# by git; carry [".whl/h100"] in the device call; scripts/gpu/onnx_site.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl/h100
"$PY" -m pip download onnx==1.23.2 ml_dtypes protobuf typing_extensions --no-deps \
  --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 -d .whl/h100
du -sh .whl/h100
