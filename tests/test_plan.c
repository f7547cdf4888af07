/*
 * tests/test_plan.c — the shard plan (parallel/plan.h).
 *
 * Every plan made here is checked by an independent checker: each layer in
 * exactly one stage; within each stage every query head, MLP column and
 * vocabulary row held exactly once; every rank holds exactly the KV heads
 * its query heads need, and the replication marks are right; splits fall on
 * the quantization blocks of attn_output and ffn_down in every layer of the
 * stage and are as even as those blocks allow; the byte counts match an
 * independent formula (and loom_weights_create itself on real files). Stage
 * balance is compared with a brute force over every partition, head splits
 * with a brute force over every even split. Plans round-trip through the
 * protobuf message; corrupt and inconsistent messages are rejected with
 * specific messages; impossible requests say what would work.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/loom.pb-c.h"
#include "parallel/plan.h"
#include "parallel/plan_balance.h"
#include "reference.h"
#include "runtime/gguf_write.h"
#include "runtime/kernels.h"
#include "runtime/model.h"
#include "runtime/kv_cache.h"

#define OK(expr)                                                                                                       \
    do {                                                                                                               \
        loom_status s_ = (expr);                                                                                       \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_));                                           \
    } while (0)

/* Expects failure with `code` and every one of the NULL-terminated
 * substrings in the message; returns nothing, frees the status. */
static void expect_error_at(loom_status st, loom_code code, int line, ...) {
    cr_assert_not_null(st, "line %d: expected an error, got success", line);
    const char *m = loom_status_message(st);
    cr_assert_eq(loom_status_code(st), code, "line %d: code %d, expected %d (%s)", line, loom_status_code(st), code, m);
    va_list ap;
    va_start(ap, line);
    for (const char *want; (want = va_arg(ap, const char *));)
        cr_assert(strstr(m, want), "line %d: message '%s' lacks '%s'", line, m, want);
    va_end(ap);
    loom_status_free(st);
}
#define expect_error(st, code, ...) expect_error_at((st), (code), __LINE__, __VA_ARGS__, (const char *)NULL)

/* ------------------------------------------------------- model shapes */

typedef loom_type (*type_fn)(int layer, int n_layers, int matrix); /* matrix: 0 q 1 k 2 v 3 o 4 gate 5 up 6 down */

typedef struct {
    const char *arch;
    int layers, dim, heads, kv_heads, head_dim, ffn, vocab;
    bool tied, rope_factors;
    loom_type embed, head;
    type_fn types;
} shape;

static loom_type all_q4_1(int l, int n, int i) {
    (void)l, (void)n, (void)i;
    return LOOM_TYPE_Q4_1;
}
static loom_type all_q4_k(int l, int n, int i) {
    (void)l, (void)n, (void)i;
    return LOOM_TYPE_Q4_K;
}

/* llama.cpp's Q4_K_M for a 70B llama (launch/synth.c's rules). */
static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }
static loom_type q4_k_m_70b(int l, int n, int i) {
    if ((i == 2 || i == 6) && more_bits(l, n)) return LOOM_TYPE_Q6_K;
    if (i == 2) return LOOM_TYPE_Q5_K;
    return LOOM_TYPE_Q4_K;
}
/* attn_output Q8_0 (groups of 1 head of 64) in even layers, Q4_K (4) in odd. */
static loom_type mixed_o(int l, int n, int i) {
    (void)n;
    if (i == 3) return l % 2 ? LOOM_TYPE_Q4_K : LOOM_TYPE_Q8_0;
    return LOOM_TYPE_Q8_0;
}

static const shape smol_like = {"llama",        30,      576, 9, 3, 64, 1536, 49152, true, false, LOOM_TYPE_Q8_0,
                                LOOM_TYPE_Q8_0, all_q4_1};
static const shape llama70b = {"llama",        80,        8192, 64, 8, 128, 28672, 128256, false, true, LOOM_TYPE_Q4_K,
                               LOOM_TYPE_Q6_K, q4_k_m_70b};

/* The planner's view, filled by hand. */
static loom_plan_model model_of(const shape *s) {
    loom_plan_model m = {0};
    loom_model_config *c = &m.cfg;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", s->arch);
    c->arch = strcmp(s->arch, "qwen2") ? LOOM_ARCH_LLAMA : LOOM_ARCH_QWEN2;
    c->n_layers = s->layers;
    c->dim = s->dim;
    c->n_heads = s->heads;
    c->n_kv_heads = s->kv_heads;
    c->head_dim = s->head_dim;
    c->ffn = s->ffn;
    c->vocab = s->vocab;
    c->ctx_train = 8192;
    c->rope_dim = s->head_dim;
    c->rope_base = 10000;
    c->rope_freq_scale = 1;
    c->norm_eps = 1e-5f;
    c->tied_embeddings = s->tied;
    c->has_rope_factors = s->rope_factors;
    c->qkv_bias = c->arch == LOOM_ARCH_QWEN2;
    m.hash = 0x1234abcd5678ef00ull;
    m.embed = s->embed;
    m.head = s->tied ? s->embed : s->head;
    m.layers = calloc((size_t)s->layers, sizeof *m.layers);
    cr_assert_not_null(m.layers);
    for (int l = 0; l < s->layers; l++) {
        loom_type t[7];
        for (int i = 0; i < 7; i++) t[i] = s->types(l, s->layers, i);
        m.layers[l] = (loom_plan_layer){t[0], t[1], t[2], t[3], t[4], t[5], t[6], LOOM_TYPE_F32, t[4], t[5], t[6], LOOM_TYPE_F32, LOOM_TYPE_F32};
    }
    return m;
}

/* The same shape as a GGUF file: in memory (with zero weights) or a sparse
 * header-only file at `path`. Returns the buffer for memory files. */
static void *write_gguf(const shape *s, const char *path, size_t *size) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    char key[96];
    OK(loom_gguf_writer_add_str(w, "general.architecture", s->arch));
#define META(k, v) (snprintf(key, sizeof key, "%s." k, s->arch), loom_gguf_writer_add_uint(w, key, LOOM_GGUF_U32, (v)))
    OK(META("block_count", s->layers));
    OK(META("embedding_length", s->dim));
    OK(META("feed_forward_length", s->ffn));
    OK(META("attention.head_count", s->heads));
    OK(META("attention.head_count_kv", s->kv_heads));
    OK(META("attention.key_length", s->head_dim));
    OK(META("context_length", 8192));
#undef META
    int64_t q = (int64_t)s->heads * s->head_dim, kv = (int64_t)s->kv_heads * s->head_dim;
    OK(loom_gguf_writer_add_tensor(w, "token_embd.weight", s->embed, 2, (int64_t[]){s->dim, s->vocab}, NULL));
    OK(loom_gguf_writer_add_tensor(w, "output_norm.weight", LOOM_TYPE_F32, 1, (int64_t[]){s->dim}, NULL));
    if (!s->tied) OK(loom_gguf_writer_add_tensor(w, "output.weight", s->head, 2, (int64_t[]){s->dim, s->vocab}, NULL));
    if (s->rope_factors)
        OK(loom_gguf_writer_add_tensor(w, "rope_freqs.weight", LOOM_TYPE_F32, 1, (int64_t[]){s->head_dim / 2}, NULL));
    const char *names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    const int64_t in[7] = {s->dim, s->dim, s->dim, q, s->dim, s->dim, s->ffn};
    const int64_t rows[7] = {q, kv, kv, s->dim, s->ffn, s->ffn, s->dim};
    char name[96];
    for (int l = 0; l < s->layers; l++) {
        for (int i = 0; i < 7; i++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, names[i]);
            OK(loom_gguf_writer_add_tensor(w, name, s->types(l, s->layers, i), 2, (int64_t[]){in[i], rows[i]}, NULL));
        }
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        OK(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F32, 1, (int64_t[]){s->dim}, NULL));
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        OK(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F16, 1, (int64_t[]){s->dim}, NULL));
        if (!strcmp(s->arch, "qwen2")) {
            const char *b[3] = {"attn_q", "attn_k", "attn_v"};
            const int64_t n[3] = {q, kv, kv};
            for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof name, "blk.%d.%s.bias", l, b[i]);
                OK(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F32, 1, (int64_t[]){n[i]}, NULL));
            }
        }
    }
    void *buf = NULL;
    if (path)
        OK(loom_gguf_writer_write_path(w, path, LOOM_GGUF_WRITE_HEADER_ONLY));
    else
        OK(loom_gguf_writer_write_memory(w, &buf, size));
    loom_gguf_writer_free(w);
    return buf;
}

