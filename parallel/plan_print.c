/*
 * parallel/plan_print.c — a plan as an aligned table (human units) or as one
 * JSON object.
 */
#include <inttypes.h>
#include <stdio.h>

#include "parallel/plan_internal.h"
#include "runtime/text/utf8.h"

void loom_format_bytes(char *buf, size_t n, int64_t bytes) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) v /= 1024, u++;
    if (u == 0)
        snprintf(buf, n, "%" PRId64 " B", bytes);
    else
        snprintf(buf, n, "%.1f %s", v, units[u]);
}

/* Sums over the ranks, and the largest rank (the lowest on a tie). */
typedef struct {
    int64_t weight, kv, workspace;
    int64_t largest; /* loom_plan_rank_total of rank largest_rank */
    int largest_rank;
} plan_totals;

static plan_totals totals_of(const loom_plan *p) {
    plan_totals t = {0};
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = &p->ranks[r];
        t.weight += rp->weight_bytes, t.kv += rp->kv_bytes, t.workspace += rp->workspace_bytes;
        if (loom_plan_rank_total(rp) > t.largest) t.largest = loom_plan_rank_total(rp), t.largest_rank = r;
    }
    return t;
}

static const char *kv_type_str(loom_type t) { return t == LOOM_TYPE_F32 ? "f32" : t == LOOM_TYPE_Q8_0 ? "q8_0" : "f16"; }

static void range_str(char *b, size_t n, int64_t lo, int64_t hi) {
    if (hi - lo == 1)
        snprintf(b, n, "%lld", (long long)lo);
    else
        snprintf(b, n, "%lld-%lld", (long long)lo, (long long)hi - 1);
}

static void kv_str(char *b, size_t n, const loom_rank_plan *rp) {
    const loom_shard *s = &rp->shard;
    if (s->kv_end - s->kv_begin == 1)
        snprintf(b, n, "%d%s", s->kv_begin, rp->kv_shared_first || rp->kv_shared_last ? "*" : "");
    else
        snprintf(b, n, "%d%s-%d%s", s->kv_begin, rp->kv_shared_first ? "*" : "", s->kv_end - 1,
                 rp->kv_shared_last ? "*" : "");
}

