#!/usr/bin/env bash
# Issue 6's CUDA checks in one command, sized for a short GPU lease (about 10 minutes):
#   1. the tests that take a device, on CUDA (pytest --device cuda);
#   2. filtered evaluation on DB15K: 500 test triples (against PyKEEN when it is installed) and the
#      whole test split, with peak CUDA memory (bench_eval.py --device cuda);
#   3. training epochs: plain RotatE and SNAG with three modalities, fp32 and bf16 (bench_train.py);
#   4. the whole test suite with --device cuda, with what time is left (SUITE_SECONDS).
# Logs go to $OUT (the device tool's output folder) or ./gpu_out.
#
# Before the call, on the development machine (DB15K travels inside the checkout; /shared/ is
# git-ignored and never committed):
#     mkdir -p shared/data/mkgc && cp -r ../shared/data/mkgc/DB15K shared/data/mkgc/
# then, through the device tool:  bash benchmarks/gpu_check.sh
# DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh runs the same steps briefly on a CPU machine.
set -uo pipefail
PY=${PY:-python3}
DEV=${DEVICE:-cuda}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export SNAGKG_BENCH_DATA=${SNAGKG_BENCH_DATA:-$PWD/shared/data/mkgc/DB15K}
if [ "${QUICK:-0}" = 1 ]; then EVAL="--triples 50 --repeats 1 --full-repeats 1 --check 20"; ROUNDS=1; CONFIGS=rotate
else EVAL="--repeats 3 --full-repeats 3 --check 200"; ROUNDS=3; CONFIGS=rotate,snag,snag-bf16; fi
THREADS=${THREADS:-2}  # the CPU-side torch threads, as in the CPU figures

step() { echo "== $1 ($(date -u +%H:%M:%S))" | tee -a "$OUT/summary.log"; }

step "environment"
{ "$PY" -c "import torch, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"; nproc; } 2>&1 | tee -a "$OUT/summary.log"
"$PY" -c "import snagkg" 2>/dev/null || "$PY" -m pip install --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 \
    || { echo "install failed: see install.log" | tee -a "$OUT/summary.log"; exit 1; }
PYKEEN=""; "$PY" -c "import pykeen" 2>/dev/null || PYKEEN="--skip-pykeen"
[ -n "$PYKEEN" ] && echo "pykeen not installed here: snagkg alone" | tee -a "$OUT/summary.log"

step "device tests: pytest --device $DEV"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider --device "$DEV" -m "device and not slow" -rs \
    > "$OUT/pytest_device.log" 2>&1
tail -n 1 "$OUT/pytest_device.log" | tee -a "$OUT/summary.log"

step "bench_eval.py --device $DEV"
timeout 300 "$PY" benchmarks/bench_eval.py --device "$DEV" --threads "$THREADS" $EVAL $PYKEEN > "$OUT/bench_eval.log" 2>&1
grep -A6 "^DB15K filtered" "$OUT/bench_eval.log" | tee -a "$OUT/summary.log"

step "bench_train.py --device $DEV"
timeout 420 "$PY" benchmarks/bench_train.py --device "$DEV" --threads "$THREADS" --configs "$CONFIGS" \
    --rounds "$ROUNDS" $PYKEEN > "$OUT/bench_train.log" 2>&1
grep -A7 "^DB15K, one training" "$OUT/bench_train.log" | tee -a "$OUT/summary.log"

if [ "${SUITE_SECONDS:-0}" -gt 0 ]; then
    step "whole suite, --device $DEV (at most $SUITE_SECONDS s)"
    timeout "$SUITE_SECONDS" "$PY" -m pytest -q -p no:cacheprovider --device "$DEV" > "$OUT/pytest_all.log" 2>&1
    tail -n 3 "$OUT/pytest_all.log" | tee -a "$OUT/summary.log"
fi
step "done"
