# Sourced by the device scripts (campaign.sh, ort_consistency.sh) from the repository root.
# The lent GPU machine has onnxruntime but not the `onnx` package, which torch.onnx.export
# needs to write the file. Its wheels (cp312, manylinux) travel in .whl/h100 (run
# `bash scripts/gpu/fetch_wheels.sh` here, then carry [".whl/h100"]); this installs them into
# .whl/h100-site, never into the system, and puts that folder on PYTHONPATH. Without the
# wheels nothing changes: the kit's ONNX cells then fail their export with the kit's message.
onnx_site() {
  local py="${PYTHON:-python}" site="$PWD/.whl/h100-site"
  $py -c "import onnx" 2>/dev/null && return 0
  [[ -d .whl/h100 ]] || { echo "onnx_site: no onnx and no .whl/h100: ONNX exports will fail"; return 0; }
  if [[ ! -d $site ]]; then
    local wheels=(.whl/h100/onnx-*.whl)
    $py -c "import ml_dtypes" 2>/dev/null || wheels+=(.whl/h100/ml_dtypes-*.whl)
    $py -c "import google.protobuf" 2>/dev/null || wheels+=(.whl/h100/protobuf-*.whl)
    $py -c "import typing_extensions" 2>/dev/null || wheels+=(.whl/h100/typing_extensions-*.whl)
    $py -m pip install -q --no-deps --no-index --target "$site" "${wheels[@]}" \
      || echo "onnx_site: the onnx wheel install failed"
  fi
  export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$site"
}
onnx_site
