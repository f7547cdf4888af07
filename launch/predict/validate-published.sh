#!/usr/bin/env bash
# launch/predict/validate-published.sh — loom predict against published
# multi-GPU results (launch/predict/published.json: FasterTransformer's
# GPT-20B tensor-parallel sweep and vLLM's Llama-3-70B on A100s), one row
# each with the measured figure, the prediction and the error.
#
#   launch/predict/validate-published.sh [--markdown]
#
# End-to-end latency (FasterTransformer) is predicted as the time to first
# token of the batch's prompts prefilled together plus `output` decode
# rounds of the batch; the inter-token latency as one decode round of
# `sequences` sequences at a mean context; TTFT of several prompts prefilled
# in one pass. The devices and links are stated figures (the cluster files
# here); the per-layer overhead of the device was set once from the row
# marked "calibration" and is used unchanged for every other row.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
loom=${LOOM:-$(dirname "$(dirname "$here")")/build/loom}
[ -x "$loom" ] || { echo "validate-published: $loom is missing: build first (or set LOOM=)" >&2; exit 1; }
python3 - "$loom" "$here" "${1:-}" <<'EOF'
import json, subprocess, sys
loom, here, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
data = json.load(open(here + "/published.json"))


def predict(model, cluster, tp, seqs, prompt, prompts, gen, dctx):
    out = subprocess.run([loom, "predict", "--model", here + "/" + model, "--cluster", here + "/" + cluster,
                          "--tp", str(tp), "--sequences", str(seqs), "--prompt-tokens", str(prompt), "--prompts",
                          str(prompts), "--gen-tokens", str(gen), "--decode-context", str(dctx), "--batch",
                          str(max(256, prompt * prompts)), "--ctx-size", str(prompt + gen + 16), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


md = fmt == "--markdown"
errs = []
for t in data["tables"]:
    print(("\n**%s**  \nsource: %s\n" if md else "\n%s\nsource: %s") % (t["name"], t["source"]))
    if md:
        print("| row | TP | measured | predicted | error |\n|---|---:|---:|---:|---:|")
    cols = t["columns"]
    tps = [int(c[2:]) for c in cols if c.startswith("tp")]
    for row in t["rows"]:
        r = dict(zip(cols, row))
        for tp in tps:
            meas = r["tp%d" % tp]
            if t["metric"] == "e2e_ms":
                b, i, o = r["batch"], r["input"], r["output"]
                q = predict(t["model"], t["cluster"], tp, b, i, b, o, i + o // 2)
                pred = q["ttft_ms"] + o * q["inter_token_ms"]
                label = "batch %d, %d in, %d out, end-to-end ms" % (b, i, o)
                cal = t.get("calibration") == [b, i, o, "tp%d" % tp]
            else:
                s, ctx = r["sequences"], r["context"]
                if r["what"] == "ttft_ms":
                    q = predict(t["model"], t["cluster"], tp, s, ctx, s, 0, ctx)
                    pred, label = q["ttft_ms"], "TTFT ms, %d prompts of ~%d tokens together" % (s, ctx)
                else:
                    q = predict(t["model"], t["cluster"], tp, s, ctx, 1, 0, ctx)
                    pred, label = q["inter_token_ms"], "inter-token ms, %d sequences at context ~%d" % (s, ctx)
                cal = False
            e = 100.0 * (pred - meas) / meas
            if not cal:
                errs.append(abs(e))
            tag = " (calibration)" if cal else ""
            if md:
                print("| %s%s | %d | %.1f | %.1f | %+.0f %% |" % (label, tag, tp, meas, pred, e))
            else:
                print("  %-52s tp %d: measured %8.1f  predicted %8.1f  error %+5.0f%%%s" % (label, tp, meas, pred, e,
                                                                                          tag))
errs.sort()
print("\n%d rows (calibration row excluded): median |error| %.0f %%, largest %.0f %%" % (
    len(errs), errs[len(errs) // 2], errs[-1]))
EOF
