/*
 * parallel/predict.c — the cost model (contract in predict.h): the work of
 * every rank's slices, the messages of a step, and the scheduler's pipeline
 * played out event by event.
 */
#include "parallel/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/step.pb-c.h"

/* ------------------------------------------------------------ links */

const char *loom_predict_op_name(loom_predict_op op) {
    static const char *names[] = {"all_reduce", "all_gather", "broadcast", "sendrecv"};
    return op < LOOM_OP_COUNT ? names[op] : "?";
}

double loom_predict_bus_factor(loom_predict_op op, int ranks) {
    double n = ranks < 1 ? 1 : ranks;
    switch (op) {
    case LOOM_OP_ALL_REDUCE: return 2 * (n - 1) / n;
    case LOOM_OP_ALL_GATHER: return (n - 1) / n;
    default: return 1;
    }
}

/* Piecewise-linear time by size; beyond the ends the nearest segment's
 * slope continues upwards and the smallest size's time holds downwards. */
static double table_time(const double *x, const double *y, int n, double bytes) {
    if (n == 1 || bytes <= x[0]) return y[0];
    int i = 1;
    while (i < n - 1 && x[i] < bytes) i++;
    double slope = (y[i] - y[i - 1]) / (x[i] - x[i - 1]);
    if (slope < 0) slope = 0;
    double t = y[i - 1] + slope * (bytes - x[i - 1]);
    return t > y[0] ? t : y[0];
}

/* Latency and bus bandwidth of a link: stated, or read off its table. */
static void link_figures(const loom_predict_link *l, loom_predict_op op, double *lat, double *bw) {
    *lat = l->latency_s;
    *bw = l->bus_bw;
    int n = l->n[op];
    if (n > 0 && *lat <= 0) *lat = l->secs[op][0];
    if (n > 0 && *bw <= 0) {
        double best = 0;
        for (int i = 0; i < n; i++) {
            double b = l->bytes[op][i] / l->secs[op][i] * loom_predict_bus_factor(op, l->ranks);
            if (b > best) best = b;
        }
        *bw = best;
    }
}

double loom_predict_comm_time(const loom_predict_link *l, loom_predict_op op, double bytes, int ranks) {
    if (bytes <= 0 || op >= LOOM_OP_COUNT) return 0;
    if (ranks < 2 && op != LOOM_OP_SENDRECV) return 0;
    if (l->n[op] > 0 && (l->ranks == ranks || op == LOOM_OP_SENDRECV))
        return table_time(l->bytes[op], l->secs[op], l->n[op], bytes);
    double lat, bw;
    link_figures(l, op, &lat, &bw);
    if (bw <= 0) return lat;
    return lat + bytes * loom_predict_bus_factor(op, ranks < 2 ? 2 : ranks) / bw;
}

/* ------------------------------------------------------------ devices */

double loom_predict_flops_at(const loom_predict_device *d, double rows) {
    int n = d->n_curve;
    if (n <= 0) return d->flops;
    if (n == 1 || rows <= d->curve_rows[0]) return d->curve_flops[0];
    if (rows >= d->curve_rows[n - 1]) return d->curve_flops[n - 1];
    int i = 1;
    while (d->curve_rows[i] < rows) i++;
    double x0 = log(d->curve_rows[i - 1]), x1 = log(d->curve_rows[i]), f = (log(rows) - x0) / (x1 - x0);
    return d->curve_flops[i - 1] + f * (d->curve_flops[i] - d->curve_flops[i - 1]);
}

/* ------------------------------------------------------------ work of a rank */

static double elem_bytes(loom_type t) {
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    return tr && tr->block_size ? (double)tr->type_size / tr->block_size : 4;
}

