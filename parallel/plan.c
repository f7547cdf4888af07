/*
 * parallel/plan.c — making a plan: request checks, stage partition,
 * tensor-parallel splits and rank placement. The model's tensor types and
 * byte counts are in plan_model.c, the ShardPlan message in plan_wire.c,
 * printing in plan_print.c.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/engine.h"
#include "runtime/kv_cache.h"
#include "parallel/plan_internal.h"

/* -------------------------------------------------------------- request */

loom_plan_request loom_plan_request_defaults(int tp, int pp) {
    loom_plan_request r = {0};
    r.tp = tp;
    r.pp = pp;
    r.engine = loom_engine_defaults();
    return r;
}

loom_status loom_plan_check_request(const loom_plan_model *m, const loom_plan_request *r) {
    if (r->engine.ctx_size < 1 || r->engine.ctx_size > (1 << 24))
        return loom_error(LOOM_ERR_INVALID, "context size %d is out of range (1..%d)", r->engine.ctx_size, 1 << 24);
    if (r->engine.max_seqs < 1 || r->engine.max_seqs > (1 << 16))
        return loom_error(LOOM_ERR_INVALID, "sequences %d is out of range (1..%d)", r->engine.max_seqs, 1 << 16);
    if (r->engine.block_tokens < 1 || r->engine.block_tokens > (1 << 16))
        return loom_error(LOOM_ERR_INVALID, "KV block size %d is out of range (1..%d)", r->engine.block_tokens, 1 << 16);
    if (r->engine.batch_rows < 1 || r->engine.batch_rows > (1 << 16))
        return loom_error(LOOM_ERR_INVALID, "batch rows %d is out of range (1..%d)", r->engine.batch_rows, 1 << 16);
    const char *kv_why = loom_kv_type_refusal(r->engine.kv_type, m->cfg.head_dim);
    if (*kv_why)
        return loom_error(LOOM_ERR_INVALID, "KV cache type %s with heads of %d: %s", loom_type_name(r->engine.kv_type),
                          m->cfg.head_dim, kv_why);
    if (r->max_memory < 0)
        return loom_error(LOOM_ERR_INVALID, "memory limit %" PRId64 " is negative (0 means no limit)", r->max_memory);
    if (r->engine.kv_blocks < 0) return loom_error(LOOM_ERR_INVALID, "KV blocks %d must be >= 0", r->engine.kv_blocks);
    int64_t per_seq = (r->engine.ctx_size + r->engine.block_tokens - 1) / r->engine.block_tokens;
    int64_t blocks = r->engine.kv_blocks > 0 ? r->engine.kv_blocks : (int64_t)r->engine.max_seqs * per_seq;
    if (r->engine.kv_blocks > 0 && r->engine.kv_blocks < per_seq)
        return loom_error(LOOM_ERR_INVALID, "%d KV blocks of %d positions cannot hold one sequence of %d positions (%" PRId64
                          " blocks)", r->engine.kv_blocks, r->engine.block_tokens, r->engine.ctx_size, per_seq);
    if (blocks > INT_MAX)
        return loom_error(LOOM_ERR_INVALID, "%d sequences of %d positions need %" PRId64 " KV blocks of %d, over %d",
                          r->engine.max_seqs, r->engine.ctx_size, blocks, r->engine.block_tokens, INT_MAX);
    /* the whole model's cache must count in int64 */
    double kv = 2.0 * m->cfg.n_layers * (double)blocks * r->engine.block_tokens * m->cfg.n_kv_heads * m->cfg.head_dim * 4;
    if (kv > 4e18)
        return loom_error(LOOM_ERR_INVALID, "a KV cache of %d sequences × %d positions is too large to count",
                          r->engine.max_seqs, r->engine.ctx_size);
    return NULL;
}

/* Whether a mixture's MLPs split over tp by whole experts rather than by
 * columns: where its columns' blocks (fgroups of them) do not split evenly
 * over tp and its experts do (expert parallelism inside the TP group; the
 * columns split evenly keep every rank's share of every token's experts
 * equal, which whole experts do only on average). */
/* LOOM_MOE_SPLIT in the planner's environment: "experts" splits by whole
 * experts wherever they divide by tp, "columns" never; unset or "auto" as
 * above. -1: another value (check_grid refuses it). */
static int moe_split_env(void) {
    const char *v = getenv("LOOM_MOE_SPLIT");
    if (!v || !*v || !strcmp(v, "auto")) return 0;
    return !strcmp(v, "experts") ? 1 : !strcmp(v, "columns") ? 2 : -1;
}

