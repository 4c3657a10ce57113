#!/usr/bin/env bash
# One short GPU session: the speed ratios on the GPU, then at once the CUDA tests, the README's
# demo on the GPU and Table 1 (all seven rows) at the largest budget that fits the time given.
#
#   bash benchmarks/gpu_session.sh OUT_DIR [SECONDS=540] [SEEDS="0 1 2"] [SE_SEEDS="0 1"]
#
# Table 1's budget (iterations, the same for every row) is sized from the SE-AVAE step time
# that benchmarks/speed.py measures first, so that the slowest row finishes in time while all
# rows train at once, one process per (row, seed) on the one GPU; VAE and AVAE-SS of a seed
# share a process (AVAE-SS post-trains that VAE). A process still running at the deadline
# is stopped with SIGTERM (it saves a checkpoint; rerunning the same table1.py command
# resumes it). Everything lands in OUT_DIR: logs, and table1_gpu.tgz holding each finished
# run's result.json and evaluation files (no checkpoints). Unpack it into benchmarks/results/
# and tabulate with table1.py --summarize-only, or tabulate_evals.py for runs stopped before
# their AutoAttack (see benchmarks/results/table1_gpu_3k/results.md).
# A dry run of the script itself on a CPU: DEVICE=cpu ITERS=20 EVAL_N=50 AA_N=10 SPEED_ITERS=2.
# MNIST_ROOT=data trains and evaluates Table 1 on full MNIST (benchmarks/mnist_from_npm.sh data
# puts it there; the device machine reaches no network, so carry the data folder to it).
# AUX_NOISE_STD (default: the commands' own, std 0.3) is passed to table1.py and the demo as
# --aux-noise-std; AUX_NOISE_STD=likelihood reruns the committed GPU results (made with sqrt(v)).
# ARCH=colormnist-conv-wideenc trains Table 1 on another net (table1.py --arch); SPEED_ITERS=0
# skips speed.py (then give ITERS: the budget is sized from speed.py's SE-AVAE step) and DEMO=0
# the demo, leaving their minutes to Table 1. LR=4e-3 trains Table 1 with that Adam step (table1.py
# --lr; default 1e-3, the committed GPU tables'; the demo keeps its preset's).
set -u
DEVICE=${DEVICE:-cuda}
OUT=${1:?usage: gpu_session.sh OUT_DIR [SECONDS] [SEEDS] [SE_SEEDS]}
BUDGET=${2:-540}
SEEDS=${3:-0 1 2}
SE_SEEDS=${4:-0 1}
START=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - START))); }
mkdir -p "$OUT"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
log() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$OUT/session.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/session.log" 2>&1
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" >>"$OUT/session.log" 2>&1

step=
if [ "${SPEED_ITERS:-50}" != 0 ]; then  # alone on the GPU: its timings are the slot's speed ratios
    log "speed.py on $DEVICE"
    timeout 150 python3 benchmarks/speed.py --device "$DEVICE" --iters "${SPEED_ITERS:-50}" >"$OUT/speed_cuda.log" 2>&1
    log "speed exit $?"
    step=$(awk '$1 == "SE-AVAE" {print $2}' "$OUT/speed_cuda.log")
fi
# the CUDA tests check, they do not time: they share the GPU with the runs below
log "tests/test_cuda.py (in the background)"
(timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$OUT/test_cuda.log" 2>&1
 log "test_cuda exit $? ($(tail -1 "$OUT/test_cuda.log"))") &
# all rows train at once: allow 3x the lone step time plus 2 ms of data loading per step, and
# keep 150 s for two evaluations (PGD on 1,000 images, AutoAttack on AA_N) and 30 s of margin.
# AutoAttack on 1,000 images did not finish in 4 minutes with 14 processes on one H200
# (benchmarks/results/table1_gpu_3k): AA_N is 200 by default; PGD results are written first,
# so a run stopped in AutoAttack still counts in benchmarks/tabulate_evals.py.
ITERS=${ITERS:-$(python3 -c "
left, step = $(left) - 180, float('${step:-0.02}')
print(max(1000, min(30000, int(left / (3 * step + 0.002)) // 1000 * 1000)))")}
log "SE-AVAE step ${step:-unmeasured} s alone; Table 1 at $ITERS iterations, seeds '$SEEDS' (SE rows '$SE_SEEDS')"

T1="$WORK/table1_gpu"
mkdir -p "$T1/logs"
stop_at=$(($(left) - 25))
run_rows() {  # seed, rows...
    local seed=$1; shift
    timeout "$stop_at" python3 benchmarks/table1.py --rows "$@" --seeds "$seed" --iterations "$ITERS" \
        --eval-n "${EVAL_N:-1000}" --pgd-steps 100 --aa-n "${AA_N:-200}" --device "$DEVICE" --output-dir "$T1" --no-progress ${MNIST_ROOT:+--mnist-root "$MNIST_ROOT"} ${ARCH:+--arch "$ARCH"} \
        ${AUX_NOISE_STD:+--aux-noise-std "$AUX_NOISE_STD"} ${LR:+--lr "$LR"} >"$T1/logs/$(echo "$*" | tr ' ^' '_-')_seed$seed.log" 2>&1 &
}
for s in $SEEDS; do run_rows "$s" VAE AVAE-SS; run_rows "$s" AVAE; done
for s in $SE_SEEDS; do
    for row in "SE^5_0.1" "SE^5_0.2" "SE_0.1-AVAE" "SE_0.2-AVAE"; do run_rows "$s" "$row"; done
done
if [ "${DEMO:-1}" != 0 ]; then
    timeout "$stop_at" python3 examples/color_mnist.py --preset quick --device "$DEVICE" --no-progress \
        ${AUX_NOISE_STD:+--aux-noise-std "$AUX_NOISE_STD"} --output-dir "$WORK/demo" >"$OUT/demo_cuda.log" 2>&1 &
fi
wait
log "runs ended; finished: $(find "$T1/runs" -name result.json | wc -l)"
(cd "$WORK" && tar czf "$OUT/table1_gpu.tgz" --exclude=pythae --exclude=state --exclude='state.*' \
    --exclude=last_model table1_gpu)
log "done"