/* ------------------------------------------------ independent checker */

static uint32_t blk(loom_type t) { return loom_type_info(t)->block_size; }
static int64_t rowb(loom_type t, int64_t n) { return (int64_t)loom_type_row_bytes(t, n); }
static int64_t gcd(int64_t a, int64_t b) { return b ? gcd(b, a % b) : a; }

/* A matrix of n rows of k columns as a CPU rank holds it: in the r8 layout
 * (whole groups of 8 rows) where its type has one, else the file's rows. */
static int64_t heldb(loom_type t, int64_t n, int64_t k) {
    return loom_type_has_r8(t) ? (n + 7) / 8 * 8 * (int64_t)loom_r8_row_bytes(t, k) : n * rowb(t, k);
}

/* Bytes of one layer for nq query heads, nkv KV heads, nf MLP columns. */
static int64_t layer_cost(const loom_plan_model *m, int l, int64_t nq, int64_t nkv, int64_t nf) {
    const loom_model_config *c = &m->cfg;
    const loom_plan_layer *L = &m->layers[l];
    int64_t hd = c->head_dim, d = c->dim;
    int64_t b = heldb(L->q, nq * hd, d) + heldb(L->k, nkv * hd, d) + heldb(L->v, nkv * hd, d) + heldb(L->o, d, nq * hd) +
                heldb(L->gate, nf, d) + heldb(L->up, nf, d) + heldb(L->down, d, nf);
    b += 2 * d * 4;
    if (c->qkv_bias) b += 4 * hd * (nq + 2 * nkv);
    return b;
}

static int64_t shard_bytes(const loom_plan_model *m, const loom_shard *s) {
    const loom_model_config *c = &m->cfg;
    int64_t b = 0, nv = s->vocab_end - s->vocab_begin;
    if (s->embed && !(s->head && c->tied_embeddings)) b += nv * rowb(m->embed, c->dim); /* tied: the head's copy */
    if (s->head) b += heldb(m->head, nv, c->dim) + 4 * c->dim;
    if (c->has_rope_factors) b += 4 * (c->rope_dim / 2);
    for (int l = s->layer_begin; l < s->layer_end; l++)
        b += layer_cost(m, l, s->q_end - s->q_begin, s->kv_end - s->kv_begin, s->ffn_end - s->ffn_begin);
    return b;
}

/* Query heads per indivisible group over layers [l0, l1). */
static int64_t head_group(const loom_plan_model *m, int l0, int l1) {
    int64_t g = 1;
    for (int l = l0; l < l1; l++) {
        int64_t b = blk(m->layers[l].o), hg = b / gcd(b, m->cfg.head_dim);
        g = g / gcd(g, hg) * hg;
    }
    return g;
}
static int64_t ffn_group(const loom_plan_model *m, int l0, int l1) {
    int64_t g = 1;
    for (int l = l0; l < l1; l++) g = g / gcd(g, blk(m->layers[l].down)) * blk(m->layers[l].down);
    return g;
}

static void check_plan(const loom_plan_model *m, const loom_plan *p, const loom_plan_request *req) {
    const loom_model_config *c = &m->cfg;
    int tp = req->tp, pp = req->pp, rep = c->n_heads / c->n_kv_heads;
    cr_assert_eq(p->tp, tp);
    cr_assert_eq(p->pp, pp);
    cr_assert_eq(p->world, tp * pp);
    cr_assert_eq(p->model_hash, m->hash);
    int *layer_seen = calloc((size_t)c->n_layers, sizeof(int));
    int *q_seen = calloc((size_t)c->n_heads, sizeof(int));
    int *kv_holders = calloc((size_t)c->n_kv_heads, sizeof(int));
    cr_assert(layer_seen && q_seen && kv_holders);
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *rp = loom_plan_rank(p, r);
        cr_assert_not_null(rp);
        cr_assert_eq(rp->world_rank, r);
        cr_assert_eq(loom_plan_world_rank(p, rp->stage, rp->tp_rank), r);
    }
    cr_assert_null(loom_plan_rank(p, p->world));
    cr_assert_null(loom_plan_rank(p, -1));
    cr_assert_eq(loom_plan_world_rank(p, pp, 0), -1);
    cr_assert_eq(loom_plan_world_rank(p, 0, tp), -1);
    cr_assert_eq(loom_plan_world_rank(p, 0, 0), 0, "the coordinator is stage 0, TP rank 0");
    for (int s = 0; s < pp; s++) {
        const loom_rank_plan *r0 = loom_plan_rank(p, loom_plan_world_rank(p, s, 0));
        int l0 = r0->shard.layer_begin, l1 = r0->shard.layer_end;
        cr_assert_lt(l0, l1, "stage %d is empty", s);
        cr_assert_eq(p->stages[s].layer_begin, l0);
        cr_assert_eq(p->stages[s].layer_end, l1);
        for (int l = l0; l < l1; l++) layer_seen[l]++;
        int64_t hg = head_group(m, l0, l1), fg = ffn_group(m, l0, l1);
        memset(q_seen, 0, (size_t)c->n_heads * sizeof(int));
        memset(kv_holders, 0, (size_t)c->n_kv_heads * sizeof(int));
        int64_t f_at = 0, v_at = 0, qmin = INT64_MAX, qmax = 0, fmin = INT64_MAX, fmax = 0, vmin = INT64_MAX, vmax = 0;
        for (int t = 0; t < tp; t++) {
            const loom_rank_plan *rp = loom_plan_rank(p, loom_plan_world_rank(p, s, t));
            const loom_shard *sh = &rp->shard;
            cr_assert_eq(rp->stage, s);
            cr_assert_eq(rp->tp_rank, t);
            cr_assert_eq(sh->layer_begin, l0);
            cr_assert_eq(sh->layer_end, l1);
            cr_assert_eq(sh->embed, s == 0);
            cr_assert_eq(sh->head, s == pp - 1);
            cr_assert_lt(sh->q_begin, sh->q_end);
            for (int q = sh->q_begin; q < sh->q_end; q++) q_seen[q]++;
            cr_assert_eq(sh->kv_begin, sh->q_begin / rep, "rank needs exactly the KV heads of its query heads");
            cr_assert_eq(sh->kv_end, (sh->q_end - 1) / rep + 1);
            for (int k = sh->kv_begin; k < sh->kv_end; k++) kv_holders[k]++;
            cr_assert_eq(sh->ffn_begin, f_at, "stage %d: MLP columns held once, in order", s);
            cr_assert_eq(sh->vocab_begin, v_at);
            cr_assert_lt(sh->ffn_begin, sh->ffn_end);
            cr_assert_lt(sh->vocab_begin, sh->vocab_end);
            f_at = sh->ffn_end;
            v_at = sh->vocab_end;
            /* blocks: attn_output's and ffn_down's inputs, in every layer of the stage */
            for (int l = l0; l < l1; l++) {
                cr_assert_eq((int64_t)sh->q_begin * c->head_dim % blk(m->layers[l].o), 0, "layer %d q %d", l,
                             sh->q_begin);
                cr_assert_eq((int64_t)sh->q_end * c->head_dim % blk(m->layers[l].o), 0);
                cr_assert_eq(sh->ffn_begin % blk(m->layers[l].down), 0);
                cr_assert_eq(sh->ffn_end % blk(m->layers[l].down), 0);
            }
            int64_t nq = sh->q_end - sh->q_begin, nf = sh->ffn_end - sh->ffn_begin,
                    nv = sh->vocab_end - sh->vocab_begin;
            if (nq < qmin) qmin = nq;
            if (nq > qmax) qmax = nq;
            if (nf < fmin) fmin = nf;
            if (nf > fmax) fmax = nf;
            if (nv < vmin) vmin = nv;
            if (nv > vmax) vmax = nv;
            cr_assert_eq(rp->weight_bytes, shard_bytes(m, sh), "rank %d weight bytes", rp->world_rank);
            loom_kv_config kc = {.n_layers = l1 - l0,
                                 .n_kv_heads = sh->kv_end - sh->kv_begin,
                                 .head_dim = c->head_dim,
                                 .type = req->engine.kv_type,
                                 .block_tokens = req->engine.block_tokens,
                                 .n_blocks = loom_kv_blocks_for(req->engine.max_seqs, req->engine.ctx_size, req->engine.block_tokens)};
            cr_assert_eq(rp->kv_bytes, (int64_t)loom_kv_bytes(&kc));
            cr_assert_gt(rp->workspace_bytes, 0);
        }
        for (int q = 0; q < c->n_heads; q++)
            cr_assert_eq(q_seen[q], 1, "stage %d: query head %d held %d times", s, q, q_seen[q]);
        cr_assert_eq(f_at, c->ffn);
        cr_assert_eq(v_at, c->vocab);
        cr_assert_leq(qmax - qmin, hg, "stage %d: query split uneven beyond groups of %lld", s, (long long)hg);
        cr_assert_leq(fmax - fmin, fg);
        cr_assert_leq(vmax - vmin, 1);
        for (int t = 0; t < tp; t++) {
            const loom_rank_plan *rp = loom_plan_rank(p, loom_plan_world_rank(p, s, t));
            cr_assert_eq(rp->kv_shared_first, kv_holders[rp->shard.kv_begin] > 1);
            cr_assert_eq(rp->kv_shared_last, kv_holders[rp->shard.kv_end - 1] > 1);
        }
    }
    for (int l = 0; l < c->n_layers; l++)
        cr_assert_eq(layer_seen[l], 1, "layer %d held by %d stages", l, layer_seen[l]);
    free(layer_seen);
    free(q_seen);
    free(kv_holders);
}

