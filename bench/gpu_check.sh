#!/usr/bin/env bash
# The GPU measurements in one command (issue: the GPU path measured). Run from the repository root on a
# CUDA machine with gpu_carry/ from bench/gpu_prep.sh beside it; every stage has its own timeout and
# writes its log to $OUT (default ./gpu_out), so a stage that hangs costs only its own minutes:
#   1. golf against the official script at the baseline: golf's default micro-batch, and the official
#      8 x 65,536 split (bench/bench_vs_official.py, 40 timed steps after 10 warm-up steps);
#   2. the pr507 line (golf only, against its record's 589.7 ms/step on 8xH100);
#   3. experiment=pr1493 on the demo sp8192 data for 30 steps: ms/step, peak memory, compile seconds,
#      the loop switch's recompile;
#   4. pytest -m gpu tests/gpu.
# STAGES="1 2" runs only those (a call of at most 10 minutes holds stages 1-2, another 3-4).
# DRY=1 runs every stage on the CPU with a few steps (checks the script before GPU minutes are spent).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
CARRY=${CARRY:-gpu_carry}
SITE=${SITE:-/tmp/golf_site}
PY=${PY:-python3}
if [ -d "$CARRY/wheels" ] && ! $PY -c "import hydra, omegaconf, brotli, zstandard" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --target "$SITE" "$CARRY"/wheels/*.whl > "$OUT/00_install.log" 2>&1
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
DATA="$CARRY/data"
OFFICIAL="$CARRY/official_train_gpt.py"
if [ "${DRY:-0}" = 1 ]; then
  STEPS=(--cpu --steps 1 --warmup 1 --cpu-batch-tokens 2048); PR1493=(scale=cpu train.iterations=4 eval.max_tokens=4096); GPU_TESTS=(--co)
else
  STEPS=(--steps 40 --warmup 10); PR1493=(train.iterations=30 train.max_wallclock_s=null train.warmup_steps=5
                                          optimizer.schedule.kind=wallclock_fraction quant.calibration.batches=8
                                          eval.max_tokens=131072); GPU_TESTS=()
fi
STAGES=${STAGES:-1 2 3 4}
stage() {  # name seconds command...
  local name=$1 secs=$2; shift 2
  case " $STAGES " in *" ${name:1:1} "*) ;; *) return ;; esac
  echo "== $name (limit ${secs}s)" | tee -a "$OUT/summary.log"
  local t0=$SECONDS
  timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0))s; tail:" | tee -a "$OUT/summary.log"
  tail -n 15 "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
nvidia-smi > "$OUT/nvidia-smi.log" 2>&1 || true
stage 01_baseline_vs_official 300 $PY bench/bench_vs_official.py "${STEPS[@]}" --data-root "$DATA" \
  --official "$OFFICIAL" --out "$OUT/bench" --variant official_split=train.micro_batch_tokens=65536
stage 02_pr507 180 $PY bench/bench_vs_official.py "${STEPS[@]}" --data-root "$DATA" --experiment pr507 \
  --no-official --reference-ms 589.7 --out "$OUT/bench507"
stage 03_pr1493 300 $PY -m golf.train experiment=pr1493 data=demo_sp8192 logger=none "${PR1493[@]}" \
  run_dir="$OUT/pr1493"
stage 04_gpu_tests 240 $PY -m pytest -q -m gpu tests/gpu "${GPU_TESTS[@]}"
echo "done: $OUT/summary.log"