static bool split_by_experts(const loom_model_config *c, int64_t fgroups, int tp) {
    const int mode = moe_split_env();
    if (!c->n_experts || tp < 2 || c->n_experts % tp || mode == 2) return false;
    return mode == 1 || fgroups % tp != 0;
}

/* Whether the model's block granularities and widths allow tp (any pp). */
static bool tp_fits(const loom_plan_model *m, int64_t tp) {
    const loom_model_config *c = &m->cfg;
    if (tp < 1 || tp > c->vocab) return false;
    for (int l = 0; l < c->n_layers; l++) {
        const int64_t gf = c->ffn / block_of(m->layers[l].down);
        if (c->n_heads / head_group_of(m->layers[l].o, loom_o_head_dim(c)) < tp) return false;
        if (gf < tp && !split_by_experts(c, gf, (int)tp)) return false;
    }
    return true;
}

/* Largest tp the model allows (any pp; some below it may not fit where
 * experts split: tp_fits). */
static int model_max_tp(const loom_plan_model *m) {
    int64_t tp = m->cfg.n_heads < m->cfg.vocab ? m->cfg.n_heads : m->cfg.vocab;
    while (tp > 1 && !tp_fits(m, tp)) tp--;
    return (int)tp;
}

/* Explains why tp cannot work: the first layer that limits it. */
static loom_status tp_error(const loom_plan_model *m, int tp, int pp) {
    const loom_model_config *c = &m->cfg;
    int max_tp = model_max_tp(m);
    char tail[160];
    snprintf(tail, sizeof tail, "the largest tp that works is %d (e.g. --tp %d --pp %d, world %lld)", max_tp, max_tp,
             pp, (long long)max_tp * pp);
    if (tp > c->n_heads)
        return loom_error(LOOM_ERR_PLAN, "tp %d exceeds the model's %d query heads (each rank needs at least one); %s",
                          tp, c->n_heads, tail);
    for (int l = 0; l < c->n_layers; l++) {
        const loom_plan_layer *L = &m->layers[l];
        int g = head_group_of(L->o, loom_o_head_dim(c));
        if (c->n_heads / g < tp)
            return loom_error(LOOM_ERR_PLAN,
                              "tp %d: blk.%d.attn_output.weight is %s (blocks of %u inputs), so query heads of %d "
                              "split only in groups of %d, and %d heads make %d groups; %s",
                              tp, l, loom_type_name(L->o), block_of(L->o), loom_o_head_dim(c), g, c->n_heads, c->n_heads / g,
                              tail);
        int64_t f = block_of(L->down);
        if (c->ffn / f < tp && !split_by_experts(c, c->ffn / f, tp))
            return loom_error(LOOM_ERR_PLAN,
                              "tp %d: blk.%d.%s.weight is %s, so the %d MLP columns%s split only in groups of "
                              "%lld (%lld groups)%s; %s",
                              tp, l, c->n_experts ? "ffn_down_exps" : "ffn_down", loom_type_name(L->down), c->ffn,
                              c->n_experts ? " of each expert" : "", (long long)f, (long long)(c->ffn / f),
                              c->n_experts ? ", and its experts do not divide by tp either" : "", tail);
    }
    return loom_error(LOOM_ERR_PLAN, "tp %d exceeds the vocabulary of %d rows; %s", tp, c->vocab, tail);
}

/* Appends the (tp, pp) pairs with tp × pp = world that the model allows. */
static void list_pairs(const loom_plan_model *m, int64_t world, char *buf, size_t n) {
    int max_tp = model_max_tp(m);
    size_t len = 0;
    int found = 0;
    buf[0] = 0;
    for (int64_t tp = 1; tp <= world && len + 40 < n; tp++) {
        if (world % tp) continue;
        int64_t pp = world / tp;
        if (!tp_fits(m, tp) || pp > m->cfg.n_layers) continue;
        len += (size_t)snprintf(buf + len, n - len, "%s--tp %lld --pp %lld", found ? ", " : "", (long long)tp,
                                (long long)pp);
        found++;
    }
    if (!found)
        snprintf(buf, n, "none: this model allows tp up to %d and pp up to %d, so %lld ranks cannot be used", max_tp,
                 m->cfg.n_layers, (long long)world);
}