/* ------------------------------------------------ stage balance oracle */

/* Bytes weighted by a balance's sixteenths (NULL: bytes) */
static int64_t wb(const loom_plan_balance *w, loom_type t, int64_t bytes) {
    return w && w->per_byte[t] ? bytes * w->per_byte[t] / 16 : bytes;
}

/* Cost of every stage of the plan, recomputed: bytes, or with w each
 * matrix's bytes weighted by its type's figure */
static int64_t stage_cost_w(const loom_plan_model *m, const loom_plan_balance *w, int l0, int l1, bool first,
                            bool last) {
    const loom_model_config *c = &m->cfg;
    int64_t b = 0, hd = c->head_dim, d = c->dim, nq = c->n_heads, nkv = c->n_kv_heads, nf = c->ffn;
    for (int l = l0; l < l1; l++) {
        const loom_plan_layer *L = &m->layers[l];
        b += wb(w, L->q, nq * hd * rowb(L->q, d)) + wb(w, L->k, nkv * hd * rowb(L->k, d)) +
             wb(w, L->v, nkv * hd * rowb(L->v, d)) + wb(w, L->o, d * rowb(L->o, nq * hd)) +
             wb(w, L->gate, nf * rowb(L->gate, d)) + wb(w, L->up, nf * rowb(L->up, d)) +
             wb(w, L->down, d * rowb(L->down, nf));
        b += 2 * d * 4;
        if (c->qkv_bias) b += 4 * hd * (nq + 2 * nkv);
    }
    if (first) b += rowb(m->embed, c->dim);
    if (last) b += w && w->head_time > 0 ? w->head_time : 4 * c->dim + wb(w, m->head, (int64_t)c->vocab * rowb(m->head, c->dim));
    return b;
}
static int64_t stage_cost(const loom_plan_model *m, int l0, int l1, bool first, bool last) {
    return stage_cost_w(m, NULL, l0, l1, first, last);
}

/* Every composition of L into pp non-empty parts: the least maximum cost,
 * and the least sum of squares among the partitions reaching it. */
