#!/usr/bin/env bash
# launch/bench-draft.sh — speculative decoding (prompt lookup, --draft N)
# against the same runs without it, on a real model: for each kind of
# prompt below, `loom generate --chat --temperature 0 --json` with --draft 0
# and with --draft N, alternating, REPS times; then all of them at once as
# one batch. Prints per prompt the tokens generated, the share of proposed
# tokens the model kept, decode tokens/s with and without (median) and
# their ratio, and whether the tokens were the same; writes the table and
# the CPU as JSON. Not run in CI.
#
# With LLAMACPP=1, side by side with llama.cpp's prompt lookup: builds
# llama-lookup once from the pinned llama-cpp-python sdist (as
# bench-vs-llamacpp.sh builds llama-bench; examples on, own build folder)
# and runs it on the same model, threads and prompt (the chat template's
# text from `loom template`), greedy, with --spec-draft-n-max 0 and N,
# alternating with loom's runs; its "decoded ... t/s" against loom's
# generation tokens/s (both exclude the prompt).
#
# With DRAFT_MODEL=PATH the proposals come from that draft model
# (--draft-model; --draft N its proposals a step at most) and llama.cpp's
# side is llama-speculative with the same pair (-md, --spec-draft-n-max N,
# --spec-draft-n-min 0). TARGET_TYPE=F16 or F32 makes such a pair of the
# default model: the target its weights written out in that type by
# llama-quantize (built once as above; --allow-requantize, so the same
# weights wider: a target 2.8x or 5.5x the draft's bytes that agrees with
# it far more than a real larger model would), the draft the Q4_1 file
# itself.
#
#   launch/bench-draft.sh [MODEL]     (default: the quick start's SmolLM2-135M)
#   DRAFT=6 REPS=3 THREADS=2 MAX_TOKENS=256 LLAMACPP=1 JSON=out.json launch/bench-draft.sh
#   TARGET_TYPE=F32 DRAFT=8 LLAMACPP=1 launch/bench-draft.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
LOOM=${LOOM:-$root/build/loom}
MODEL=${1:-$root/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}
DRAFT=${DRAFT:-6}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
MAX_TOKENS=${MAX_TOKENS:-256}
JSON=${JSON:-}
LLAMACPP=${LLAMACPP:-0}
DRAFT_MODEL=${DRAFT_MODEL:-}
TARGET_TYPE=${TARGET_TYPE:-}
[ -x "$LOOM" ] || { echo "bench-draft: no $LOOM (run launch/quickstart.sh, or set LOOM)" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "bench-draft: no model at $MODEL" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cache=$root/.cache
say() { echo "$*" >&2; }
examples=(-DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON)
if [ "$LLAMACPP" = 1 ] || [ -n "$TARGET_TYPE" ]; then . "$root/launch/llamacpp-build.sh"; fi
if [ -n "$TARGET_TYPE" ]; then
  case $TARGET_TYPE in F16 | F32) ;; *) echo "bench-draft: TARGET_TYPE must be F16 or F32" >&2; exit 1 ;; esac
  llamacpp_build bench-draft build-examples llama-quantize "${examples[@]}"
  target=$cache/bench/$(basename "$MODEL" .gguf).as-$TARGET_TYPE.gguf
  if [ ! -f "$target" ]; then
    mkdir -p "$cache/bench"
    "$llamacpp_bin" --allow-requantize "$MODEL" "$target.part" "$TARGET_TYPE" > "$work/quantize.log" 2>&1 ||
      { tail -5 "$work/quantize.log" >&2; exit 1; }
    mv "$target.part" "$target"
  fi
  DRAFT_MODEL=${DRAFT_MODEL:-$MODEL}
  MODEL=$target
fi
[ -z "$DRAFT_MODEL" ] || [ -f "$DRAFT_MODEL" ] || { echo "bench-draft: no draft model at $DRAFT_MODEL" >&2; exit 1; }
if [ "$LLAMACPP" = 1 ]; then
  llamacpp_build bench-draft build-examples llama-lookup "${examples[@]}"
  LOOKUP=$llamacpp_bin
  if [ -n "$DRAFT_MODEL" ]; then
    llamacpp_build bench-draft build-examples llama-speculative "${examples[@]}"
    SPECULATIVE=$llamacpp_bin
  fi
fi