static loom_status check_grid(const loom_plan_model *m, const loom_plan_request *r, int *world_out) {
    const loom_model_config *c = &m->cfg;
    if (r->tp < 1 || r->pp < 1)
        return loom_error(LOOM_ERR_INVALID, "tp %d and pp %d must both be at least 1", r->tp, r->pp);
    int64_t world = (int64_t)r->tp * r->pp;
    char pairs[1024];
    if (r->world && r->world != world) {
        list_pairs(m, r->world < 0 ? 0 : r->world, pairs, sizeof pairs);
        return loom_error(LOOM_ERR_PLAN, "world of %d ranks != tp %d × pp %d = %lld; for %d ranks use: %s", r->world,
                          r->tp, r->pp, (long long)world, r->world, pairs);
    }
    if (world > LOOM_PLAN_MAX_WORLD)
        return loom_error(LOOM_ERR_PLAN, "tp %d × pp %d = %lld ranks, more than loom plans for (%d)", r->tp, r->pp,
                          (long long)world, LOOM_PLAN_MAX_WORLD);
    if (r->pp > c->n_layers)
        return loom_error(LOOM_ERR_PLAN,
                          "pp %d exceeds the model's %d layers (each stage needs at least one); the largest pp is %d",
                          r->pp, c->n_layers, c->n_layers);
    if (moe_split_env() < 0)
        return loom_error(LOOM_ERR_INVALID, "LOOM_MOE_SPLIT=%s: expected auto, experts or columns", getenv("LOOM_MOE_SPLIT"));
    if (!tp_fits(m, r->tp)) return tp_error(m, r->tp, r->pp);
    *world_out = (int)world;
    return NULL;
}

/* ------------------------------------------------------ stage partition */

/* R (pp rows of L+1): R[s][i] = layers [0, i) split into stages 0..s, each
 * non-empty and costing at most C. Returns R[pp-1][L]. */
static bool feasible(const int64_t *P, int L, int pp, int64_t e, int64_t h, int64_t C, uint8_t *R) {
    size_t W = (size_t)L + 1;
    for (int i = 0; i <= L; i++) R[i] = i >= 1 && P[i] + e + (pp == 1 ? h : 0) <= C;
    for (int s = 1; s < pp; s++) {
        const uint8_t *prev = R + (size_t)(s - 1) * W;
        uint8_t *cur = R + (size_t)s * W;
        int64_t extra = s == pp - 1 ? h : 0;
        int lo = 0, window = 0; /* true prev[j] for j in [lo, i) */
        cur[0] = 0;
        for (int i = 1; i <= L; i++) {
            window += prev[i - 1];
            while (lo < i && P[i] - P[lo] + extra > C) window -= prev[lo++];
            cur[i] = window > 0;
        }
    }
    return R[(size_t)(pp - 1) * W + (size_t)L];
}

/* Splits the layers into pp contiguous non-empty stages minimising the
 * largest stage cost (bytes, or weighted by b), then the sum of squared
 * costs. starts: (pp + 1); costs: each stage's bytes. */
static loom_status partition(const loom_plan_model *m, const loom_plan_balance *b, int pp, int *starts,
                             int64_t *costs) {
    int L = m->cfg.n_layers;
    int64_t e = loom_plan_embed_row_bytes(m), h = loom_plan_head_time(m, b);
    size_t W = (size_t)L + 1;
    int64_t *P = malloc(W * sizeof *P);
    uint8_t *R = malloc((size_t)pp * W);
    if (!P || !R) {
        free(P);
        free(R);
        return loom_error(LOOM_ERR_NOMEM, "out of memory partitioning %d layers into %d stages", L, pp);
    }
    P[0] = 0;
    for (int l = 0; l < L; l++) P[l + 1] = P[l] + loom_plan_layer_time(m, b, l);
    int64_t lo = 0, hi = P[L] + e + h;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (feasible(P, L, pp, e, h, mid, R))
            hi = mid;
        else
            lo = mid + 1;
    }
    const int64_t C = lo;
    feasible(P, L, pp, e, h, C, R);
