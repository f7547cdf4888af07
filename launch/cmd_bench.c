/*
 * launch/cmd_bench.c — `loom bench`: prefill and decode speed of a model, the
 * memory bandwidth decode implies, and (under mpirun) where a cluster's time
 * goes.
 *
 * One row per configuration (threads per rank, sequences). Each
 * configuration gets a fresh engine on the same open (mmapped) model; under
 * mpirun one cluster (one shard plan) serves every configuration. A
 * configuration runs a warm-up, then --reps repetitions of two phases, each
 * one loom_engine_run() on the coordinator while the other ranks are in
 * loom_engine_work(), ended by loom_engine_shutdown() so every rank can
 * read its own clocks and communication counters between phases:
 *
 *   prefill  one sequence whose prompt is --prompt-tokens fixed token ids
 *            (a deterministic pattern), max_tokens 1: prompt tokens divided
 *            by the wall time of the steps that carried prompt rows
 *            (loom_run_stats.prefill_s) — llama-bench's "pp" test;
 *   decode   --sequences sequences, each a prompt of --depth + 1 tokens
 *            (one token by default) then --gen-tokens greedy tokens
 *            (end-of-generation ignored), decoding batched: tokens of pure
 *            decode steps divided by their wall time (decode_tokens /
 *            decode_s; steps that carry prompt rows are not counted), the
 *            total over all sequences — llama-bench's "tg" test, which also
 *            starts at an empty context, and with --depth its "-d" (decode
 *            after N tokens of context: attention over a long KV cache).
 *            Each sequence's context is its own (no shared prefix). With
 *            --depth the prefix cache is on, so a repetition finds the
 *            context the warm-up computed and only the decode is paid again
 *            (the prefill test then changes its first token every run, so it
 *            is never served from the cache).
 *
 * Weight bytes: each rank sums what its kernels stream per step — every
 * matrix bound by loom_engine_weights() (rows × row stride), the norms, the
 * lm head once and one embedding row. Every step reads each rank's weights
 * once, so the cluster reads sum(ranks) × steps / tokens bytes per decoded
 * token; times decode tokens/s that is the bandwidth decode draws, shown as
 * a share of the read bandwidth measured here (membw.h: every rank reads its
 * own --membw-size buffer at once with its threads, best of --membw-runs;
 * the aggregate over ranks). KV cache reads are not counted. The probe runs
 * right before the first decode repetition and right after each one, and
 * each repetition is set against the mean of the probes on either side of
 * it: on a shared host (a cloud VM) the bandwidth left to this machine
 * swings by half from one few seconds to the next, so a probe taken once,
 * before all configurations, compares decode with another moment's memory.
 * The share shown is the mean of the repetitions' shares. With each probe
 * thread 0 of every rank hands a cache line back and forth with each of
 * its other threads (threadpool.h: loom_pool_handoff_ns; "handoff ns"
 * shows the range over the probes, the slowest rank's): on this project's
 * 2-vCPU EPYC VM the host moves the two vCPUs between one L3 (round trip
 * ~70-110 ns, ~32 GB/s read) and two (~340-400 ns, ~44 GB/s) every few
 * seconds (the Xeon VM stayed at 105-196 ns), and a small model's
 * two-thread decode, which hands rows between its threads ~150 times a
 * token, is faster in the first placement and slower in the second, the
 * opposite of the bandwidth.
 *
 * Under mpirun each rank also reports, per decoded token, its time in TP
 * collectives and in stage-to-stage transfers (loom_engine_comm_time(),
 * which includes time blocked waiting for a peer) and the share of the
 * phase it spent in neither ("busy"); the mean idle share over the ranks of
 * a pipeline is its bubble.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launch/args.h"
#include "parallel/cluster.h"
#include "launch/commands.h"
#include "parallel/engine.h"
#include "parallel/run.h"
#include "runtime/kernels.h"
#include "launch/launch_util.h"
#include "launch/membw.h"
#include "parallel/plan.h"
#include "runtime/threadpool.h"
#include "runtime/text/utf8.h"

#define BENCH_MAX_LIST 32
#define BENCH_MAX_REPS 100
#define BENCH_MAX_RANKS 4096

/* ------------------------------------------------------------ small helpers */

/* "1,2,4" → values (each in [lo, hi]); returns the count, or -1. */
static int parse_list(const char *s, int *out, int lo, int hi) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < lo || v > hi || n == BENCH_MAX_LIST) return -1;
        out[n++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

typedef struct {
    double mean, sd, min, max;
} summary;

static summary summarize(const double *v, int n) {
    summary s = {0, 0, 0, 0};
    if (n <= 0) return s;
    s.min = s.max = v[0];
    for (int i = 0; i < n; i++) {
        s.mean += v[i];
        if (v[i] < s.min) s.min = v[i];
        if (v[i] > s.max) s.max = v[i];
    }
    s.mean /= n;
    for (int i = 0; i < n && n > 1; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0;
    return s;
}

static void cpu_model(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) break;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = 0;
        snprintf(buf, cap, "%s", c);
        break;
    }
    fclose(f);
}

static void load_avg(double out[3]) {
    out[0] = out[1] = out[2] = -1;
    if (getloadavg(out, 3) < 3) out[0] = out[1] = out[2] = -1;
}

static int64_t mat_bytes(const loom_mat *m) { return m->data ? m->rows * (int64_t)m->stride : 0; }

