#!/usr/bin/env bash
# launch/bench-serve.sh — `loom serve` against llama-server: same model, same
# threads, same number of parallel sequences, same machine, alternating runs
# (loom, llama, then llama, loom in the next round). Not run in CI (about
# 35 minutes with the defaults on a quiet 2-core machine).
#
# From a fresh clone, after launch/quickstart.sh (loom built in build/, the
# default model fetched):
#   (a) unpacks llama.cpp from the pinned llama-cpp-python 0.3.36 sdist (as
#       launch/bench-vs-llamacpp.sh does) into .cache/ and builds llama-server
#       once: CMake Release, CPU only, GGML_NATIVE=ON, no OpenSSL, no web UI
#       assets (flags below, also stored in the JSON);
#   (b) installs aiohttp into a private venv (.cache/venv-bench-serve) for the
#       load client launch/bench_serve_client.py;
#   (c) runs every workload against a freshly started server of each kind:
#       loom serve --threads T --sequences N --ctx-size C
#       llama-server -t T -tb T -np N -c N*C --cont-batching
#       fixed     64-token prompts / 128 output tokens at concurrency 1, 4, 16
#       mixed     4 short streams (64 / 128) decode while 1,024-token prompts
#                 arrive one after another: the short streams' ITL p99, p99.9,
#                 longest stall and time-weighted ITL (the gap a random
#                 instant of a stream falls in); with MIXED_PREFILL_ROWS="16 8"
#                 also loom alone at each --prefill-rows (variants s4-prN)
#       prefix    a shared 512-token system prompt + a different 32-token
#                 question each (prefix caching), concurrency 4
#       overload  Poisson arrivals at twice the measured saturation rate
#                 (2 x the larger request throughput at the largest
#                 concurrency) for OVERLOAD_S: loom with --max-queue Q answers
#                 429 fast once SLOTS + Q requests are in, llama-server (no
#                 queue bound) lets requests wait. At twice saturation the
#                 excess arrives at the saturation rate, so the queue is full
#                 after about (SLOTS + Q) / rate s: OVERLOAD_S must be well
#                 above that (with 16 slots at 0.5 req/s and Q = 4, 40 s)
#       soak      loom only (llama too with SOAK_LLAMA=1): N clients for SOAK
#                 seconds, random lengths, streaming and whole, completions
#                 and chat, 5% client disconnects: RSS of the server and
#                 protocol errors. First (SOAK_FILL=1) every sequence's KV
#                 cache is written once, unmeasured: loom maps its KV cache
#                 lazily, so its RSS would otherwise grow while the pool's
#                 blocks are used for the first time (llama-server's starts
#                 with the whole cache resident)
#       multi     the fixed workload on two ranks: loom --tp 2 and --pp 2 under
#                 mpirun (T/2 threads a rank, at least 1) against llama-server
#                 with the same total threads
#       Every run polls GET /health every 0.1 s from a side thread (its p99
#       at full load) and records the load average and the CPUs other
#       processes used during the run;
#   (d) prints the tables (with the issue's targets as ratios) and writes
#       every run and the summary as JSON under .cache/bench/.
#
# Numbers mean something only on a quiet machine: the load average before
# every run and the other processes' CPUs during it are in the tables.
#
# Environment (defaults):
#   LOOM=build/loom  MODEL=<the default SmolLM2-135M Q4_1>  THREADS=2
#   SLOTS=16 (parallel sequences)  CTX=2048 (positions per sequence)
#   ROUNDS=2  CONCS="1 4 16"  REQS=4 (requests per unit of concurrency)  MINREQ=8 (at least)
#   MIXED_S=60  MIXED_PREFILL_ROWS=""  PREFIX_REQS=32  OVERLOAD_S=60  MAX_QUEUE=4 (loom --max-queue)
#   OVERLOAD_RATE=<from the fixed runs>  SOAK=600  SOAK_LLAMA=0  SOAK_FILL=1
#   MULTI=1  MULTI_CONCS=$CONCS
#   WORKLOADS="fixed mixed prefix overload multi soak"
#   OUT=.cache/bench/bench-serve.json  LOOM_CACHE=.cache
# Options: --build-only (steps a and b), --quick (a short trial: ROUNDS=1,
#   CONCS="1 4", REQS=2, MIXED_S=20, PREFIX_REQS=12, OVERLOAD_S=10, SOAK=60),
#   --help.
set -euo pipefail
quick=0 build_only=0
for a in "$@"; do
  case $a in
    --build-only) build_only=1 ;;
    --quick) quick=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "bench-serve: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${LOOM_CACHE:-$root/.cache}