static void brute_force(const loom_plan_model *m, const loom_plan_balance *w, int pp, int64_t *best_max,
                        double *best_sq) {
    int L = m->cfg.n_layers, cut[16];
    *best_max = INT64_MAX;
    *best_sq = 0;
    /* cut[1..pp-1]: stage starts, strictly increasing in [1, L-1] */
    for (int i = 0; i < pp; i++) cut[i] = i;
    cut[pp] = L;
    for (;;) {
        int64_t mx = 0;
        double sq = 0;
        for (int s = 0; s < pp; s++) {
            int64_t c = stage_cost_w(m, w, cut[s], cut[s + 1], s == 0, s == pp - 1);
            if (c > mx) mx = c;
            sq += (double)c * (double)c;
        }
        if (mx < *best_max || (mx == *best_max && sq < *best_sq)) *best_max = mx, *best_sq = sq;
        int k = pp - 1;
        while (k >= 1 && cut[k] == L - (pp - k)) k--;
        if (k < 1) break;
        cut[k]++;
        for (int j = k + 1; j < pp; j++) cut[j] = cut[j - 1] + 1;
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const loom_type mix_pool[] = {LOOM_TYPE_F16,  LOOM_TYPE_Q8_0, LOOM_TYPE_Q4_0, LOOM_TYPE_Q4_K,
                                     LOOM_TYPE_Q6_K, LOOM_TYPE_Q5_K, LOOM_TYPE_F32};
static loom_type random_types(int l, int n, int i) {
    (void)l, (void)n, (void)i;
    return mix_pool[rnd(sizeof mix_pool / sizeof mix_pool[0])];
}

static void roundtrip(const loom_plan_model *m, const loom_plan *p);

/* trials % 2 == 1: stages balanced by a random loom_plan_balance (sixteenths
 * 1..40 per type), against the brute force over the same weighted costs;
 * a stage's `cost` stays its bytes */
Test(plan, stage_balance_matches_brute_force) {
    int cases = 0, moved = 0;
    for (int trial = 0; trial < 60; trial++) {
        loom_plan_balance bal = {.what = "test weights"};
        for (int t = 0; t < LOOM_TYPE_COUNT; t++) bal.per_byte[t] = (uint8_t)(1 + rnd(40));
        if (trial % 4 == 3) bal.head_time = 1 + (int64_t)rnd(8000000); /* the head timed (0 .. ~20 layers' bytes) */
        const loom_plan_balance *w = trial % 2 ? &bal : NULL;
        shape s = {
            "llama",        1 + (int)rnd(11), 256,         4, 2, 64, 512, 256 + 256 * (int)rnd(8), rnd(2) == 0, false,
            LOOM_TYPE_Q8_0, LOOM_TYPE_Q6_K,   random_types};
        if (trial % 3 == 0) s.vocab = 32 * (1 + (int)rnd(2000)); /* heavy or light lm head */
        loom_plan_model m = model_of(&s);
        for (int pp = 1; pp <= s.layers && pp <= 6; pp++) {
            loom_plan_request req = loom_plan_request_defaults(1, pp);
            req.engine.ctx_size = 256;
            if (trial % 4 == 1) req.engine.kv_type = LOOM_TYPE_Q8_0; /* check_plan: its KV bytes too */
            req.balance = w;
            loom_plan *p, *pb = NULL;
            OK(loom_plan_make(&m, &req, NULL, &p));
            cr_assert_null(p->req.balance, "the plan keeps no pointer to the caller's balance");
            cr_assert_str_eq(p->balance, w ? "test weights" : "");
            req.balance = NULL;
            check_plan(&m, p, &req);
            int64_t mx = 0, best;
            double sq = 0, best_sq;
            for (int st = 0; st < pp; st++) {
                const loom_stage_plan *sp = &p->stages[st];
                cr_assert_eq(stage_cost(&m, sp->layer_begin, sp->layer_end, st == 0, st == pp - 1), sp->cost,
                             "stage %d cost: its bytes", st);
                int64_t c = stage_cost_w(&m, w, sp->layer_begin, sp->layer_end, st == 0, st == pp - 1);
                if (c > mx) mx = c;
                sq += (double)c * (double)c;
            }
            if (w) { /* decodes (stage costs are bytes); did the weights move a boundary? (they must, sometimes) */
                roundtrip(&m, p);
                OK(loom_plan_make(&m, &req, NULL, &pb));
                for (int st = 0; st < pp; st++) moved += pb->stages[st].layer_begin != p->stages[st].layer_begin;
                loom_plan_free(pb);
            }
            brute_force(&m, w, pp, &best, &best_sq);
            cr_assert_eq(mx, best, "trial %d, %d layers, pp %d: max stage cost %lld, brute force %lld", trial, s.layers,
                         pp, (long long)mx, (long long)best);
            cr_assert_leq(sq, best_sq * (1 + 1e-12), "trial %d pp %d: not the most even optimal partition", trial, pp);
            loom_plan_free(p);
            cases++;
        }
        loom_plan_model_free(&m);
    }
    cr_assert_gt(cases, 150);
    cr_assert_gt(moved, 10, "weights moved only %d stage boundaries", moved);
}

/* The measured balance of a SmolLM2-shaped model (Q4_1 layers, Q8_0 head):
 * the main type is 16 sixteenths, the head's type measured (any speed
 * within 1/16 .. 16 times), no other type; the printout names both; the
 * plan's stages cost bytes still. LOOM_BALANCE chooses bytes or time. */
Test(plan, balance_is_measured_for_the_model_types) {
    loom_plan_model m = model_of(&smol_like);
    loom_plan_request req = loom_plan_request_defaults(1, 2);
    req.engine.max_seqs = 4;
    loom_plan_balance bal;
    OK(loom_plan_balance_measure(&m, &req, &bal));
    for (int t = 0; t < LOOM_TYPE_COUNT; t++)
        if (t == LOOM_TYPE_Q4_1)
            cr_assert_eq(bal.per_byte[t], 16);
        else if (t == LOOM_TYPE_Q8_0)
            cr_assert(bal.per_byte[t] >= 1 && bal.per_byte[t] <= 255);
        else
            cr_assert_eq(bal.per_byte[t], 0, "type %d not in the model measured", t);
    cr_assert(strstr(bal.what, "2-row") && strstr(bal.what, "Q4_1 1.00") && strstr(bal.what, "Q8_0 "), "%s", bal.what);
    req.balance = &bal;
    loom_plan *p;
    OK(loom_plan_make(&m, &req, NULL, &p));
    cr_assert_str_eq(p->balance, bal.what);
    cr_assert_eq(p->stages[0].cost, stage_cost(&m, 0, p->stages[0].layer_end, true, false));
    loom_plan_free(p);
    loom_plan_model_free(&m);

    bool by_bytes;
    setenv("LOOM_BALANCE", "bytes", 1);
    OK(loom_plan_balance_by_bytes(&by_bytes));
    cr_assert(by_bytes);
    setenv("LOOM_BALANCE", "time", 1);
    OK(loom_plan_balance_by_bytes(&by_bytes));
    cr_assert(!by_bytes);
    setenv("LOOM_BALANCE", "speed", 1);
    expect_error(loom_plan_balance_by_bytes(&by_bytes), LOOM_ERR_INVALID, "LOOM_BALANCE=speed: expected bytes or time");
    unsetenv("LOOM_BALANCE");
    OK(loom_plan_balance_by_bytes(&by_bytes));
    cr_assert(!by_bytes);
}

/* ---------------------------------------------------- head split oracle */

/* Fewest KV heads held in total over every ordering of the even sizes. */
static int best_kv_total(int heads, int rep, int g, int tp) {
    int G = heads / g, base = G / tp, extra = G % tp, best = INT32_MAX;
    /* each rank picks base or base+1 groups, exactly `extra` of the latter */
    for (uint32_t mask = 0; mask < (1u << tp); mask++) {
        if (__builtin_popcount(mask) != extra) continue;
        int at = 0, total = 0;
        for (int t = 0; t < tp; t++) {
            int n = (base + (int)((mask >> t) & 1)) * g;
            total += (at + n - 1) / rep - at / rep + 1;
            at += n;
        }
        if (total < best) best = total;
    }
    return best;
}

Test(plan, head_splits_hold_the_fewest_kv_heads) {
    const struct {
        int heads, kv, hd;
        loom_type o;
    } shapes[] = {{9, 3, 64, LOOM_TYPE_Q4_1},  {12, 4, 64, LOOM_TYPE_Q8_0},  {32, 8, 64, LOOM_TYPE_Q4_0},
                  {32, 8, 64, LOOM_TYPE_Q4_K}, {64, 8, 128, LOOM_TYPE_Q4_K}, {24, 6, 64, LOOM_TYPE_F16},
                  {14, 2, 64, LOOM_TYPE_Q8_0}, {40, 8, 64, LOOM_TYPE_Q6_K},  {16, 16, 64, LOOM_TYPE_Q8_0}};
    int checked = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int heads = shapes[i].heads, hd = shapes[i].hd;
        loom_type o = shapes[i].o;
        shape s = {"llama", 2,    512,   heads,          shapes[i].kv,   hd,      512,
                   1024,    true, false, LOOM_TYPE_Q8_0, LOOM_TYPE_Q8_0, all_q4_1};
        loom_plan_model m = model_of(&s);
        for (int l = 0; l < 2; l++) m.layers[l].o = o;
        int g = (int)(blk(o) / gcd(blk(o), hd));
        for (int tp = 1; tp <= heads / g && tp <= 16; tp++) {
            loom_plan_request req = loom_plan_request_defaults(tp, 1);
            req.engine.ctx_size = 64;
            loom_plan *p;
            OK(loom_plan_make(&m, &req, NULL, &p));
            check_plan(&m, p, &req);
            int total = 0;
            for (int t = 0; t < tp; t++) total += p->ranks[t].shard.kv_end - p->ranks[t].shard.kv_begin;
            cr_assert_eq(total, best_kv_total(heads, heads / shapes[i].kv, g, tp),
                         "%d/%d heads, groups of %d, tp %d: %d KV heads held", heads, shapes[i].kv, g, tp, total);
            loom_plan_free(p);
            checked++;
        }
        loom_plan_model_free(&m);
    }
    cr_assert_gt(checked, 50);
}

/* SmolLM2's 9 query / 3 KV heads: 4|5 (or 5|4) with KV head 1 on both at
 * tp 2; whole GQA groups at tp 3; replication at tp 4. */
Test(plan, replication_of_9_over_3_heads) {
    loom_plan_model m = model_of(&smol_like);
    loom_plan *p;
    loom_plan_request req = loom_plan_request_defaults(2, 1);
    OK(loom_plan_make(&m, &req, NULL, &p));
    const loom_shard *a = &p->ranks[0].shard, *b = &p->ranks[1].shard;
    int na = a->q_end - a->q_begin, nb = b->q_end - b->q_begin;
    cr_assert((na == 4 && nb == 5) || (na == 5 && nb == 4), "%d|%d", na, nb);
    cr_assert_eq(a->kv_end - 1, 1);
    cr_assert_eq(b->kv_begin, 1);
    cr_assert(p->ranks[0].kv_shared_last && p->ranks[1].kv_shared_first);
    cr_assert(!p->ranks[0].kv_shared_first && !p->ranks[1].kv_shared_last);
    loom_plan_free(p);

    req = loom_plan_request_defaults(3, 1);
    OK(loom_plan_make(&m, &req, NULL, &p));
    for (int t = 0; t < 3; t++) {
        cr_assert_eq(p->ranks[t].shard.q_begin, 3 * t);
        cr_assert_eq(p->ranks[t].shard.kv_begin, t);
        cr_assert_eq(p->ranks[t].shard.kv_end, t + 1);
        cr_assert(!p->ranks[t].kv_shared_first && !p->ranks[t].kv_shared_last);
    }
    loom_plan_free(p);

    req = loom_plan_request_defaults(4, 1);
    OK(loom_plan_make(&m, &req, NULL, &p));
    check_plan(&m, p, &req);
    int held = 0, replicated = 0;
    for (int t = 0; t < 4; t++) {
        held += p->ranks[t].shard.kv_end - p->ranks[t].shard.kv_begin;
        replicated += p->ranks[t].kv_shared_first || p->ranks[t].kv_shared_last;
    }
    cr_assert_eq(held, 5, "4 ranks over 3 KV heads hold 5 in total at best, not %d", held);
    cr_assert_geq(replicated, 2);
    loom_plan_free(p);

    /* tp 9: one query head each, every KV head on three ranks */
    req = loom_plan_request_defaults(9, 1);
    OK(loom_plan_make(&m, &req, NULL, &p));
    check_plan(&m, p, &req);
    for (int t = 0; t < 9; t++) cr_assert(p->ranks[t].kv_shared_first && p->ranks[t].kv_shared_last);
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

/* A K-quant model with width a multiple of 256: heads of 64 go in groups
 * of 4; mixing Q8_0 and Q4_K attn_output takes the coarser per stage. */
Test(plan, kquant_heads_go_in_block_groups) {
    shape s = {"llama", 6, 1024, 16, 4, 64, 2816, 4096, false, false, LOOM_TYPE_Q4_K, LOOM_TYPE_Q6_K, all_q4_k};
    loom_plan_model m = model_of(&s);
    for (int tp = 1; tp <= 4; tp++)
        for (int pp = 1; pp <= 3; pp++) {
            loom_plan_request req = loom_plan_request_defaults(tp, pp);
            loom_plan *p;
            OK(loom_plan_make(&m, &req, NULL, &p));
            check_plan(&m, p, &req);
            for (int r = 0; r < p->world; r++) {
                cr_assert_eq(p->ranks[r].shard.q_begin % 4, 0);
                cr_assert_eq(p->ranks[r].shard.ffn_begin % 256, 0);
            }
            for (int st = 0; st < pp; st++) cr_assert_eq(p->stages[st].head_group, 4);
            loom_plan_free(p);
        }
    /* tp 3: groups 2|1|1 → 8|4|4 heads; the ffn (11 groups of 256) 4|4|3 */
    loom_plan_request req = loom_plan_request_defaults(3, 1);
    loom_plan *p;
    OK(loom_plan_make(&m, &req, NULL, &p));
    cr_assert_eq(p->ranks[0].shard.q_end - p->ranks[0].shard.q_begin, 8);
    cr_assert_eq(p->ranks[2].shard.q_end - p->ranks[2].shard.q_begin, 4);
    cr_assert_eq(p->ranks[0].shard.ffn_end, 1024);
    cr_assert_eq(p->ranks[2].shard.ffn_end - p->ranks[2].shard.ffn_begin, 768);
    loom_plan_free(p);
    req = loom_plan_request_defaults(5, 1);
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_PLAN, "attn_output", "Q4_K", "groups of 4",
                 "largest tp that works is 4");
    cr_assert_null(p);
    loom_plan_model_free(&m);

    shape mix = {"llama", 4, 512, 8, 2, 64, 1024, 512, true, false, LOOM_TYPE_Q8_0, LOOM_TYPE_Q8_0, mixed_o};
    m = model_of(&mix);
    for (int pp = 1; pp <= 4; pp++) {
        req = loom_plan_request_defaults(2, pp);
        OK(loom_plan_make(&m, &req, NULL, &p));
        check_plan(&m, p, &req);
        for (int st = 0; st < pp; st++) {
            bool has_odd = false;
            for (int l = p->stages[st].layer_begin; l < p->stages[st].layer_end; l++) has_odd |= l % 2;
            cr_assert_eq(p->stages[st].head_group, has_odd ? 4 : 1, "pp %d stage %d", pp, st);
        }
        loom_plan_free(p);
    }
    loom_plan_model_free(&m);
}

/* ------------------------------------------------------- default model */

static bool open_default(loom_gguf **g, loom_model_config *cfg, loom_plan_model *m) {
    cr_assert(loom_test_file_exists(LOOM_DEFAULT_MODEL), "%s is missing: run launch/fetch-model.sh",
              LOOM_DEFAULT_MODEL);
    OK(loom_gguf_open(LOOM_DEFAULT_MODEL, g));
    OK(loom_model_config_read(*g, cfg));
    OK(loom_plan_model_read(*g, cfg, m));
    return true;
}

/* Plans for many grids; every plan round-trips through its message. */
static void roundtrip(const loom_plan_model *m, const loom_plan *p) {
    uint8_t *buf;
    size_t len;
    OK(loom_plan_encode(p, &buf, &len));
    loom_plan *q;
    OK(loom_plan_decode(buf, len, m, &q));
    cr_assert_eq(q->world, p->world);
    cr_assert_eq(q->tp, p->tp);
    cr_assert_eq(q->pp, p->pp);
    cr_assert_eq(q->model_hash, p->model_hash);
    cr_assert_eq(q->kv_blocks, p->kv_blocks);
    cr_assert(!memcmp(&q->req, &p->req, sizeof q->req));
    cr_assert(!memcmp(&q->cfg, &p->cfg, sizeof q->cfg));
    for (int i = 0; i < p->pp; i++) {
        const loom_stage_plan *a = &p->stages[i], *b = &q->stages[i];
        cr_assert(a->layer_begin == b->layer_begin && a->layer_end == b->layer_end && a->cost == b->cost &&
                  a->head_group == b->head_group && a->ffn_group == b->ffn_group);
    }
    cr_assert(!memcmp(q->grid, p->grid, (size_t)p->world * sizeof *p->grid));
    for (int r = 0; r < p->world; r++) {
        const loom_rank_plan *a = &p->ranks[r], *b = &q->ranks[r];
        const loom_shard *x = &a->shard, *y = &b->shard;
        cr_assert(x->layer_begin == y->layer_begin && x->layer_end == y->layer_end && x->q_begin == y->q_begin &&
                  x->q_end == y->q_end && x->kv_begin == y->kv_begin && x->kv_end == y->kv_end &&
                  x->ffn_begin == y->ffn_begin && x->ffn_end == y->ffn_end && x->vocab_begin == y->vocab_begin &&
                  x->vocab_end == y->vocab_end && x->embed == y->embed && x->head == y->head);
        cr_assert_str_eq(a->host, b->host);
        cr_assert(a->world_rank == b->world_rank && a->stage == b->stage && a->tp_rank == b->tp_rank &&
                  a->kv_shared_first == b->kv_shared_first && a->kv_shared_last == b->kv_shared_last &&
                  a->weight_bytes == b->weight_bytes && a->kv_bytes == b->kv_bytes &&
                  a->workspace_bytes == b->workspace_bytes);
    }
    cr_assert_eq(q->n_warnings, p->n_warnings);
    for (int i = 0; i < p->n_warnings; i++) cr_assert_str_eq(q->warnings[i], p->warnings[i]);
    cr_assert_str_eq(q->balance, p->balance);
    uint8_t *buf2;
    size_t len2;
    OK(loom_plan_encode(q, &buf2, &len2));
    cr_assert(len2 == len && !memcmp(buf, buf2, len), "re-encoding a decoded plan changes its bytes");
    free(buf);
    free(buf2);
    loom_plan_free(q);
}

Test(plan, default_model_many_grids) {
    loom_gguf *g;
    loom_model_config cfg;
    loom_plan_model m;
    if (!open_default(&g, &cfg, &m)) return;
    cr_assert_eq(m.embed, LOOM_TYPE_Q8_0);
    cr_assert_eq(m.layers[0].o, LOOM_TYPE_Q4_1);
    cr_assert_eq(m.hash, loom_gguf_header_hash(g));
    int plans = 0;
    for (int tp = 1; tp <= 9; tp++)
        for (int pp = 1; pp <= 30; pp += (pp < 6 ? 1 : 8)) {
            loom_plan_request req = loom_plan_request_defaults(tp, pp);
            req.engine.ctx_size = 1000;
            req.engine.max_seqs = 3;
            loom_plan *p;
            OK(loom_plan_make(&m, &req, NULL, &p));
            check_plan(&m, p, &req);
            roundtrip(&m, p);
            loom_plan_free(p);
            plans++;
        }
    cr_assert_eq(plans, 9 * 9);
    /* pp 2: the lm head weighs ~13 layers, so the last stage gets far fewer */
    loom_plan_request req = loom_plan_request_defaults(1, 2);
    loom_plan *p;
    OK(loom_plan_make(&m, &req, NULL, &p));
    int first = p->stages[0].layer_end, last = 30 - first;
    cr_assert_lt(last + 10, first, "pp 2 put %d layers first and %d last", first, last);
    loom_plan_free(p);
    loom_plan_model_free(&m);
    loom_gguf_free(g);
}

/* The plan's weight bytes are what loom_weights_create binds once
 * loom_weights_repack has put every matrix with an r8 layout into it (as
 * the AVX2 level does). */
static void weights_match(const loom_gguf *g, const loom_model_config *cfg, const loom_plan_model *m, int tp, int pp) {
    loom_plan_request req = loom_plan_request_defaults(tp, pp);
    loom_plan *p;
    OK(loom_plan_make(m, &req, NULL, &p));
    char missing[128];
    cr_assert(loom_isa_supported(LOOM_ISA_AVX2, missing, sizeof missing),
              "this test needs the AVX2 level, which holds every type with an r8 layout in it (missing: %s)", missing);
    const loom_isa was = loom_isa_get();
    OK(loom_isa_set(LOOM_ISA_AVX2));
    for (int r = 0; r < p->world; r++) {
        loom_weights *w;
        OK(loom_weights_create(g, cfg, &p->ranks[r].shard, &w));
        OK(loom_weights_repack(w, g, NULL));
        cr_assert_eq((int64_t)(w->bytes_mapped + w->bytes_copied), p->ranks[r].weight_bytes,
                     "tp %d pp %d rank %d: the weights hold %zu + %zu bytes, the plan says %lld", tp, pp, r,
                     w->bytes_mapped, w->bytes_copied, (long long)p->ranks[r].weight_bytes);
        loom_weights_free(w);
    }
    OK(loom_isa_set(was));
    loom_plan_free(p);
}

Test(plan, weight_bytes_are_what_loom_weights_create_binds) {
    loom_gguf *g;
    loom_model_config cfg;
    loom_plan_model m;
    if (open_default(&g, &cfg, &m)) {
        const int grids[][2] = {{1, 1}, {2, 2}, {3, 1}, {4, 3}, {9, 2}, {5, 30}};
        for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++)
            weights_match(g, &cfg, &m, grids[i][0], grids[i][1]);
        loom_plan_model_free(&m);
        loom_gguf_free(g);
    }
    /* K-quant qwen2 (biases) with rope factors, untied, F16 norms: in memory */
    shape s = {"qwen2", 3, 512, 8, 2, 64, 1536, 600, false, true, LOOM_TYPE_Q8_0, LOOM_TYPE_Q6_K, all_q4_k};
    size_t size;
    void *buf = write_gguf(&s, NULL, &size);
    OK(loom_gguf_open_memory(buf, size, "kq.gguf", &g));
    OK(loom_model_config_read(g, &cfg));
    cr_assert(cfg.qkv_bias && cfg.has_rope_factors && !cfg.tied_embeddings);
    OK(loom_plan_model_read(g, &cfg, &m));
    for (int tp = 1; tp <= 2; tp++)
        for (int pp = 1; pp <= 3; pp++) weights_match(g, &cfg, &m, tp, pp);
    loom_plan_model_free(&m);
    loom_gguf_free(g);
    free(buf);
}

