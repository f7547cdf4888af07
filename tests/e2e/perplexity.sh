#!/usr/bin/env bash
# loom perplexity against llama.cpp's llama-perplexity (tests/fixtures/perplexity.ref,
# written by tests/fixtures/gen_perplexity.sh): the default model within 1 % (both
# sides quantize activations to 8 bits, rounded apart), an F32 mixture of experts
# within 1e-4; the same on a cluster (pp 2: bit for bit one rank's; tp 2 within
# 1 %); the default model with a q8_0 KV cache against llama.cpp's q8_0 cache within
# 1 %; and what is refused.
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
text=$here/../fixtures/perplexity.txt
ref=$here/../fixtures/perplexity.ref
[ -f "$ref" ] || fail "missing $ref"

ppl() { "$@" --file "$text" --json 2> "$TMP/err" | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])" ||
  fail "$*: $(tail -3 "$TMP/err")"; }
near() { python3 -c "import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(0 if abs(a - b) <= t * b else 1)" "$@"; }

while read -r -u 3 name ctx chunks want kv; do
  case $name in '#'*) continue ;; esac
  model=$MODEL tol=0.01
  if [ "$name" != default ]; then
    model=$TMP/synth.gguf tol=0.0001
    "$LOOM" synth ${name//|/ } --out "$model" > /dev/null || fail "loom synth ${name//|/ }"
  fi
  got=$(ppl "$LOOM" perplexity --model "$model" --ctx-size "$ctx" --chunks "$chunks" --threads 2 --kv-type "${kv:-f16}")
  near "$got" "$want" "$tol" || fail "$name ${kv:-f16} KV: PPL $got, llama.cpp $want (tolerance $tol)"
  ok "perplexity ${name//|/ } ctx $ctx, ${kv:-f16} KV cache: $got, llama.cpp $want"
  if [ "$name" = default ] && [ -z "$kv" ]; then
    pp=$(ppl $MPIRUN -np 2 "$LOOM" perplexity --model "$model" --ctx-size "$ctx" --chunks "$chunks" --threads 1 --pp 2)
    [ "$pp" = "$got" ] || fail "pp 2: PPL $pp, one rank $got (a pipeline computes one rank's bits)"
    tp=$(ppl $MPIRUN -np 2 "$LOOM" perplexity --model "$model" --ctx-size "$ctx" --chunks "$chunks" --threads 1 --tp 2)
    near "$tp" "$want" "$tol" || fail "tp 2: PPL $tp, llama.cpp $want"
    ok "on a cluster: pp 2 $pp (one rank's), tp 2 $tp"
  fi
done 3< "$ref"

head -c 200 "$text" > "$TMP/short.txt"
expect_fail "a text shorter than two chunks" "needs at least 256" \
  "$LOOM" perplexity --model "$MODEL" --file "$TMP/short.txt" --ctx-size 128
expect_fail "a missing file" "nothere" "$LOOM" perplexity --model "$MODEL" --file "$TMP/nothere.txt"
expect_fail "a bad context size" "ctx-size" "$LOOM" perplexity --model "$MODEL" --file "$text" --ctx-size 2
"$LOOM" synth --arch bert --layers 1 --dim 64 --heads 2 --kv-heads 2 --ffn 64 --vocab 300 --out "$TMP/bert.gguf" > /dev/null
expect_fail "an encoder" "encoder" "$LOOM" perplexity --model "$TMP/bert.gguf" --file "$text"
