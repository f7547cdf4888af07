#!/usr/bin/env bash
# launch/bench-embed.sh — `loom serve` against `llama-server --embedding` on
# an embedding model: same GGUF, same threads, same parallel sequences and
# batch, same machine, alternating runs (loom, llama, then llama, loom in the
# next round). Not run in CI (about 10 minutes with the defaults).
#
# From a fresh clone, after launch/quickstart.sh (loom built in build/):
#   (a) builds llama-server as launch/bench-serve.sh does (llama.cpp from the
#       pinned llama-cpp-python sdist, CPU only, GGML_NATIVE=ON);
#   (b) writes the model unless MODEL is given: random weights of
#       bge-small-en-v1.5's shape (bert, 12 layers, 384 wide, 12 heads, MLP
#       1536, 30522 tokens, mean pooling), F16;
#   (c) for each concurrency C in CONCS: C clients in a closed loop
#       (launch/bench_embed_client.py, standard library only) send REQS x C
#       requests (at least MINREQ) of INPUTS inputs of TOKENS token ids each
#       to a freshly started server of each kind:
#         loom serve --threads T --sequences S --batch B
#         llama-server --embedding -t T -tb T -np S -c S*B -b B -ub B
#       and checks every response (INPUTS unit-length embeddings);
#   (d) prints requests/s, inputs/s and latency per kind and concurrency,
#       with loom's requests/s over llama-server's (mean over rounds), and
#       writes every run as JSON under .cache/bench/.
#
# Environment (defaults):
#   LOOM=build/loom  MODEL=<written as above>  THREADS=2  SLOTS=16  BATCH=512
#   CONCS="1 4 16"  REQS=16  MINREQ=32  INPUTS=1  TOKENS=32 (a comma-separated list: requests take
#   the lengths by turns, and the client gives the latency per length)  ROUNDS=2
#   KINDS="loom llama" (one of them alone: its figures without the other's)
#   OUT=.cache/bench/bench-embed.json  LOOM_CACHE=.cache
set -euo pipefail
case ${1:-} in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  '') ;;
  *) echo "bench-embed: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${LOOM_CACHE:-$root/.cache}
loom=${LOOM:-$root/build/loom}
threads=${THREADS:-2} slots=${SLOTS:-16} batch=${BATCH:-512} concs=${CONCS:-"1 4 16"} reqs=${REQS:-16}
minreq=${MINREQ:-32} inputs=${INPUTS:-1} tokens=${TOKENS:-32} rounds=${ROUNDS:-2} kinds=${KINDS:-"loom llama"}
out=${OUT:-$cache/bench/bench-embed.json}
work=$cache/bench/embed-$(date +%Y%m%d-%H%M%S)
mkdir -p "$cache/dl" "$cache/models" "$work" "$(dirname "$out")"
say() { printf '%s\n' "$*" >&2; }
[ -x "$loom" ] || { say "bench-embed: $loom is missing: run launch/quickstart.sh (or set LOOM=)"; exit 1; }

. "$(dirname "$0")/llamacpp-build.sh"
llamacpp_build bench-embed build-serve llama-server -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF || exit 1
llama_server=$llamacpp_bin

model=${MODEL:-$cache/models/synth-bge-small.F16.gguf}
if [ -z "${MODEL:-}" ] && [ ! -f "$model" ]; then
  "$loom" synth --arch bert --layers 12 --dim 384 --heads 12 --kv-heads 12 --ffn 1536 --vocab 30522 --ctx 512 \
    --type F16 --out "$model" >&2
fi
[ -f "$model" ] || { say "bench-embed: no model at $model"; exit 1; }
vocab=$("$loom" plan --model "$model" --tp 1 --pp 1 2>/dev/null | sed -n 's/.*vocab \([0-9]*\).*/\1/p' | head -1)
[ -n "$vocab" ] || { say "bench-embed: cannot read the vocabulary size of $model"; exit 1; }