/* The weight types this rank's kernels hold in the r8 layout (kernels.h),
 * "Q4_0 Q4_K", or "none". */
static const char *r8_types(void) {
    static char buf[96];
    size_t n = 0;
    buf[0] = 0;
    for (int t = 0; t < LOOM_TYPE_COUNT && n + 12 < sizeof buf; t++)
        if (loom_matmul_prefers_r8((loom_type)t))
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? " " : "", loom_type_name((uint32_t)t));
    return n ? buf : "none";
}

/* Bytes the kernels stream per step on this rank (see the top comment). */
static int64_t weight_bytes_per_step(const loom_weights *w) {
    int64_t b = 0, dim = w->cfg.dim;
    for (int l = 0; l < w->shard.layer_end - w->shard.layer_begin; l++) {
        const loom_layer *L = &w->layers[l];
        b += mat_bytes(&L->wq) + mat_bytes(&L->wk) + mat_bytes(&L->wv) + mat_bytes(&L->wo);
        b += mat_bytes(&L->w_gate) + mat_bytes(&L->w_up) + mat_bytes(&L->w_down);
        if (L->router.data) { /* a mixture of experts: the router and, on average, the used experts' share */
            int64_t x = 0;
            for (int e = 0; e < w->cfg.n_experts; e++)
                x += mat_bytes(&L->x_gate[e]) + mat_bytes(&L->x_up[e]) + mat_bytes(&L->x_down[e]);
            b += mat_bytes(&L->router) + x / w->cfg.n_experts * w->cfg.n_experts_used;
        }
        b += 2 * 4 * dim; /* attn_norm, ffn_norm */
        if (L->bq) b += 4 * (L->wq.rows + L->wk.rows + L->wv.rows); /* qwen2 biases */
    }
    if (w->shard.head) b += mat_bytes(&w->lm_head) + 4 * dim;
    if (w->shard.embed) b += (int64_t)w->embed.stride;
    return b;
}

/* "Q4_K x154, Q6_K x1": the types of the model's matrices (a mixture's
 * ffn_*_exps tensor counted once). */
static void type_summary(const loom_plan_model *pm, char *buf, size_t cap) {
    int count[LOOM_TYPE_COUNT] = {0};
    for (int l = 0; l < pm->cfg.n_layers; l++) {
        const loom_plan_layer *L = &pm->layers[l];
        loom_type t[7] = {L->q, L->k, L->v, L->o, L->gate, L->up, L->down};
        for (int i = 0; i < 7; i++)
            if ((int)t[i] < LOOM_TYPE_COUNT) count[t[i]]++;
    }
    if ((int)pm->head < LOOM_TYPE_COUNT) count[pm->head]++;
    size_t len = 0;
    buf[0] = 0;
    for (int t = 0; t < LOOM_TYPE_COUNT; t++)
        if (count[t] && len < cap)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s x%d", len ? ", " : "", loom_type_name((uint32_t)t),
                                    count[t]);
}

/* ------------------------------------------------------------ one phase */

typedef struct {
    double wall, tp, pp; /* seconds: in the phase, in TP collectives, in stage transfers */
} rank_time;

typedef struct {
    loom_cluster *cl;
    bool coord;
    int world_size;
    rank_time *all; /* (world_size) gathered from every rank */
} bench_ctx;

/* Every rank's 3 doubles into c->all (in rank order). */
static loom_status gather_times(bench_ctx *c, const rank_time *mine) {
    size_t counts[BENCH_MAX_RANKS], displs[BENCH_MAX_RANKS];
    for (int r = 0; r < c->world_size; r++) counts[r] = 3, displs[r] = 3 * (size_t)r;
    return loom_comm_all_gatherv(loom_cluster_world(c->cl), mine, 3, c->all, counts, displs, LOOM_DT_F64);
}

static bool never_eog(void *user, int32_t token) {
    (void)user;
    (void)token;
    return false;
}

/* Every rank: the coordinator runs reqs (and stops the workers), the others
 * work; then each rank's times reach rank 0 in ctx->all. A failing request
 * is a failure of the phase. Under MPI a failure aborts the job (peers
 * would wait forever), as loom generate does. */
static loom_status run_phase(bench_ctx *c, loom_engine *e, const loom_request *reqs, int n, loom_result *res,
                             loom_run_stats *stats) {
    loom_status st = loom_comm_barrier(loom_cluster_world(c->cl));
    double tp0, pp0, tp1, pp1;
    loom_engine_comm_time(e, &tp0, &pp0);
    double t0 = loom_now_s();
    if (st) {
    } else if (c->coord) {
        loom_callbacks cb = {.is_eog = never_eog};
        st = loom_engine_run(e, reqs, n, &cb, NULL, res, stats);
        for (int i = 0; i < n && !st; i++)
            if (res[i].error) st = loom_error(LOOM_ERR_INVALID, "bench request %d failed: %s", i, res[i].error);
        for (int i = 0; i < n; i++) loom_result_free(&res[i]);
        if (!st) st = loom_engine_shutdown(e);
    } else {
        st = loom_engine_work(e);
    }
    double t1 = loom_now_s();
    loom_engine_comm_time(e, &tp1, &pp1);
    if (st && c->world_size > 1) loom_cluster_abort(c->cl, "bench", st);
    if (st) return st;
    rank_time mine = {t1 - t0, tp1 - tp0, pp1 - pp0};
    return gather_times(c, &mine);
}

