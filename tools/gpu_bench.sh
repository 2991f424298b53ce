#!/usr/bin/env bash
# The real-GPU run, in one command: build (when cargo is here), validate on
# the GPU, benchmark, and put PyTorch beside us when torch is installed.
#
#   tools/gpu_bench.sh [OUT_DIR]          (default: bench-results/<date>)
#
# Needs a Vulkan (or Metal/DX12) driver for the GPU. Without cargo on the
# machine, set BIN_DIR to a folder holding prebuilt `lstm-bench` and the test
# executables from `cargo test --release --no-run` (their names start with
# gpu_), e.g. built elsewhere and copied over; the tests then find their
# fixtures through WGPU_LSTM_ROOT (this repository).
# Everything goes under OUT_DIR; a summary table is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench-results/$(date -u +%Y-%m-%dT%H%M%SZ)}"
mkdir -p "$OUT"
export WGPU_LSTM_REQUIRE_GPU=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
STANDARD="1,100,64,128;16,100,128,256;64,100,256,512;64,50,512,1024"
LARGE="64,100,512,512;1,100,512,512;64,100,1024,1024;128,50,2048,2048"
# SHAPES overrides both lists (e.g. for a quick trial run); ITERS and
# GEMM_SIZES set the iterations and the GEMM sizes.
SHAPES="${SHAPES:-$STANDARD;$LARGE}"

export WGPU_LSTM_ROOT="$PWD"
HAVE_CARGO=""
if [ -z "${BIN_DIR:-}" ]; then
  HAVE_CARGO=1
  cargo build --release --bins 2>&1 | tail -1
  BIN_DIR=target/release
  echo "== GPU validation tests" | tee "$OUT/validation.txt"
  cargo test --release --test gpu_forward --test gpu_engine --test gpu_backward --test gpu_training \
    --test gpu_proj --test gpu_f16 \
    2>&1 | tee -a "$OUT/validation.txt" | grep -E "^test result|FAILED" || true
else
  echo "== GPU validation tests (prebuilt, from $BIN_DIR)" | tee "$OUT/validation.txt"
  for t in "$BIN_DIR"/gpu_*; do
    [ -x "$t" ] && "$t" 2>&1 | tee -a "$OUT/validation.txt" | grep -E "^test result|FAILED" || true
  done
fi
"$BIN_DIR/wgpu-lstm" info > "$OUT/adapters.txt" 2>&1 || true

echo "== lstm-bench, standard and large shapes"
"$BIN_DIR/lstm-bench" --shapes "$SHAPES" --iters "${ITERS:-10}" --json "$OUT/lstm-bench.json" \
  | tee "$OUT/lstm-bench.txt"

echo "== Step kernel against H and B (forward; GPU time of the T step dispatches)"
SWEEP="${SWEEP_SHAPES:-1,100,128,128;1,100,512,512;1,100,1024,1024;1,100,2048,2048;16,100,512,512;64,100,512,512;64,100,1024,1024;256,100,1024,1024}"
"$BIN_DIR/lstm-bench" --device gpu --modes forward --shapes "$SWEEP" --iters "${ITERS:-10}" \
  --json "$OUT/step-sweep.json" | tee "$OUT/step-sweep.txt"

echo "== The cost of a dispatch with its barrier (H = I = B = 1: T = 1, 100, 1000)"
# (time(T = 1000) - time(T = 100)) / 900 is one step dispatch and its barrier.
"$BIN_DIR/lstm-bench" --device gpu --modes forward --shapes "1,1,1,1;1,100,1,1;1,1000,1,1" \
  --iters "${ITERS:-10}" --json "$OUT/dispatch-cost.json" | tee "$OUT/dispatch-cost.txt"

echo "== GEMM kernel, square sizes (TFLOP/s)"
if [ -n "$HAVE_CARGO" ]; then
  WGPU_LSTM_GEMM_SIZES="${GEMM_SIZES:-1024,2048,4096,8192}" WGPU_LSTM_BENCH_SHAPES="64,100,512,512" \
    cargo bench --bench gpu -- gpu_gemm 2>&1 | tee "$OUT/gemm.txt" | grep -E "gpu_gemm|thrpt" || true
else
  echo "(needs cargo: run tools/gpu_bench.sh where the crate builds)"
fi

if python3 -c "import torch" 2> /dev/null; then
  echo "== PyTorch on the same shapes"
  python3 tools/bench_pytorch.py --shapes "$SHAPES" --device both --tf32 both \
    --iters "${ITERS:-10}" --json "$OUT/pytorch.json" | tee "$OUT/pytorch.txt"
  "$BIN_DIR/lstm-bench" --shapes "$SHAPES" --iters "${ITERS:-10}" --compare "$OUT/pytorch.json" \
    > "$OUT/compare.txt"
fi

echo
echo "== Summary ($OUT)"
grep -E "^test result" "$OUT/validation.txt" | sort | uniq -c || true
cat "$OUT/lstm-bench.txt" | sed -n '/device/,$p'
sed -n '/mode/,$p' "$OUT/step-sweep.txt"
sed -n '/mode/,$p' "$OUT/dispatch-cost.txt"
[ -f "$OUT/compare.txt" ] && sed -n '/compared/,$p' "$OUT/compare.txt"