# kind<TAB>prompt: edits that copy their input, code, lists, and open questions that copy little
cat > "$work/prompts.tsv" <<'EOF'
correct	Rewrite the following text with correct spelling. Text: The quick brown fox jumpd over the lazy dog. The dog was not amused, and it barked loudly at the fox, who ran away into the forrest. Later that day the fox came bak with his freinds, and they all sat down by the river to eat berrys.
code	Add a docstring to this Python function and return the whole function: def area(width, height):\n    if width < 0 or height < 0:\n        raise ValueError("negative size")\n    return width * height
list	List the days of the week, one per line, then list them again in reverse order.
summary	Summarize in two sentences: The Loire is the longest river in France. It rises in the Massif Central, flows north towards Orleans, then west through Tours and Nantes, and reaches the Atlantic Ocean at Saint-Nazaire. Its valley is famous for its castles and vineyards.
question	What is the capital of France, and why is it famous? Answer in a few sentences.
EOF
cut -f2 "$work/prompts.tsv" > "$work/all.txt"

# run PROMPT_FILE DRAFT OUT: one generate; OUT.json its lines, OUT.err its stderr
run() {
  local dm=()
  if [ -n "$DRAFT_MODEL" ] && [ "$2" != 0 ]; then dm=(--draft-model "$DRAFT_MODEL"); fi
  "$LOOM" generate --model "$MODEL" --threads "$THREADS" --chat --temperature 0 --max-tokens "$MAX_TOKENS" \
    --prompt-file "$1" --draft "$2" "${dm[@]}" --json > "$3.json" 2> "$3.err" || { tail -5 "$3.err" >&2; exit 1; }
}

# lookup PROMPT_TEXT_FILE DRAFT OUT: one llama-lookup run (with DRAFT_MODEL and DRAFT > 0: llama-speculative)
lookup() {
  local bin=$LOOKUP dm=()
  if [ -n "$DRAFT_MODEL" ] && [ "$2" != 0 ]; then bin=$SPECULATIVE dm=(-md "$DRAFT_MODEL" --spec-draft-n-min 0); fi
  "$bin" -m "$MODEL" "${dm[@]}" -p "$(cat "$1")" -n "$MAX_TOKENS" --temp 0 -t "$THREADS" -c 4096 \
    --spec-draft-n-max "$2" > "$3.out" 2> "$3.err" || { tail -5 "$3.err" >&2; exit 1; }
}

n=0
while IFS=$'\t' read -r kind prompt; do
  n=$((n + 1))
  printf '%s\n' "$prompt" > "$work/p$n.txt"
  echo "$kind" > "$work/p$n.kind"
  if [ "$LLAMACPP" = 1 ]; then # the text loom's --chat makes of it, for llama-lookup's -p
    python3 -c 'import json,sys; print(json.dumps([{"role": "user", "content": sys.argv[1].replace("\\n", "\n")}]))' \
      "$prompt" > "$work/p$n.msg"
    "$LOOM" template --model "$MODEL" --messages "$work/p$n.msg" --add-generation-prompt > "$work/p$n.fmt"
  fi
done < "$work/prompts.tsv"
echo "all 5 at once" > "$work/p0.kind"
cp "$work/all.txt" "$work/p0.txt"

for r in $(seq 1 "$REPS"); do
  for i in $(seq 0 "$n"); do
    if [ $((r % 2)) = 1 ]; then order="0 $DRAFT"; else order="$DRAFT 0"; fi
    for d in $order; do
      run "$work/p$i.txt" "$d" "$work/r$i-$d-$r"
      if [ "$LLAMACPP" = 1 ] && [ "$i" != 0 ]; then lookup "$work/p$i.fmt" "$d" "$work/l$i-$d-$r"; fi
    done
  done
done

python3 - "$work" "$n" "$DRAFT" "$REPS" "$MODEL" "$THREADS" "$MAX_TOKENS" "$JSON" "$LLAMACPP" "$DRAFT_MODEL" <<'EOF'
import json, os, re, statistics, sys
work, n, draft, reps, model, threads, max_tokens, out, llama, draft_model = sys.argv[1:]
n, reps = int(n), int(reps)
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    fam = re.search(r"cpu family\s*:\s*(\d+)", open("/proc/cpuinfo").read()).group(1)
    mod = re.search(r"\nmodel\s*:\s*(\d+)", open("/proc/cpuinfo").read()).group(1)
    cpu += " (family %s model %s)" % (fam, mod)