/* ------------------------------------------------------------ results */

typedef struct {
    int threads, seqs;
    int reps;
    double *prefill_tps, *decode_tps; /* (reps) */
    int64_t step_bytes;               /* weight bytes all ranks read per step */
    double bytes_per_token;           /* step_bytes × pure decode steps / their tokens */
    double *membw_probe;              /* (reps + 1) aggregate read GB/s before the first decode and after each */
    double membw_gbs, membw_share;    /* means over the repetitions of the probes beside each, of decode's share */
    double *handoff_ns;               /* (reps + 1) with each probe: the slowest rank's thread hand-off (0: one thread) */
    /* per rank, summed over the repetitions */
    rank_time *pre, *dec; /* (world_size) */
    int64_t pre_tokens, dec_tokens; /* prompt tokens / generated tokens over the repetitions */
} config_result;

static double decode_gbs(const config_result *r) {
    return r->bytes_per_token * summarize(r->decode_tps, r->reps).mean / 1e9;
}

/* Each repetition's decode GB/s against the mean of the probes before and
 * after it (no probe: zeros). */
static void share_of_probes(config_result *r) {
    double bw = 0, share = 0;
    for (int i = 0; i < r->reps; i++) {
        double beside = (r->membw_probe[i] + r->membw_probe[i + 1]) / 2;
        if (beside <= 0) return;
        bw += beside;
        share += r->bytes_per_token * r->decode_tps[i] / 1e9 / beside;
    }
    r->membw_gbs = r->reps ? bw / r->reps : 0;
    r->membw_share = r->reps ? share / r->reps : 0;
}

/* The range of the probes' hand-off latencies in [*lo, *hi]; false when none
 * was measured (one thread, or the probe off). */
static bool handoff_range(const config_result *r, double *lo, double *hi) {
    bool any = false;
    *lo = *hi = 0;
    for (int k = 0; k <= r->reps; k++) {
        const double h = r->handoff_ns[k];
        if (h <= 0) continue;
        *lo = !any || h < *lo ? h : *lo;
        *hi = !any || h > *hi ? h : *hi;
        any = true;
    }
    return any;
}

static void print_row(FILE *f, const config_result *r, int world) {
    summary p = summarize(r->prefill_tps, r->reps), d = summarize(r->decode_tps, r->reps);
    double gbs = decode_gbs(r), lo, hi;
    char pct[16] = "-", ho[32] = "-";
    if (r->membw_gbs > 0) snprintf(pct, sizeof pct, "%.0f%%", 100 * r->membw_share);
    if (handoff_range(r, &lo, &hi)) snprintf(ho, sizeof ho, "%.0f-%.0f", lo, hi);
    fprintf(f, "%5d %7d %5d %10.2f ± %-7.2f %9.2f ± %-6.2f %10.2f %8.2f %8.2f %7s %9s\n", world, r->threads, r->seqs,
            p.mean, p.sd, d.mean, d.sd, r->bytes_per_token / 1e6, gbs, r->membw_gbs, pct, ho);
}

/* Per rank and decoded token: TP collectives, stage transfers, busy share. */
static void print_comm(FILE *f, const config_result *r, int world, const int *stage, const int *tpr) {
    if (world < 2) return;
    double tok = r->dec_tokens > 0 ? (double)r->dec_tokens : 1;
    double tp_max = 0, tp_sum = 0, pp_max = 0, pp_sum = 0, idle_max = 0, idle_sum = 0;
    for (int k = 0; k < world; k++) {
        const rank_time *t = &r->dec[k];
        double idle = t->wall > 0 ? (t->tp + t->pp) / t->wall : 0;
        if (idle > 1) idle = 1;
        tp_max = fmax(tp_max, t->tp), tp_sum += t->tp;
        pp_max = fmax(pp_max, t->pp), pp_sum += t->pp;
        idle_max = fmax(idle_max, idle), idle_sum += idle;
        fprintf(f, "        rank %d (stage %d, tp %d): %7.3f ms/token in TP collectives, %7.3f in stage transfers, "
                   "%7.3f busy (%4.1f%% idle)\n",
                k, stage[k], tpr[k], 1e3 * t->tp / tok, 1e3 * t->pp / tok, 1e3 * (t->wall - t->tp - t->pp) / tok,
                100 * idle);
    }
    fprintf(f, "        max/mean over ranks: TP %.3f/%.3f ms/token, transfers %.3f/%.3f ms/token, idle %.1f%%/%.1f%%"
               " (mean idle = pipeline bubble + collective waits)\n",
            1e3 * tp_max / tok, 1e3 * tp_sum / world / tok, 1e3 * pp_max / tok, 1e3 * pp_sum / world / tok,
            100 * idle_max, 100 * idle_sum / world);
}

static void json_summary(FILE *f, const char *key, const double *v, int n) {
    summary s = summarize(v, n);
    fprintf(f, "\"%s\":{\"mean\":%.4f,\"sd\":%.4f,\"min\":%.4f,\"max\":%.4f,\"values\":[", key, s.mean, s.sd, s.min, s.max);
    for (int i = 0; i < n; i++) fprintf(f, "%s%.4f", i ? "," : "", v[i]);
    fprintf(f, "]}");
}

