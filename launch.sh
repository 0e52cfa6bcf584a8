#!/usr/bin/env bash
# One entry point: sets up (or updates) the virtual environment from pyproject.toml, then
#   ./launch.sh [experiment] [--flags]   runs an experiment (default: mnist_cnn)
#   ./launch.sh test [pytest args]       runs the test suite
#   ./launch.sh bench <name> [args]      runs bench/<name>.py (installs the [bench] extra)
#   ./launch.sh list                     lists the experiments
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${DL_JAX_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}

ensure_env() {  # $1: extras, e.g. "test" or "test,bench"; one stamp line per installed extras set
  local extras=$1 stamp="$VENV/.dl_jax-installed"
  local hash; hash="$(sha256sum pyproject.toml | cut -c1-16)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "launch.sh: creating $VENV" >&2
    "$PY" -m venv "$VENV"
  fi
  [[ -f "$stamp" ]] && grep -q "^$hash " "$stamp" || : > "$stamp"  # pyproject changed: start over
  if ! grep -qxF "$hash $extras" "$stamp" && ! grep -qxF "$hash $extras,bench" "$stamp"; then
    echo "launch.sh: installing dl_jax[$extras] into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
    echo "$hash $extras" >> "$stamp"
  fi
}

benches() { ls bench | sed -n 's/\.py$//p' | grep -v '^_' | tr '\n' ' '; }
experiments() { ls experiments/configs | sed -n 's/\.py$//p' | grep -vxE '__init__|base'; }

cmd=${1:-mnist_cnn}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  test)
    ensure_env test
    exec "$VENV/bin/python" -m pytest "$@" ;;
  bench)
    ensure_env test,bench
    name=${1:?"usage: ./launch.sh bench <name>; available: $(benches)"}
    shift
    [[ -f "bench/$name.py" ]] || { echo "error: unknown benchmark '$name'; available: $(benches)" >&2; exit 2; }
    exec "$VENV/bin/python" "bench/$name.py" "$@" ;;
  list)
    experiments ;;
  -h|--help|help)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    echo "experiments: $(experiments | tr '\n' ' ')" ;;
  *)
    if [[ ! -f "experiments/configs/$cmd.py" || "$cmd" == base || "$cmd" == __init__ ]]; then
      echo "error: unknown experiment '$cmd'; accepted: $(experiments | tr '\n' ' ')(or test, bench, list)" >&2
      exit 2
    fi
    ensure_env test
    exec "$VENV/bin/python" -m experiments.main --config="experiments/configs/$cmd.py" "$@" ;;
esac