void loom_predict_rank_work(const loom_plan_model *m, const loom_shard *s, loom_type kv_type, double rows,
                            double logit_rows, double context, loom_predict_work *out) {
    memset(out, 0, sizeof *out);
    const loom_model_config *c = &m->cfg;
    double hd = c->head_dim, dim = c->dim;
    double nq = (s->q_end - s->q_begin) * hd, nkv = (s->kv_end - s->kv_begin) * hd;
    double nffn = (double)(s->ffn_end - s->ffn_begin), kvb = elem_bytes(kv_type);
    /* a mixture of experts: a step of `rows` rows reads the experts some row
     * takes — n (1 - (1 - k/n)^rows) of n where the router spreads the rows
     * evenly — and computes k experts a row, and the router */
    double touched = 1, used = 1, shared = 0;
    if (c->ffn_shared) { /* a shared expert every row takes */
        int64_t s0, s1;
        loom_shard_shared(c, s, &s0, &s1);
        shared = (double)(s1 - s0);
    }
    if (c->n_experts) { /* of the experts held here, the share the rows take (spread evenly) */
        int e0, e1;
        loom_shard_experts(c, s, &e0, &e1);
        const double n = c->n_experts, k = c->n_experts_used, held = (double)(e1 - e0) / n;
        touched = held * n * (1 - pow(1 - k / n, rows > 1 ? rows : 1));
        used = held * k;
    }
    int64_t d0 = 0, d1 = 0;
    if (c->ffn_dense) loom_shard_dense(c, s, &d0, &d1);
    const double gate = c->shared_gated ? 1 : 0; /* qwen2moe's shared expert's gate */
    for (int l = s->layer_begin; l < s->layer_end; l++) {
        const loom_plan_layer *L = &m->layers[l];
        if (c->mla) { /* model.h: attn_q_a (whole), attn_q(_b), attn_kv_a_mqa (whole), attn_k_b, attn_v_b, attn_output */
            const double nh = (double)(s->q_end - s->q_begin), K = c->mla_k_dim, V = c->mla_v_dim, R = c->kv_lora;
            const double Q = c->q_lora, qin = Q > 0 ? Q : dim;
            const double p = Q * dim * elem_bytes(L->q_a) + nh * K * qin * elem_bytes(L->q) + hd * dim * elem_bytes(L->k) +
                             nh * R * (K - c->rope_dim) * elem_bytes(L->v) + nh * V * R * elem_bytes(L->v_b) +
                             nh * V * dim * elem_bytes(L->o);
            out->attn_bytes += p + 4 * (dim + R + Q);
            out->attn_flops += rows * 2 * (Q * dim + nh * K * qin + hd * dim + nh * R * (K - c->rope_dim) + nh * V * R +
                                           nh * V * dim);
        } else
            out->attn_bytes += dim * (nq * elem_bytes(L->q) + nkv * (elem_bytes(L->k) + elem_bytes(L->v)) +
                                      nq * elem_bytes(L->o)) + 4 * dim;
        if (c->qkv_bias) out->attn_bytes += 4 * (nq + 2 * nkv);
        if (loom_layer_dense(c, l)) { /* a mixture's dense layer (gated, or plain: nomic-bert-moe) */
            const double nd = (double)(d1 - d0);
            out->mlp_bytes += nd * dim * ((c->ffn_plain ? 0 : elem_bytes(L->sh_gate)) + elem_bytes(L->sh_up) +
                                          elem_bytes(L->sh_down)) + 4 * dim;
            out->mlp_flops += rows * 2 * (c->ffn_plain ? 2 : 3) * dim * nd;
        } else {
            /* a plain MLP (gpt2, bert) has no gate */
            out->mlp_bytes += touched * dim * nffn *
                                  ((c->ffn_plain ? 0 : elem_bytes(L->gate)) + elem_bytes(L->up) + elem_bytes(L->down)) +
                              4 * dim + (double)c->n_experts * dim * elem_bytes(L->router) +
                              shared * dim * (elem_bytes(L->sh_gate) + elem_bytes(L->sh_up) + elem_bytes(L->sh_down)) +
                              gate * 4 * dim;
            out->mlp_flops += rows * (2 * (c->ffn_plain ? 2 : 3) * dim * nffn * used + 2 * dim * c->n_experts +
                                      2 * 3 * dim * shared + gate * 2 * dim);
        }
        out->layers++;
    }
    double L = out->layers;
    out->attn_bytes += L * rows * context * (c->mla ? 1 : 2) * nkv * kvb; /* K and V read per row (MLA: the latent) */
    if (c->mla) out->attn_flops += L * rows * 4 * (double)(s->q_end - s->q_begin) * hd * context;
    else out->attn_flops = L * rows * (2 * dim * (2 * nq + 2 * nkv) + 4 * nq * context);
    if (s->head && logit_rows > 0 && !c->encoder) { /* an encoder has no lm head */
        double nv = (double)(s->vocab_end - s->vocab_begin);
        out->head_bytes = nv * dim * elem_bytes(m->head) + 4 * dim;
        out->head_flops = logit_rows * 2 * nv * dim;
    }
}

