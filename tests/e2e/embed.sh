#!/usr/bin/env bash
# Embeddings end to end on a random-weight BERT written by `loom synth`:
# `loom embed` (unit length, deterministic, the same under mpirun at tp 2
# and pp 2), `loom generate` refusing an encoder, and the server's
# POST /v1/embeddings in OpenAI's shape (float and base64, strings and token
# ids, the CLI's vectors; several inputs in one step, at pp 2 too; requests at once
# sharing steps, each its own vectors, counted in /metrics) with its
# errors; generation endpoints refuse an encoder with a 400.
. "$(dirname "$0")/lib.sh"

BERT=$TMP/bert.gguf
"$LOOM" synth --arch bert --layers 2 --dim 192 --heads 6 --kv-heads 6 --ffn 384 --vocab 700 --ctx 1024 \
  --type F16 --pooling mean --seed 31 --out "$BERT" > /dev/null 2> "$TMP/err" || fail "synth: $(tail -3 "$TMP/err")"
printf 'hello world\nthe quick brown fox\nhello world\n' > "$TMP/texts.txt"

embed() { # OUT [LAUNCHER...] -- [ARGS...]: loom embed --json of the three texts
  local out=$1 pre=() post=(); shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do pre+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  post=("$@")
  ${pre[@]+"${pre[@]}"} "$LOOM" embed --model "$BERT" --file "$TMP/texts.txt" --json --threads 1 ${post[@]+"${post[@]}"} \
    > "$out" 2> "$TMP/err" || fail "embed ${pre[*]:-} ${post[*]:-}: $(tail -3 "$TMP/err")"
}
embed "$TMP/one.json"
python3 - "$TMP/one.json" <<'EOF' || fail "loom embed: see above"
import json, math, sys
o = json.load(open(sys.argv[1]))
d = o["data"]
assert len(d) == 3 and [x["index"] for x in d] == [0, 1, 2], d
for x in d:
    e = x["embedding"]
    assert len(e) == 192, len(e)
    n = math.sqrt(sum(v * v for v in e))
    assert abs(n - 1) < 1e-5, f"norm {n}"
assert d[0]["embedding"] == d[2]["embedding"], "the same text gave different embeddings"
cos = sum(a * b for a, b in zip(d[0]["embedding"], d[1]["embedding"]))
assert cos < 0.999, f"different texts gave the same embedding (cos {cos})"
EOF
ok "loom embed: unit length, deterministic, texts told apart"

"$LOOM" embed --model "$BERT" --file "$TMP/texts.txt" --pooling none --no-normalize --json --threads 1 \
  > "$TMP/none.json" 2> "$TMP/err" || fail "embed --pooling none: $(tail -3 "$TMP/err")"
python3 - "$TMP/one.json" "$TMP/none.json" <<'EOF' || fail "loom embed --pooling none: see above"
import json, math, sys
mean, rows = (json.load(open(p))["data"] for p in sys.argv[1:3])
for i in range(3):
    r = rows[i]["embedding"]
    assert len(r) == rows[i]["tokens"] == mean[i]["tokens"] and all(len(v) == 192 for v in r), (i, len(r))
    m = [sum(v[d] for v in r) / len(r) for d in range(192)]
    n = math.sqrt(sum(x * x for x in m))
    cos = sum(a / n * b for a, b in zip(m, mean[i]["embedding"]))
    assert cos > 0.999999, f"text {i}: the mean of its token vectors against the mean pooling: cos {cos}"
EOF
ok "loom embed --pooling none: every token's vector, their mean the mean pooling's"

for grid in "2 1" "1 2"; do
  set -- $grid
  embed "$TMP/tp$1pp$2.json" $MPIRUN -np $(($1 * $2)) -- --tp "$1" --pp "$2"
  python3 - "$TMP/one.json" "$TMP/tp$1pp$2.json" <<'EOF' || fail "embed under mpirun tp $1 pp $2 differs from one rank"
import json, sys
a, b = (json.load(open(p))["data"] for p in sys.argv[1:3])
for x, y in zip(a, b):
    cos = sum(u * v for u, v in zip(x["embedding"], y["embedding"]))
    assert cos > 0.99999, f"cos {cos}"
EOF
  ok "loom embed under mpirun, tp $1 pp $2: the one-rank vectors"
done

expect_fail "generate refuses an encoder" "embedding model" "$LOOM" generate --model "$BERT" --prompt hi --max-tokens 4