loom=${LOOM:-$root/build/loom}
if [ $quick = 1 ]; then
  : "${ROUNDS:=1}" "${CONCS:=1 4}" "${REQS:=2}" "${MIXED_S:=20}" "${PREFIX_REQS:=12}" "${OVERLOAD_S:=10}" "${SOAK:=60}"
fi
threads=${THREADS:-2}
slots=${SLOTS:-16}
ctx=${CTX:-2048}
rounds=${ROUNDS:-2}
concs=${CONCS:-"1 4 16"}
reqs=${REQS:-4}
minreq=${MINREQ:-8}
mixed_s=${MIXED_S:-60}
prefix_reqs=${PREFIX_REQS:-32}
overload_s=${OVERLOAD_S:-60}
max_queue=${MAX_QUEUE:-4}
mixed_prefill_rows=${MIXED_PREFILL_ROWS:-}
soak=${SOAK:-600}
soak_llama=${SOAK_LLAMA:-0}
soak_fill=${SOAK_FILL:-1}
multi=${MULTI:-1}
multi_concs=${MULTI_CONCS:-$concs}
workloads=${WORKLOADS:-"fixed mixed prefix overload multi soak"}
out=${OUT:-$cache/bench/bench-serve.json}
work=$cache/bench/serve-$(date +%Y%m%d-%H%M%S)
mkdir -p "$cache/dl" "$work" "$(dirname "$out")"

say() { printf '%s\n' "$*" >&2; }
[ -x "$loom" ] || { say "bench-serve: $loom is missing: run launch/quickstart.sh (or set LOOM=)"; exit 1; }

# ---------------------------------------------------------------- (a) llama-server
. "$(dirname "$0")/llamacpp-build.sh"
llamacpp_build bench-serve build-serve llama-server -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF || exit 1
llama_server=$llamacpp_bin

# ---------------------------------------------------------------- (b) the client's venv
venv=$cache/venv-bench-serve
if ! "$venv/bin/python" -c "import aiohttp" 2> /dev/null; then
  say "bench-serve: installing aiohttp into $venv"
  python3 -m venv "$venv" || { say "bench-serve: cannot create a venv (apt-get install python3-venv)"; exit 1; }
  "$venv/bin/pip" install --quiet "aiohttp==3.13.2" >&2
fi
client=("$venv/bin/python" "$root/launch/bench_serve_client.py")

model=${MODEL:-$("$root/launch/fetch-model.sh")}
[ -f "$model" ] || { say "bench-serve: no model at $model"; exit 1; }
[ $build_only = 1 ] && { say "bench-serve: llama-server at $llama_server; client venv at $venv; model $model"; exit 0; }

# mpirun refuses to run as root unless told (containers)
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# ---------------------------------------------------------------- servers
. "$(dirname "$0")/bench-server.sh"
SERVER='' PORT='' PIDS='' SLOG=''
cleanup() { [ -n "$SERVER" ] && kill -KILL "$SERVER" 2> /dev/null; true; }
trap cleanup EXIT

# descendants PID: the process ids of PID's descendants named loom (mpirun's ranks)
descendants() {
  local kids k
  kids=$(ps -o pid= --ppid "$1" 2> /dev/null || true)
  for k in $kids; do
    [ "$(cat /proc/"$k"/comm 2> /dev/null)" = loom ] && echo "$k"
    descendants "$k"
  done
}