size_t loom_predict_step_bytes(int seqs, int tokens, int pos) {
    if (seqs < 1) return 0;
    Loom__SeqStep *q = calloc((size_t)seqs, sizeof *q);
    Loom__SeqStep **qp = calloc((size_t)seqs, sizeof *qp);
    int32_t *tok = calloc(tokens > 0 ? (size_t)tokens : 1, sizeof *tok);
    size_t n = 0;
    if (q && qp && tok) {
        for (int i = 0; i < tokens; i++) tok[i] = 20000 + i; /* ids of a large vocabulary: 3-byte varints */
        for (int i = 0; i < seqs; i++) {
            loom__seq_step__init(&q[i]);
            q[i].id = (uint64_t)i + 100, q[i].slot = (uint32_t)i, q[i].first_pos = (uint32_t)pos;
            q[i].n_tokens = (size_t)tokens, q[i].tokens = tok, q[i].want_logits = true;
            qp[i] = &q[i];
        }
        Loom__Step st = LOOM__STEP__INIT;
        st.protocol = 1, st.micro_batch = 1000, st.n_seqs = (size_t)seqs, st.seqs = qp;
        n = loom__step__get_packed_size(&st);
    }
    free(q);
    free(qp);
    free(tok);
    return n;
}

/* ------------------------------------------------------------ one stage, one step */

typedef struct {
    const loom_plan_model *m;
    const loom_plan *p;
    const loom_predict_cluster *c;
    double *own, *tpw; /* (world) scratch: a rank's own compute and TP time of the last stage_cost */
    double mem_bw;     /* bytes/s the roofline uses (calibrated_mem_bw) */
} pctx;

static int node_of(const pctx *x, int world_rank) {
    return x->c->devices_per_node > 0 ? world_rank / x->c->devices_per_node : 0;
}

static double roofline(double mem_bw, double bytes, double flops, double F) {
    double tm = mem_bw > 0 ? bytes / mem_bw : 0, tc = F > 0 ? flops / F : 0;
    return tm > tc ? tm : tc;
}

/* Seconds stage s takes for one step of `rows` rows (TP collectives and
 * waits for the group's slowest rank included); fills x->own / x->tpw for
 * the stage's ranks. */
static double stage_cost(pctx *x, int s, double rows, double logit_rows, double context, double step_bytes) {
    const loom_plan *p = x->p;
    const loom_predict_device *d = &x->c->dev;
    int tp = p->tp;
    double F = loom_predict_flops_at(d, rows), attn_max = 0, mlp_max = 0, head_max = 0;
    bool one_node = true;
    for (int t = 0; t < tp; t++) {
        int r = p->grid[s * tp + t];
        const loom_rank_plan *rp = &p->ranks[r];
        one_node &= node_of(x, r) == node_of(x, p->grid[s * tp]);
        loom_predict_work w;
        loom_predict_rank_work(x->m, &rp->shard, p->req.engine.kv_type, rows, logit_rows, context, &w);
        double over = w.layers * d->layer_overhead_s / 2;
        double a = roofline(x->mem_bw, w.attn_bytes, w.attn_flops, F) + over;
        double b = roofline(x->mem_bw, w.mlp_bytes, w.mlp_flops, F) + over;
        double h = roofline(x->mem_bw, w.head_bytes, w.head_flops, F);
        x->own[r] = a + b + h + d->step_overhead_s;
        attn_max = fmax(attn_max, a), mlp_max = fmax(mlp_max, b), head_max = fmax(head_max, h);
    }
    double comm = 0;
    if (tp > 1) {
        const loom_predict_link *l = one_node ? &x->c->intra : &x->c->inter;
        const loom_model_config *cfg = &x->m->cfg;
        double hidden = rows * cfg->dim * 4.0;
        int layers = p->stages[s].layer_end - p->stages[s].layer_begin;
        comm += 2.0 * layers * loom_predict_comm_time(l, LOOM_OP_ALL_REDUCE, hidden, tp);
        comm += loom_predict_comm_time(l, LOOM_OP_BROADCAST, 8, tp) +
                loom_predict_comm_time(l, LOOM_OP_BROADCAST, step_bytes, tp); /* the Step, size first */
        if (s == 0 && p->ranks[p->grid[0]].shard.vocab_end - p->ranks[p->grid[0]].shard.vocab_begin < cfg->vocab)
            comm += loom_predict_comm_time(l, LOOM_OP_ALL_REDUCE, hidden, tp); /* split embedding */
        if (s > 0) comm += loom_predict_comm_time(l, LOOM_OP_ALL_GATHER, hidden, tp);
        if (s == p->pp - 1 && logit_rows > 0) /* each rank's best (value, id) per row to the leader */
            comm += loom_predict_comm_time(l, LOOM_OP_SENDRECV, logit_rows * 8, 2);
    }
    double total = attn_max + mlp_max + head_max + d->step_overhead_s + comm;
    for (int t = 0; t < tp; t++) {
        int r = p->grid[s * tp + t];
        x->tpw[r] = total - x->own[r];
    }
    return total;
}