# a decoder converted as an embedding model (Qwen3-Embedding's way: qwen3 with a pooling type, here last):
# unit vectors, the same at pp 2, no text
QEMB=$TMP/qwen3-embed.gguf
"$LOOM" synth --arch qwen3 --layers 2 --dim 128 --heads 4 --kv-heads 2 --ffn 256 --vocab 600 --ctx 512 --type Q8_0 \
  --pooling last --seed 41 --out "$QEMB" > /dev/null 2> "$TMP/err" || fail "synth qwen3: $(tail -3 "$TMP/err")"
"$LOOM" embed --model "$QEMB" --file "$TMP/texts.txt" --json --threads 1 > "$TMP/q1.json" 2> "$TMP/err" ||
  fail "embed qwen3: $(tail -3 "$TMP/err")"
$MPIRUN -np 2 "$LOOM" embed --model "$QEMB" --file "$TMP/texts.txt" --json --threads 1 --pp 2 > "$TMP/q2.json" \
  2> "$TMP/err" || fail "embed qwen3 pp 2: $(tail -3 "$TMP/err")"
python3 - "$TMP/q1.json" "$TMP/q2.json" <<'EOF' || fail "loom embed of a decoder: see above"
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["pooling"] == "last" and len(a["data"]) == 3, a
for x, y in zip(a["data"], b["data"]):
    assert abs(math.sqrt(sum(v * v for v in x["embedding"])) - 1) < 1e-5
    assert sum(u * v for u, v in zip(x["embedding"], y["embedding"])) > 0.99999
EOF
expect_fail "generate refuses a decoder embedding model" "embedding model" "$LOOM" generate --model "$QEMB" --prompt hi
ok "loom embed of a decoder with a pooling type (last): unit vectors, the same at pp 2; no text"

start_server "$TMP/serve.log" "$LOOM" serve --model "$BERT" --threads 1 --ctx-size 512
post() { # PATH BODY -> prints the HTTP code, the body in $TMP/resp
  curl -s -o "$TMP/resp" -w '%{http_code}' -H 'Content-Type: application/json' -d "$2" "http://127.0.0.1:$PORT$1"
}
code=$(post /v1/embeddings '{"model": "bert", "input": ["hello world", "the quick brown fox"]}')
[ "$code" = 200 ] || fail "/v1/embeddings: HTTP $code: $(cat "$TMP/resp")"
cp "$TMP/resp" "$TMP/http.json"
ids=$("$LOOM" tokenize --model "$BERT" --text "hello world" --json 2> /dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['tokens'])")
code=$(post /v1/embeddings "{\"input\": [$ids], \"encoding_format\": \"base64\"}")
[ "$code" = 200 ] || fail "/v1/embeddings with token ids, base64: HTTP $code: $(cat "$TMP/resp")"
python3 - "$TMP/one.json" "$TMP/http.json" "$TMP/resp" <<'EOF' || fail "/v1/embeddings: see above"
import base64, json, struct, sys
cli = json.load(open(sys.argv[1]))["data"]
r = json.load(open(sys.argv[2]))
assert r["object"] == "list" and r["usage"]["prompt_tokens"] == cli[0]["tokens"] + cli[1]["tokens"], r["usage"]
for i in range(2):
    x = r["data"][i]
    assert x["object"] == "embedding" and x["index"] == i, x.keys()
    cos = sum(u * v for u, v in zip(x["embedding"], cli[i]["embedding"]))
    assert cos > 0.999999, f"input {i}: cos {cos} against loom embed"
b = json.load(open(sys.argv[3]))["data"][0]["embedding"]
v = struct.unpack("<192f", base64.b64decode(b))
cos = sum(u * w for u, w in zip(v, cli[0]["embedding"]))
assert cos > 0.999999, f"base64 from token ids: cos {cos}"
EOF
ok "/v1/embeddings: OpenAI's shape, the CLI's vectors, token ids, base64"

for bad in '{"input": 5}' '{"input": []}' '{"input": "x", "encoding_format": "int8"}' '{"input": "x", "dimensions": 7}' 'not json'; do
  code=$(post /v1/embeddings "$bad")
  [ "$code" = 400 ] || fail "/v1/embeddings $bad: HTTP $code, expected 400: $(cat "$TMP/resp")"