# start KIND [extra args]: KIND = loom | llama | tp2 | pp2; sets SERVER, PORT, PIDS, SCMD
start() {
  local kind=$1; shift
  PORT=$(free_port)
  SLOG=$work/server-$((++nserv))-$kind.log
  local half=$(( threads / 2 > 0 ? threads / 2 : 1 )) lt=$threads
  [ "$wl_now" = multi ] && lt=$(( 2 * half )) # the same total as the two ranks
  case $kind in
    loom) SCMD=("$loom" serve --model "$model" --threads "$threads" --sequences "$slots" --ctx-size "$ctx"
                --host 127.0.0.1 --port "$PORT" "$@") ;;
    llama) SCMD=("$llama_server" -m "$model" -t "$lt" -tb "$lt" -np "$slots" -c $((slots * ctx))
                 --cont-batching --host 127.0.0.1 --port "$PORT" --no-webui "$@") ;;
    tp2|pp2) SCMD=(mpirun --oversubscribe --bind-to none -np 2 "$loom" serve --model "$model" --"${kind%2}" 2
                   --threads "$half" --sequences "$slots" --ctx-size "$ctx" --host 127.0.0.1 --port "$PORT" "$@") ;;
  esac
  "${SCMD[@]}" > "$SLOG" 2>&1 &
  SERVER=$!
  wait_health "bench-serve: $kind" "$PORT" "$SLOG" "$SERVER"
  if [ "$kind" = tp2 ] || [ "$kind" = pp2 ]; then PIDS=$(descendants "$SERVER" | paste -sd,); else PIDS=$SERVER; fi
  # one small request first (page-in, thread pools), outside the measurement
  curl -sf "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "Warm up", "max_tokens": 8, "temperature": 0}' > /dev/null ||
    { say "bench-serve: $kind: the warm-up request failed: $(tail -5 "$SLOG")"; exit 1; }
}

stop() {
  stop_server "$SERVER" 60
  SERVER=''
  sleep 1 # let the port and the page cache settle
}

nserv=0 n=0 wl_now=''
runs=$work/runs.tsv # workload variant kind round json server-command
: > "$runs"
# run WORKLOAD VARIANT KIND ROUND SERVER-EXTRA -- CLIENT-ARGS...
run() {
  local wl=$1 var=$2 kind=$3 rnd=$4; shift 4
  local extra=()
  while [ "$1" != -- ]; do extra+=("$1"); shift; done
  shift
  n=$((n + 1))
  wl_now=$wl
  local f=$work/$n-$wl-$var-$kind.json
  start "$kind" "${extra[@]}"
  say "[$(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $wl $var $kind (round $rnd): ${SCMD[*]}"
  local cw=$wl
  [ "$wl" = multi ] && cw=fixed
  "${client[@]}" "$cw" --base "http://127.0.0.1:$PORT" --label "$kind" --pid "$PIDS" --out "$f" \
    --health-interval 0.1 "$@" || { say "bench-serve: the client failed (server log $SLOG)"; stop; exit 1; }
  stop
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$var" "$kind" "$rnd" "$f" "${SCMD[*]}" >> "$runs"
}

# pair WORKLOAD VARIANT ROUND KINDS SERVER-EXTRA(loom only) -- CLIENT-ARGS: each kind in turn,
# the order reversed in even rounds
pair() {
  local wl=$1 var=$2 rnd=$3 kinds=$4; shift 4
  local lx=()
  while [ "$1" != -- ]; do lx+=("$1"); shift; done
  shift
  local order=($kinds) k
  if [ $((rnd % 2)) -eq 0 ]; then order=($(printf '%s\n' "${order[@]}" | tac)); fi
  for k in "${order[@]}"; do
    if [ "$k" = llama ]; then run "$wl" "$var" "$k" "$rnd" "$@"; else run "$wl" "$var" "$k" "$rnd" "${lx[@]}" "$@"; fi
  done
}