/* Seconds from stage s-1's send to stage s holding the hidden state. */
static double hop_cost(const pctx *x, int s, double rows, double step_bytes) {
    const loom_plan *p = x->p;
    double worst = 0;
    for (int t = 0; t < p->tp; t++) {
        int a = p->grid[(s - 1) * p->tp + t], b = p->grid[s * p->tp + t];
        const loom_predict_link *l = node_of(x, a) == node_of(x, b) ? &x->c->intra : &x->c->inter;
        int64_t dim = x->m->cfg.dim;
        double cols = (double)(dim * (t + 1) / p->tp - dim * t / p->tp); /* transfer.c's column slice */
        double tt = loom_predict_comm_time(l, LOOM_OP_SENDRECV, 8, 2) +
                    loom_predict_comm_time(l, LOOM_OP_SENDRECV, step_bytes, 2) +
                    loom_predict_comm_time(l, LOOM_OP_SENDRECV, rows * cols * 4, 2);
        worst = fmax(worst, tt);
    }
    return worst;
}

/* The StepResult from the last stage's leader back to the coordinator. */
static double return_cost(const pctx *x, double logit_rows) {
    const loom_plan *p = x->p;
    if (p->pp == 1) return 0;
    int leader = p->grid[(p->pp - 1) * p->tp];
    const loom_predict_link *l = node_of(x, leader) == node_of(x, 0) ? &x->c->intra : &x->c->inter;
    return loom_predict_comm_time(l, LOOM_OP_SENDRECV, 8, 2) +
           loom_predict_comm_time(l, LOOM_OP_SENDRECV, 8 + 6 * logit_rows, 2);
}

/* ------------------------------------------------------------ the pipeline */

/* One kind of launch: the time of every stage and of every hop. */
typedef struct {
    double *T;   /* (pp) */
    double *hop; /* (pp) hop[s] into stage s; hop[0] unused */
    double ret;
} launch_cost;

/* Plays the scheduler: launches go to stage 0 (the coordinator) while fewer
 * than pp are in flight and one is ready, else the coordinator waits for
 * the oldest result. For decode (`cyclic`), micro-batch j may go again once
 * its result is back; for a prompt, chunk k+1 may follow chunk k at once.
 * Returns the time the last of n_launch launches comes back; *period is the
 * steady-state time of one round of n_group launches (cyclic only). */