/* loom_plan_stage_cost of stage s holding layers [j, i), from the prefix sums */
#define COST(s, j, i) (P[i] - P[j] + ((s) == 0 ? e : 0) + ((s) == pp - 1 ? h : 0))

    /* Even-ness among the optimal partitions: min Σ cost² over R's states,
     * when the search is small (always, for real models). */
    int64_t work = 0;
    for (int i = 1, j = 0; i <= L; i++) {
        while (j < i && P[i] - P[j] > C) j++;
        work += i - j;
    }
    double *dp = NULL;
    int *arg = NULL;
    if ((int64_t)pp * (int64_t)W <= (1 << 20) && work * pp <= 50000000) {
        dp = malloc((size_t)pp * W * sizeof *dp);
        arg = malloc((size_t)pp * W * sizeof *arg);
    }
    starts[0] = 0;
    starts[pp] = L;
    if (dp && arg) {
        for (int i = 0; i <= L; i++) {
            double c = (double)COST(0, 0, i);
            dp[i] = R[i] ? c * c : -1;
            arg[i] = 0;
        }
        for (int s = 1; s < pp; s++) {
            const uint8_t *rp = R + (size_t)(s - 1) * W;
            for (int i = 0; i <= L; i++) {
                size_t at = (size_t)s * W + (size_t)i;
                dp[at] = -1;
                arg[at] = -1;
                if (!R[at]) continue;
                for (int j = i - 1; j >= s && COST(s, j, i) <= C; j--) {
                    if (!rp[j]) continue;
                    double c = (double)COST(s, j, i), v = dp[(size_t)(s - 1) * W + (size_t)j] + c * c;
                    if (dp[at] < 0 || v < dp[at]) dp[at] = v, arg[at] = j;
                }
            }
        }
        for (int s = pp - 1, i = L; s >= 1; s--) i = starts[s] = arg[(size_t)s * W + (size_t)i];
    } else {
        for (int s = pp - 1, i = L; s >= 1; s--) {
            int j = i - 1;
            while (!(R[(size_t)(s - 1) * W + (size_t)j] && COST(s, j, i) <= C)) j--;
            i = starts[s] = j;
        }
    }
#undef COST
    for (int s = 0; s < pp; s++) costs[s] = loom_plan_stage_cost(m, starts[s], starts[s + 1], s == 0, s == pp - 1);
    free(dp);
    free(arg);
    free(P);
    free(R);
    return NULL;
}

/* ------------------------------------------------------- tensor splits */

/* Even contiguous split of n items over `parts`, the extra items first:
 * begin of part t. */
static int64_t even_begin(int64_t n, int64_t parts, int64_t t) {
    int64_t base = n / parts, extra = n % parts;
    return t * base + (t < extra ? t : extra);
}

/* Splits G groups of g query heads over tp ranks (sizes base or base + 1
 * groups) so that the ranks hold the fewest KV heads in total; ties keep the
 * larger ranks first. bound: (tp + 1) head boundaries. */
static loom_status split_heads(const loom_model_config *c, int g, int tp, int *bound) {
    int G = c->n_heads / g, base = G / tp, extra = G % tp, rep = c->n_heads / c->n_kv_heads;
    size_t E = (size_t)extra + 1;
    int64_t *cost = malloc((size_t)(tp + 1) * E * sizeof *cost);
    if (!cost) return loom_error(LOOM_ERR_NOMEM, "out of memory splitting %d heads over %d ranks", c->n_heads, tp);
#define AT(t, x) cost[(size_t)(t)*E + (size_t)(x)]
#define HEAD(t, x) (((t)*base + (x)) * g)
#define KV_HELD(h0, h1) ((h1 - 1) / rep - (h0) / rep + 1)
    for (size_t i = 0; i < (size_t)(tp + 1) * E; i++) cost[i] = -1;
    AT(0, 0) = 0;
    for (int t = 1; t <= tp; t++)
        for (int x = 0; x <= extra && x <= t; x++) {
            if (t - x > tp - extra) continue;
            int h1 = HEAD(t, x);
            int64_t best = -1;
            if (AT(t - 1, x) >= 0) best = AT(t - 1, x) + KV_HELD(HEAD(t - 1, x), h1);
            if (x > 0 && AT(t - 1, x - 1) >= 0) {
                int64_t v = AT(t - 1, x - 1) + KV_HELD(HEAD(t - 1, x - 1), h1);
                if (best < 0 || v <= best) best = v;
            }
            AT(t, x) = best;
        }
    /* walk back: on a tie the later rank takes the smaller size */
    bound[tp] = c->n_heads;
    for (int t = tp, x = extra; t > 0; t--) {
        int h1 = HEAD(t, x);
        bool small = AT(t - 1, x) >= 0 && AT(t - 1, x) + KV_HELD(HEAD(t - 1, x), h1) == AT(t, x);
        if (!small) x--;
        bound[t - 1] = HEAD(t - 1, x);
    }
#undef AT
#undef HEAD
#undef KV_HELD
    free(cost);
    return NULL;
}

void loom_plan_stage_groups(const loom_plan_model *m, int l0, int l1, int *hg, int64_t *fg) {
    int64_t h = 1, f = 1;
    for (int l = l0; l < l1; l++) {
        h = lcm64(h, head_group_of(m->layers[l].o, loom_o_head_dim(&m->cfg)));
        f = lcm64(f, block_of(m->layers[l].down));
    }
    *hg = (int)h;
    *fg = f;
}

