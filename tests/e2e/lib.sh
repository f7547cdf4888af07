# Shared helpers of the end-to-end tests (sourced). Each test is a script
# that exits non-zero with a message saying what was expected.
set -u
LOOM=${LOOM:?LOOM must point at the loom binary}
MODEL=${MODEL:?MODEL must point at the default model}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun --oversubscribe --bind-to none"
TMP=$(mktemp -d /tmp/loom-e2e.XXXXXX)
SERVER=
# On every exit, a failed check included: the server still running (and the
# ranks of a cluster, whose command lines name their pid file under $TMP)
# must not outlive the test.
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2> /dev/null; then
    kill -TERM "$SERVER" 2> /dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER" 2> /dev/null
  fi
  pkill -KILL -f "$TMP/" 2> /dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

[ -f "$MODEL" ] || fail "missing $MODEL: run launch/fetch-model.sh"

# expect_fail NAME PATTERN CMD...: CMD must exit non-zero (not by a signal)
# and print PATTERN (grep -E) on stderr.
expect_fail() {
  local name=$1 pat=$2; shift 2
  "$@" > "$TMP/out" 2> "$TMP/err"
  local rc=$?
  [ $rc -ne 0 ] || fail "$name: exited 0, expected an error"
  [ $rc -lt 128 ] || fail "$name: killed by signal $((rc - 128)): $(tail -3 "$TMP/err")"
  grep -Eq "$pat" "$TMP/err" || fail "$name: stderr lacks /$pat/: $(tail -3 "$TMP/err")"
  ok "$name"
}

# json_field FILE LINE EXPR: evaluates a Python expression on JSON object `o`
# (line LINE of FILE, 1-based).
json_field() {
  python3 -c "import json,sys; o=json.loads(open(sys.argv[1]).read().splitlines()[int(sys.argv[2])-1]); print($3)" "$1" "$2"
}

# ---- servers (serve.sh, embed.sh) ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server LOG CMD...: starts CMD in the background and waits for /health
start_server() {
  local log=$1; shift
  PORT=$(free_port)
  "$@" --port "$PORT" > "$log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/health" > /dev/null 2>&1 && return 0
    kill -0 "$SERVER" 2> /dev/null || fail "the server exited: $(tail -5 "$log")"
    sleep 0.2
  done
  fail "the server did not come up: $(tail -5 "$log")"
}

# stop_server LOG: SIGTERM, which must end it cleanly (exit 0) within 60 s
stop_server() {
  kill -TERM "$SERVER"
  for _ in $(seq 1 300); do kill -0 "$SERVER" 2> /dev/null || break; sleep 0.2; done
  if kill -0 "$SERVER" 2> /dev/null; then kill -KILL "$SERVER"; fail "SIGTERM did not stop the server"; fi
  wait "$SERVER"
  local rc=$?
  [ $rc -eq 0 ] || fail "the server exited with $rc after SIGTERM: $(tail -5 "$1")"
}