static double simulate(int pp, const launch_cost *lc, int n_kinds, int n_group, int n_launch, bool cyclic,
                       double *period) {
    double *free_at = calloc((size_t)pp, sizeof *free_at), *ret = calloc((size_t)n_launch, sizeof *ret);
    double *collect = calloc((size_t)n_launch, sizeof *collect);
    int *fifo = calloc((size_t)n_launch, sizeof *fifo);
    bool *busy = calloc((size_t)(n_group > 0 ? n_group : 1), sizeof *busy);
    double t = 0, last = 0;
    if (!free_at || !ret || !collect || !fifo || !busy) goto out;
    int launched = 0, head = 0, tail = 0, collected = 0;
    while (collected < n_launch) {
        int j = launched % n_group;
        bool ready = launched < n_launch && !(cyclic && busy[j]);
        if (tail - head < pp && ready) {
            const launch_cost *c = &lc[launched < n_kinds ? launched : n_kinds - 1];
            t += c->T[0];
            double arrive = t;
            for (int s = 1; s < pp; s++) {
                double start = fmax(arrive + c->hop[s], free_at[s]);
                free_at[s] = start + c->T[s];
                arrive = free_at[s];
            }
            ret[launched] = pp > 1 ? arrive + c->ret : t;
            busy[j] = true;
            fifo[tail++] = launched++;
            if (pp > 1) continue;
        }
        int k = fifo[head++]; /* the oldest in flight comes back */
        t = fmax(t, ret[k]);
        busy[k % n_group] = false;
        collect[collected++] = t;
    }
    last = t;
    if (period) {
        int rounds = n_launch / n_group, skip = rounds / 2;
        *period = rounds - skip > 0 && skip > 0
                      ? (collect[rounds * n_group - 1] - collect[skip * n_group - 1]) / (rounds - skip)
                      : collect[n_launch - 1] / (rounds > 0 ? rounds : 1);
    }
out:
    free(free_at);
    free(ret);
    free(collect);
    free(fifo);
    free(busy);
    return last;
}

int loom_predict_micro_batch_rows(int sequences, int stages) {
    if (sequences < 1) return 0;
    return (sequences + stages - 1) / stages;
}

static loom_status alloc_costs(launch_cost *lc, int n, int pp) {
    for (int i = 0; i < n; i++) {
        lc[i].T = calloc((size_t)pp, sizeof(double));
        lc[i].hop = calloc((size_t)pp, sizeof(double));
        if (!lc[i].T || !lc[i].hop) return loom_error(LOOM_ERR_NOMEM, "out of memory for the prediction");
    }
    return NULL;
}

static void free_costs(launch_cost *lc, int n) {
    for (int i = 0; lc && i < n; i++) free(lc[i].T), free(lc[i].hop);
    free(lc);
}

/* Costs of one launch of `rows` rows; adds each rank's own / TP time × `weight` into acc. */
static void cost_launch(pctx *x, launch_cost *c, double rows, double logit_rows, double context, double step_bytes,
                        double weight, double *acc_own, double *acc_tp) {
    const loom_plan *p = x->p;
    for (int s = 0; s < p->pp; s++) {
        c->T[s] = stage_cost(x, s, rows, logit_rows, context, step_bytes);
        c->hop[s] = s > 0 ? hop_cost(x, s, rows, step_bytes) : 0;
        for (int t = 0; t < p->tp; t++) {
            int r = p->grid[s * p->tp + t];
            acc_own[r] += weight * x->own[r], acc_tp[r] += weight * x->tpw[r];
        }
    }
    c->ret = return_cost(x, logit_rows);
}

#define DECODE_ROUNDS 16

/* The memory bandwidth the roofline uses. A calibration's decode steps ran
 * every part of the model (attention, MLP, lm head) at the measured rate
 * F(rows), so memory was at least bytes/flops x F for each part; a probe
 * that reads slower than the kernels did (a buffer only a few times the
 * last-level cache: 20 GB/s where decode's Q8_0 lm head read 30 on AMD EPYC
 * Zen 4) would charge the byte-heavy lm head more than the run took, and the
 * one-rank shape would not come back from its own calibration. Raised to
 * that floor when the calibration ran this model's shape. */
static bool calibrated_on(const loom_plan_model *m, const loom_predict_device *d) {
    const loom_model_config *c = &m->cfg;
    return d->n_cal > 0 && d->cal_layers == c->n_layers && d->cal_dim == c->dim && d->cal_vocab == c->vocab;
}

static double calibrated_mem_bw(const loom_plan_model *m, const loom_predict_device *d, loom_type kv_type) {
    const loom_model_config *c = &m->cfg;
    double bw = d->mem_bw;
    if (!calibrated_on(m, d)) return bw;
    const loom_shard all = loom_shard_full(c);
    for (int i = 0; i < d->n_cal; i++) {
        loom_predict_work w;
        loom_predict_rank_work(m, &all, kv_type, d->cal_rows[i], d->cal_rows[i], d->cal_context[i], &w);
        const double F = loom_predict_flops_at(d, d->cal_rows[i]);
        const double bytes[3] = {w.attn_bytes, w.mlp_bytes, w.head_bytes}, flops[3] = {w.attn_flops, w.mlp_flops, w.head_flops};
        for (int p = 0; p < 3; p++)
            if (flops[p] > 0 && bytes[p] * F / flops[p] > bw) bw = bytes[p] * F / flops[p];
    }
    return bw;
}