/* ------------------------------------------------------- plan objects */

void loom_plan_free(loom_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->n_warnings; i++) free(p->warnings[i]);
    free(p->warnings);
    free(p->stages);
    free(p->ranks);
    free(p->grid);
    free(p);
}

loom_status loom_plan_alloc(const loom_plan_model *m, const loom_plan_request *req, loom_plan **out) {
    loom_plan *p = calloc(1, sizeof *p);
    if (p) {
        p->stages = calloc((size_t)req->pp, sizeof *p->stages);
        p->ranks = calloc((size_t)req->world, sizeof *p->ranks);
        p->grid = calloc((size_t)req->world, sizeof *p->grid);
    }
    if (!p || !p->stages || !p->ranks || !p->grid) {
        loom_plan_free(p);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a plan of %d ranks", req->world);
    }
    p->world = req->world;
    p->tp = req->tp;
    p->pp = req->pp;
    p->model_hash = m->hash;
    p->cfg = m->cfg;
    p->req = *req;
    p->req.engine.n_threads = 0;        /* each rank's own choice: not planned, not sent */
    p->req.engine.prefix_cache = false; /* the coordinator's alone */
    if (m->cfg.encoder && !p->req.engine.kv_blocks) { /* an encoder's texts go whole into one step (engine.c: */
        const loom_engine_options *o = &req->engine; /* score, score_texts): a batch's rows, or one text, in blocks */
        const int span = o->ctx_size > o->batch_rows ? o->ctx_size : o->batch_rows; /* and a partial block a slot */
        p->req.engine.kv_blocks = loom_kv_blocks_for(1, span, o->block_tokens) + o->max_seqs + 1;
    }
    p->kv_blocks = loom_engine_kv_blocks(&p->req.engine);
    *out = p;
    return NULL;
}

