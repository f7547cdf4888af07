#!/usr/bin/env bash
# A loom cluster under mpirun: the network path (TCP only), greedy tokens
# equal across layouts, and failures that must end the job with a clear
# message in bounded time — never a hang.
. "$(dirname "$0")/lib.sh"

# the TCP path, PP = 2: greedy tokens equal the single-rank run (PP is exact)
"$LOOM" generate --model "$MODEL" --prompt "The capital of France is" --temperature 0 --max-tokens 24 --json \
  --threads 1 > "$TMP/single.json" 2> "$TMP/err" || fail "single rank: $(tail -3 "$TMP/err")"
timeout 300 $MPIRUN --mca btl tcp,self -np 2 "$LOOM" generate --model "$MODEL" --prompt "The capital of France is" \
  --temperature 0 --max-tokens 24 --json --threads 1 --pp 2 > "$TMP/pp2.json" 2> "$TMP/err" \
  || fail "pp 2 over tcp: $(tail -5 "$TMP/err")"
[ "$(json_field "$TMP/single.json" 1 "o['tokens']")" = "$(json_field "$TMP/pp2.json" 1 "o['tokens']")" ] \
  || fail "pp 2 over TCP generated other tokens than one rank"
ok "pp 2 over --mca btl tcp,self equals one rank"

# tp x pp that does not match the ranks: the plan says what would work
expect_fail "world != tp x pp" "tp.*pp|would work" timeout 120 $MPIRUN -np 3 "$LOOM" generate --model "$MODEL" \
  --prompt hi --tp 2 --threads 1
# more TP ranks than query heads (9)
expect_fail "tp above the head count" "head" timeout 300 $MPIRUN -np 10 "$LOOM" generate --model "$MODEL" \
  --prompt hi --tp 10 --threads 1 --watchdog-timeout 0

# ranks with different model files stop before generating
"$LOOM" synth --out "$TMP/other.gguf" --layers 2 --dim 64 --heads 2 --kv-heads 1 --ffn 128 --vocab 300 > /dev/null
expect_fail "different model files" "different model file" timeout 120 $MPIRUN -np 1 "$LOOM" generate \
  --model "$MODEL" --prompt hi --pp 2 --threads 1 : -np 1 "$LOOM" generate --model "$TMP/other.gguf" --prompt hi \
  --pp 2 --threads 1

# a stopped rank (SIGSTOP): the watchdog names it and the job ends
start=$(date +%s)
( timeout 300 $MPIRUN -np 2 "$LOOM" generate --model "$MODEL" --prompt "Once upon a time" --temperature 0 \
    --max-tokens 100000 --ignore-eos --ctx-size 100000 --threads 1 --pp 2 --watchdog-timeout 4 \
    > "$TMP/stop.out" 2> "$TMP/stop.err"; echo $? > "$TMP/stop.rc" ) &
for i in $(seq 1 100); do grep -q "generation\|Once upon" "$TMP/stop.out" 2>/dev/null && break; sleep 0.3; done
pid=$(pgrep -f "loom generate --model $MODEL --prompt Once upon" | sort -n | tail -1)
[ -n "$pid" ] || fail "could not find a rank to stop"
kill -STOP "$pid"
wait
took=$(( $(date +%s) - start ))
kill -CONT "$pid" 2>/dev/null
[ "$(cat "$TMP/stop.rc")" != 0 ] || fail "a stopped rank did not fail the job"
[ "$(cat "$TMP/stop.rc")" != 124 ] || fail "a stopped rank hung the job until the timeout"
grep -q "stopped answering" "$TMP/stop.err" "$TMP/stop.out" || fail "no watchdog message: $(tail -3 "$TMP/stop.err")"
ok "stopped rank detected by the watchdog; job ended after ${took}s"

# a killed rank (SIGKILL): mpirun ends the job
( timeout 300 $MPIRUN -np 2 "$LOOM" generate --model "$MODEL" --prompt "Once upon a time" --temperature 0 \
    --max-tokens 100000 --ignore-eos --ctx-size 100000 --threads 1 --tp 2 > "$TMP/kill.out" 2> "$TMP/kill.err"; \
  echo $? > "$TMP/kill.rc" ) &
for i in $(seq 1 100); do grep -q "Once upon" "$TMP/kill.out" 2>/dev/null && break; sleep 0.3; done
pid=$(pgrep -f "loom generate --model $MODEL --prompt Once upon" | sort -n | tail -1)
[ -n "$pid" ] || fail "could not find a rank to kill"
kill -KILL "$pid"
wait
[ "$(cat "$TMP/kill.rc")" != 0 ] || fail "a killed rank did not fail the job"
[ "$(cat "$TMP/kill.rc")" != 124 ] || fail "a killed rank hung the job until the timeout"
ok "killed rank ends the job (exit $(cat "$TMP/kill.rc"))"
