#!/usr/bin/env bash
# From a fresh clone: installs missing packages, builds loom, fetches the
# default model (SmolLM2-135M-Instruct Q4_1) and runs a real job on it —
# first on one rank, then as a two-stage pipeline under mpirun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

launch/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
model=$(launch/fetch-model.sh)

prompt=${1:-"The three most useful things to know about distributed systems are"}
echo
echo "== one rank =="
build/loom generate --model "$model" --prompt "$prompt" --max-tokens 64 --temperature 0

# mpirun refuses to run as root unless told (containers, CI)
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
echo
echo "== two ranks: pipeline of 2 stages (mpirun -np 2 ... --pp 2) =="
mpirun -np 2 --oversubscribe --bind-to none build/loom generate --model "$model" --pp 2 --threads 1 \
  --prompt "$prompt" --max-tokens 64 --temperature 0
