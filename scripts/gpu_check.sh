#!/usr/bin/env bash
# Issue 3's GPU check in one command, for a machine with an NVIDIA GPU whose python3 holds a CUDA PyTorch
# and torchvision (the lent device machines' image has both, plus pluggy and pytest): builds detcore-native
# with its CUDA kernels into a scratch folder (nothing is installed), then runs the ops tests (CUDA parity
# and torchvision comparisons included; deformable and position-sensitive RoI pooling: CUDA vs CPU kernels in
# tests/ops/test_deform_roi_pool.py and test_ps_roi_pool.py) and the ops benchmark (native vs torchvision on
# the GPU; deform_roi_pool and ps_roi_pool rows native only).
# Logs go to $OUT, else ./gpu_check_out. PYTHON picks the interpreter; FORCE_CUDA=0 builds CPU-only.
# Usage: bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
py="${PYTHON:-python3}"
mkdir -p "$out"
site="$(mktemp -d)"
echo "gpu_check: building detcore-native (FORCE_CUDA=${FORCE_CUDA:-1})"
FORCE_CUDA="${FORCE_CUDA:-1}" MAX_JOBS="${MAX_JOBS:-16}" "$py" -m pip install --no-deps --no-build-isolation \
  --target "$site" ./native >"$out/build.txt" 2>&1 || { tail -40 "$out/build.txt"; exit 1; }
export PYTHONPATH="$site:$PWD"
"$py" -c "import torch, detcore_native
cuda = torch.cuda.is_available()
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if cuda else 'no GPU',
      'cuda kernels built:', detcore_native.cuda_built())" | tee "$out/env.txt"
"$py" -m pytest -q -p no:cacheprovider tests/ops 2>&1 | tee "$out/tests_ops.txt"
"$py" benchmarks/ops.py --markdown 2>&1 | tee "$out/benchmark_ops.txt"