static void print_json(const loom_plan *p, FILE *f) {
    const loom_model_config *c = &p->cfg;
    fprintf(f, "{\"protocol\": %u, \"world\": %d, \"tp\": %d, \"pp\": %d, \"model_hash\": \"%016" PRIx64 "\",\n",
            LOOM_PLAN_PROTOCOL, p->world, p->tp, p->pp, p->model_hash);
    fprintf(f,
            " \"model\": {\"arch\": \"%s\", \"n_layers\": %d, \"dim\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
            "\"head_dim\": %d, \"ffn\": %d, \"experts\": %d, \"experts_used\": %d, \"vocab\": %d, "
            "\"tied_embeddings\": %s},\n",
            c->arch_name, c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, c->n_experts,
            c->n_experts_used, c->vocab, c->tied_embeddings ? "true" : "false");
    fprintf(f,
            " \"ctx_size\": %d, \"sequences\": %d, \"kv_type\": \"%s\", \"block_tokens\": %d, \"kv_blocks\": %d, "
            "\"batch_rows\": %d, \"max_memory\": %" PRId64 ",\n \"stages\": [",
            p->req.engine.ctx_size, p->req.engine.max_seqs, kv_type_str(p->req.engine.kv_type), p->req.engine.block_tokens, p->kv_blocks,
            p->req.engine.batch_rows, p->req.max_memory);
    for (int s = 0; s < p->pp; s++) {
        const loom_stage_plan *sp = &p->stages[s];
        fprintf(f,
                "%s\n  {\"stage\": %d, \"layers\": [%d, %d], \"bytes_per_token\": %" PRId64
                ", \"head_group\": %d, \"ffn_group\": %" PRId64 "}",
                s ? "," : "", s, sp->layer_begin, sp->layer_end, sp->cost, sp->head_group, sp->ffn_group);
    }
    fprintf(f, "],\n \"ranks\": [");
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = &p->ranks[r];
        const loom_shard *s = &rp->shard;
        fprintf(f, "%s\n  {\"rank\": %d, \"stage\": %d, \"tp_rank\": %d, \"host\": ", r ? "," : "", r, rp->stage,
                rp->tp_rank);
        loom_json_fputs(f, rp->host);
        fprintf(f, ", \"layers\": [%d, %d], \"q_heads\": [%d, %d], \"kv_heads\": [%d, %d], \"kv_replicated\": [",
                s->layer_begin, s->layer_end, s->q_begin, s->q_end, s->kv_begin, s->kv_end);
        if (rp->kv_shared_first) fprintf(f, "%d", s->kv_begin);
        if (rp->kv_shared_last && (!rp->kv_shared_first || s->kv_end - 1 != s->kv_begin))
            fprintf(f, "%s%d", rp->kv_shared_first ? ", " : "", s->kv_end - 1);
        fprintf(f,
                "], \"ffn\": [%lld, %lld], \"experts\": [%d, %d], \"vocab\": [%lld, %lld], \"embed\": %s, \"head\": %s, "
                "\"weight_bytes\": "
                "%" PRId64 ", \"kv_bytes\": %" PRId64 ", \"workspace_bytes\": %" PRId64 ", \"total_bytes\": %" PRId64
                "}",
                (long long)s->ffn_begin, (long long)s->ffn_end, s->split_experts ? s->expert_begin : 0,
                s->split_experts ? s->expert_end : p->cfg.n_experts, (long long)s->vocab_begin, (long long)s->vocab_end,
                s->embed ? "true" : "false", s->head ? "true" : "false", rp->weight_bytes, rp->kv_bytes,
                rp->workspace_bytes, loom_plan_rank_total(rp));
    }
    plan_totals t = totals_of(p);
    fprintf(f,
            "],\n \"totals\": {\"weight_bytes\": %" PRId64 ", \"kv_bytes\": %" PRId64 ", \"workspace_bytes\": %" PRId64
            ", \"largest_rank_bytes\": %" PRId64 "},\n \"balance\": ",
            t.weight, t.kv, t.workspace, t.largest);
    loom_json_fputs(f, p->balance[0] ? p->balance : "bytes read per token");
    fputs(",\n \"warnings\": [", f);
    for (int i = 0; i < p->n_warnings; i++) {
        if (i) fputs(", ", f);
        loom_json_fputs(f, p->warnings[i]);
    }
    fprintf(f, "]}\n");
}

