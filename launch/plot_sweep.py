#!/usr/bin/env python3
"""launch/plot_sweep.py DIR — PNGs of a launch/sweep.sh run (run it through launch/plot-sweep.sh,
which provides matplotlib). Reads DIR/sweep.json, writes DIR/plots/*.png:

  throughput.png    decode tokens/s (per sequence count) and prefill tokens/s (per prompt length)
                    against ranks; TP-only and PP-only shapes joined by lines, mixed shapes as points
  speedup.png       decode and prefill speed-up over one rank against ranks, with the ideal line
  latency.png       time to first token and inter-token latency against ranks
  comm_share.png    per rank: share of decode time in TP collectives and in stage transfers
                    (waits for other stages included: the pipeline's idle time)
  predicted.png     predicted against measured decode and prefill tokens/s, with the +-20 % band

Filled markers are measured, hollow ones predicted by `loom predict`.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARK = {"tp": "o", "pp": "s", "mixed": "^"}


def kind(r):
    return "tp" if r["pp"] == 1 else "pp" if r["tp"] == 1 else "mixed"


def series(rows, key_of, x="ranks"):
    """{(group, kind): sorted [(x, row)]}; the 1x1 row joins both the tp and the pp line."""
    out = {}
    for r in rows:
        ks = ["tp", "pp"] if r["ranks"] == 1 else [kind(r)]
        for k in ks:
            out.setdefault((key_of(r), k), []).append((r[x], r))
    for v in out.values():
        v.sort(key=lambda t: t[0])
    return out


def draw(ax, rows, group, meas, pred, label_fmt, colors):
    groups = sorted({group(r) for r in rows})
    for gi, g in enumerate(groups):
        c = colors(gi)
        for (gg, k), pts in series(rows, group).items():
            if gg != g:
                continue
            xs = [x for x, _ in pts]
            ys = [r[meas] for _, r in pts]
            lab = label_fmt % g + (" TP" if k == "tp" else " PP" if k == "pp" else " TPxPP")
            ax.plot(xs, ys, "-" if k == "tp" else "--" if k == "pp" else "none", marker=MARK[k], color=c, label=lab)
            py = [r.get(pred) for _, r in pts]
            if pred and all(v is not None for v in py):
                ax.plot(xs, py, ls="none", marker=MARK[k], mfc="none", color=c, ms=9)


def save(fig, out, name, suptitle=None):
    """Titles, lays out and writes OUT/NAME.png, then frees the figure."""
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, name + ".png"), dpi=110)
    plt.close(fig)


def main(d):
    data = json.load(open(os.path.join(d, "sweep.json")))
    rows = data["rows"]
    out = os.path.join(d, "plots")
    os.makedirs(out, exist_ok=True)
    title = "%s on %s (%d cores)" % (os.path.basename(data["model"]), data["machine"]["cpu"], data["cores"])
    cmap = plt.get_cmap("tab10")
    p0 = min(r["prompt_tokens"] for r in rows)
    s0 = min(r["sequences"] for r in rows)
    dec_rows = [r for r in rows if r["prompt_tokens"] == p0]
    pre_rows = [r for r in rows if r["sequences"] == s0]
    ranks = sorted({r["ranks"] for r in rows})

    # throughput
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.8))
    draw(ax[0], dec_rows, lambda r: r["sequences"], "decode_tokens_per_s", "pred_decode_tokens_per_s", "%d seq", cmap)
    ax[0].set(xlabel="ranks (tp x pp)", ylabel="decode tokens/s (all sequences)", title="decode")
    draw(ax[1], pre_rows, lambda r: r["prompt_tokens"], "prefill_tokens_per_s", "pred_prefill_tokens_per_s",
         "%d-token prompt", cmap)
    ax[1].set(xlabel="ranks (tp x pp)", ylabel="prefill tokens/s (one prompt)", title="prefill")
    for a in ax:
        a.set_xticks(ranks)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    save(fig, out, "throughput", title + " — filled: measured, hollow: predicted")

    # speed-up against ideal
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.8))
    draw(ax[0], dec_rows, lambda r: r["sequences"], "decode_speedup", "pred_decode_speedup", "%d seq", cmap)
    for r in pre_rows:
        base = next((b for b in pre_rows if b["ranks"] == 1 and b["prompt_tokens"] == r["prompt_tokens"]), None)
        if base and r.get("pred_prefill_tokens_per_s") and base.get("pred_prefill_tokens_per_s"):
            r["pred_prefill_speedup"] = r["pred_prefill_tokens_per_s"] / base["pred_prefill_tokens_per_s"]
    draw(ax[1], pre_rows, lambda r: r["prompt_tokens"], "prefill_speedup", "pred_prefill_speedup", "%d-token prompt",
         cmap)
    for a, what in zip(ax, ("decode", "prefill")):
        a.plot(ranks, ranks, ":", color="gray", label="ideal")
        a.set(xlabel="ranks (tp x pp)", ylabel="speed-up over one rank", title=what)
        a.set_xticks(ranks)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    save(fig, out, "speedup", title + " — filled: measured, hollow: predicted")

    # latency
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.8))
    draw(ax[0], pre_rows, lambda r: r["prompt_tokens"], "ttft_ms", "pred_ttft_ms", "%d-token prompt", cmap)
    ax[0].set(xlabel="ranks (tp x pp)", ylabel="ms", title="time to first token")
    draw(ax[1], dec_rows, lambda r: r["sequences"], "inter_token_ms", "pred_inter_token_ms", "%d seq", cmap)
    ax[1].set(xlabel="ranks (tp x pp)", ylabel="ms", title="inter-token latency (every sequence)")
    for a in ax:
        a.set_xticks(ranks)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    save(fig, out, "latency", title + " — filled: measured, hollow: predicted")

    # communication and idle share per rank
    multi = [r for r in dec_rows if r["ranks"] > 1]
    seqs = sorted({r["sequences"] for r in multi})
    if multi:
        fig, axs = plt.subplots(1, len(seqs), figsize=(4.5 * len(seqs), 4.5), squeeze=False)
        for a, s in zip(axs[0], seqs):
            sel = [r for r in multi if r["sequences"] == s]
            labels, tp_m, xf_m, tp_p, xf_p = [], [], [], [], []
            for r in sel:
                pr = {k["rank"]: k for k in r.get("pred_ranks", [])}
                for k in r["decode_ranks"]:
                    labels.append("%dx%d r%d" % (r["tp"], r["pp"], k["rank"]))
                    tp_m.append(100 * k["tp_share"])
                    xf_m.append(100 * k["transfer_share"])
                    q = pr.get(k["rank"], {})
                    tp_p.append(100 * q.get("tp_share", 0))
                    xf_p.append(100 * q.get("transfer_share", 0))
            x = range(len(labels))
            w = 0.38
            a.bar([i - w / 2 for i in x], tp_m, w, color=cmap(0), label="TP collectives (measured)")
            a.bar([i - w / 2 for i in x], xf_m, w, bottom=tp_m, color=cmap(1), label="stage transfers + idle")
            a.bar([i + w / 2 for i in x], tp_p, w, color=cmap(0), alpha=0.35, hatch="//", label="predicted")
            a.bar([i + w / 2 for i in x], xf_p, w, bottom=tp_p, color=cmap(1), alpha=0.35, hatch="//")
            a.set_xticks(list(x))
            a.set_xticklabels(labels, rotation=60, fontsize=7)
            a.set(ylabel="% of decode time", title="%d sequence(s)" % s, ylim=(0, 100))
            a.legend(fontsize=7)
        save(fig, out, "comm_share", title + " — per rank: left bar measured, right (hatched) predicted")

    # predicted against measured
    pairs = [(r["decode_tokens_per_s"], r["pred_decode_tokens_per_s"], "decode", r) for r in dec_rows
             if r.get("pred_decode_tokens_per_s")]
    pairs += [(r["prefill_tokens_per_s"], r["pred_prefill_tokens_per_s"], "prefill", r) for r in pre_rows
              if r.get("pred_prefill_tokens_per_s")]
    if pairs:
        fig, a = plt.subplots(figsize=(5.5, 5.5))
        lo = min(min(m, p) for m, p, _, _ in pairs) * 0.7
        hi = max(max(m, p) for m, p, _, _ in pairs) * 1.3
        a.plot([lo, hi], [lo, hi], "-", color="gray")
        a.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="gray", alpha=0.15,
                       label="within 20 %")
        for i, what in enumerate(("decode", "prefill")):
            sel = [(m, p, r) for m, p, w, r in pairs if w == what]
            for m, p, r in sel:
                a.plot(m, p, MARK[kind(r)], color=cmap(i), ms=7)
                a.annotate("%dx%d s%d" % (r["tp"], r["pp"], r["sequences"]) if what == "decode" else
                           "%dx%d p%d" % (r["tp"], r["pp"], r["prompt_tokens"]), (m, p), fontsize=6,
                           xytext=(3, 3), textcoords="offset points")
            a.plot([], [], "o", color=cmap(i), label=what + " tokens/s")
        a.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured", ylabel="predicted")
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=8)
        a.set_title("loom predict against the sweep (o TP, s PP, ^ both)", fontsize=9)
        save(fig, out, "predicted")
    print("plot-sweep: %s" % " ".join(sorted(f for f in os.listdir(out) if f.endswith(".png"))))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