has() { case " $workloads " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
nreq() { local r=$(( $1 * reqs )); [ $r -lt "$minreq" ] && r=$minreq; echo $r; }

# saturation: the larger request throughput at the largest concurrency (fixed runs so far)
sat_rate() {
  python3 - "$runs" <<'PY'
import json, sys
best = 0.0
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
top = max([int(r[1][1:]) for r in rows if r[0] == "fixed" and r[2] in ("loom", "llama")] or [0])
for r in rows:
    if r[0] == "fixed" and r[1] == "c%d" % top and r[2] in ("loom", "llama"):
        best = max(best, json.load(open(r[4]))["results"]["main"]["request_throughput"])
print("%.3f" % best)
PY
}

say "bench-serve: loom $loom, llama-server $llama_server, model $model"
say "bench-serve: threads $threads, $slots sequences of $ctx positions, $rounds round(s); runs in $work"
for rnd in $(seq 1 "$rounds"); do
  if has fixed; then
    for c in $concs; do
      pair fixed "c$c" "$rnd" "loom llama" -- -- --concurrency "$c" --requests "$(nreq "$c")" --prompt-len 64 --output-len 128
    done
  fi
  if has mixed; then
    pair mixed s4 "$rnd" "loom llama" -- -- --streams 4 --prompt-len 64 --output-len 128 --long-prompt 1024 \
      --long-output 16 --long-gap 1 --duration "$mixed_s"
    for pr in $mixed_prefill_rows; do
      pair mixed "s4-pr$pr" "$rnd" loom --prefill-rows "$pr" -- -- --streams 4 --prompt-len 64 --output-len 128 \
        --long-prompt 1024 --long-output 16 --long-gap 1 --duration "$mixed_s"
    done
  fi
  if has prefix; then
    pair prefix sys512 "$rnd" "loom llama" -- -- --concurrency 4 --requests "$prefix_reqs" --system-len 512 \
      --prompt-len 32 --output-len 64
  fi
  if has overload; then
    rate=${OVERLOAD_RATE:-$(awk -v r="$(sat_rate)" 'BEGIN{printf "%.3f", 2 * r}')}
    if awk -v r="$rate" 'BEGIN{exit !(r > 0)}'; then
      pair overload "x2" "$rnd" "loom llama" --max-queue "$max_queue" -- -- --rate "$rate" --duration "$overload_s" \
        --prompt-len 64 --output-len 128 --request-timeout 900
    else
      say "bench-serve: overload skipped: no fixed runs to measure saturation (set OVERLOAD_RATE=)"
    fi
  fi
  if has multi && [ "$multi" = 1 ]; then
    for c in $multi_concs; do
      pair multi "c$c" "$rnd" "tp2 pp2 llama" -- -- --concurrency "$c" --requests "$(nreq "$c")" --prompt-len 64 \
        --output-len 128
    done
  fi
done
if has soak && [ "$soak" -gt 0 ]; then
  kinds=loom
  [ "$soak_llama" = 1 ] && kinds="loom llama"
  fill=()
  [ "$soak_fill" = 1 ] && fill=(--fill $((ctx - 16)))
  pair soak "${soak}s" 1 "$kinds" -- -- --concurrency "$slots" --duration "$soak" --prompt-len $((ctx / 2 < 512 ? ctx / 2 : 512)) \
    --output-len $((ctx / 4 < 256 ? ctx / 4 : 256)) --rss-every 5 "${fill[@]}"
fi

# ---------------------------------------------------------------- (d) tables
"${client[@]}" report "$runs" --out "$out" --meta "$(printf '{"llama_flags": "%s", "threads": %d, "slots": %d, "ctx": %d, "rounds": %d, "cpu": "%s"}' \
  "$stamp" "$threads" "$slots" "$ctx" "$rounds" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')")"