static void json_ranks(FILE *f, const rank_time *t, int world, int64_t tokens, const int *stage, const int *tpr) {
    double tok = tokens > 0 ? (double)tokens : 1;
    fputc('[', f);
    for (int k = 0; k < world; k++)
        fprintf(f,
                "%s{\"rank\":%d,\"stage\":%d,\"tp_rank\":%d,\"wall_s\":%.6f,\"tp_s\":%.6f,\"transfer_s\":%.6f,"
                "\"tp_ms_per_token\":%.4f,\"transfer_ms_per_token\":%.4f,\"busy_ms_per_token\":%.4f,\"idle_frac\":%.4f}",
                k ? "," : "", k, stage[k], tpr[k], t[k].wall, t[k].tp, t[k].pp, 1e3 * t[k].tp / tok,
                1e3 * t[k].pp / tok, 1e3 * (t[k].wall - t[k].tp - t[k].pp) / tok,
                t[k].wall > 0 ? fmin(1, (t[k].tp + t[k].pp) / t[k].wall) : 0);
    fputc(']', f);
}

typedef struct {
    const char *model;
    loom_model_config cfg;
    char types[256];
    char cpu[256];
    int64_t l3;
    double load0[3], load1[3];
    int world, tp, pp, prompt_tokens, gen_tokens, reps, ctx, batch, depth;
    const char *kv_type;
    int64_t membw_bytes; /* per rank */
    int membw_runs;
    int *stage, *tpr;
} bench_info;

static loom_status write_json(const char *path, const bench_info *bi, const config_result *rs, int n) {
    FILE *f = fopen(path, "w");
    if (!f) return loom_error(LOOM_ERR_IO, "cannot write %s", path);
    fprintf(f, "{\"loom_bench\":1,\"model\":");
    loom_json_fputs(f, bi->model);
    fprintf(f, ",\"model_info\":{\"arch\":\"%s\",\"layers\":%d,\"dim\":%d,\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,"
               "\"ffn\":%d,\"vocab\":%d,\"types\":",
            bi->cfg.arch_name, bi->cfg.n_layers, bi->cfg.dim, bi->cfg.n_heads, bi->cfg.n_kv_heads, bi->cfg.head_dim,
            bi->cfg.ffn, bi->cfg.vocab);
    loom_json_fputs(f, bi->types);
    fprintf(f, "},\"machine\":{\"cpu\":");
    loom_json_fputs(f, bi->cpu);
    fprintf(f, ",\"cpus\":%ld,\"l3_bytes\":%lld,\"isa\":\"%s\",\"r8_types\":\"%s\",\"membw_isa\":\"%s\","
               "\"loadavg_start\":[%.2f,%.2f,%.2f],\"loadavg_end\":[%.2f,%.2f,%.2f]},",
            sysconf(_SC_NPROCESSORS_ONLN), (long long)bi->l3, loom_isa_name(loom_isa_get()), r8_types(), loom_membw_isa(),
            bi->load0[0], bi->load0[1], bi->load0[2], bi->load1[0], bi->load1[1], bi->load1[2]);
    fprintf(f, "\"options\":{\"ranks\":%d,\"tp\":%d,\"pp\":%d,\"prompt_tokens\":%d,\"gen_tokens\":%d,\"depth\":%d,\"reps\":%d,"
               "\"ctx_size\":%d,\"batch\":%d,\"kv_type\":\"%s\",\"membw_bytes_per_rank\":%lld,\"membw_runs\":%d},",
            bi->world, bi->tp, bi->pp, bi->prompt_tokens, bi->gen_tokens, bi->depth, bi->reps, bi->ctx, bi->batch, bi->kv_type,
            (long long)bi->membw_bytes, bi->membw_runs);
    fprintf(f, "\"results\":[");
    for (int i = 0; i < n; i++) {
        const config_result *r = &rs[i];
        double gbs = decode_gbs(r);
        fprintf(f, "%s{\"ranks\":%d,\"threads\":%d,\"sequences\":%d,", i ? "," : "", bi->world, r->threads, r->seqs);
        json_summary(f, "prefill_tokens_per_s", r->prefill_tps, r->reps);
        fputc(',', f);
        json_summary(f, "decode_tokens_per_s", r->decode_tps, r->reps);
        fprintf(f, ",\"weight_bytes_per_step\":%lld,\"weight_bytes_per_token\":%.1f,\"decode_gb_per_s\":%.4f,"
                   "\"membw_gb_per_s\":%.4f,\"membw_frac\":%.4f,\"membw_probes_gb_per_s\":[",
                (long long)r->step_bytes, r->bytes_per_token, gbs, r->membw_gbs, r->membw_share);
        for (int k = 0; k <= r->reps && r->membw_gbs > 0; k++) fprintf(f, "%s%.4f", k ? "," : "", r->membw_probe[k]);
        fprintf(f, "],\"handoff_ns\":[");
        double lo, hi;
        const bool ho = handoff_range(r, &lo, &hi);
        for (int k = 0; k <= r->reps && ho; k++) fprintf(f, "%s%.1f", k ? "," : "", r->handoff_ns[k]);
        fprintf(f, "],");
        fprintf(f, "\"prefill_ranks\":");
        json_ranks(f, r->pre, bi->world, r->pre_tokens, bi->stage, bi->tpr);
        fprintf(f, ",\"decode_ranks\":");
        json_ranks(f, r->dec, bi->world, r->dec_tokens, bi->stage, bi->tpr);
        fputc('}', f);
    }
    fprintf(f, "]}\n");
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0) bad = true;
    return bad ? loom_error(LOOM_ERR_IO, "cannot write %s", path) : NULL;
}