. "$(dirname "$0")/bench-server.sh"
SERVER='' PORT=''
trap '[ -n "$SERVER" ] && kill -KILL "$SERVER" 2> /dev/null; true' EXIT

start() { # start KIND: sets SERVER, PORT, SCMD
  PORT=$(free_port)
  local log=$work/server-$1-$PORT.log
  case $1 in
    loom) SCMD=("$loom" serve --model "$model" --threads "$threads" --sequences "$slots" --batch "$batch"
                --host 127.0.0.1 --port "$PORT") ;;
    llama) SCMD=("$llama_server" -m "$model" --embedding -t "$threads" -tb "$threads" -np "$slots"
                 -c $((slots * batch)) -b "$batch" -ub "$batch" --host 127.0.0.1 --port "$PORT" --no-webui) ;;
  esac
  "${SCMD[@]}" > "$log" 2>&1 &
  SERVER=$!
  wait_health "bench-embed: $1" "$PORT" "$log" "$SERVER"
  curl -sf "http://127.0.0.1:$PORT/v1/embeddings" -H 'Content-Type: application/json' \
    -d '{"input": [[1000, 1001, 1002]]}' > /dev/null || { say "bench-embed: $1: the warm-up failed: $(tail -5 "$log")"; exit 1; }
}

stop() {
  stop_server "$SERVER" 30
  SERVER=''
  sleep 1
}

say "bench-embed: loom $loom, llama-server $llama_server, model $model (vocabulary $vocab)"
say "bench-embed: $threads threads, $slots sequences, batch $batch; requests of $inputs x $tokens tokens; $rounds round(s)"
runs=$work/runs.tsv
: > "$runs"
for rnd in $(seq 1 "$rounds"); do
  order=$kinds
  [ $((rnd % 2)) -eq 0 ] && order=$(printf '%s\n' $kinds | tac | paste -sd' ')
  for kind in $order; do
    start "$kind"
    for c in $concs; do
      n=$((c * reqs)); [ $n -lt "$minreq" ] && n=$minreq
      f=$work/$rnd-$kind-c$c.json
      python3 "$root/launch/bench_embed_client.py" --base "http://127.0.0.1:$PORT" --concurrency "$c" --requests "$n" \
        --inputs "$inputs" --tokens "$tokens" --vocab "$vocab" --pid "$SERVER" --label "$kind" --out "$f" ||
        { say "bench-embed: $kind failed at concurrency $c"; exit 1; }
      printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$c" "$rnd" "$f" "${SCMD[*]}" >> "$runs"
    done
    stop
  done
done

python3 - "$runs" "$out" "$model" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
runs = [dict(json.load(open(r[3])), kind=r[0], round=int(r[2]), command=r[4]) for r in rows]
def mean(v): return sum(v) / len(v) if v else float("nan")
print("| concurrency | loom req/s | llama-server req/s | ratio | loom latency median / p99 ms | llama-server |")
print("|---|---|---|---|---|---|")
for c in sorted({r["concurrency"] for r in runs}):
    sel = {k: [r for r in runs if r["kind"] == k and r["concurrency"] == c] for k in ("loom", "llama")}
    rate = {k: mean([r["request_throughput"] for r in v]) for k, v in sel.items()}
    lat = {k: "%.1f / %.1f" % (mean([r["latency_ms"]["median"] for r in v]), mean([r["latency_ms"]["p99"] for r in v]))
           for k, v in sel.items()}
    print("| %d | %.1f | %.1f | **%.2fx** | %s | %s |" % (c, rate["loom"], rate["llama"], rate["loom"] / rate["llama"],
                                                         lat["loom"], lat["llama"]))
print("other processes: at most %.2f CPUs during a run" % max(r["other_cpus"] for r in runs))
json.dump({"model": sys.argv[3], "cpu": sys.argv[4], "runs": runs}, open(sys.argv[2], "w"), indent=1)
PY
say "bench-embed: runs in $work, summary in $out"
