#!/usr/bin/env bash
# Chat templates end to end on the default model: `loom generate --chat`
# with templates that are not the model's own (Qwen2.5-Instruct's ChatML
# with its tools section, Llama-3.1-Instruct's tool-use template, both from
# llama.cpp's models/templates) feeds the model exactly what `loom template`
# renders, tokenized with special tokens; special tokens in text prompts;
# template errors.
. "$(dirname "$0")/lib.sh"
TEMPLATES=${TEMPLATES:?TEMPLATES must point at the chat templates of llama.cpp (launch/fetch-model.sh --vocab)}
QWEN=$TEMPLATES/Qwen-Qwen2.5-7B-Instruct.jinja
LLAMA31=$TEMPLATES/meta-llama-Llama-3.1-8B-Instruct.jinja
[ -f "$QWEN" ] && [ -f "$LLAMA31" ] || fail "missing $QWEN or $LLAMA31: run launch/fetch-model.sh --vocab"

printf '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}]' > "$TMP/msgs.json"

# the prompt `generate --chat --chat-template T` runs is `template --template T --model M`, tokenized
check_template() { # NAME TEMPLATE
  local name=$1 t=$2
  "$LOOM" template --template "$t" --model "$MODEL" --messages "$TMP/msgs.json" --add-generation-prompt \
    > "$TMP/$name.txt" 2> "$TMP/err" || fail "$name: template: $(tail -3 "$TMP/err")"
  "$LOOM" tokenize --model "$MODEL" --file "$TMP/$name.txt" --json > "$TMP/$name.ids" 2> "$TMP/err" \
    || fail "$name: tokenize: $(tail -3 "$TMP/err")"
  "$LOOM" generate --model "$MODEL" --chat --chat-template "$t" --system "Be brief." --prompt "Say hi." \
    --temperature 0 --max-tokens 48 --json > "$TMP/$name.json" 2> "$TMP/err" || fail "$name: generate: $(tail -3 "$TMP/err")"
  local want got
  want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tokens'])" "$TMP/$name.ids")
  got=$(json_field "$TMP/$name.json" 1 "o['prompt_tokens']")
  [ "$got" = "$want" ] || fail "$name: generate's prompt tokens $got differ from loom template + tokenize: $want"
}

check_template qwen "$QWEN"
grep -q '^<|im_start|>system$' "$TMP/qwen.txt" || fail "qwen: the prompt does not open with a system turn"
[ "$(json_field "$TMP/qwen.json" 1 "o['prompt_tokens'][0]")" = 1 ] || fail "qwen: <|im_start|> is not one token (id 1)"
# SmolLM2 speaks ChatML too, so it ends its turn with <|im_end|>
[ "$(json_field "$TMP/qwen.json" 1 "o['stop_reason']")" = stop ] || fail "qwen: expected stop_reason stop"
ok "generate --chat with Qwen2.5's template"

check_template llama31 "$LLAMA31"
grep -q "Today Date: 26 Jul 2024" "$TMP/llama31.txt" || fail "llama31: no date line in the system turn"
grep -q '^Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>$' "$TMP/llama31.txt" \
  || fail "llama31: the system message is not where the template puts it"
ok "generate --chat with Llama-3.1's tool-use template"

# the same template with tools: the definitions go into the first user turn (tools_in_user_message)
printf '[{"type": "function", "function": {"name": "get_time", "description": "Now", "parameters": {"type": "object", "properties": {}}}}]' > "$TMP/tools.json"
"$LOOM" template --template "$LLAMA31" --messages "$TMP/msgs.json" --tools "$TMP/tools.json" --add-generation-prompt \
  --bos-token "<|begin_of_text|>" > "$TMP/tools.txt" 2> "$TMP/err" || fail "tools: $(tail -3 "$TMP/err")"
grep -q '^    "type": "function",$' "$TMP/tools.txt" || fail "tools: no tojson(indent=4) tool definition"
grep -q '^Environment: ipython$' "$TMP/tools.txt" || fail "tools: no 'Environment: ipython'"
ok "template with tools"

# special tokens written in a text prompt are parsed unless --no-parse-special
"$LOOM" generate --model "$MODEL" --prompt $'<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' \
  --temperature 0 --max-tokens 4 --json > "$TMP/sp.json" 2> "$TMP/err" || fail "special: $(tail -3 "$TMP/err")"
[ "$(json_field "$TMP/sp.json" 1 "o['prompt_tokens'][0]")" = 1 ] || fail "special: <|im_start|> in the prompt is not token 1"
"$LOOM" generate --model "$MODEL" --prompt $'<|im_start|>user\nHi' --no-parse-special \
  --temperature 0 --max-tokens 1 --json > "$TMP/nsp.json" 2> "$TMP/err" || fail "no-parse-special: $(tail -3 "$TMP/err")"
[ "$(json_field "$TMP/nsp.json" 1 "1 in o['prompt_tokens']")" = False ] || fail "--no-parse-special still parsed <|im_start|>"
[ "$("$LOOM" tokenize --model "$MODEL" --text '<|im_end|>')" = 2 ] || fail "tokenize does not parse <|im_end|> by default"
[ "$("$LOOM" tokenize --model "$MODEL" --text '<|im_end|>' --no-parse-special | wc -w)" -gt 1 ] \
  || fail "tokenize --no-parse-special still parsed <|im_end|>"
ok "special tokens in text prompts"

# errors: a template that does not parse names the file, line and column; one that raises, its message
printf 'line one\n{%% for m in messages %%}{{ m.role }\n' > "$TMP/bad.jinja"
expect_fail "template syntax error" "bad.jinja: chat template:2:" \
  "$LOOM" generate --model "$MODEL" --chat --chat-template "$TMP/bad.jinja" --prompt hi
printf "{{ raise_exception('no system turns, please') }}" > "$TMP/raise.jinja"
expect_fail "template raises" "no system turns, please" \
  "$LOOM" template --template "$TMP/raise.jinja" --messages "$TMP/msgs.json"
expect_fail "chat-template without chat" "needs --chat" "$LOOM" generate --model "$MODEL" --chat-template "$QWEN" --prompt hi
expect_fail "messages not JSON" "invalid JSON" "$LOOM" template --template "$QWEN" --messages "$TMP/bad.jinja"
"$LOOM" template --help | grep -q -- "--add-generation-prompt" || fail "template --help lacks --add-generation-prompt"
ok "template errors"