/* ------------------------------------------------------------ bandwidth */

/* The bandwidth probe of one thread count: every rank's buffer, read by a
 * pool of that many threads; off (m == NULL) when --membw-size is 0. */
typedef struct {
    loom_pool *pool;
    loom_membw *m;
    int runs;
} bw_probe;

static void probe_close(bw_probe *p) {
    loom_membw_free(p->m);
    loom_pool_free(p->pool);
    *p = (bw_probe){0};
}

static loom_status probe_open(bench_ctx *c, int n_threads, int64_t bytes, int runs, bw_probe *p) {
    *p = (bw_probe){.runs = runs};
    if (bytes <= 0) return NULL;
    loom_status st = loom_pool_create(n_threads, &p->pool);
    if (!st) st = loom_membw_create(bytes, p->pool, &p->m);
    st = loom_cluster_agree(c->cl, st, "setting up the bandwidth probe");
    if (st) probe_close(p);
    return st;
}

/* Every rank reads its own buffer at the same time; the aggregate GB/s of
 * the best of p->runs passes (0 when the probe is off). Then each rank's
 * threads hand a cache line back and forth: *handoff_ns the slowest rank's
 * round trip (0 with one thread). */
static loom_status probe_read(bench_ctx *c, bw_probe *p, double *gbs, double *handoff_ns) {
    *gbs = *handoff_ns = 0;
    if (!p->m) return NULL;
    loom_comm *w = loom_cluster_world(c->cl);
    loom_status st = NULL;
    double total = (double)loom_membw_bytes(p->m) * c->world_size, best = 0;
    for (int r = 0; r < p->runs && !st; r++) {
        st = loom_comm_barrier(w);
        double slowest = st ? 0 : loom_membw_read(p->m, p->pool);
        if (!st) st = loom_comm_all_reduce(w, &slowest, 1, LOOM_DT_F64, LOOM_RED_MAX);
        if (slowest > 0 && total / slowest > best) best = total / slowest;
    }
    *gbs = best / 1e9;
    double ho = st ? 0 : loom_pool_handoff_ns(p->pool, 4000);
    if (!st) st = loom_comm_all_reduce(w, &ho, 1, LOOM_DT_F64, LOOM_RED_MAX);
    *handoff_ns = ho;
    return st;
}

/* ------------------------------------------------------------ one configuration */

typedef struct {
    int prompt_tokens, gen_tokens, reps, depth, vocab;
    int32_t *prompt;       /* (prompt_tokens) */
    int32_t *dec_prompts;  /* (max sequences) x (depth + 1): the decode phase's prompts */
    int prefill_runs;      /* with the prefix cache on: varies the prefill prompt's first token */
    loom_sampling_params greedy;
} bench_work;

/* The prefill test's prompt; with the prefix cache on (--depth) its first
 * token changes every run so that no run finds another's blocks. */
static void next_prefill_prompt(bench_work *w) {
    if (w->depth > 0) w->prompt[0] = (int32_t)((1000 + 131LL * w->prefill_runs++) % w->vocab);
}

static loom_status run_config(bench_ctx *c, bench_work *w, loom_engine *e, bw_probe *probe, int seqs,
                              config_result *r) {
    loom_request pre = {.prompt = w->prompt, .n_prompt = w->prompt_tokens, .max_tokens = 1, .sampling = w->greedy, .ignore_eos = true};
    loom_request *dec = calloc((size_t)seqs, sizeof *dec);
    loom_result *res = calloc((size_t)seqs, sizeof *res);
    if (!dec || !res) {
        free(dec);
        free(res);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for %d sequences", seqs);
    }
    int warm = w->gen_tokens < 16 ? w->gen_tokens : 16;
    loom_status st = NULL;
    /* warm-up: page in and warm every weight, KV block and code path */
    for (int i = 0; i < seqs; i++)
        dec[i] = (loom_request){.prompt = w->dec_prompts + (size_t)i * (size_t)(w->depth + 1), .n_prompt = w->depth + 1,
                                .max_tokens = warm + 1, .sampling = w->greedy, .ignore_eos = true};
    loom_run_stats stats;
    next_prefill_prompt(w);
    st = run_phase(c, e, &pre, 1, res, &stats);
    if (!st) st = run_phase(c, e, dec, seqs, res, &stats);
    for (int i = 0; i < seqs; i++) dec[i].max_tokens = w->gen_tokens + 1; /* token 1 comes from the prompt step */
    int64_t steps = 0, gen = 0;
    if (!st) st = probe_read(c, probe, &r->membw_probe[0], &r->handoff_ns[0]);
    for (int rep = 0; rep < w->reps && !st; rep++) {
        next_prefill_prompt(w);
        st = run_phase(c, e, &pre, 1, res, &stats);
        if (st) break;
        if (c->coord) {
            r->prefill_tps[rep] = stats.prefill_s > 0 ? stats.prompt_tokens / stats.prefill_s : 0;
            r->pre_tokens += stats.prompt_tokens;
            for (int k = 0; k < c->world_size; k++) {
                r->pre[k].wall += c->all[k].wall, r->pre[k].tp += c->all[k].tp, r->pre[k].pp += c->all[k].pp;
            }
        }
        st = run_phase(c, e, dec, seqs, res, &stats);
        if (!st) st = probe_read(c, probe, &r->membw_probe[rep + 1], &r->handoff_ns[rep + 1]);
        if (st) break;
        if (c->coord) {
            r->decode_tps[rep] = stats.decode_s > 0 ? stats.decode_tokens / stats.decode_s : 0;
            r->dec_tokens += stats.gen_tokens;
            steps += stats.decode_steps;
            gen += stats.decode_tokens;
            for (int k = 0; k < c->world_size; k++) {
                r->dec[k].wall += c->all[k].wall, r->dec[k].tp += c->all[k].tp, r->dec[k].pp += c->all[k].pp;
            }
        }
    }
    if (!st && c->coord) {
        r->bytes_per_token = gen > 0 ? (double)r->step_bytes * (double)steps / (double)gen : 0;
        share_of_probes(r);
    }
    free(dec);
    free(res);
    return st;
}