done
ok "/v1/embeddings: malformed requests get 400"
code=$(post /v1/chat/completions '{"messages": [{"role": "user", "content": "hi"}]}')
[ "$code" = 400 ] || fail "/v1/chat/completions on an encoder: HTTP $code, expected 400"
ok "generation endpoints refuse an encoder"
code=$(post /v1/rerank '{"query": "a", "documents": ["b"]}')
[ "$code" = 400 ] || fail "/v1/rerank on an embedding model: HTTP $code, expected 400"
curl -sf "http://127.0.0.1:$PORT/health" > /dev/null || fail "/health after the bad requests"
stop_server "$TMP/serve.log"
ok "embeddings end to end"

# requests at once share steps (at most --sequences + 1 inputs a step here: 4): each gets its own vectors
start_server "$TMP/serve-c.log" "$LOOM" serve --model "$BERT" --threads 1 --ctx-size 512 --sequences 3
python3 - "$TMP/one.json" "$PORT" "$ids" <<'EOF' || fail "concurrent /v1/embeddings: see above"
import json, sys, threading, urllib.request
cli = [x["embedding"] for x in json.load(open(sys.argv[1]))["data"]]
port, ids = sys.argv[2], json.loads(sys.argv[3])
def post(path, body=None):
    rq = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode() if body else None,
                                {"Content-Type": "application/json"})
    return urllib.request.urlopen(rq, timeout=120).read().decode()
def metric(text, name):
    return int(float(next(l.split()[-1] for l in text.splitlines() if l.startswith(name + "{"))))
# a long input (~190 of a step's 256 rows: two never share one), alone first
long = " ".join(["the quick brown fox"] * 16)
alone = json.loads(post("/v1/embeddings", {"input": long}))["data"][0]["embedding"]
m0 = post("/metrics")
# request r: 1 + r % 7 inputs (one of 10 inputs: beyond a step), "hello world" as text or ids, or the fox;
# every third request's first input the long one, so steps fill past it with shorter ones behind
pick = lambda r, i: long if r % 3 == 0 and i == 0 else ["hello world", ids, "the quick brown fox"][(r + i) % 3]
reqs = [[pick(r, i) for i in range(10 if r == 5 else 1 + r % 7)] for r in range(16)]
want = [[alone if q[i] is long else cli[1] if q[i] == "the quick brown fox" else cli[0] for i in range(len(q))]
        for q in reqs]
got, errs = [None] * len(reqs), []
def one(r):
    try:
        got[r] = json.loads(post("/v1/embeddings", {"input": reqs[r]}))["data"]
    except Exception as ex:
        errs.append(f"request {r}: {ex}")
th = [threading.Thread(target=one, args=(r,)) for r in range(len(reqs))]
for t in th: t.start()
for t in th: t.join()
assert not errs, errs
for r in range(len(reqs)):
    assert [x["index"] for x in got[r]] == list(range(len(reqs[r]))), (r, [x["index"] for x in got[r]])
    for i, x in enumerate(got[r]):
        cos = sum(u * v for u, v in zip(x["embedding"], want[r][i]))
        assert cos > 0.99999, f"request {r} input {i}: cos {cos} against loom embed's"
m1 = post("/metrics")
n_in = sum(len(q) for q in reqs)
d_in = metric(m1, "loom_embedding_inputs_total") - metric(m0, "loom_embedding_inputs_total")
d_st = metric(m1, "loom_embedding_steps_total") - metric(m0, "loom_embedding_steps_total")
assert d_in == n_in, f"/metrics counts {d_in} inputs, {n_in} were sent"
assert n_in / 4 <= d_st <= n_in, f"{d_st} steps for {n_in} inputs of at most 4 a step"
assert d_st >= sum(q[0] is long for q in reqs), "two long inputs shared a step of 256 rows"
print(f"{n_in} inputs of {len(reqs)} requests at once in {d_st} steps")
EOF
stop_server "$TMP/serve-c.log"
ok "/v1/embeddings: 16 requests at once share steps, each gets the CLI's vectors; /metrics counts them"

# several inputs share a step (the weights read once for them all), across a pipeline too: the same vectors
start_server "$TMP/serve-pp.log" $MPIRUN -np 2 "$LOOM" serve --model "$BERT" --threads 1 --ctx-size 512 --pp 2 \
  --pid-file "$TMP/rank0.pid"
code=$(post /v1/embeddings '{"input": ["hello world", "the quick brown fox", "hello world"]}')
[ "$code" = 200 ] || fail "/v1/embeddings at pp 2: HTTP $code: $(cat "$TMP/resp")"
python3 - "$TMP/one.json" "$TMP/resp" <<'EOF' || fail "/v1/embeddings at pp 2: see above"
import json, sys
cli, r = json.load(open(sys.argv[1]))["data"], json.load(open(sys.argv[2]))["data"]
for i in range(3):
    cos = sum(u * v for u, v in zip(r[i]["embedding"], cli[i]["embedding"]))
    assert cos > 0.99999, f"input {i}: cos {cos} against loom embed's, one text at a time"
