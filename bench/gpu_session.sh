#!/usr/bin/env bash
# The GPU work of the README in one command, for a GPU machine that cannot reach the network and
# whose Python already has jax (with CUDA), flax, optax, orbax, chex, absl, matplotlib and torch:
#
#   bench/gpu_session.sh pack                      here: the wheels such a machine lacks and the
#                                                  cached datasets, into $KIT (default .gpu_kit/)
#   bench/gpu_session.sh run [--smoke] STAGE[:SECONDS] ...
#                                                  there: each stage in turn, its output in $OUT
#
# Stages (each with a time limit, its own or SECONDS; a training stopped by it saves and exits):
#   env        nvidia-smi, the Python packages and jax's devices
#   bench      bench/gpu.py, dl_jax against PyTorch on the accelerator ($OUT/gpu_bench.json)
#   cnn        ./launch.sh's main job, the section 5.3.1 CNN on MNIST
#   googlenet  fashion_googlenet, 30 epochs (anchor 93.7 %)
#   resnet18   fashion_resnet, 30 epochs (anchor 94.9 %, goal >= 95.0 %)
#   resnet18_re  the same with random erasing 0.5
#   wrn        fashion_wrn: WRN-28-10, 30 epochs, random erasing 0.5, bfloat16 (anchor 96.3 %)
#   pixelcnn   gated_pixelcnn_mnist at full size, 50 epochs (anchor 81.3 nats)
#   lstm_perm  seq_mnist_permuted_lstm on all training images, 25 epochs (anchors 85.7 / 87.3 %)
# A training stage writes $OUT/<stage>.json (its results.json), its workdir goes to $RUNS/<stage>
# (default: a temporary folder, removed at the end); every stage's output goes to
# $OUT/session.log. --smoke runs each training for 2 steps (then its full evaluation) and the
# benchmark at its smoke size: how it is tested on a CPU. PYTHON picks the interpreter (default
# python3).
set -euo pipefail
[[ -n "${OUT:-}" ]] && OUT=$(realpath -m "$OUT")
KIT=$(realpath -m "${KIT:-.gpu_kit}")
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# What the lock pins and such a machine's image lacks (distribution:module): pure-Python wheels,
# checked against the lock's hashes, and PyWavelets' for CPython 3.12 (scikit-image's wavelet
# denoiser), which the lock's hashes (CPython 3.11) do not cover.
KIT_PACKAGES=(jraph:jraph ml-collections:ml_collections tensorboardx:tensorboardX mnist1d:mnist1d
              pywavelets:pywt)
KIT_DATA=(fashion_mnist.npz mnist.npz binarized_mnist_s0.npz)

pack() {
  local wheels="$KIT/wheels" data="$KIT/data" cache=${DL_JAX_DATA_DIR:-$HOME/.cache/dl_jax}
  local hashed="$KIT/hashed-requirements.txt" pins=() entry
  rm -rf "$wheels"; mkdir -p "$wheels" "$data"; : > "$hashed"
  for entry in "${KIT_PACKAGES[@]}"; do
    local name=${entry%%:*} pin
    pin=$(grep -m1 -i "^$name==" requirements/lock.txt | cut -d' ' -f1 || true)
    [[ -n "$pin" ]] || { echo "error: $name is not pinned in requirements/lock.txt" >&2; exit 1; }
    pins+=("$pin")
    [[ $name == pywavelets ]] && continue
    # the pin and its --hash lines, as the lock has them
    awk -v pin="$pin" 'index($0, pin " ") == 1 { keep = 1 } keep { print; if (!/\\$/) keep = 0 }' \
      requirements/lock.txt >> "$hashed"
  done
  local download=("$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps
                  --dest "$wheels" --python-version 3.12 --only-binary=:all:
                  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64)
  "${download[@]}" --require-hashes -r "$hashed"
  "${download[@]}" "$(printf '%s\n' "${pins[@]}" | grep -i '^pywavelets==')"
  for file in "${KIT_DATA[@]}"; do
    [[ -f "$cache/$file" ]] || { echo "error: $cache/$file is not cached yet; run an experiment" \
      "that reads it first (./launch.sh mnist_cnn, fashion_lenet5, pixelcnn_mnist)" >&2; exit 1; }
    cp "$cache/$file" "$cache/$file.sha256" "$data/"
  done
  du -sh "$KIT"
  echo "gpu_session: packed ${pins[*]} and ${KIT_DATA[*]} into $KIT"
}

# stage -> "seconds experiment [flags]" (experiment "-" for the stages that are not trainings)
declare -A STAGES=(
  [env]="60 -"
  [bench]="420 -"
  [cnn]="120 mnist_cnn"
  [googlenet]="540 fashion_googlenet --config.num_epochs=30"
  [resnet18]="540 fashion_resnet --config.num_epochs=30"
  [resnet18_re]="540 fashion_resnet --config.num_epochs=30 --config.augment_random_erasing=0.5"
  [pixelcnn]="540 gated_pixelcnn_mnist --config.model_kwargs.features=64
              --config.model_kwargs.num_layers=12 --config.model_kwargs.output_features=128
              --config.num_epochs=50"
  [wrn]="540 fashion_wrn --config.model=wrn28_10_small --config.num_epochs=30
         --config.augment_random_erasing=0.5 --config.model_kwargs.dtype=bfloat16"
  [lstm_perm]="540 seq_mnist_permuted_lstm --config.train_subset=0 --config.num_epochs=25"
)
ORDER="env bench cnn googlenet resnet18 resnet18_re wrn pixelcnn lstm_perm"