except Exception:
    pass

def one(i, d, r):
    base = "%s/r%d-%s-%d" % (work, i, d, r)
    toks = [json.loads(l)["tokens"] for l in open(base + ".json") if l.strip()]
    err = open(base + ".err").read()
    g = re.search(r"generation:\s+(\d+) tokens in\s+([\d.]+) s\s+([\d.]+) tokens/s", err)
    s = re.search(r"speculation: (\d+) tokens proposed, (\d+) of them", err)
    return toks, float(g.group(3)), (int(s.group(1)), int(s.group(2))) if s else (0, 0)

def lookup(i, d, r):
    """llama-lookup's decode tokens/s, tokens, drafted and accepted, or None."""
    base = "%s/l%d-%s-%d" % (work, i, d, r)
    if not os.path.exists(base + ".err"):
        return None
    err = open(base + ".err").read()
    g = re.search(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s", err)
    dr = re.search(r"n_drafted\s+=\s+(\d+)", err)
    ac = re.search(r"n_accept\s+=\s+(\d+)", err)
    return float(g.group(3)), int(g.group(1)), int(dr.group(1)) if dr else 0, int(ac.group(1)) if ac else 0

rows = []
print("model %s, %s threads, --draft %s%s, greedy, at most %s tokens, %d alternating runs; CPU: %s" % (
    model.rsplit("/", 1)[-1], threads, draft, " --draft-model " + draft_model.rsplit("/", 1)[-1] if draft_model else "",
    max_tokens, reps, cpu))
kind_llama = "spec" if draft_model else "lookup"
head = "%-14s %7s %9s %12s %12s %7s  %-5s" % ("prompt", "tokens", "kept", "plain tok/s", "draft tok/s", "ratio", "same")
if llama == "1":
    head += " | %7s %9s %12s %12s %7s | %s" % ("llama", "kept", "plain tok/s", kind_llama + " tok/s", "ratio", "loom/llama.cpp")
print(head)
for i in list(range(1, n + 1)) + [0]:
    kind = open("%s/p%d.kind" % (work, i)).read().strip()
    plain = [one(i, "0", r) for r in range(1, reps + 1)]
    spec = [one(i, draft, r) for r in range(1, reps + 1)]
    same = all(s[0] == plain[0][0] for s in spec) and all(p[0] == plain[0][0] for p in plain)
    tp = statistics.median(p[1] for p in plain)
    ts = statistics.median(s[1] for s in spec)
    prop, kept = spec[0][2]
    ntok = sum(len(t) for t in plain[0][0])
    row = {"prompt": kind, "tokens": ntok, "proposed": prop, "kept": kept, "plain_tok_s": tp, "draft_tok_s": ts,
           "ratio": ts / tp if tp else 0, "same_tokens": same}
    line = "%-14s %7d %8.1f%% %12.1f %12.1f %6.2fx  %-5s" % (kind, ntok, 100.0 * kept / prop if prop else 0, tp, ts,
                                                           row["ratio"], "yes" if same else "NO")
    if llama == "1" and i > 0:
        lp = [lookup(i, "0", r) for r in range(1, reps + 1)]
        ls = [lookup(i, draft, r) for r in range(1, reps + 1)]
        lpt = statistics.median(x[0] for x in lp)
        lst = statistics.median(x[0] for x in ls)
        row["llamacpp"] = {"tokens": lp[0][1], "drafted": ls[0][2], "accepted": ls[0][3], "plain_tok_s": lpt,
                           kind_llama + "_tok_s": lst, "ratio": lst / lpt, "loom_over_llamacpp": ts / lst}
        line += " | %7d %8.1f%% %12.1f %12.1f %6.2fx | %.2fx" % (
            lp[0][1], 100.0 * ls[0][3] / ls[0][2] if ls[0][2] else 0, lpt, lst, lst / lpt, ts / lst)
    rows.append(row)
    print(line)
if out:
    json.dump({"model": model, "draft_model": draft_model or None, "cpu": cpu, "threads": int(threads),
               "draft": int(draft), "reps": reps,
               "max_tokens": int(max_tokens), "rows": rows}, open(out, "w"), indent=1)
    print("wrote", out)
if not all(r["same_tokens"] for r in rows):
    sys.exit("bench-draft: the tokens differ with --draft")
EOF
