#!/usr/bin/env bash
# launch/sweep.sh — loom's speed over a grid of (tp, pp, sequences, prompt
# length) on this machine, next to what the cost model (`loom predict`)
# predicts for every shape from the one-rank and `loom bench comm` figures
# of the same sweep; tables, CSV/JSON and (with --plot) PNG pictures.
#
#   launch/sweep.sh [--model PATH] [--grid "1x1 2x1 1x2 2x2"] [--sequences 1,4,16]
#                   [--prompt-tokens 64,256] [--threads 1] [--gen-tokens 64] [--reps 3]
#                   [--no-predict] [--plot] [--out DIR] [-- extra mpirun options]
#
# Runs, in DIR: `loom bench comm` on 2 ranks (comm.json: the links), one
# `loom bench` per (tp, pp) under mpirun measuring every sequence count at
# the first prompt length (tpT-ppP.json), one prefill-only bench per further
# prompt length (tpT-ppP-promptN.json); writes cluster.json (this machine:
# the 1x1 bench calibrates a device of --threads threads, comm.json the
# link), `loom predict --json` for every shape (pred/), then sweep.txt (the
# table), sweep.csv and sweep.json (one row per shape and prompt length:
# measured and predicted prefill and decode tokens/s, time to first token,
# inter-token latency, speed-up over 1x1, per-rank TP and transfer shares)
# and, with --plot, PNGs in DIR/plots (launch/plot-sweep.sh).
#
# Speeds are the best of --reps repetitions (on a shared machine noise only
# slows a run down). 1x1 runs first and is the reference; grids with more
# ranks than cores run oversubscribed (then speed-ups below 1 say more about
# the machine than about loom, and no prediction is made: the model gives
# every rank a device of its own).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
loom=${LOOM:-$root/build/loom}
model=${MODEL:-${LOOM_CACHE:-$root/.cache}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
grid="1x1 2x1 1x2 2x2"
seqs=1,4,16
prompts=64
threads=1
gen=64
reps=3
predict=1
plot=0
out=$root/.cache/sweep/run-$(date +%Y%m%d-%H%M%S)
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --grid) grid=$2; shift 2 ;;
    --sequences) seqs=$2; shift 2 ;;
    --prompt-tokens) prompts=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --gen-tokens) gen=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --no-predict) predict=0; shift ;;
    --plot) plot=1; shift ;;
    --out) out=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$loom" ] || { echo "sweep: $loom is missing: run launch/quickstart.sh (or set LOOM=)" >&2; exit 1; }
[ -f "$model" ] || { echo "sweep: model $model is missing: run launch/fetch-model.sh or pass --model" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "sweep: mpirun is missing: run launch/install-deps.sh" >&2; exit 1; }
case " $grid " in *" 1x1 "*) ;; *) grid="1x1 $grid" ;; esac
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$out/pred"
cores=$(nproc)
IFS=, read -r -a plist <<< "$prompts"
IFS=, read -r -a slist <<< "$seqs"
note() { echo "[$(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }
run() { # log, command...: runs it, shows the log on failure
  local log=$1; shift
  "$@" > "$log" 2>&1 || { cat "$log" >&2; echo "sweep: failed: $*" >&2; exit 1; }
}
maxs=1; for s in "${slist[@]}"; do [ "$s" -gt "$maxs" ] && maxs=$s; done

note "bench comm: 2 ranks"
run "$out/comm.out" mpirun -np 2 --bind-to none --oversubscribe "${extra[@]}" "$loom" bench comm -b 8 -e 4M -f 4 \
  -n 50 -w 5 --model "$model" --sequences "1,$maxs" --json "$out/comm.json"

for g in $grid; do
  tp=${g%x*} pp=${g#*x}
  case "$tp$pp" in *[!0-9]*|"") echo "sweep: bad grid entry $g (want TPxPP, e.g. 2x1)" >&2; exit 2 ;; esac
  np=$((tp * pp))
  over=()
  [ $((np * threads)) -le "$cores" ] || over=(--oversubscribe)
  note "tp $tp x pp $pp: $np rank(s) x $threads thread(s), prompt ${plist[0]}, sequences $seqs"
  run "$out/tp$tp-pp$pp.out" mpirun -np "$np" --bind-to none "${over[@]}" "${extra[@]}" "$loom" bench --model "$model" \
    --tp "$tp" --pp "$pp" --threads "$threads" --sequences "$seqs" --prompt-tokens "${plist[0]}" --gen-tokens "$gen" \
    --reps "$reps" --membw-size $([ "$np" = 1 ] && echo 512M || echo 0) --json "$out/tp$tp-pp$pp.json"
  for p in "${plist[@]:1}"; do
    note "tp $tp x pp $pp: prefill of a $p-token prompt"
    run "$out/tp$tp-pp$pp-prompt$p.out" mpirun -np "$np" --bind-to none "${over[@]}" "${extra[@]}" "$loom" bench \
      --model "$model" --tp "$tp" --pp "$pp" --threads "$threads" --sequences 1 --prompt-tokens "$p" --gen-tokens 2 \
      --reps "$reps" --membw-size 0 --json "$out/tp$tp-pp$pp-prompt$p.json"
  done
done

if [ "$predict" = 1 ]; then
  cat > "$out/cluster.json" <<EOF
{"name": "this machine ($(nproc) cores)", "nodes": 1, "devices_per_node": $((cores / threads > 0 ? cores / threads : 1)),
 "device": {"name": "$threads thread(s) of $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)",
            "bench": "tp1-pp1.json", "threads": $threads,
            "note": "calibrated by the one-rank bench of this sweep (and its bandwidth probe)"},
 "intra_node": {"comm": "comm.json", "note": "loom bench comm on 2 ranks of this sweep"}}
EOF
  for g in $grid; do
    tp=${g%x*} pp=${g#*x}
    # the model gives every rank a device of its own: oversubscribed shapes are not predicted
    [ $((tp * pp * threads)) -le "$cores" ] || continue
    for s in "${slist[@]}"; do
      for p in "${plist[@]}"; do
        "$loom" predict --model "$model" --cluster "$out/cluster.json" --tp "$tp" --pp "$pp" --sequences "$s" \
          --prompt-tokens "$p" --gen-tokens "$gen" --decode-context $((gen / 2)) --json \
          > "$out/pred/tp$tp-pp$pp-s$s-p$p.json" || { echo "sweep: loom predict failed for $g" >&2; exit 1; }
      done
    done
  done
fi

python3 "$here/sweep_report.py" "$out" | tee "$out/sweep.txt"
if [ "$plot" = 1 ]; then "$here/plot-sweep.sh" "$out"; fi
echo "sweep: results in $out (sweep.txt, sweep.csv, sweep.json$([ "$plot" = 1 ] && echo ", plots/"))" >&2
