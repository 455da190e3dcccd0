#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one run, each step under a time limit (about
# nine minutes on an H200), with Fashion-MNIST's IDX files in Debian's place
# (/usr/share/datasets/fashion-mnist) or in DATA_DIR:
#
#     bash benchmarks/gpu_figures.sh LOGDIR [DATA_DIR]
#
# Each step's whole output goes to LOGDIR/<step>.log; the terminal gets the tables.
set -u
cd "$(dirname "$0")/.."
logs=${1:?usage: bash benchmarks/gpu_figures.sh LOGDIR [DATA_DIR]}
data=()
[ $# -ge 2 ] && data=(--data-dir "$2")
mkdir -p "$logs"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
PY=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run it, keep its log, show what is not a warning
    local name=$1 limit=$2
    shift 2
    echo "## $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$logs/$name.log" 2>&1
    local status=$?
    grep -v -i -e warn -e "^\s*$" "$logs/$name.log" | tail -n 40
    echo "## $name: exit $status after $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', \
flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
git rev-parse --short HEAD 2>/dev/null

# Thousands of models per GPU: total model-steps/s per K against one model and the bound.
step batched 200 $PY benchmarks/batched_throughput.py --models 1,8,64,256,1024,4096 \
    --epochs 3 "${data[@]}"
# XLA's command buffers (CUDA graphs) around the epoch's loop too.
step command-buffers 100 env XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE \
    $PY benchmarks/batched_throughput.py --models 1,1024 --epochs 3 "${data[@]}"
# A 1,000-model sweep of the notebook's MLP, 20 epochs, checkpoints and report included.
rm -rf /tmp/regjax-sweep-1000
step sweep-1000 180 $PY scripts/sweep.py --technique l2 \
    --values 0,1e-5,2e-5,5e-5,1e-4,2e-4,5e-4,1e-3,2e-3,5e-3 --seeds 100 --epochs 20 --quiet \
    --output-dir /tmp/regjax-sweep-1000 "${data[@]}"
head -n 30 /tmp/regjax-sweep-1000/report.md 2>/dev/null