static void print_text(const loom_plan *p, FILE *f) {
    const loom_model_config *c = &p->cfg;
    char a[48], b[48], d[48], e[48], g[48], h[48];
    char moe[192];
    loom_model_describe_extras(c, moe, sizeof moe);
    fprintf(f, "model   %s, %d layers, width %d, %d query / %d KV heads of %d, FFN %d%s, vocab %d%s\n", c->arch_name,
            c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn, moe, c->vocab,
            c->tied_embeddings ? " (tied embeddings)" : "");
    fprintf(f, "grid    world %d = pp %d × tp %d\n", p->world, p->pp, p->tp);
    if (c->encoder) /* (plan.c: a step's texts at a time) */
        fprintf(f, "cache   %d positions a text, a step's texts at a time (an encoder), KV %s in blocks of %d tokens (%d "
                "blocks per rank)\n", p->req.engine.ctx_size, kv_type_str(p->req.engine.kv_type), p->req.engine.block_tokens,
                p->kv_blocks);
    else
        fprintf(f, "cache   %d positions × %d sequences, KV %s in blocks of %d tokens (%d blocks per rank)\n",
                p->req.engine.ctx_size, p->req.engine.max_seqs, kv_type_str(p->req.engine.kv_type),
                p->req.engine.block_tokens, p->kv_blocks);
    if (p->req.max_memory) {
        loom_format_bytes(a, sizeof a, p->req.max_memory);
        fprintf(f, "memory  at most %s per rank\n", a);
    }
    fprintf(f, "balance %s\n", p->balance[0] ? p->balance : "stages by bytes read per token");
    fprintf(f, "\nstage  layers         read per token  heads/group  MLP columns/group\n");
    for (int s = 0; s < p->pp; s++) {
        const loom_stage_plan *sp = &p->stages[s];
        char lay[80];
        range_str(a, sizeof a, sp->layer_begin, sp->layer_end);
        snprintf(lay, sizeof lay, "%s (%d)", a, sp->layer_end - sp->layer_begin);
        loom_format_bytes(d, sizeof d, sp->cost);
        fprintf(f, "%5d  %-13s  %14s  %11d  %17" PRId64 "\n", s, lay, d, sp->head_group, sp->ffn_group);
    }
    bool any_host = false;
    for (int r = 0; r < p->world; r++) any_host |= p->ranks[r].host[0] != 0;
    fprintf(f, "\n%4s  %5s  %4s  %s%-9s  %-11s  %-9s  %-15s  %-13s  %10s  %10s  %10s  %10s\n", "rank", "stage", "tp",
            any_host ? "host              " : "", "layers", "query heads", "KV heads", "MLP columns", "vocabulary",
            "weights", "KV cache", "workspace", "total");
    bool any_shared = false;
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = &p->ranks[r];
        const loom_shard *s = &rp->shard;
        char lay[48], q[48], kv[48], ff[48], vv[48];
        range_str(lay, sizeof lay, s->layer_begin, s->layer_end);
        range_str(q, sizeof q, s->q_begin, s->q_end);
        kv_str(kv, sizeof kv, rp);
        if (s->split_experts) { /* whole experts: "experts 0-31" */
            char ex[40];
            range_str(ex, sizeof ex, s->expert_begin, s->expert_end);
            snprintf(ff, sizeof ff, "experts %s", ex);
        } else {
            range_str(ff, sizeof ff, s->ffn_begin, s->ffn_end);
        }
        range_str(vv, sizeof vv, s->vocab_begin, s->vocab_end);
        loom_format_bytes(a, sizeof a, rp->weight_bytes);
        loom_format_bytes(b, sizeof b, rp->kv_bytes);
        loom_format_bytes(d, sizeof d, rp->workspace_bytes);
        loom_format_bytes(e, sizeof e, loom_plan_rank_total(rp));
        fprintf(f, "%4d  %5d  %4d  ", r, rp->stage, rp->tp_rank);
        if (any_host) fprintf(f, "%-16.16s  ", rp->host);
        fprintf(f, "%-9s  %-11s  %-9s  %-15s  %-13s  %10s  %10s  %10s  %10s\n", lay, q, kv, ff, vv, a, b, d, e);
        any_shared |= rp->kv_shared_first || rp->kv_shared_last;
    }
    plan_totals t = totals_of(p);
    loom_format_bytes(a, sizeof a, t.weight);
    loom_format_bytes(b, sizeof b, t.kv);
    loom_format_bytes(d, sizeof d, t.workspace);
    loom_format_bytes(g, sizeof g, t.weight + t.kv + t.workspace);
    loom_format_bytes(h, sizeof h, t.largest);
    fprintf(f, "\ntotal   weights %s, KV cache %s, workspace %s: %s over %d ranks; largest rank %d needs %s\n", a, b, d,
            g, p->world, t.largest_rank, h);
    if (any_shared) fprintf(f, "        * a KV head held by two or more ranks of its stage (replicated)\n");
    for (int i = 0; i < p->n_warnings; i++) fprintf(f, "warning: %s\n", p->warnings[i]);
}

void loom_plan_print(const loom_plan *p, FILE *f, bool json) {
    if (json)
        print_json(p, f);
    else
        print_text(p, f);
}