/* --------------------------------------------------------- 70B shape */

static void plan_70b(const loom_plan_model *m, int tp, int pp, loom_plan **out) {
    loom_plan_request req = loom_plan_request_defaults(tp, pp);
    OK(loom_plan_make(m, &req, NULL, out));
    check_plan(m, *out, &req);
    for (int r = 0; r < (*out)->world; r++)
        cr_assert_eq((*out)->ranks[r].shard.q_begin % 2, 0, "Q4_K: heads of 128 in pairs");
}

Test(plan, llama_70b_shapes) {
    loom_plan_model m = model_of(&llama70b);
    const int tps[] = {3, 6, 16}, pps[] = {3, 5, 7};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            loom_plan *p;
            plan_70b(&m, tps[i], pps[j], &p);
            roundtrip(&m, p);
            /* balance: no stage more than a layer and a bit above the mean */
            int64_t total = 0, mx = 0;
            for (int s = 0; s < pps[j]; s++) {
                total += p->stages[s].cost;
                if (p->stages[s].cost > mx) mx = p->stages[s].cost;
            }
            cr_assert_lt(mx, total / pps[j] + stage_cost(&m, 0, 2, false, false), "tp %d pp %d", tps[i], pps[j]);
            loom_plan_free(p);
        }
    /* tp 16 fits (32 head pairs, 112 column groups); tp 33 does not */
    loom_plan_request req = loom_plan_request_defaults(33, 1);
    loom_plan *p;
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_PLAN, "largest tp that works is 32");
    loom_plan_model_free(&m);
}

