#!/usr/bin/env python3
"""launch/sweep_report.py DIR — the table, CSV and JSON of a launch/sweep.sh run.

Reads DIR/tpT-ppP.json (loom bench: every sequence count at the first prompt
length), DIR/tpT-ppP-promptN.json (prefill at further prompt lengths) and,
when present, DIR/pred/tpT-ppP-sS-pN.json (loom predict). Speeds are the best
of the bench's repetitions. Writes DIR/sweep.csv and DIR/sweep.json and
prints the table. Standard library only.
"""
import csv
import glob
import json
import os
import re
import sys


def best(summary):
    vals = summary.get("values") or [summary["mean"]]
    return max(vals)


def shares(ranks):
    """Per rank: share of the phase in TP collectives, and in stage transfers (waits included)."""
    out = []
    for k in ranks or []:
        w = k["wall_s"] or 1.0
        out.append({"rank": k["rank"], "stage": k["stage"], "tp_rank": k["tp_rank"],
                    "tp_share": k["tp_s"] / w, "transfer_share": k["transfer_s"] / w})
    return out


def err(pred, meas):
    return None if not pred or not meas else 100.0 * (pred - meas) / meas


def main(d):
    runs = {}
    for f in glob.glob(os.path.join(d, "tp*-pp*.json")):
        m = re.match(r"tp(\d+)-pp(\d+)(?:-prompt(\d+))?\.json$", os.path.basename(f))
        if m:
            runs.setdefault((int(m[1]), int(m[2])), {})[int(m[3]) if m[3] else None] = json.load(open(f))
    if (1, 1) not in runs:
        sys.exit("sweep_report: %s has no tp1-pp1.json (the reference)" % d)
    cores = os.cpu_count()
    rows = []
    for (tp, pp), files in sorted(runs.items(), key=lambda kv: (kv[0][0] * kv[0][1], kv[0])):
        main_run = files[None]
        p0 = main_run["options"]["prompt_tokens"]
        prefill = {p0: max(best(r["prefill_tokens_per_s"]) for r in main_run["results"])}  # same test each row
        for p, run in files.items():
            if p is not None:
                prefill[p] = best(run["results"][0]["prefill_tokens_per_s"])
        for r in main_run["results"]:
            s = r["sequences"]
            dec = best(r["decode_tokens_per_s"])
            for p in sorted(prefill):
                row = dict(tp=tp, pp=pp, ranks=tp * pp, sequences=s, prompt_tokens=p, threads=r["threads"],
                           oversubscribed=tp * pp * r["threads"] > cores,
                           prefill_tokens_per_s=prefill[p], decode_tokens_per_s=dec,
                           ttft_ms=1e3 * p / prefill[p], inter_token_ms=1e3 * s / dec,
                           decode_ranks=shares(r.get("decode_ranks")))
                pf = os.path.join(d, "pred", "tp%d-pp%d-s%d-p%d.json" % (tp, pp, s, p))
                if os.path.exists(pf):
                    q = json.load(open(pf))
                    row.update(pred_prefill_tokens_per_s=q["prefill_tokens_per_s"],
                               pred_decode_tokens_per_s=q["decode_tokens_per_s"], pred_ttft_ms=q["ttft_ms"],
                               pred_inter_token_ms=q["inter_token_ms"],
                               pred_ranks=[{"rank": k["rank"],
                                            "tp_share": k["decode_tp_ms"] / q["inter_token_ms"],
                                            "transfer_share": k["decode_transfer_ms"] / q["inter_token_ms"],
                                            "idle": k["decode_idle_frac"]} for k in q["ranks"]])
                    row["decode_err_pct"] = err(q["decode_tokens_per_s"], dec)
                    row["prefill_err_pct"] = err(q["prefill_tokens_per_s"], prefill[p])
                rows.append(row)
    ref = {(r["sequences"], r["prompt_tokens"]): r for r in rows if r["tp"] == 1 and r["pp"] == 1}
    for r in rows:
        b = ref.get((r["sequences"], r["prompt_tokens"]))
        r["decode_speedup"] = r["decode_tokens_per_s"] / b["decode_tokens_per_s"] if b else None
        r["prefill_speedup"] = r["prefill_tokens_per_s"] / b["prefill_tokens_per_s"] if b else None
        if b and "pred_decode_tokens_per_s" in r:
            r["pred_decode_speedup"] = r["pred_decode_tokens_per_s"] / b["pred_decode_tokens_per_s"]
    d0 = runs[(1, 1)][None]
    print("loom sweep: %s, %d core(s), %s thread(s) per rank; decode %d tokens per sequence; speeds: best of %d reps"
          % (d0["model"].split("/")[-1], cores, d0["results"][0]["threads"], d0["options"]["gen_tokens"],
             d0["options"]["reps"]))
    print("load average at the start of the 1x1 run: %s" % " ".join("%.2f" % x for x in d0["machine"]["loadavg_start"]))
    hdr = ("%3s %3s %4s %5s %6s | %9s %9s %6s | %9s %9s %6s | %6s | %8s %8s | %6s %6s"
           % ("tp", "pp", "seqs", "ranks", "prompt", "prefill/s", "predicted", "err", "decode/s", "predicted", "err",
              "vs 1x1", "TTFT ms", "ITL ms", "TP %", "xfer %"))
    print(hdr)
    print("-" * len(hdr))
    fmt = lambda v, f: (f % v) if v is not None else "-"
    for r in rows:
        dr = r["decode_ranks"]
        tpm = max([k["tp_share"] for k in dr], default=0.0)
        xfm = max([k["transfer_share"] for k in dr], default=0.0)
        print("%3d %3d %4d %5d %6d | %9.1f %9s %6s | %9.1f %9s %6s | %6s | %8.1f %8.2f | %5.1f%% %5.1f%%%s"
              % (r["tp"], r["pp"], r["sequences"], r["ranks"], r["prompt_tokens"], r["prefill_tokens_per_s"],
                 fmt(r.get("pred_prefill_tokens_per_s"), "%.1f"), fmt(r.get("prefill_err_pct"), "%+.0f%%"),
                 r["decode_tokens_per_s"], fmt(r.get("pred_decode_tokens_per_s"), "%.1f"),
                 fmt(r.get("decode_err_pct"), "%+.0f%%"), fmt(r["decode_speedup"], "%.2fx"), r["ttft_ms"],
                 r["inter_token_ms"], 100 * tpm, 100 * xfm, "  (oversubscribed)" if r["oversubscribed"] else ""))
    print("TP %% / xfer %%: largest share of a rank's decode time in TP collectives / in stage transfers (waits for\n"
          "other stages included: the pipeline's idle time); err: (predicted - measured) / measured")
    keys = ["tp", "pp", "ranks", "sequences", "prompt_tokens", "threads", "oversubscribed", "prefill_tokens_per_s",
            "pred_prefill_tokens_per_s", "prefill_err_pct", "decode_tokens_per_s", "pred_decode_tokens_per_s",
            "decode_err_pct", "decode_speedup", "pred_decode_speedup", "prefill_speedup", "ttft_ms", "pred_ttft_ms",
            "inter_token_ms", "pred_inter_token_ms"]
    with open(os.path.join(d, "sweep.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["tp_share_max", "transfer_share_max"])
        for r in rows:
            dr = r["decode_ranks"]
            w.writerow([r.get(k) for k in keys] + [max([k["tp_share"] for k in dr], default=0.0),
                                                    max([k["transfer_share"] for k in dr], default=0.0)])
    json.dump({"cores": cores, "model": d0["model"], "machine": d0["machine"], "rows": rows},
              open(os.path.join(d, "sweep.json"), "w"), indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