/* ------------------------------------------------------------ the command */

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "comm")) return cmd_bench_comm(argc - 1, argv + 1);
    const char *device_s = "auto";
    const char *model = NULL, *threads_s = NULL, *seqs_s = "1", *json_path = NULL, *kv_type = "f16";
    int64_t prompt_tokens = 128, gen_tokens = 128, depth = 0, reps = 3, tp = 1, pp = 1, ctx = 0, batch = 256,
            membw_bytes = (int64_t)2 << 30, membw_runs = 5;
    double watchdog = 30;
    char threads_default[16];
    snprintf(threads_default, sizeof threads_default, "%d", loom_cpu_count());
    threads_s = threads_default;
    static loom_lora_args lora; /* static: 8 KiB of paths */
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model file (required; every rank opens its own copy)"},
        {"--prompt-tokens", LOOM_ARG_INT, &prompt_tokens, "N", "prompt length of the prefill test (fixed token ids)"},
        {"--gen-tokens", LOOM_ARG_INT, &gen_tokens, "N", "greedy tokens per sequence in the decode test"},
        {"--depth", LOOM_ARG_INT, &depth, "N",
         "decode after N tokens of context per sequence (llama-bench -d); the context's prefill is not timed"},
        {"--threads", LOOM_ARG_STR, &threads_s, "LIST", "threads per rank, comma-separated (one row each)"},
        {"--sequences", LOOM_ARG_STR, &seqs_s, "LIST", "sequences decoding batched, comma-separated (one row each)"},
        {"--reps", LOOM_ARG_INT, &reps, "R", "repetitions per configuration (after one warm-up)"},
        {"--json", LOOM_ARG_STR, &json_path, "PATH", "also write the results, machine and options as JSON"},
        LOOM_GRID_ARGS(tp, pp, watchdog),
        LOOM_LORA_ARGS(lora),
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "positions per sequence; 0 = what the tests need"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "rows per forward pass at most (prefill chunk)"},
        {"--kv-type", LOOM_ARG_STR, &kv_type, "T", LOOM_KV_TYPE_HELP},
        {"--membw-size", LOOM_ARG_BYTES, &membw_bytes, "BYTES", "buffer per rank of the bandwidth probe; 0 = skip"},
        {"--membw-runs", LOOM_ARG_INT, &membw_runs, "N", "passes of the bandwidth probe (the best counts)"},
        LOOM_DEVICE_ARG(device_s),
    };
    loom_args_result ar = loom_args_parse(
        "bench --model PATH [--threads 1,2] [--sequences 1,4] [options]",
        "Measures prefill tokens/s (one prompt of --prompt-tokens ids) and decode tokens/s\n"
        "(--sequences sequences generating --gen-tokens greedy tokens each, batched), mean and\n"
        "standard deviation over --reps, with the weight bytes read per decoded token and the\n"
        "share of the memory read bandwidth (measured here) that decode uses. One row per\n"
        "(threads, sequences); each gets a fresh engine. Under mpirun -np N with --tp T --pp P\n"
        "the cluster's speed, and per rank the time in TP collectives and stage transfers.\n"
        "`loom bench comm --help`: what the links between ranks cost (nccl-tests' table).",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model) return loom_usage_error("bench: --model is required");
    int threads[BENCH_MAX_LIST], seqs[BENCH_MAX_LIST];
    int n_threads = parse_list(threads_s, threads, 1, 1024), n_seqs = parse_list(seqs_s, seqs, 1, 4096);
    if (n_threads < 1) return loom_usage_error("bench: --threads must be a list like 1,2 (each 1..1024)");
    if (n_seqs < 1) return loom_usage_error("bench: --sequences must be a list like 1,4 (each 1..4096)");
    if (prompt_tokens < 1 || prompt_tokens > (1 << 20)) return loom_usage_error("bench: --prompt-tokens must be 1..1048576");
    if (gen_tokens < 1 || gen_tokens > (1 << 20)) return loom_usage_error("bench: --gen-tokens must be 1..1048576");
    if (reps < 1 || reps > BENCH_MAX_REPS) return loom_usage_error("bench: --reps must be 1..100");
    if (batch < 1 || batch > 65536) return loom_usage_error("bench: --batch must be 1..65536");
    if (loom_grid_check("bench", tp, pp, watchdog)) return 2;
    if (loom_lora_options("bench", &lora, false)) return 2;
    if (membw_bytes < 0 || membw_runs < 1 || membw_runs > 1000)
        return loom_usage_error("bench: --membw-size must be >= 0 and --membw-runs 1..1000");
    if (depth < 0 || depth > (1 << 22)) return loom_usage_error("bench: --depth must be 0..4194304");
    int need_ctx = (int)(prompt_tokens + 1 > depth + gen_tokens + 2 ? prompt_tokens + 1 : depth + gen_tokens + 2);
    if (ctx == 0) ctx = need_ctx;
    if (ctx < need_ctx || ctx > (1 << 24)) return loom_usage_error("bench: --ctx-size is smaller than the tests need");
    loom_type kvt;
    if (loom_parse_kv_type("bench", kv_type, &kvt)) return 2;
    int max_seqs = 0;
    for (int i = 0; i < n_seqs; i++) max_seqs = seqs[i] > max_seqs ? seqs[i] : max_seqs;

    bench_info bi;
    memset(&bi, 0, sizeof bi);
    load_avg(bi.load0); /* before the cluster and the model touch the machine */

    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.lora = lora.spec, co.n_lora = lora.n;
    co.engine.ctx_size = (int)ctx;
    co.engine.kv_type = kvt;
    co.engine.batch_rows = (int)batch;
    if (loom_parse_device("bench", device_s, &co.engine.device)) return 2;
    co.engine.max_seqs = max_seqs; /* the plan sizes memory for the largest row */
    co.engine.prefix_cache = depth > 0; /* see the header: only the --depth context is found again */
    loom_cluster *cluster = NULL;
    loom_status st = loom_cluster_start(&co, &cluster);
    if (st) return loom_fail("bench", st);
    int world_rank = loom_cluster_rank(cluster), world_size = loom_cluster_size(cluster);
    const loom_gguf *g = loom_cluster_model(cluster);
    loom_comm *world = loom_cluster_world(cluster);

    int rc = 1;
    loom_plan_model pm;
    memset(&pm, 0, sizeof pm);
    config_result *results = NULL;
    int n_results = 0;
    bench_ctx c = {cluster, world_rank == 0, world_size, calloc((size_t)world_size, sizeof(rank_time))};
    bench_work w = {.prompt_tokens = (int)prompt_tokens, .gen_tokens = (int)gen_tokens, .reps = (int)reps,
                    .depth = (int)depth, .prompt = malloc(sizeof(int32_t) * (size_t)prompt_tokens),
                    .dec_prompts = malloc(sizeof(int32_t) * (size_t)max_seqs * (size_t)(depth + 1)),
                    .greedy = loom_sampling_defaults()};
    w.greedy.temperature = 0;
    bi.stage = calloc((size_t)world_size, sizeof(int));
    bi.tpr = calloc((size_t)world_size, sizeof(int));
    if (world_size > BENCH_MAX_RANKS) st = loom_error(LOOM_ERR_INVALID, "more than %d ranks", BENCH_MAX_RANKS);
    if (!st && (!c.all || !w.prompt || !w.dec_prompts || !bi.stage || !bi.tpr))
        st = loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) st = loom_model_config_read(g, &bi.cfg);
    if (!st) st = loom_plan_model_read(g, &bi.cfg, &pm);
    if (!st) results = calloc((size_t)(n_threads * n_seqs), sizeof *results);
    if (!st && !results) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) {
        /* every rank's (stage, TP rank), for the per-rank table */
        const loom_topology *topo = loom_cluster_topology(cluster);
        int32_t me[2] = {topo->stage, topo->tp_rank}, *both = calloc((size_t)world_size * 2, sizeof(int32_t));
        size_t counts[BENCH_MAX_RANKS], displs[BENCH_MAX_RANKS];
        for (int k = 0; k < world_size; k++) counts[k] = 2, displs[k] = 2 * (size_t)k;
        st = both ? loom_comm_all_gatherv(world, me, 2, both, counts, displs, LOOM_DT_I32)
                  : loom_error(LOOM_ERR_NOMEM, "out of memory");
        for (int k = 0; !st && k < world_size; k++) bi.stage[k] = both[2 * k], bi.tpr[k] = both[2 * k + 1];
        free(both);
    }
    st = loom_cluster_agree(cluster, st, "setting up the bench");
    if (!st) {
        /* fixed prompt ids: a deterministic walk over the vocabulary */
        int V = bi.cfg.vocab;
        for (int i = 0; i < w.prompt_tokens; i++) w.prompt[i] = (int32_t)((1000 + 7919LL * i) % V);
        w.vocab = V;
        /* sequence s: a walk of its own (the last token is the one-token prompt of --depth 0) */
        for (int s = 0; s < max_seqs; s++)
            for (int i = 0; i <= w.depth; i++)
                w.dec_prompts[(size_t)s * (size_t)(w.depth + 1) + (size_t)i] =
                    (int32_t)((17 + 101LL * s + 7907LL * (w.depth - i) * (s + 1)) % V);
        bi.model = model;
        type_summary(&pm, bi.types, sizeof bi.types);
        cpu_model(bi.cpu, sizeof bi.cpu);
        bi.l3 = loom_l3_bytes();
        bi.world = world_size, bi.tp = (int)tp, bi.pp = (int)pp;
        bi.prompt_tokens = (int)prompt_tokens, bi.gen_tokens = (int)gen_tokens, bi.reps = (int)reps;
        bi.depth = (int)depth;
        bi.ctx = (int)ctx, bi.batch = (int)batch, bi.kv_type = kv_type;
        bi.membw_bytes = membw_bytes, bi.membw_runs = (int)membw_runs;
    }
    if (!st && world_rank == 0) {
        const char *base = strrchr(model, '/');
        base = base ? base + 1 : model;
        char moe[192];
        loom_model_describe_extras(&bi.cfg, moe, sizeof moe);
        printf("loom bench: %s — %s, %d layers, dim %d, %d/%d heads, ffn %d%s, vocab %d; weights %s\n", base,
               bi.cfg.arch_name, bi.cfg.n_layers, bi.cfg.dim, bi.cfg.n_heads, bi.cfg.n_kv_heads, bi.cfg.ffn, moe,
               bi.cfg.vocab, bi.types);
        printf("machine: %s, %ld CPUs, L3 %lld MiB, kernels %s (8-row interleaved: %s); load average %.2f %.2f %.2f\n",
               bi.cpu, sysconf(_SC_NPROCESSORS_ONLN), bi.l3 > 0 ? (long long)(bi.l3 >> 20) : -1LL,
               loom_isa_name(loom_isa_get()), r8_types(), bi.load0[0], bi.load0[1], bi.load0[2]);
        printf("ranks %d (tp %lld x pp %lld); prefill: 1 sequence, %lld-token prompt; decode: %lld greedy tokens per "
               "sequence %s %lld-token %s; %lld reps after a warm-up\n",
               world_size, (long long)tp, (long long)pp, (long long)prompt_tokens, (long long)gen_tokens,
               depth ? "after a" : "from a", (long long)(depth ? depth : 1), depth ? "context" : "prompt", (long long)reps);
        if (membw_bytes > 0)
            printf("bandwidth probe: %s read of %lld MiB per rank, all ranks at once, best of %lld, before the first "
                   "decode repetition and after each; a repetition's share is of the probes beside it; with each, "
                   "the slowest round trip of a cache line between thread 0 and another (handoff)\n",
                   loom_membw_isa(), (long long)(membw_bytes >> 20), (long long)membw_runs);
        printf("\nranks threads  seqs    prefill tok/s       decode tok/s   MB/token  dec GB/s membw GB/s  %%membw  handoff ns\n");
        fflush(stdout);
    }

    for (int ti = 0; ti < n_threads && !st; ti++) {
        bw_probe probe;
        st = probe_open(&c, threads[ti], membw_bytes, (int)membw_runs, &probe);
        for (int si = 0; si < n_seqs && !st; si++) {
            config_result *r = &results[n_results];
            r->threads = threads[ti], r->seqs = seqs[si], r->reps = (int)reps;
            r->prefill_tps = calloc((size_t)reps, sizeof(double));
            r->decode_tps = calloc((size_t)reps, sizeof(double));
            r->membw_probe = calloc((size_t)reps + 1, sizeof(double));
            r->handoff_ns = calloc((size_t)reps + 1, sizeof(double));
            r->pre = calloc((size_t)world_size, sizeof(rank_time));
            r->dec = calloc((size_t)world_size, sizeof(rank_time));
            n_results++;
            if (!r->prefill_tps || !r->decode_tps || !r->membw_probe || !r->handoff_ns || !r->pre || !r->dec) {
                st = loom_error(LOOM_ERR_NOMEM, "out of memory");
                break;
            }
            loom_engine_options eo = *loom_cluster_engine_options(cluster);
            eo.n_threads = threads[ti];
            eo.max_seqs = seqs[si];
            loom_engine *e = NULL;
            st = loom_cluster_engine(cluster, &eo, NULL, NULL, &e);
            if (st) break;
            int64_t total = weight_bytes_per_step(loom_engine_weights(e));
            st = loom_comm_all_reduce(world, &total, 1, LOOM_DT_I64, LOOM_RED_SUM);
            if (st) loom_cluster_abort(cluster, "bench", st);
            r->step_bytes = total;
            st = run_config(&c, &w, e, &probe, seqs[si], r);
            loom_engine_free(e);
            if (!st && world_rank == 0) {
                print_row(stdout, r, world_size);
                print_comm(stdout, r, world_size, bi.stage, bi.tpr);
                fflush(stdout);
            }
        }
        probe_close(&probe);
    }
    load_avg(bi.load1);
    if (!st && world_rank == 0) {
        printf("\nload average at the end: %.2f %.2f %.2f\n", bi.load1[0], bi.load1[1], bi.load1[2]);
        if (json_path) st = write_json(json_path, &bi, results, n_results);
    }
    if (!st) rc = 0;
    else rc = loom_fail("bench", st);
    for (int i = 0; i < n_results; i++) {
        free(results[i].prefill_tps);
        free(results[i].decode_tps);
        free(results[i].membw_probe);
        free(results[i].handoff_ns);
        free(results[i].pre);
        free(results[i].dec);
    }
    free(results);
    free(c.all);
    free(w.prompt);
    free(w.dec_prompts);
    free(bi.stage);
    free(bi.tpr);
    loom_plan_model_free(&pm);
    loom_cluster_free(cluster);
    return rc;
}
