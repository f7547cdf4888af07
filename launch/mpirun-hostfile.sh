#!/usr/bin/env bash
# Runs a loom cluster over the machines of an Open MPI hostfile.
#
#   launch/mpirun-hostfile.sh HOSTFILE TP PP MODEL [loom generate options...]
#
# HOSTFILE lists one machine per line with its slots, e.g.
#     node1 slots=4
#     node2 slots=4
# Ranks are placed by slot, so consecutive ranks (a TP group) share a
# machine when its slots allow; loom's plan says when a TP group spans
# machines. Every machine needs loom built at the same path and the model
# at MODEL (the ranks check that their files are identical).
#
# Threads: mpirun binds each rank to one core by default, which would pin
# all of a rank's threads to that core. This script binds each rank to
# THREADS cores (default: cores per machine / ranks per machine) with
# --map-by slot:PE=THREADS and passes --threads THREADS to loom.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
hostfile=$1 tp=$2 pp=$3 model=$4
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
np=$((tp * pp))
slots=$(awk '/slots=/{sub(/.*slots=/,""); print $1; exit}' "$hostfile")
slots=${slots:-1}
threads=${THREADS:-$(( $(nproc) / slots > 0 ? $(nproc) / slots : 1 ))}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec mpirun --hostfile "$hostfile" -np "$np" --map-by "slot:PE=$threads" --bind-to core \
  "$root/build/loom" generate --model "$model" --tp "$tp" --pp "$pp" --threads "$threads" "$@"
