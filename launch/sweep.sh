#!/usr/bin/env bash
# launch/sweep.sh — loom's speed over a grid of (tp, pp, sequences) on this
# machine: one `loom bench` per (tp, pp) under mpirun, each measuring every
# sequence count; prints one table row per (tp, pp, sequences) with prefill
# and decode tokens/s, the speed-up over one rank, and the share of each
# rank's decode time spent in TP collectives and stage transfers.
#
#   launch/sweep.sh [--model PATH] [--grid "1x1 2x1 1x2 2x2"] [--sequences 1,4,16]
#                   [--threads 1] [--gen-tokens 64] [--prompt-tokens 64] [--reps 2]
#                   [--out DIR] [-- extra mpirun options]
#
# The grid lists TPxPP pairs; 1x1 runs first and is the reference of the
# speed-up column. Grids with more ranks than cores run oversubscribed
# (correct, but then the ranks share cores, so speed-ups below 1 say more
# about the machine than about loom). Results: DIR/sweep.json (every run's
# JSON from `loom bench`) and DIR/sweep.txt (the table).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
loom=${LOOM:-$root/build/loom}
model=$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
grid="1x1 2x1 1x2 2x2 3x1 1x3 4x1 1x4"
seqs=1,4,16
threads=1
gen=64
prompt=64
reps=2
out=$root/.cache/sweep/run-$(date +%Y%m%d-%H%M%S)
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --grid) grid=$2; shift 2 ;;
    --sequences) seqs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --gen-tokens) gen=$2; shift 2 ;;
    --prompt-tokens) prompt=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "sweep: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$loom" ] || { echo "sweep: $loom is missing: run launch/quickstart.sh (or set LOOM=)" >&2; exit 1; }
[ -f "$model" ] || { echo "sweep: model $model is missing: run launch/fetch-model.sh or pass --model" >&2; exit 1; }
command -v mpirun > /dev/null || { echo "sweep: mpirun is missing: run launch/install-deps.sh" >&2; exit 1; }
case " $grid " in *" 1x1 "*) ;; *) grid="1x1 $grid" ;; esac
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$out"
cores=$(nproc)
files=()
for g in $grid; do
  tp=${g%x*} pp=${g#*x}
  case "$tp$pp" in *[!0-9]*|"") echo "sweep: bad grid entry $g (want TPxPP, e.g. 2x1)" >&2; exit 2 ;; esac
  np=$((tp * pp))
  over=()
  [ $((np * threads)) -le "$cores" ] || over=(--oversubscribe)
  f=$out/tp${tp}-pp${pp}.json
  echo "[$(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] tp $tp x pp $pp: $np rank(s) x $threads thread(s)" >&2
  mpirun -np "$np" --bind-to none "${over[@]}" "${extra[@]}" "$loom" bench --model "$model" --tp "$tp" --pp "$pp" \
    --threads "$threads" --sequences "$seqs" --prompt-tokens "$prompt" --gen-tokens "$gen" --reps "$reps" \
    --membw-size 0 --json "$f" > "$out/tp${tp}-pp${pp}.out" 2>&1 ||
    { cat "$out/tp${tp}-pp${pp}.out" >&2; echo "sweep: tp $tp x pp $pp failed" >&2; exit 1; }
  files+=("$g=$f")
done

python3 - "$out" "$cores" "${files[@]}" <<'EOF' | tee "$out/sweep.txt"
import json, sys
out, cores, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runs, rows = {}, []
for p in pairs:
    g, f = p.split("=", 1)
    runs[g] = json.load(open(f))
ref = {r["sequences"]: r for r in runs["1x1"]["results"]}
d0 = runs["1x1"]
print("loom sweep: %s, %d core(s), %d thread(s) per rank; prefill %d-token prompt, decode %d tokens per sequence" % (
    d0["model"].split("/")[-1], cores, d0["results"][0]["threads"], d0["options"]["prompt_tokens"],
    d0["options"]["gen_tokens"]))
hdr = "%3s %3s %5s %5s | %9s %9s %8s | %11s %11s" % ("tp", "pp", "ranks", "seqs", "prefill/s", "decode/s",
                                                   "vs 1x1", "comm % max", "comm % mean")
print(hdr)
print("-" * len(hdr))
for g, d in runs.items():
    tp, pp = map(int, g.split("x"))
    for r in d["results"]:
        dr = r.get("decode_ranks") or []
        share = [(k["tp_s"] + k["transfer_s"]) / k["wall_s"] for k in dr if k["wall_s"] > 0]
        dec = r["decode_tokens_per_s"]["mean"]
        base = ref.get(r["sequences"])
        rows.append(dict(tp=tp, pp=pp, ranks=tp * pp, sequences=r["sequences"],
                         prefill_tokens_per_s=r["prefill_tokens_per_s"]["mean"], decode_tokens_per_s=dec,
                         decode_vs_1x1=dec / base["decode_tokens_per_s"]["mean"] if base else None,
                         comm_share_max=max(share) if share else 0.0,
                         comm_share_mean=sum(share) / len(share) if share else 0.0))
        x = rows[-1]
        print("%3d %3d %5d %5d | %9.1f %9.1f %7.2fx | %10.1f%% %10.1f%%%s" % (
            tp, pp, tp * pp, x["sequences"], x["prefill_tokens_per_s"], dec, x["decode_vs_1x1"] or 0,
            100 * x["comm_share_max"], 100 * x["comm_share_mean"],
            "  (oversubscribed)" if tp * pp * r["threads"] > cores else ""))
print("comm %: share of a rank's decode time inside TP collectives and stage transfers (max and mean over ranks),")
print("waiting for slower peers included (pipeline bubble, stage imbalance); 1x1 rows are the reference")
json.dump(dict(cores=cores, runs=runs, rows=rows), open(out + "/sweep.json", "w"), indent=1)
EOF
echo "sweep: results in $out (sweep.txt, sweep.json)" >&2