/* The prefill points of a calibration that ran this model's shape. A
 * prefill run read the lm head once for its one row of logits, and its
 * point's rate F counts that time as FLOPs, while stage_cost charges the
 * head apart (its roofline at mem_bw): so the rest of the model gets the
 * rate that leaves the run's time to it, F' = (FLOPs - head FLOPs) / (time
 * - head's charge), and the one-rank shape comes back from its own
 * calibration (SmolLM2, 32-token prompt: 4 % slow on a Xeon reading 15
 * GB/s, where the head's read is a larger part of the run). */
static void calibrated_prefill(const loom_plan_model *m, loom_predict_device *d, double mem_bw) {
    if (!calibrated_on(m, d) || m->cfg.encoder) return;
    const loom_shard all = loom_shard_full(&m->cfg);
    loom_predict_work w;
    loom_predict_rank_work(m, &all, LOOM_TYPE_F16, 1, 1, 0, &w);
    for (int k = 0; k < d->n_pre; k++)
        for (int i = 0; i < d->n_curve; i++) {
            if (d->curve_rows[i] != d->pre_rows[k] || !(d->curve_flops[i] > 0)) continue;
            const double t = d->pre_flops[k] / d->curve_flops[i];
            const double head = roofline(mem_bw, w.head_bytes, w.head_flops, d->curve_flops[i]);
            if (head < 0.5 * t && d->pre_flops[k] > w.head_flops)
                d->curve_flops[i] = (d->pre_flops[k] - w.head_flops) / (t - head);
        }
}