EOF
kill -TERM "$(cat "$TMP/rank0.pid")" || fail "no pid file from rank 0" # (rank 0 drains, then the cluster stops)
wait "$SERVER" || fail "pp 2: the cluster did not exit cleanly after SIGTERM: $(tail -5 "$TMP/serve-pp.log")"
ok "/v1/embeddings: three inputs in one step at pp 2, the CLI's vectors"

# a reranker (bert with a classification head, rank pooling): POST /v1/rerank (and /rerank) in Jina's and
# Cohere's shape, best first, top_n, return_documents; a pair's score does not depend on the others
RR=$TMP/rerank.gguf
"$LOOM" synth --arch bert --layers 2 --dim 128 --heads 4 --kv-heads 4 --ffn 256 --vocab 700 --ctx 512 --type F16 \
  --pooling rank --seed 51 --out "$RR" > /dev/null 2> "$TMP/err" || fail "synth reranker: $(tail -3 "$TMP/err")"
expect_fail "embed refuses a reranker" "reranker" "$LOOM" embed --model "$RR" --text hi
start_server "$TMP/rerank.log" "$LOOM" serve --model "$RR" --threads 1 --ctx-size 512
body='{"query": "What is the capital of France?", "documents": ["Paris is the capital of France.", "Bananas are yellow.", "The capital of France is Paris, on the Seine."], "return_documents": true}'
code=$(post /v1/rerank "$body"); cp "$TMP/resp" "$TMP/r1.json"
[ "$code" = 200 ] || fail "/v1/rerank: HTTP $code: $(cat "$TMP/r1.json")"
code=$(post /rerank '{"query": "What is the capital of France?", "documents": ["Bananas are yellow."], "top_n": 1}')
cp "$TMP/resp" "$TMP/r2.json"
[ "$code" = 200 ] || fail "/rerank: HTTP $code: $(cat "$TMP/r2.json")"
printf 'Paris is the capital of France.\nBananas are yellow.\nThe capital of France is Paris, on the Seine.\n' > "$TMP/docs.txt"
"$LOOM" embed --model "$RR" --query "What is the capital of France?" --file "$TMP/docs.txt" --json --threads 1 \
  > "$TMP/r3.json" 2> "$TMP/err" || fail "embed --query: $(tail -3 "$TMP/err")"
python3 - "$TMP/r1.json" "$TMP/r2.json" "$TMP/r3.json" <<'EOF' || fail "/v1/rerank: see above"
import json, math, sys
a, b, cli = (json.load(open(p)) for p in sys.argv[1:4])
for x in a["results"]:  # the CLI's scores, the same pairs
    assert abs(x["relevance_score"] - cli["data"][x["index"]]["score"]) < 1e-3, (x, cli["data"])  # (f16 / f32 KV)
r = a["results"]
assert a["object"] == "list" and len(r) == 3 and sorted(x["index"] for x in r) == [0, 1, 2], a
s = [x["relevance_score"] for x in r]
assert s == sorted(s, reverse=True) and all(math.isfinite(v) for v in s) and len(set(s)) == 3, s
assert all(x["document"]["text"] for x in r) and a["usage"]["prompt_tokens"] > 0, a
alone = b["results"][0]
with_others = next(x for x in r if x["index"] == 1)
assert alone["index"] == 0 and abs(alone["relevance_score"] - with_others["relevance_score"]) < 1e-5, (alone, with_others)
EOF
for bad in '{"documents": ["a"]}' '{"query": "q", "documents": []}' '{"query": "q", "documents": [1]}' \
           '{"query": "q", "documents": ["a"], "top_n": 0}'; do
  code=$(post /v1/rerank "$bad")
  [ "$code" = 400 ] || fail "/v1/rerank $bad: HTTP $code, expected 400: $(cat "$TMP/resp")"
done
code=$(post /v1/embeddings '{"input": "x"}')
[ "$code" = 400 ] || fail "/v1/embeddings on a reranker: HTTP $code, expected 400"
stop_server "$TMP/rerank.log"
ok "/v1/rerank: best first, top_n, return_documents, a pair's score alone the same, loom embed --query's; 400s"
