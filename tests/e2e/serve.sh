#!/usr/bin/env bash
# loom serve end to end, with the `openai` and `anthropic` Python clients
# (installed into a private virtual environment under the cache) and raw HTTP:
#   SERVE_MODES="full cluster auth queue tools draft lora" (default) or "asan" (the sanitizer
#   build: a short mixed load, then no sanitizer report may appear).
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
cache=${LOOM_CACHE:-$here/../../.cache}
venv=$cache/venv-serve-test
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai, anthropic" 2>/dev/null; then
  python3 -m venv "$venv" || fail "cannot create a virtual environment (apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet "openai==3.60.0" "anthropic==2.17.0" ||
    fail "cannot install the openai and anthropic clients from PyPI"
fi
PY="$venv/bin/python"
modes=${SERVE_MODES:-"full cluster auth queue tools draft lora"}

client() { "$PY" "$here/serve_client.py" "$@" || fail "serve_client.py $1 (server log: $TMP/$1.log)"; }

for mode in $modes; do
  case $mode in
  full)
    start_server "$TMP/full.log" "$LOOM" serve --model "$MODEL" --threads 2 --ctx-size 2048 --sequences 16 ${SERVE_EXTRA:-}
    client full --base "http://127.0.0.1:$PORT" --reference-cmd "$LOOM generate --model $MODEL --threads 2"
    stop_server "$TMP/full.log"
    grep -q "SIGTERM" "$TMP/full.log" || fail "no shutdown message"
    ok "one rank: SIGTERM drains and exits 0"
    ;;
  cluster)
    for grid in "2 1" "1 2"; do
      set -- $grid
      start_server "$TMP/cluster.log" $MPIRUN -np $(($1 * $2)) "$LOOM" serve --model "$MODEL" --tp "$1" --pp "$2" \
        --threads 1 --ctx-size 2048 --sequences 8 --pid-file "$TMP/rank0.pid"
      client cluster --base "http://127.0.0.1:$PORT" \
        --reference-cmd "$MPIRUN -np $(($1 * $2)) $LOOM generate --model $MODEL --tp $1 --pp $2 --threads 1"
      kill -TERM "$(cat "$TMP/rank0.pid")" || fail "no pid file from rank 0"
      wait "$SERVER" || fail "tp $1 pp $2: the cluster did not exit cleanly after SIGTERM: $(tail -5 "$TMP/cluster.log")"
      ok "tp $1 x pp $2 cluster serves, equals loom generate, stops on SIGTERM"
    done
    ;;
  auth)
    start_server "$TMP/auth.log" "$LOOM" serve --model "$MODEL" --threads 1 --ctx-size 512 --api-key sesame
    client auth --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/auth.log"
    ;;
  queue)
    start_server "$TMP/queue.log" "$LOOM" serve --model "$MODEL" --threads 1 --ctx-size 512 --sequences 1 --max-queue 2
    client queue --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/queue.log"
    ;;
  tools)
    # a model scripted to answer content, then a Hermes tool call (tests/script_model.c)
    "${SCRIPT_MODEL:?SCRIPT_MODEL must point at tests/script_model}" "$TMP/script.gguf" "Checking." "<tool_call>" \
      '{"name": "get_weather", ' '"arguments": {"city": "Paris", "days": 2}}' "</tool_call>" || fail "script_model"
    start_server "$TMP/tools.log" "$LOOM" serve --model "$TMP/script.gguf" --threads 1 --ctx-size 1024
    client tools --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/tools.log"
    # and one of a Llama 3.1-style template, whose calls are a bare JSON reply
    "$SCRIPT_MODEL" --llama3 "$TMP/script3.gguf" '{"name": "get_weather", ' '"parameters": {"city": "Paris", "days": 2}}' \
      || fail "script_model --llama3"
    start_server "$TMP/tools3.log" "$LOOM" serve --model "$TMP/script3.gguf" --threads 1 --ctx-size 1024
    client tools-llama3 --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/tools3.log"
    # and one of a Mistral-style template: [TOOL_CALLS]NAME[ARGS]{...}, the markers control tokens
    "$SCRIPT_MODEL" --mistral "$TMP/scriptm.gguf" "Checking." "[TOOL_CALLS]" "get_weather" "[ARGS]" \
      '{"city": "Paris", "days": 2}' || fail "script_model --mistral"
    start_server "$TMP/toolsm.log" "$LOOM" serve --model "$TMP/scriptm.gguf" --threads 1 --ctx-size 1024
    client tools-mistral --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/toolsm.log"
    # and one of a Qwen3-Coder-style template: <tool_call><function=NAME><parameter=K>V</parameter>...
    "$SCRIPT_MODEL" --xml "$TMP/scriptx.gguf" "Checking." "<tool_call>" $'\n<function=get_weather>\n' \
      $'<parameter=city>\nParis\n</parameter>\n' $'<parameter=days>\n2\n</parameter>\n' "</function>" "</tool_call>" \
      || fail "script_model --xml"
    start_server "$TMP/toolsx.log" "$LOOM" serve --model "$TMP/scriptx.gguf" --threads 1 --ctx-size 1024
    client tools-xml --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/toolsx.log"
    # a thinking model (a Qwen3-style template): reasoning_content apart from content, and with --no-reasoning not
    "$SCRIPT_MODEL" --think "$TMP/think.gguf" "<think>" "Let me check the sky." "</think>" "It is sunny." \
      || fail "script_model --think"
    start_server "$TMP/think.log" "$LOOM" serve --model "$TMP/think.gguf" --threads 1 --ctx-size 1024
    client think --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/think.log"
    start_server "$TMP/think2.log" "$LOOM" serve --model "$TMP/think.gguf" --threads 1 --ctx-size 1024 --no-reasoning
    client think-off --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/think2.log"
    # a code model's fill in the middle: completions with suffix
    "$SCRIPT_MODEL" --fim "$TMP/fim.gguf" "x" " *" " 2" || fail "script_model --fim"
    start_server "$TMP/fim.log" "$LOOM" serve --model "$TMP/fim.gguf" --threads 1 --ctx-size 4096
    client fim --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/fim.log"
    # ... and Magistral's [THINK]...[/THINK] (control tokens, as in Mistral's tokenizer)
    "$SCRIPT_MODEL" --mistral "$TMP/thinkm.gguf" "[THINK]" "Let me check the sky." "[/THINK]" "It is sunny." \
      || fail "script_model --mistral (reasoning)"
    start_server "$TMP/thinkm.log" "$LOOM" serve --model "$TMP/thinkm.gguf" --threads 1 --ctx-size 1024
    client think-mistral --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/thinkm.log"
    # a gpt-oss model (a harmony template, o200k_harmony's special tokens): the analysis channel as
    # reasoning_content, the final one as content (with --no-reasoning the analysis stays in the content) ...
    "$SCRIPT_MODEL" --harmony "$TMP/harmony.gguf" "<|channel|>" "analysis" "<|message|>" "Let me check the sky." \
      "<|end|>" "<|start|>" "assistant<|channel|>final<|message|>" "It is sunny." "<|return|>" \
      || fail "script_model --harmony"
    start_server "$TMP/harmony.log" "$LOOM" serve --model "$TMP/harmony.gguf" --threads 1 --ctx-size 1024
    client harmony --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/harmony.log"
    start_server "$TMP/harmony-off.log" "$LOOM" serve --model "$TMP/harmony.gguf" --threads 1 --ctx-size 1024 --no-reasoning
    client harmony-off --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/harmony-off.log"
    # ... and a commentary preamble as content, a message to functions.get_weather as a call
    "$SCRIPT_MODEL" --harmony "$TMP/harmony-call.gguf" "<|channel|>" "analysis" "<|message|>" "Need the weather." \
      "<|end|>" "<|start|>" "assistant<|channel|>commentary<|message|>" "Checking." \
      "<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>" \
      '{"city": "Paris", "days": 2}' "<|call|>" || fail "script_model --harmony (a call)"
    start_server "$TMP/harmony-call.log" "$LOOM" serve --model "$TMP/harmony-call.gguf" --threads 1 --ctx-size 1024
    client harmony-call --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/harmony-call.log"
    ;;
  draft)
    # speculative decoding (prompt lookup): the same replies as loom generate without it
    start_server "$TMP/draft.log" "$LOOM" serve --model "$MODEL" --threads 2 --ctx-size 1024 --sequences 4 --draft 4
    client draft --base "http://127.0.0.1:$PORT" --reference-cmd "$LOOM generate --model $MODEL --threads 2"
    stop_server "$TMP/draft.log"
    # ... and with a draft model (the model itself, its passes counted as free: it keeps proposing)
    LOOM_DRAFT_COST=0 start_server "$TMP/draft-model.log" "$LOOM" serve --model "$MODEL" --threads 2 --ctx-size 1024 \
      --sequences 4 --draft-model "$MODEL" --draft 5
    client draft --base "http://127.0.0.1:$PORT" --reference-cmd "$LOOM generate --model $MODEL --threads 2"
    stop_server "$TMP/draft-model.log"
    ;;
  lora)
    # a LoRA adapter for the model, loaded at scale 0: per request, by name, and the server's scales
    "$LOOM" synth --lora-of "$MODEL" --lora-rank 8 --seed 7 --out "$TMP/lora.gguf" >/dev/null || fail "loom synth --lora-of"
    start_server "$TMP/lora.log" "$LOOM" serve --model "$MODEL" --threads 2 --ctx-size 1024 --sequences 4 \
      --lora "$TMP/lora.gguf" --lora-init-without-apply
    client lora --base "http://127.0.0.1:$PORT" --lora "$TMP/lora.gguf" --reference-cmd "$LOOM generate --model $MODEL --threads 2"
    stop_server "$TMP/lora.log"
    ;;
  asan)
    # with speculative decoding (--draft): its rows and results under the sanitizers too; a LoRA adapter loaded
    "$LOOM" synth --lora-of "$MODEL" --lora-rank 8 --seed 7 --out "$TMP/lora.gguf" >/dev/null || fail "loom synth --lora-of"
    start_server "$TMP/asan.log" "$LOOM" serve --model "$MODEL" --threads 2 --ctx-size 512 --sequences 4 --draft 3 \
      --lora "$TMP/lora.gguf" --lora-init-without-apply
    client asan --base "http://127.0.0.1:$PORT" --lora "$TMP/lora.gguf"
    stop_server "$TMP/asan.log"
    # ... and with a draft model (the model itself, its passes counted as free), llama-server's API and the
    # infill sampler over the real vocabulary
    LOOM_DRAFT_COST=0 start_server "$TMP/asan-draft.log" "$LOOM" serve --model "$MODEL" --threads 2 --ctx-size 512 \
      --sequences 4 --draft-model "$MODEL" --draft 4
    client asan-draft --base "http://127.0.0.1:$PORT"
    stop_server "$TMP/asan-draft.log"
    for log in "$TMP/asan.log" "$TMP/asan-draft.log"; do
      if grep -Eq "AddressSanitizer|LeakSanitizer|runtime error:" "$log"; then
        fail "sanitizer report: $(grep -E -A5 "Sanitizer|runtime error" "$log" | head -20)"
      fi
    done
    ok "no sanitizer report"
    ;;
  *) fail "unknown mode $mode" ;;
  esac
done