/* The same shape through a sparse header-only file gives the same plan. */
Test(plan, llama_70b_sparse_file) {
    char dir[] = "/tmp/loom-test-plan-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/llama70b.gguf", dir);
    write_gguf(&llama70b, path, NULL);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_gt((uint64_t)sb.st_size, 39000000000ull);
    cr_assert_lt((uint64_t)sb.st_blocks * 512, 16u << 20);
    loom_gguf *g;
    loom_model_config cfg;
    loom_plan_model fm, hm = model_of(&llama70b);
    OK(loom_gguf_open(path, &g));
    OK(loom_model_config_read(g, &cfg));
    OK(loom_plan_model_read(g, &cfg, &fm));
    hm.hash = fm.hash;
    hm.cfg.ctx_train = cfg.ctx_train;
    cr_assert_eq(fm.embed, hm.embed);
    cr_assert_eq(fm.head, hm.head);
    cr_assert(!memcmp(fm.layers, hm.layers, 80 * sizeof *fm.layers));
    const int grids[][2] = {{3, 3}, {6, 5}, {16, 7}, {16, 5}};
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++) {
        loom_plan *a, *b;
        plan_70b(&fm, grids[i][0], grids[i][1], &a);
        plan_70b(&hm, grids[i][0], grids[i][1], &b);
        uint8_t *ba, *bb;
        size_t la, lb;
        OK(loom_plan_encode(a, &ba, &la));
        OK(loom_plan_encode(b, &bb, &lb));
        cr_assert(la == lb && !memcmp(ba, bb, la), "file and hand-made descriptions plan differently");
        loom_plan *d;
        OK(loom_plan_decode(ba, la, &fm, &d));
        loom_plan_free(d);
        free(ba);
        free(bb);
        loom_plan_free(a);
        loom_plan_free(b);
    }
    loom_plan_model_free(&fm);
    loom_plan_model_free(&hm);
    loom_gguf_free(g);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------ impossible requests */