loom_status loom_predict(const loom_plan_model *m, const loom_plan *p, const loom_predict_cluster *cl,
                         const loom_predict_workload *w, loom_prediction *out) {
    memset(out, 0, sizeof *out);
    loom_predict_cluster here = *cl; /* its device's prefill points as this model's calibration reads them */
    const loom_predict_cluster *c = &here;
    int world = p->world;
    if (c->nodes < 1 || c->devices_per_node < 1)
        return loom_error(LOOM_ERR_INVALID, "cluster \"%s\": nodes and devices_per_node must be >= 1", c->name);
    if ((int64_t)c->nodes * c->devices_per_node < world)
        return loom_error(LOOM_ERR_INVALID, "tp %d x pp %d needs %d devices; cluster \"%s\" has %d nodes x %d", p->tp,
                          p->pp, world, c->name, c->nodes, c->devices_per_node);
    if (w->sequences < 1 || w->prompt_tokens < 1 || w->decode_context < 0)
        return loom_error(LOOM_ERR_INVALID, "the workload needs >= 1 sequence and a prompt of >= 1 token");
    if (c->dev.mem_bw <= 0 && c->dev.n_curve == 0 && c->dev.flops <= 0)
        return loom_error(LOOM_ERR_INVALID, "cluster \"%s\": the device has neither memory bandwidth nor FLOP/s",
                          c->name);
    int pp = p->pp, S = w->sequences, N = w->prompt_tokens, np = w->prompts > 0 ? w->prompts : 1;
    int64_t rows_all = (int64_t)N * np;
    if (rows_all > (1 << 26)) return loom_error(LOOM_ERR_INVALID, "%d prompts of %d tokens are too many rows", np, N);
    out->ranks = calloc((size_t)world, sizeof *out->ranks);
    double *own = calloc((size_t)world, sizeof *own), *tpw = calloc((size_t)world, sizeof *tpw);
    double *d_own = calloc((size_t)world, sizeof *d_own), *d_tp = calloc((size_t)world, sizeof *d_tp);
    double *p_own = calloc((size_t)world, sizeof *p_own), *p_tp = calloc((size_t)world, sizeof *p_tp);
    int B = p->req.engine.batch_rows < rows_all ? p->req.engine.batch_rows : (int)rows_all;
    int chunks = (int)((rows_all + B - 1) / B);
    int b = loom_predict_micro_batch_rows(S, pp), n_mb = (S + b - 1) / b;
    launch_cost *dec = calloc(1, sizeof *dec), *pre = calloc((size_t)chunks, sizeof *pre);
    loom_status st = NULL;
    if (!out->ranks || !own || !tpw || !d_own || !d_tp || !p_own || !p_tp || !dec || !pre)
        st = loom_error(LOOM_ERR_NOMEM, "out of memory for the prediction");
    if (!st) st = alloc_costs(dec, 1, pp);
    if (!st) st = alloc_costs(pre, chunks, pp);
    if (!st) {
        out->mem_bw = calibrated_mem_bw(m, &c->dev, p->req.engine.kv_type);
        calibrated_prefill(m, &here.dev, out->mem_bw);
        pctx x = {m, p, c, own, tpw, out->mem_bw};
        out->tp = p->tp, out->pp = pp, out->world = world, out->n_ranks = world;
        out->nodes_used = (world + c->devices_per_node - 1) / c->devices_per_node;
        out->micro_batches = n_mb, out->micro_batch_rows = b, out->prompt_chunks = chunks, out->chunk_rows = B;
        /* decode: every micro-batch alike */
        cost_launch(&x, dec, b, b, w->decode_context, (double)loom_predict_step_bytes(b, 1, w->decode_context),
                    n_mb, d_own, d_tp);
        out->stage_max_s = 0, out->round_trip_s = dec->ret;
        for (int s = 0; s < pp; s++) out->round_trip_s += dec->T[s] + dec->hop[s], out->stage_max_s = fmax(out->stage_max_s, dec->T[s]);
        simulate(pp, dec, 1, n_mb, n_mb * DECODE_ROUNDS, true, &out->round_s);
        out->decode_tps = out->round_s > 0 ? S / out->round_s : 0;
        /* prefill: the prompts' rows in chunks of B rows, logits after the last */
        for (int k = 0; k < chunks; k++) {
            int rows = k == chunks - 1 ? (int)(rows_all - (int64_t)k * B) : B;
            double ctx = np > 1 ? N / 2.0 : k * B + rows / 2.0; /* a row attends within its own prompt */
            cost_launch(&x, &pre[k], rows, k == chunks - 1 ? np : 0, ctx,
                        (double)loom_predict_step_bytes(np, rows / np > 0 ? rows / np : 1, 0), 1, p_own, p_tp);
        }
        out->ttft_s = simulate(pp, pre, chunks, chunks, chunks, false, NULL);
        out->prefill_tps = out->ttft_s > 0 ? (double)rows_all / out->ttft_s : 0;
        out->fits = true;
        double bytes = 0;
        for (int r = 0; r < world; r++) {
            const loom_rank_plan *rp = &p->ranks[r];
            loom_predict_rank *o = &out->ranks[r];
            o->world_rank = r, o->stage = rp->stage, o->tp_rank = rp->tp_rank, o->node = node_of(&x, r);
            o->weight_bytes = rp->weight_bytes, o->kv_bytes = rp->kv_bytes, o->workspace_bytes = rp->workspace_bytes;
            o->fits = c->dev.mem_bytes <= 0 || (double)(rp->weight_bytes + rp->kv_bytes + rp->workspace_bytes) <= c->dev.mem_bytes;
            out->fits &= o->fits;
            o->dec_compute_s = d_own[r], o->dec_tp_s = d_tp[r];
            o->dec_pp_s = fmax(0, out->round_s - d_own[r] - d_tp[r]);
            o->dec_idle = out->round_s > 0 ? fmin(1, fmax(0, 1 - d_own[r] / out->round_s)) : 0;
            o->pre_compute_s = p_own[r], o->pre_tp_s = p_tp[r];
            o->pre_pp_s = fmax(0, out->ttft_s - p_own[r] - p_tp[r]);
            loom_predict_work wk;
            loom_predict_rank_work(m, &rp->shard, p->req.engine.kv_type, b, b, w->decode_context, &wk);
            bytes += (wk.attn_bytes + wk.mlp_bytes + wk.head_bytes) * n_mb;
        }
        out->decode_bytes_per_token = bytes / S;
    }
    free(own), free(tpw), free(d_own), free(d_tp), free(p_own), free(p_tp);
    free_costs(dec, dec ? 1 : 0);
    free_costs(pre, pre ? chunks : 0);
    if (st) loom_prediction_free(out);
    return st;
}

void loom_prediction_free(loom_prediction *r) {
    if (!r) return;
    free(r->ranks);
    memset(r, 0, sizeof *r);
}
