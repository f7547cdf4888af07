# launch/bench-server.sh — sourced by the benchmarks that start HTTP servers
# (bench-serve.sh, bench-embed.sh, bench-grammar.sh): a free local port,
# waiting for a server's /health, stopping one. Needs the caller's say().

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_health WHO PORT LOG [PID]: returns once GET /health answers on PORT;
# ends the script, with LOG's last lines, when PID exits first or after 120 s.
wait_health() {
  local who=$1 port=$2 log=$3 pid=${4:-} i
  for i in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2> /dev/null; then say "$who exited: $(tail -5 "$log")"; exit 1; fi
    sleep 0.2
  done
  say "$who did not come up on port $port: $(tail -5 "$log")"
  exit 1
}

# stop_server PID SECONDS: SIGTERM, up to SECONDS for it to end, then SIGKILL.
stop_server() {
  local i
  kill -TERM "$1" 2> /dev/null || true
  for i in $(seq 1 $(($2 * 5))); do kill -0 "$1" 2> /dev/null || break; sleep 0.2; done
  kill -KILL "$1" 2> /dev/null || true
  wait "$1" 2> /dev/null || true
}