Test(plan, impossible_requests_say_what_works) {
    loom_plan_model m = model_of(&smol_like);
    loom_plan *p = (loom_plan *)&p;
    loom_plan_request req = loom_plan_request_defaults(4, 2);
    req.world = 6;
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_PLAN, "world of 6 ranks != tp 4 × pp 2 = 8",
                 "--tp 1 --pp 6, --tp 2 --pp 3, --tp 3 --pp 2, --tp 6 --pp 1");
    cr_assert_null(p);
    req = loom_plan_request_defaults(10, 1);
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_PLAN, "exceeds the model's 9 query heads",
                 "largest tp that works is 9");
    req = loom_plan_request_defaults(1, 31);
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_PLAN, "pp 31 exceeds the model's 30 layers",
                 "largest pp is 30");
    req = loom_plan_request_defaults(0, 1);
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_INVALID, "at least 1");
    req = loom_plan_request_defaults(1, 1);
    req.engine.kv_type = LOOM_TYPE_Q4_0;
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_INVALID, "f16, f32 or q8_0");

    /* MLP columns: 512 columns of Q4_K ffn_down are 2 groups */
    shape s = {"llama", 2, 1024, 16, 16, 64, 512, 1000, true, false, LOOM_TYPE_Q8_0, LOOM_TYPE_Q8_0, all_q4_k};
    loom_plan_model k = model_of(&s);
    req = loom_plan_request_defaults(3, 1);
    expect_error(loom_plan_make(&k, &req, NULL, &p), LOOM_ERR_PLAN, "ffn_down", "groups of 256",
                 "largest tp that works is 2");
    loom_plan_model_free(&k);

    /* memory: too small for the cache, then too small for the weights */
    req = loom_plan_request_defaults(2, 2);
    OK(loom_plan_make(&m, &req, NULL, &p));
    int64_t need = 0;
    for (int r = 0; r < 4; r++) {
        int64_t t = p->ranks[r].weight_bytes + p->ranks[r].kv_bytes + p->ranks[r].workspace_bytes;
        if (t > need) need = t;
    }
    loom_plan_free(p);
    req.max_memory = need;
    OK(loom_plan_make(&m, &req, NULL, &p));
    loom_plan_free(p);
    req.max_memory = need / 3;
    loom_status st = loom_plan_make(&m, &req, NULL, &p);
    cr_assert_not_null(st);
    const char *msg = loom_status_message(st);
    cr_assert(strstr(msg, "smallest per-rank memory this plan needs"), "%s", msg);
    const char *at = strstr(msg, "largest --ctx-size that fits is ");
    cr_assert_not_null(at, "%s", msg);
    int ctx = atoi(at + strlen("largest --ctx-size that fits is "));
    cr_assert(ctx > 0 && ctx < 4096, "%s", msg);
    loom_status_free(st);
    req.engine.ctx_size = ctx;
    OK(loom_plan_make(&m, &req, NULL, &p)); /* the suggestion fits */
    loom_plan_free(p);
    req.engine.ctx_size = ctx + 1;
    expect_error(loom_plan_make(&m, &req, NULL, &p), LOOM_ERR_PLAN, "too small"); /* and is the largest */
    req.engine.ctx_size = 512;
    req.max_memory = 40 << 20; /* rank 0's weights are 38.6 MiB, plus its workspace */
    st = loom_plan_make(&m, &req, NULL, &p);
    cr_assert_not_null(st);
    msg = loom_status_message(st);
    at = strstr(msg, "more ranks would: e.g. --tp ");
    cr_assert_not_null(at, "%s", msg);
    int tp2 = 0, pp2 = 0;
    cr_assert_eq(sscanf(at, "more ranks would: e.g. --tp %d --pp %d", &tp2, &pp2), 2, "%s", msg);
    loom_status_free(st);
    req.tp = tp2, req.pp = pp2;
    OK(loom_plan_make(&m, &req, NULL, &p)); /* the suggested grid fits */
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

/* ------------------------------------------------------------- hosts */

Test(plan, tp_groups_land_on_one_host) {
    loom_plan_model m = model_of(&smol_like);
    /* round-robin placement over two hosts: a b a b a b a b */
    const char *rr[8] = {"a", "b", "a", "b", "a", "b", "a", "b"};
    loom_plan_request req = loom_plan_request_defaults(2, 4);
    loom_plan *p;
    OK(loom_plan_make(&m, &req, rr, &p));
    check_plan(&m, p, &req);
    cr_assert_eq(p->n_warnings, 0);
    for (int s = 0; s < 4; s++) {
        const loom_rank_plan *x = loom_plan_rank(p, loom_plan_world_rank(p, s, 0));
        const loom_rank_plan *y = loom_plan_rank(p, loom_plan_world_rank(p, s, 1));
        cr_assert_str_eq(x->host, y->host, "stage %d spans hosts", s);
        cr_assert_str_eq(x->host, rr[x->world_rank]);
    }
    /* stages ordered by host: one host change along the pipeline */
    cr_assert_str_eq(loom_plan_rank(p, loom_plan_world_rank(p, 1, 0))->host, "a");
    cr_assert_str_eq(loom_plan_rank(p, loom_plan_world_rank(p, 2, 0))->host, "b");
    roundtrip(&m, p);
    loom_plan_free(p);

    /* by-slot placement already fits: the default grid */
    const char *slot[8] = {"a", "a", "a", "a", "b", "b", "b", "b"};
    OK(loom_plan_make(&m, &req, slot, &p));
    for (int r = 0; r < 8; r++) cr_assert_eq(p->ranks[r].stage, r / 2);
    loom_plan_free(p);

    /* 3 + 3 + 2 ranks cannot hold two groups of 4: a warning names the group */
    const char *odd[8] = {"x", "x", "x", "y", "y", "y", "z", "z"};
    req = loom_plan_request_defaults(4, 2);
    OK(loom_plan_make(&m, &req, odd, &p));
    check_plan(&m, p, &req);
    cr_assert_geq(p->n_warnings, 1);
    cr_assert(strstr(p->warnings[0], "spans hosts"), "%s", p->warnings[0]);
    roundtrip(&m, p);
    loom_plan_free(p);
    loom_plan_model_free(&m);
}

/* ----------------------------------------------------- hostile input */

static void encode_plan(const loom_plan_model *m, int tp, int pp, uint8_t **buf, size_t *len) {
    loom_plan_request req = loom_plan_request_defaults(tp, pp);
    loom_plan *p;
    OK(loom_plan_make(m, &req, NULL, &p));
    OK(loom_plan_encode(p, buf, len));
    loom_plan_free(p);
}

Test(plan, decode_rejects_truncated_and_garbled) {
    loom_plan_model m = model_of(&smol_like);
    uint8_t *buf;
    size_t len;
    encode_plan(&m, 3, 2, &buf, &len);
    loom_plan *p = (loom_plan *)&p;
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        loom_status st = loom_plan_decode(cut, n, &m, &p);
        cr_assert_not_null(st, "a plan cut to %zu of %zu bytes was accepted", n, len);
        cr_assert_null(p);
        loom_status_free(st);
        free(cut);
    }
    /* flipped bytes: never a crash; accepted only when still consistent */
    int rejected = 0;
    for (int i = 0; i < 3000; i++) {
        uint8_t *bad = malloc(len);
        memcpy(bad, buf, len);
        for (int k = 0; k <= i % 3; k++) bad[rnd((uint32_t)len)] ^= (uint8_t)(1 + rnd(255));
        loom_status st = loom_plan_decode(bad, len, &m, &p);
        if (st) {
            rejected++;
            cr_assert_null(p);
            loom_status_free(st);
        } else {
            loom_plan_request req = p->req;
            check_plan(&m, p, &req);
            loom_plan_free(p);
        }
        free(bad);
    }
    cr_assert_gt(rejected, 2500);
    expect_error(loom_plan_decode((const uint8_t *)"\xff\xff\xff\xff", 4, &m, &p), LOOM_ERR_FORMAT, "not a ShardPlan");
    free(buf);
    loom_plan_model_free(&m);
}

