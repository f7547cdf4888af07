#!/usr/bin/env bash
# launch/plot-sweep.sh DIR — PNG pictures of a launch/sweep.sh run (DIR/sweep.json)
# in DIR/plots: decode and prefill tokens/s against ranks for every shape,
# speed-up against ideal, time to first token and inter-token latency, and
# each rank's communication and pipeline-idle share, measured next to
# predicted. matplotlib is installed (pip, from PyPI) into a private virtual
# environment, .cache/plot-venv (LOOM_PLOT_VENV moves it), on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ $# -eq 1 ] && [ -f "$1/sweep.json" ] || { echo "usage: launch/plot-sweep.sh DIR (a launch/sweep.sh output with sweep.json)" >&2; exit 2; }
venv=${LOOM_PLOT_VENV:-$root/.cache/plot-venv}
if ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  echo "plot-sweep: installing matplotlib into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "matplotlib==3.9.*"
fi
"$venv/bin/python" "$here/plot_sweep.py" "$1"
