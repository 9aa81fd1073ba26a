#!/usr/bin/env bash
# The prepared GPU run (one call on a lent CUDA machine; see README "GPU run"):
#   1. the demo decomposition with AMP on CUDA: phantoms -> teacher -> experts + baseline, step counts
#      fitted to a time budget (scripts/train_demo_models.py --time-budget); TEACHER=DIR reuses a teacher,
#   2. the held-out evaluation on CUDA,
#   3. the EKS benchmark on CUDA, when time is left.
# Everything is written under $OUT (at most 8 files come back). Packages the GPU image lacks travel in
# .whl/ (SimpleITK as an xz tarball of the wheel's contents, to fit the 64 MiB transfer limit).
set -u
OUT=${OUT:-/tmp/device_out}
BUDGET=${BUDGET:-270}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu TRAIN_ARGS=--smoke BUDGET=20: a dry run of this script on any machine
TRAIN_ARGS=${TRAIN_ARGS:---config scripts/demo_gpu.json}  # scripts/demo_gpu_realism2.json: level-2 phantoms (issue 4)
TEACHER=${TEACHER:-}  # a trained teacher model folder: decompose only (the budget goes to experts + baseline)
LIMIT=${LIMIT:-540}   # seconds this script may take in all: later optional steps are skipped to fit
export LORKD_LOADER_PROCESSES=${LORKD_LOADER_PROCESSES:-12}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/log.txt"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
{
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  python3 -c "import tarfile; tarfile.open('.whl/sitk.tar.xz').extractall('/tmp/site')"
  mkdir -p /tmp/pp && ln -sfn "$PWD/resources" /tmp/pp/lorkd_resources
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  nproc
} >>"$LOG" 2>&1
export PYTHONPATH="$PWD:/tmp/pp:/tmp/site"
python3 -c "import torch, monai, SimpleITK; print('torch', torch.__version__, 'monai', monai.__version__, torch.cuda.get_device_name())" >>"$LOG" 2>&1
echo "== setup done at $(elapsed) s" >>"$LOG"

echo "== demo decomposition ($DEVICE, budget ${BUDGET}s)" >>"$LOG"
timeout $((BUDGET + 150)) python3 scripts/train_demo_models.py --out /tmp/run $TRAIN_ARGS \
  --device "$DEVICE" --threads 4 --workers 14 --time-budget "$BUDGET" ${TEACHER:+--teacher "$TEACHER"} >>"$LOG" 2>&1
rc=$?
echo "== training done at $(elapsed) s (rc $rc)" >>"$LOG"
cp /tmp/run/timings.json "$OUT/" 2>/dev/null
for m in teacher experts baseline; do
  [ -d /tmp/run/bundle/$m ] && tar -cf "$OUT/$m.tar" -C /tmp/run/bundle "$m"
done

if [ "$(elapsed)" -lt $((LIMIT - 70)) ] && [ -d /tmp/run/decomposition/experts ]; then
  echo "== evaluation ($DEVICE)" >>"$LOG"
  timeout $((LIMIT - 20 - $(elapsed))) python3 -m lorkd_core.cli evaluate --models /tmp/run/decomposition \
    --data /tmp/run/phantoms/manifest.jsonl --out /tmp/run/evaluation.md --device "$DEVICE" --no-record -q --latency-runs 3 >>"$LOG" 2>&1
  tar -cf "$OUT/evaluation.tar" -C /tmp/run evaluation.md evaluation.csv 2>>"$LOG"
fi
if [ "$(elapsed)" -lt $((LIMIT - 60)) ]; then
  echo "== EKS benchmark ($DEVICE)" >>"$LOG"
  timeout $((LIMIT - 5 - $(elapsed))) python3 benchmarks/eks.py --device "$DEVICE" --threads 4 --reps 5 \
    --variants plain,eks,loop,paper >>"$LOG" 2>&1
fi
echo "== all done at $(elapsed) s" >>"$LOG"
tail -40 "$LOG"