/* Decodes, lets `edit` change the message, re-encodes and decodes that. */
static loom_status decode_edited(const loom_plan_model *m, const uint8_t *buf, size_t len,
                                 void (*edit)(Loom__ShardPlan *), const loom_plan_model *against) {
    Loom__ShardPlan *msg = loom__shard_plan__unpack(NULL, len, buf);
    cr_assert_not_null(msg);
    edit(msg);
    size_t n = loom__shard_plan__get_packed_size(msg);
    uint8_t *out = malloc(n + 1);
    loom__shard_plan__pack(msg, out);
    loom__shard_plan__free_unpacked(msg, NULL);
    loom_plan *p = (loom_plan *)&p;
    loom_status st = loom_plan_decode(out, n, against ? against : m, &p);
    cr_assert(st || p);
    if (st) cr_assert_null(p);
    loom_plan_free(st ? NULL : p);
    free(out);
    return st;
}

static void e_none(Loom__ShardPlan *x) { (void)x; }
static void e_overlap(Loom__ShardPlan *x) { x->ranks[1]->q_begin -= 1; }
static void e_gap(Loom__ShardPlan *x) { x->ranks[1]->ffn_begin += 32; }
static void e_missing_layer(Loom__ShardPlan *x) {
    x->stages[1]->layer_begin += 1;
    for (size_t i = 0; i < x->n_ranks; i++)
        if (x->ranks[i]->stage == 1) x->ranks[i]->layer_begin += 1;
}
static void e_hash(Loom__ShardPlan *x) { x->model_hash ^= 1; }
static void e_protocol(Loom__ShardPlan *x) { x->protocol = 99; }
static void e_dup_rank(Loom__ShardPlan *x) { x->ranks[1]->world_rank = 0; }
static void e_kv(Loom__ShardPlan *x) { x->ranks[0]->kv_end += 1; }
static void e_world(Loom__ShardPlan *x) { x->world = 5; }
static void e_bytes(Loom__ShardPlan *x) { x->ranks[2]->weight_bytes += 1; }
static void e_embed(Loom__ShardPlan *x) { x->ranks[0]->embed = 0; }
static void e_vocab(Loom__ShardPlan *x) { x->ranks[1]->vocab_end = 60000; }
static void e_no_model(Loom__ShardPlan *x) {
    loom__model_shape__free_unpacked(x->model, NULL);
    x->model = NULL;
}
static void e_kq_block(Loom__ShardPlan *x) {
    x->ranks[0]->q_end = 6, x->ranks[1]->q_begin = 6;
    x->ranks[0]->kv_end = 2, x->ranks[1]->kv_begin = 1;
}
static void e_grid(Loom__ShardPlan *x) { x->ranks[3]->tp_rank = 7; }

Test(plan, decode_rejects_inconsistent_plans) {
    loom_plan_model m = model_of(&smol_like);
    uint8_t *buf;
    size_t len;
    encode_plan(&m, 2, 2, &buf, &len);
    cr_assert_null(decode_edited(&m, buf, len, e_none, NULL));
    expect_error(decode_edited(&m, buf, len, e_overlap, NULL), LOOM_ERR_PLAN, "query heads", "overlap");
    expect_error(decode_edited(&m, buf, len, e_gap, NULL), LOOM_ERR_PLAN, "MLP columns", "gap");
    expect_error(decode_edited(&m, buf, len, e_missing_layer, NULL), LOOM_ERR_PLAN, "are missing");
    expect_error(decode_edited(&m, buf, len, e_hash, NULL), LOOM_ERR_PLAN, "header hash", "same model file");
    expect_error(decode_edited(&m, buf, len, e_protocol, NULL), LOOM_ERR_FORMAT, "protocol version 99");
    expect_error(decode_edited(&m, buf, len, e_dup_rank, NULL), LOOM_ERR_PLAN, "already names");
    expect_error(decode_edited(&m, buf, len, e_kv, NULL), LOOM_ERR_PLAN, "KV heads", "need");
    expect_error(decode_edited(&m, buf, len, e_world, NULL), LOOM_ERR_PLAN, "world 5");
    expect_error(decode_edited(&m, buf, len, e_bytes, NULL), LOOM_ERR_PLAN, "weight");
    expect_error(decode_edited(&m, buf, len, e_embed, NULL), LOOM_ERR_PLAN, "embedding belongs to stage 0");
    expect_error(decode_edited(&m, buf, len, e_vocab, NULL), LOOM_ERR_PLAN, "outside the model");
    expect_error(decode_edited(&m, buf, len, e_no_model, NULL), LOOM_ERR_FORMAT, "model shape is missing");
    expect_error(decode_edited(&m, buf, len, e_grid, NULL), LOOM_ERR_PLAN, "outside the grid");
    /* a plan for another model */
    shape other = smol_like;
    other.layers = 24;
    loom_plan_model o = model_of(&other);
    expect_error(decode_edited(&m, buf, len, e_none, &o), LOOM_ERR_PLAN, "made for 30 layers", "24 layers");
    loom_plan_model_free(&o);
    free(buf);

    /* a boundary inside a Q4_K block of heads */
    shape s = {"llama", 2, 1024, 16, 4, 64, 1024, 512, true, false, LOOM_TYPE_Q8_0, LOOM_TYPE_Q8_0, all_q4_k};
    loom_plan_model k = model_of(&s);
    encode_plan(&k, 2, 1, &buf, &len);
    expect_error(decode_edited(&k, buf, len, e_kq_block, NULL), LOOM_ERR_PLAN, "do not fall on the blocks",
                 "groups of 4");
    free(buf);
    loom_plan_model_free(&k);
    loom_plan_model_free(&m);
}

/* ---------------------------------------------------------- printing */

Test(plan, print_text_and_json) {
    loom_plan_model m = model_of(&smol_like);
    loom_plan_request req = loom_plan_request_defaults(2, 2);
    loom_plan *p;
    const char *hosts[4] = {"n1", "n1", "n2", "n2"};
    OK(loom_plan_make(&m, &req, hosts, &p));
    char *text = NULL;
    size_t tn = 0;
    FILE *f = open_memstream(&text, &tn);
    loom_plan_print(p, f, false);
    fclose(f);
    cr_assert(strstr(text, "0-1*"), "no replicated KV head marked:\n%s", text);
    cr_assert(strstr(text, "1*-2"), "%s", text);
    cr_assert(strstr(text, "world 4 = pp 2 × tp 2"), "%s", text);
    cr_assert(strstr(text, "n2"), "%s", text);
    cr_assert(strstr(text, "balance stages by bytes read per token"), "%s", text);
    free(text);

    f = open_memstream(&text, &tn);
    loom_plan_print(p, f, true);
    fclose(f);
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    cr_assert_not_null(j, "JSON does not parse: %s\n%s", err.text, text);
    cr_assert_eq(json_integer_value(json_object_get(j, "world")), 4);
    json_t *ranks = json_object_get(j, "ranks");
    cr_assert_eq(json_array_size(ranks), 4);
    json_t *r1 = json_array_get(ranks, 1);
    cr_assert_eq(json_integer_value(json_object_get(r1, "weight_bytes")), p->ranks[1].weight_bytes);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(r1, "kv_replicated"), 0)), 1);
    cr_assert_str_eq(json_string_value(json_object_get(r1, "host")), "n1");
    cr_assert_eq(json_array_size(json_object_get(j, "stages")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(j, "balance")), "bytes read per token");
    json_decref(j);
    free(text);
    loom_plan_free(p);

    loom_plan_balance bal = {.per_byte = {[LOOM_TYPE_Q8_0] = 8}, .what = "by time: Q8_0 0.50"};
    req.balance = &bal;
    OK(loom_plan_make(&m, &req, hosts, &p));
    f = open_memstream(&text, &tn);
    loom_plan_print(p, f, false);
    fclose(f);
    cr_assert(strstr(text, "balance by time: Q8_0 0.50"), "%s", text);
    free(text);
    loom_plan_free(p);
    loom_plan_model_free(&m);
}
