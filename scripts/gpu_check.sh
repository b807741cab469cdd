#!/usr/bin/env bash
# The GPU check of nnbench: one command, about 6 minutes on one H100, no network.
#
#   bash scripts/gpu_check.sh            (from anywhere; PYTHON=python3.12 to pick the interpreter)
#
# It runs, in this order, and keeps going when a part fails:
#   1. the GPU test matrix: pytest on the test files that need neither Hydra nor MLflow
#      (tests/backend, tests/nn, tests/gpu, tests/test_train.py, tests/test_optim.py), where
#      every backend test also runs on cupy: fused paths against the reference Backend,
#      CUDA graphs against eager training;
#   2. NumPy-vs-CuPy parity: same seed, initial weights and batches, 50 steps, every step's
#      loss within the dtype's tolerance (python -m nnbench.bench.gpu_parity);
#   3. the GPU benchmark table: nnbench-cupy eager / fused / CUDA graph against PyTorch CUDA
#      eager and PyTorch with a CUDA graph, B = 64 ... 4096, TF32 off and on, plus
#      nnbench-cupy / nnbench-numpy, with the issue's target ratios
#      (python -m nnbench.bench.gpu_table);
#   4. the stacked table: M = 1, 2, 4, ..., 256 digits models (64-64-64-10, B = 64) as one
#      nnbench.stack.Stack on CuPy, eager and as a CUDA graph (where nnbench.stack has one),
#      against PyTorch's torch.func ensemble on CUDA and one solo step, with the target
#      "a stack of 64 steps in <= 3x the time of one" (python -m nnbench.bench.gpu_stack_table).
# Everything printed also goes to outputs/gpu_check-<date>.txt (GPU_CHECK_OUT=<dir> to move
# it). Exit status: 0 when every part passed, 1 when one failed, 3 without CuPy or a GPU
# (checked first, in seconds).
#
# What the machine needs: Python >= 3.10 with numpy, cupy (cupy-cuda13x or cupy-cuda12x
# matching the driver), torch with CUDA, and pytest; threadpoolctl and array-api-strict are
# optional (without them a few CPU-side checks are skipped). nnbench itself is used from this
# checkout (PYTHONPATH), not installed; Hydra and MLflow are not needed.
# A package missing on a machine without network: on a networked machine with the same
# Python version and platform, download the wheels, copy the folder over, install offline:
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d wheels cupy-cuda13x pytest threadpoolctl array-api-strict
#   pip install --no-index --find-links wheels cupy-cuda13x pytest    # on the GPU machine
# (torch's CUDA wheels come from its own index: add --index-url
#  https://download.pytorch.org/whl/cu130 to the download of torch.)
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
OUT_DIR=${GPU_CHECK_OUT:-$ROOT/outputs}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check-$(date +%Y%m%d-%H%M%S).txt"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

exec > >(tee -a "$LOG") 2>&1

echo "nnbench GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "log: $LOG"

# ---------------------------------------------------------------- 0. CuPy and a GPU, or stop
if ! "$PYTHON" - <<'PY'
import sys
try:
    import cupy
except ImportError as exc:
    sys.exit(f"gpu_check: CuPy is not installed ({exc}): install cupy-cuda13x (or cupy-cuda12x)")
try:
    count = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:
    sys.exit(f"gpu_check: CuPy is installed but no GPU is usable ({type(exc).__name__}: {exc})")
if count < 1:
    sys.exit("gpu_check: CuPy sees no GPU")
PY
then
    echo "gpu_check: stopped: this check needs CuPy and an NVIDIA GPU (see above)."
    sleep 0.2  # let tee write the log
    exit 3
fi

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PYTHON" - <<'PY'
import platform
import cupy, numpy
print(f"python {platform.python_version()}, numpy {numpy.__version__}, cupy {cupy.__version__},"
      f" CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
try:
    import torch
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
except ImportError:
    print("torch: not installed (the PyTorch rows of the table will be empty)")
for name in ("hydra", "mlflow"):
    try:
        __import__(name)
        print(f"{name}: installed (not needed)")
    except ImportError:
        print(f"{name}: not installed (not needed)")
PY

status=0
run_part() {  # name, timeout in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo
    echo "================ $name"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "gpu_check: $name ran past its ${limit} s and was stopped"
    fi
    echo "---------------- $name: exit status $rc, $((SECONDS - start)) s"
    [ $rc -eq 0 ] || status=1
    results+=("$name: $([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)")")
}
results=()

run_part "1. GPU test matrix (pytest)" 210 \
    "$PYTHON" -m pytest -q -rs -p no:cacheprovider \
    tests/backend tests/nn tests/gpu tests/test_train.py tests/test_optim.py
run_part "2. NumPy-vs-CuPy parity (50 steps)" 90 \
    "$PYTHON" -m nnbench.bench.gpu_parity --steps 50
run_part "3. GPU benchmark table" 170 \
    "$PYTHON" -m nnbench.bench.gpu_table
run_part "4. GPU stacked table" 150 \
    "$PYTHON" -m nnbench.bench.gpu_stack_table

echo
echo "================ summary ($SECONDS s)"
for line in "${results[@]}"; do echo "  $line"; done
echo "log: $LOG"
sleep 0.2
exit $status