run_stage() {  # $1: stage, $2: smoke (0/1), $3: time limit (s; empty: the stage's)
  local spec=(${STAGES[$1]}) limit experiment
  limit=${3:-${spec[0]}}; experiment=${spec[1]}
  case "$1" in
    env)
      timeout "$limit" nvidia-smi || echo "(no nvidia-smi)"
      "$PYTHON" -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|flax|optax|orbax|torch) " || true
      timeout "$limit" "$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())" ;;
    bench)
      local smoke=(); [[ $2 == 1 ]] && smoke=(--smoke)
      timeout "$limit" "$PYTHON" bench/gpu.py "${smoke[@]}" --out "$OUT/gpu_bench.json" ;;
    *)
      local workdir="$RUNS/$1" flags=("${spec[@]:2}")
      [[ $2 == 1 ]] && flags+=(--config.max_steps=2)
      local rc=0
      timeout --signal=TERM --kill-after=30 "$limit" "$PYTHON" -m experiments.main \
        --config="experiments/configs/$experiment.py" "${flags[@]}" --workdir="$workdir" || rc=$?
      [[ $rc == 124 || $rc == 137 ]] &&
        echo "gpu_session: $1 reached its limit of $limit s (stopped, not finished)"
      [[ -f "$workdir/results.json" ]] && cp "$workdir/results.json" "$OUT/$1.json"
      return $rc ;;
  esac
}

run() {
  local smoke=0 stages=()
  for arg in "$@"; do
    case "$arg" in
      --smoke) smoke=1 ;;
      *) local name=${arg%%:*} limit=${arg#*:}
         [[ -n "${STAGES[$name]+x}" ]] ||
           { echo "error: unknown stage '$name'; accepted: $ORDER" >&2; exit 2; }
         [[ $arg != *:* || $limit =~ ^[1-9][0-9]*$ ]] || { echo "error: time limit '$limit' of" \
           "stage $name is not a number of seconds; accepted: STAGE or STAGE:SECONDS" >&2; exit 2; }
         stages+=("$arg") ;;
    esac
  done
  [[ ${#stages[@]} -gt 0 ]] ||
    { echo "error: name at least one stage; accepted: $ORDER" >&2; exit 2; }
  [[ -n "${OUT:-}" ]] || { echo "error: OUT is not set; set it to the folder for the results" >&2
                           exit 2; }
  mkdir -p "$OUT"
  local missing=() entry
  for entry in "${KIT_PACKAGES[@]}"; do  # the packed wheels of those the interpreter lacks
    "$PYTHON" -c "import ${entry#*:}" 2>/dev/null || missing+=("${entry%%:*}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    local files=() name
    for name in "${missing[@]}"; do
      files+=("$KIT"/wheels/"${name//-/_}"-*.whl)
      [[ -f "${files[-1]}" ]] || { echo "error: $PYTHON lacks $name and $KIT/wheels has no wheel" \
        "of it; run bench/gpu_session.sh pack first and carry $KIT" >&2; exit 2; }
    done
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
      --target "$KIT/site" "${files[@]}" >> "$OUT/session.log" 2>&1 ||
      { echo "error: $PYTHON cannot install ${missing[*]} from $KIT/wheels (packed for" \
        "CPython 3.12 on x86-64; pip's output is in $OUT/session.log)" >&2; exit 2; }
    export PYTHONPATH="$KIT/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  [[ -d "$KIT/data" ]] && export DL_JAX_DATA_DIR="$KIT/data"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  local temporary=""
  [[ -n "${RUNS:-}" ]] || { RUNS=$(mktemp -d); temporary=$RUNS; }
  local status=0
  for arg in "${stages[@]}"; do
    local stage=${arg%%:*} limit="" start=$SECONDS rc=0
    [[ $arg == *:* ]] && limit=${arg#*:}
    echo "=== gpu_session: $stage ($(date -u +%H:%M:%S))" | tee -a "$OUT/session.log"
    run_stage "$stage" "$smoke" "$limit" >> "$OUT/session.log" 2>&1 || rc=$?
    if [[ $rc != 0 ]]; then
      status=1
      echo "gpu_session: $stage failed (exit $rc)" | tee -a "$OUT/session.log"
    fi
    echo "=== gpu_session: $stage took $((SECONDS - start)) s" | tee -a "$OUT/session.log"
  done
  [[ -z "$temporary" ]] || rm -rf "$temporary"
  return $status
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "error: unknown command '${1:-}'; accepted: pack, run [--smoke] STAGE[:SECONDS] ..." >&2
     exit 2 ;;
esac