loom_status loom_plan_warn(loom_plan *p, const char *fmt, ...) {
    if (p->n_warnings >= LOOM_PLAN_MAX_WARNINGS) return NULL;
    char buf[LOOM_PLAN_MAX_WARNING_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **w = realloc(p->warnings, (size_t)(p->n_warnings + 1) * sizeof *w);
    if (!w) return loom_error(LOOM_ERR_NOMEM, "out of memory for a plan warning");
    p->warnings = w;
    if (!(w[p->n_warnings] = strdup(buf))) return loom_error(LOOM_ERR_NOMEM, "out of memory for a plan warning");
    p->n_warnings++;
    return NULL;
}

const loom_rank_plan *loom_plan_rank(const loom_plan *p, int world_rank) {
    if (!p || world_rank < 0 || world_rank >= p->world) return NULL;
    return &p->ranks[world_rank];
}

int loom_plan_world_rank(const loom_plan *p, int stage, int tp_rank) {
    if (!p || stage < 0 || stage >= p->pp || tp_rank < 0 || tp_rank >= p->tp) return -1;
    return p->grid[stage * p->tp + tp_rank];
}

/* --------------------------------------------------------- placement */

static const char *host_of(const char *const *hosts, int r) { return hosts && hosts[r] ? hosts[r] : ""; }

typedef struct {
    int host_order; /* index of the host of its lowest rank, by first appearance */
    int first;      /* lowest world rank */
    int *ranks;     /* (tp) ascending */
} tp_group;

static int cmp_group(const void *a, const void *b) {
    const tp_group *x = a, *y = b;
    if (x->host_order != y->host_order) return x->host_order < y->host_order ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Fills p->grid: the default (stage r / tp, TP rank r % tp) unless a TP
 * group would span hosts; then each host's ranks form whole TP groups in
 * rank order, the leftovers (ascending) the remaining groups, and groups
 * become stages ordered by host (first appearance) and lowest rank, so
 * world rank 0 stays stage 0, TP rank 0. Warns about groups that still
 * span hosts. */
static loom_status place_ranks(loom_plan *p, const char *const *hosts) {
    int world = p->world, tp = p->tp, pp = p->pp;
    for (int r = 0; r < world; r++) p->grid[r] = r;
    if (!hosts || tp == 1) return NULL;
    bool split = false;
    for (int r = 0; r < world && !split; r++) split = strcmp(host_of(hosts, r), host_of(hosts, r - r % tp)) != 0;
    if (!split) return NULL;

    int *hidx = malloc((size_t)world * sizeof *hidx), *all = malloc((size_t)world * sizeof *all);
    int *rest = malloc((size_t)world * sizeof *rest);
    tp_group *groups = calloc((size_t)pp, sizeof *groups);
    loom_status st = NULL;
    if (!hidx || !all || !rest || !groups) {
        st = loom_error(LOOM_ERR_NOMEM, "out of memory placing %d ranks", world);
        goto done;
    }
    int n_hosts = 0;
    for (int r = 0; r < world; r++) {
        hidx[r] = -1;
        for (int q = 0; q < r && hidx[r] < 0; q++)
            if (!strcmp(host_of(hosts, q), host_of(hosts, r))) hidx[r] = hidx[q];
        if (hidx[r] < 0) hidx[r] = n_hosts++;
    }
    int n_all = 0, n_rest = 0;
    for (int h = 0; h < n_hosts; h++) {
        int n = 0;
        for (int r = 0; r < world; r++)
            if (hidx[r] == h) n++;
        int whole = n / tp * tp, k = 0;
        for (int r = 0; r < world; r++)
            if (hidx[r] == h) {
                if (k++ < whole)
                    all[n_all++] = r;
                else
                    rest[n_rest++] = r;
            }
    }
    qsort(rest, (size_t)n_rest, sizeof *rest, cmp_int);
    memcpy(all + n_all, rest, (size_t)n_rest * sizeof *rest);
    for (int k = 0; k < pp; k++) {
        groups[k].ranks = all + (size_t)k * tp;
        groups[k].first = groups[k].ranks[0];
        groups[k].host_order = hidx[groups[k].first];
    }
    qsort(groups, (size_t)pp, sizeof *groups, cmp_group);
    for (int s = 0; s < pp; s++) memcpy(p->grid + (size_t)s * tp, groups[s].ranks, (size_t)tp * sizeof(int));
    for (int s = 0; s < pp && !st; s++) {
        const int *g = p->grid + (size_t)s * tp;
        bool spans = false;
        for (int t = 1; t < tp; t++) spans |= hidx[g[t]] != hidx[g[0]];
        if (!spans) continue;
        char list[512], names[512];
        size_t a = 0, b = 0;
        names[0] = list[0] = 0;
        for (int t = 0; t < tp && a + 16 < sizeof list; t++)
            a += (size_t)snprintf(list + a, sizeof list - a, "%s%d", t ? ", " : "", g[t]);
        for (int t = 0; t < tp && b + 80 < sizeof names; t++) {
            bool seen = false;
            for (int u = 0; u < t; u++) seen |= hidx[g[u]] == hidx[g[t]];
            if (!seen) b += (size_t)snprintf(names + b, sizeof names - b, "%s%.64s", b ? ", " : "", hosts[g[t]]);
        }
        st = loom_plan_warn(p,
                  "the TP group of stage %d (world ranks %s) spans hosts %s: its all-reduces cross the network; "
                  "give every host a multiple of %d ranks",
                  s, list, names, tp);
    }
done:
    free(hidx);
    free(all);
    free(rest);
    free(groups);
    return st;
}

/* ------------------------------------------------------------ planning */

void loom_plan_kv_flags(loom_plan *p) {
    for (int s = 0; s < p->pp; s++)
        for (int t = 0; t < p->tp; t++) {
            loom_rank_plan *rp = &p->ranks[p->grid[s * p->tp + t]];
            const loom_rank_plan *prev = t > 0 ? &p->ranks[p->grid[s * p->tp + t - 1]] : NULL;
            const loom_rank_plan *next = t + 1 < p->tp ? &p->ranks[p->grid[s * p->tp + t + 1]] : NULL;
            /* ranges are monotone in TP order: only neighbours can share */
            int lo = rp->shard.kv_begin, hi = rp->shard.kv_end - 1;
            rp->kv_shared_first = (prev && prev->shard.kv_end > lo) || (next && next->shard.kv_begin <= lo);
            rp->kv_shared_last = (prev && prev->shard.kv_end > hi) || (next && next->shard.kv_begin <= hi);
        }
}

/* Largest value v in [lo, hi] with fits(v), or lo - 1. */
static int64_t largest_fit(const loom_plan_model *m, const loom_plan *p, int64_t lo, int64_t hi, bool ctx) {
    int64_t best = lo - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        loom_plan_request r = p->req;
        if (ctx)
            r.engine.ctx_size = (int)mid;
        else
            r.engine.max_seqs = (int)mid;
        bool ok = true;
        for (int i = 0; i < p->world && ok; i++) {
            loom_rank_plan x = {.shard = p->ranks[i].shard};
            loom_plan_rank_figures(m, &r, &x);
            ok = loom_plan_rank_total(&x) <= r.max_memory;
        }
        if (ok)
            best = mid, lo = mid + 1;
        else
            hi = mid - 1;
    }
    return best;
}

static loom_status plan_build(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                              bool suggest, loom_plan **out);

/* The memory check, with what would work when it fails. */
static loom_status check_memory(const loom_plan_model *m, const loom_plan *p, bool suggest) {
    int64_t M = p->req.max_memory;
    if (M <= 0) return NULL;
    int worst = 0;
    for (int i = 1; i < p->world; i++)
        if (loom_plan_rank_total(&p->ranks[i]) > loom_plan_rank_total(&p->ranks[worst])) worst = i;
    const loom_rank_plan *w = &p->ranks[worst];
    if (loom_plan_rank_total(w) <= M) return NULL;
    char need[32], lim[32], wb[32], kb[32], sb[32], more[512] = "";
    loom_format_bytes(need, sizeof need, loom_plan_rank_total(w));
    loom_format_bytes(lim, sizeof lim, M);
    loom_format_bytes(wb, sizeof wb, w->weight_bytes);
    loom_format_bytes(kb, sizeof kb, w->kv_bytes);
    loom_format_bytes(sb, sizeof sb, w->workspace_bytes);
    int64_t ctx = largest_fit(m, p, 1, p->req.engine.ctx_size - 1, true);
    int64_t seqs = largest_fit(m, p, 1, p->req.engine.max_seqs - 1, false);
    size_t n = 0;
    if (ctx >= 1)
        n += (size_t)snprintf(more + n, sizeof more - n, "; the largest --ctx-size that fits is %lld", (long long)ctx);
    if (seqs >= 1)
        n += (size_t)snprintf(more + n, sizeof more - n, "; at --ctx-size %d, the most --sequences that fit is %lld",
                              p->req.engine.ctx_size, (long long)seqs);
    if (ctx < 1 && seqs < 1 && suggest) {
        /* even the smallest cache does not fit: more ranks */
        int max_tp = model_max_tp(m);
        bool found = false;
        for (int64_t W = (int64_t)p->world + 1; W <= 16 * (int64_t)p->world && W <= 4096 && !found; W++)
            for (int64_t pp = m->cfg.n_layers < W ? m->cfg.n_layers : W; pp >= 1 && !found; pp--) {
                if (W % pp || W / pp > max_tp || !tp_fits(m, W / pp)) continue;
                loom_plan_request r = p->req;
                r.tp = (int)(W / pp);
                r.pp = (int)pp;
                r.world = 0;
                loom_plan *q = NULL;
                loom_status st = plan_build(m, &r, NULL, false, &q);
                if (!st) {
                    found = true;
                    snprintf(
                        more + n, sizeof more - n,
                        "; no cache fits beside the weights, but more ranks would: e.g. --tp %d --pp %d (world %lld)",
                        r.tp, r.pp, (long long)W);
                }
                loom_status_free(st);
                loom_plan_free(q);
            }
        if (!found)
            snprintf(more + n, sizeof more - n, "; no cache fits beside the weights, and no world up to %d ranks fits",
                     16 * p->world);
    }
    return loom_error(LOOM_ERR_PLAN,
                      "--max-memory %s per rank is too small: rank %d (stage %d, TP rank %d) needs %s (weights %s + "
                      "KV cache %s + workspace %s); the smallest per-rank memory this plan needs is %s%s",
                      lim, worst, w->stage, w->tp_rank, need, wb, kb, sb, need, more);
}

static loom_status fill_plan(const loom_plan_model *m, loom_plan *p, const char *const *hosts) {
    const loom_model_config *c = &m->cfg;
    int tp = p->tp, pp = p->pp;
    int *starts = malloc((size_t)(pp + 1) * sizeof *starts);
    int64_t *costs = malloc((size_t)pp * sizeof *costs);
    int *bound = malloc((size_t)(tp + 1) * sizeof *bound);
    loom_status st = NULL;
    if (!starts || !costs || !bound) st = loom_error(LOOM_ERR_NOMEM, "out of memory planning %d ranks", p->world);
    if (!st) st = partition(m, p->req.balance, pp, starts, costs);
    if (!st) st = place_ranks(p, hosts);
    for (int s = 0; s < pp && !st; s++) {
        loom_stage_plan *sp = &p->stages[s];
        sp->layer_begin = starts[s];
        sp->layer_end = starts[s + 1];
        sp->cost = costs[s];
        loom_plan_stage_groups(m, sp->layer_begin, sp->layer_end, &sp->head_group, &sp->ffn_group);
        const int64_t fgroups = c->ffn / sp->ffn_group;
        const bool by_experts = split_by_experts(c, fgroups, tp);
        if (c->n_heads / sp->head_group < tp || (fgroups < tp && !by_experts)) {
            st = loom_error(LOOM_ERR_PLAN,
                            "tp %d: stage %d (layers %d-%d) mixes types whose blocks allow only %d groups of %d query "
                            "heads and %lld groups of %lld MLP columns; use a smaller tp",
                            tp, s, sp->layer_begin, sp->layer_end - 1, c->n_heads / sp->head_group, sp->head_group,
                            (long long)(c->ffn / sp->ffn_group), (long long)sp->ffn_group);
            break;
        }
        st = split_heads(c, sp->head_group, tp, bound);
        for (int t = 0; t < tp && !st; t++) {
            int r = p->grid[s * tp + t];
            loom_rank_plan *rp = &p->ranks[r];
            rp->world_rank = r;
            rp->stage = s;
            rp->tp_rank = t;
            snprintf(rp->host, sizeof rp->host, "%s", host_of(hosts, r));
            loom_shard *sh = &rp->shard;
            sh->layer_begin = sp->layer_begin;
            sh->layer_end = sp->layer_end;
            sh->q_begin = bound[t];
            sh->q_end = bound[t + 1];
            sh->kv_begin = loom_kv_of_q(c, sh->q_begin);
            sh->kv_end = loom_kv_of_q(c, sh->q_end - 1) + 1;
            if (by_experts) { /* whole experts, and the shared expert's columns in even blocks of 256 */
                sh->split_experts = true;
                sh->ffn_begin = 0, sh->ffn_end = c->ffn;
                sh->expert_begin = (int)even_begin(c->n_experts, tp, t);
                sh->expert_end = (int)even_begin(c->n_experts, tp, t + 1);
                const int64_t S = c->ffn_shared, blocks = (S + 255) / 256;
                sh->shared_begin = even_begin(blocks, tp, t) * 256;
                sh->shared_end = t == tp - 1 ? S : even_begin(blocks, tp, t + 1) * 256;
                if (sh->shared_begin > S) sh->shared_begin = S;
                if (sh->shared_end > S) sh->shared_end = S;
            } else {
                sh->ffn_begin = even_begin(fgroups, tp, t) * sp->ffn_group;
                sh->ffn_end = even_begin(fgroups, tp, t + 1) * sp->ffn_group;
            }
            sh->vocab_begin = even_begin(c->vocab, tp, t);
            sh->vocab_end = even_begin(c->vocab, tp, t + 1);
            sh->embed = s == 0;
            sh->head = s == pp - 1;
            loom_plan_rank_figures(m, &p->req, rp);
        }
    }
    if (!st) loom_plan_kv_flags(p);
    free(starts);
    free(costs);
    free(bound);
    return st;
}

static loom_status plan_build(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                              bool suggest, loom_plan **out) {
    *out = NULL;
    LOOM_TRY(loom_plan_check_model(m));
    LOOM_TRY(loom_plan_check_request(m, req));
    int world;
    LOOM_TRY(check_grid(m, req, &world));
    if (hosts)
        for (int r = 0; r < world; r++)
            if (hosts[r] && strlen(hosts[r]) >= LOOM_PLAN_HOST_MAX)
                return loom_error(LOOM_ERR_INVALID, "the host name of world rank %d is longer than %d bytes", r,
                                  LOOM_PLAN_HOST_MAX - 1);
    loom_plan_request full = *req;
    full.world = world;
    loom_plan *p;
    LOOM_TRY(loom_plan_alloc(m, &full, &p));
    if (req->balance) snprintf(p->balance, sizeof p->balance, "%s", req->balance->what);
    loom_status st = fill_plan(m, p, hosts);
    p->req.balance = NULL; /* the caller's; a plan keeps only the words */
    if (!st) st = check_memory(m, p, suggest);
    if (!st && req->engine.ctx_size > m->cfg.ctx_train)
        st = loom_plan_warn(p, "context %d exceeds the %d positions the model was trained for", req->engine.ctx_size,
                            m->cfg.ctx_train);
    if (st) {
        loom_plan_free(p);
        return st;
    }
    *out = p;
    return NULL;
}

loom_status loom_plan_make(const loom_plan_model *m, const loom_plan_request *req, const char *const *hosts,
                           loom_plan **out) {
    return plan_build(m, req, hosts, true, out);
}

