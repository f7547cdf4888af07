#!/usr/bin/env bash
# launch/bench-grammar.sh — structured output by GBNF grammar, `loom serve`
# against llama-server (built from the pinned llama-cpp-python sdist, as
# bench-serve.sh does), same model, same grammars, same minutes: decode
# tokens/s of llama-server's /completion (timings.predicted_per_second, on
# both servers) with and without each grammar, requests alternating between
# the two servers (one at a time, so they never share the cores).
#
# Usage: launch/bench-grammar.sh
#   MODEL=(the default model)  THREADS=2  ROUNDS=3  N_PREDICT=256
#   OUT=launch/bench-results/<cpu>-grammar.json  LOOM=build/loom  LOOM_CACHE=.cache
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${LOOM_CACHE:-$root/.cache}
loom=${LOOM:-$root/build/loom}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
n_predict=${N_PREDICT:-256}
work=$cache/bench/grammar-$(date +%Y%m%d-%H%M%S)
mkdir -p "$cache/dl" "$work"
say() { printf '%s\n' "$*" >&2; }
[ -x "$loom" ] || { say "bench-grammar: $loom is missing: run launch/quickstart.sh (or set LOOM=)"; exit 1; }

. "$(dirname "$0")/llamacpp-build.sh"
llamacpp_build bench-grammar build-serve llama-server -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF || exit 1
llama_server=$llamacpp_bin
model=${MODEL:-$("$root/launch/fetch-model.sh")}

. "$(dirname "$0")/bench-server.sh"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2> /dev/null || true; done; }
trap cleanup EXIT
lport=$(free_port)
"$loom" serve --model "$model" --threads "$threads" --sequences 4 --ctx-size 2048 --host 127.0.0.1 --port "$lport" \
  > "$work/loom.log" 2>&1 &
PIDS+=($!)
wait_health "bench-grammar: loom serve" "$lport" "$work/loom.log" "${PIDS[-1]}"
cport=$(free_port)
"$llama_server" -m "$model" -t "$threads" -tb "$threads" -np 4 -c 8192 --host 127.0.0.1 --port "$cport" --no-webui \
  > "$work/llama.log" 2>&1 &
PIDS+=($!)
wait_health "bench-grammar: llama-server" "$cport" "$work/llama.log" "${PIDS[-1]}"

python3 - "$lport" "$cport" "$rounds" "$n_predict" "$model" "$threads" "${OUT:-}" <<'EOF'
import json, re, statistics, sys, urllib.request
lport, cport, rounds, n_predict, model, threads, out = sys.argv[1:]
rounds, n_predict = int(rounds), int(n_predict)
JSON = r'''root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= "-"? ([0-9] | [1-9] [0-9]{0,15}) ("." [0-9]+)? ([eE] [-+]? [0-9]{1,3})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
'''
LIST = r'root ::= ("- " [A-Z] [^\n]{1,80} "\n"){3,10}'
CSV = r'''root ::= "name,age,city\n" (row "\n"){4,12}
row  ::= [A-Z] [a-z]{1,12} "," [1-9] [0-9]? "," [A-Z] [a-z]{2,14}'''
chat = lambda q: "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n" % q
CASES = [
    ("json", chat("Describe a cat as a JSON object with ten fields."), JSON, 0.0),
    ("json, sampled", chat("Describe a city as a JSON object with ten fields."), JSON, 0.8),
    ("list", chat("List ten animals that live in the sea, one a line."), LIST, 0.0),
    ("csv", chat("Write a table of people: name, age, city."), CSV, 0.0),
]

def ask(port, prompt, grammar, temp):
    body = {"prompt": prompt, "n_predict": n_predict, "temperature": temp, "seed": 1, "cache_prompt": False}
    if grammar:
        body["grammar"] = grammar
    req = urllib.request.Request("http://127.0.0.1:%s/completion" % port, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    o = json.loads(urllib.request.urlopen(req, timeout=600).read())
    return o["timings"]["predicted_per_second"], o["timings"]["predicted_n"], o["content"]

cpu = "unknown"
try:
    info = open("/proc/cpuinfo").read()
    cpu = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
    cpu += " (family %s model %s)" % (re.search(r"cpu family\s*:\s*(\d+)", info).group(1),
                                      re.search(r"\nmodel\s*:\s*(\d+)", info).group(1))
except Exception:
    pass
res = {c[0]: {k: [] for k in ("loom", "loom_g", "llama", "llama_g")} for c in CASES}
for r in range(rounds):
    for name, prompt, grammar, temp in CASES:
        for key, port, g in (("loom", lport, None), ("llama", cport, None), ("loom_g", lport, grammar),
                             ("llama_g", cport, grammar)):
            res[name][key].append(ask(port, prompt, g, temp))
print("model %s, %s threads, /completion, at most %d tokens, median of %d alternating rounds; CPU: %s" % (
    model.rsplit("/", 1)[-1], threads, n_predict, rounds, cpu))
print("%-14s | %-31s | %-31s | %s" % ("", "loom tokens/s", "llama.cpp tokens/s", "loom / llama.cpp"))
print("%-14s | %8s %8s %5s %7s | %8s %8s %5s %7s | %s" % ("grammar", "plain", "grammar", "toks", "ratio", "plain",
                                                          "grammar", "toks", "ratio", "with the grammar"))
rows = []
for name, _, _, temp in CASES:
    m = {k: statistics.median(x[0] for x in v) for k, v in res[name].items()}
    toks = {k: res[name][k][0][1] for k in res[name]}
    row = {"grammar": name, "temperature": temp, "tokens_per_s": m, "tokens": toks,
           "texts": {k: res[name][k][0][2] for k in ("loom_g", "llama_g")}}
    rows.append(row)
    print("%-14s | %8.1f %8.1f %5d %6.2fx | %8.1f %8.1f %5d %6.2fx | %.2fx" % (
        name, m["loom"], m["loom_g"], toks["loom_g"], m["loom_g"] / m["loom"], m["llama"], m["llama_g"],
        toks["llama_g"], m["llama_g"] / m["llama"], m["loom_g"] / m["llama_g"]))
if out:
    json.dump({"cpu": cpu, "model": model.rsplit("/", 1)[-1], "threads": int(threads), "n_predict": n_predict,
               "rounds": rounds, "rows": rows}, open(out, "w"), indent=1)
    print("wrote", out)
EOF
