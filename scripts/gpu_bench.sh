#!/usr/bin/env bash
# The GPU check for deployment runtimes (docs/deployment.md, "GPU"), one prepared run on a machine with an NVIDIA
# GPU: torch CUDA fp32/fp16 vs ONNX Runtime CUDA vs TensorRT fp16 for the default model at 720x1280 and the
# PSPNet-R50 STF+MAR configuration at 1024x2048, with label parity against torch CUDA fp32; then the GPU tests.
# Needs `make setup` done, a CUDA build of torch 2.13 in .venv and requirements-gpu.txt (see that file).
# TensorRT engines are cached in $VSSEG_TRT_ENGINE_CACHE (default ~/.cache/vsseg_ros/tensorrt): the second run
# of this script starts without rebuilding them ("start" in each row's runs_on says how long loading took).
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
out="${OUT:-out/bench}"
mkdir -p "$out"
python -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
  '| onnxruntime', o.__version__, o.get_available_providers())"
python -m vsseg_ros.bench.gpu --frames "${FRAMES:-20}" --warmup 5 --json "$out/gpu_bench.json"
python -m pytest -q test/test_runtimes.py -k gpu -rs
