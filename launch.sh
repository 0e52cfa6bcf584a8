#!/usr/bin/env bash
# One entry point: sets up (or updates) the virtual environment from the lock, then
#   ./launch.sh [experiment] [--flags]   runs an experiment (default: mnist_cnn)
#   ./launch.sh test [pytest args]       runs the test suite
#   ./launch.sh bench <name> [args]      runs bench/<name>.py (installs the [bench] extra)
#   ./launch.sh list                     lists the experiments
#   ./launch.sh lock [--upgrade]         regenerates requirements/lock*.txt from pyproject.toml
#   ./launch.sh setup [--accelerator=cpu|cuda12|tpu]   sets up the environment only (jax for the
#                                        accelerator: the locked version's CUDA or TPU build)
#   ./launch.sh slurm|tpu|gke <experiment> [options] [--dry-run] [flags]   a batch launch
#                                        (python -m experiments.launch; options in the README)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${DL_JAX_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
LOCKS=(requirements/lock.txt requirements/lock-bench.txt)  # [test], [test,bench]: one resolve
PIP_TOOLS=(pip-tools==7.7.0 pip==26.3)                     # what ./launch.sh lock resolves with
# glibc's malloc maps each block above 32 MiB (in a thread's arena: above 64 MiB) from the kernel
# and unmaps it when freed, so a jitted step's temporary buffers come back as fresh pages every
# step, zeroed one page fault at a time (a UNet step on 64x64 canvases spent 17 % of its CPU time
# so). One arena, no mapped blocks and no trimming keep freed memory in the heap for the next step
# (README, "Speed"); a GLIBC_TUNABLES of the caller's own is left as it is.
CPU_MALLOC=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-$CPU_MALLOC}

ensure_env() {  # $1: extras, "test" or "test,bench"; one stamp line per installed extras set
  local extras=$1 stamp="$VENV/.dl_jax-installed" lock=${LOCKS[0]}
  [[ $extras == *bench* ]] && lock=${LOCKS[1]}
  local hash; hash="$(cat pyproject.toml "${LOCKS[@]}" | sha256sum | cut -c1-16)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "launch.sh: creating $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  [[ -f "$stamp" ]] && grep -q "^$hash " "$stamp" || : > "$stamp"  # pyproject or lock changed: start over
  if ! grep -qxF "$hash $extras" "$stamp" && ! grep -qxF "$hash $extras,bench" "$stamp"; then
    echo "launch.sh: installing dl_jax[$extras] from $lock into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    local broken; broken="$("$VENV/bin/python" -m pip check)" || {
      echo "$broken" >&2; echo "error: $lock does not satisfy pyproject.toml; run ./launch.sh lock" >&2; exit 1; }
    echo "$hash $extras" >> "$stamp"
  fi
}

# Resolves pyproject.toml with pip-compile in a throwaway venv. Pins already in the locks are kept
# unless pip-compile is told otherwise (--upgrade, --upgrade-package NAME). The [test] lock is
# resolved with the [test,bench] lock's pins as preferences and must be a subset of it.
# torch must be the CPU build 2.13.0+cpu, which pip takes from its find-links (this machine's
# pip.conf); PyPI's torch 2.13.0 is the CUDA build.
lock() {
  local tools; tools="$(mktemp -d)"
  trap "rm -rf '$tools'" EXIT
  "$PY" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_TOOLS[@]}"
  local compile=("$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras
                 --no-emit-index-url --no-emit-find-links --extra test)
  mkdir -p requirements
  export CUSTOM_COMPILE_COMMAND="./launch.sh lock"
  "${compile[@]}" --extra bench --output-file "${LOCKS[1]}" "$@" pyproject.toml
  cp "${LOCKS[1]}" "${LOCKS[0]}"
  "${compile[@]}" --output-file "${LOCKS[0]}" pyproject.toml
  pins() { grep -E '^[a-z0-9]' "$1" | cut -d' ' -f1 | sort; }
  local extra; extra="$(comm -23 <(pins "${LOCKS[0]}") <(pins "${LOCKS[1]}"))"
  [[ -z "$extra" ]] || { echo "error: ${LOCKS[0]} pins what ${LOCKS[1]} does not: $extra" >&2; exit 1; }
  grep -q '^torch==.*+cpu ' "${LOCKS[1]}" || {
    echo "error: torch resolved to $(grep '^torch==' "${LOCKS[1]}"), not the CPU build;" \
         "give pip the CPU wheel (--find-links DIR) and lock again" >&2; exit 1; }
  echo "launch.sh: wrote ${LOCKS[*]}" >&2
}

benches() { ls bench | sed -n 's/\.py$//p' | grep -v '^_' | tr '\n' ' '; }
experiments() { ls experiments/configs | sed -n 's/\.py$//p' | grep -vxE '__init__|base'; }

cmd=${1:-mnist_cnn}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  test)
    ensure_env test
    # Two workers, one test file each (pytest-xdist; `-n 0` after it runs in one process):
    # about 1.5x faster than one process on two cores, as XLA compiles on one core.
    exec "$VENV/bin/python" -m pytest -n "${DL_JAX_TEST_WORKERS:-2}" --dist loadfile \
      --durations=25 "$@" ;;
  setup)
    ensure_env test
    case "${1:---accelerator=cpu}" in
      --accelerator=cpu) ;;
      --accelerator=cuda12|--accelerator=tpu)
        jax_pin=$(grep -m1 '^jax==' "${LOCKS[0]}" | cut -d' ' -f1)
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
          "jax[${1#--accelerator=}]==${jax_pin#jax==}" ;;
      *) echo "error: unknown setup option '$1'; accepted: --accelerator=cpu, cuda12 or tpu" >&2
         exit 2 ;;
    esac ;;
  slurm|tpu|gke)
    exec "$PY" -m experiments.launch "$cmd" "$@" ;;
  bench)
    ensure_env test,bench
    name=${1:?"usage: ./launch.sh bench <name>; available: $(benches)"}
    shift
    [[ -f "bench/$name.py" ]] || { echo "error: unknown benchmark '$name'; available: $(benches)" >&2; exit 2; }
    exec "$VENV/bin/python" "bench/$name.py" "$@" ;;
  list)
    experiments ;;
  lock)
    lock "$@" ;;
  -h|--help|help)
    awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"  # the comment block above
    echo "experiments: $(experiments | tr '\n' ' ')" ;;
  *)
    if [[ ! -f "experiments/configs/$cmd.py" || "$cmd" == base || "$cmd" == __init__ ]]; then
      echo "error: unknown experiment '$cmd'; accepted: $(experiments | tr '\n' ' ')(or test, bench, list, lock, setup, slurm, tpu, gke)" >&2
      exit 2
    fi
    ensure_env test
    exec "$VENV/bin/python" -m experiments.main --config="experiments/configs/$cmd.py" "$@" ;;
esac
