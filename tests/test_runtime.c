/* Unit tests of the runtime pieces owned by the engine: paged KV cache,
 * sampler, thread pool, attention kernels (every ISA), element-wise ops. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/kv_cache.h"
#include "runtime/ops.h"
#include "runtime/quant.h"
#include "runtime/sampler.h"
#include "runtime/threadpool.h"

/* ------------------------------------------------------------ KV cache */

static loom_kv_cache *make_kv(int blocks) {
    loom_kv_config c = {.n_layers = 2, .n_kv_heads = 3, .head_dim = 8, .type = LOOM_TYPE_F16, .block_tokens = 4,
                        .n_blocks = blocks, .max_seqs = 3, .max_ctx = 20};
    loom_kv_cache *kv;
    loom_status st = loom_kv_create(&c, &kv);
    cr_assert(!st, "%s", loom_status_message(st));
    return kv;
}

Test(kv_cache, reserve_release_and_full) {
    loom_kv_cache *kv = make_kv(6);
    cr_assert(!loom_kv_reserve(kv, 0, 9)); /* 3 blocks */
    cr_assert_eq(loom_kv_capacity(kv, 0), 12);
    cr_assert_eq(loom_kv_free_blocks(kv), 3);
    cr_assert(!loom_kv_reserve(kv, 0, 12)); /* already covered */
    cr_assert_eq(loom_kv_free_blocks(kv), 3);
    loom_status st = loom_kv_reserve(kv, 1, 16); /* 4 blocks > 3 free */
    cr_assert_eq(loom_status_code(st), LOOM_ERR_KV_FULL);
    cr_assert(strstr(loom_status_message(st), "KV cache full"), "%s", loom_status_message(st));
    loom_status_free(st);
    cr_assert_eq(loom_kv_free_blocks(kv), 3, "a failed reserve must change nothing");
    cr_assert_eq(loom_kv_capacity(kv, 1), 0);
    st = loom_kv_reserve(kv, 2, 21);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_CONTEXT);
    loom_status_free(st);
    st = loom_kv_reserve(kv, 3, 1);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_INVALID);
    loom_status_free(st);
    /* blocks of different slots never alias */
    cr_assert(!loom_kv_reserve(kv, 1, 12));
    const int32_t *a = loom_kv_table(kv, 0), *b = loom_kv_table(kv, 1);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) cr_assert_neq(a[i], b[j]);
    loom_kv_release(kv, 0);
    cr_assert_eq(loom_kv_free_blocks(kv), 3);
    cr_assert_eq(loom_kv_capacity(kv, 0), 0);
    cr_assert(loom_kv_k_block(kv, 1, 5) != loom_kv_k_block(kv, 0, 5));
    loom_kv_free(kv);
}

Test(kv_cache, bytes_and_bad_geometry) {
    loom_kv_config c = {.n_layers = 2, .n_kv_heads = 3, .head_dim = 8, .type = LOOM_TYPE_F32, .block_tokens = 4,
                        .n_blocks = 5, .max_seqs = 1, .max_ctx = 20};
    cr_assert_eq(loom_kv_bytes(&c), (size_t)2 * 2 * 5 * 3 * 4 * 8 * 4);
    cr_assert_eq(loom_kv_blocks_for(3, 17, 4), 15);
    c.type = LOOM_TYPE_Q4_0;
    loom_kv_cache *kv;
    loom_status st = loom_kv_create(&c, &kv);
    cr_assert(st && kv == NULL);
    loom_status_free(st);
    c.type = LOOM_TYPE_F16;
    c.n_blocks = 0;
    st = loom_kv_create(&c, &kv);
    cr_assert(st && kv == NULL);
    loom_status_free(st);
}

/* ------------------------------------------------------------ sampler */

static loom_sampler *make_sampler(loom_sampling_params p, int n) {
    loom_sampler *s;
    loom_status st = loom_sampler_create(&p, n, &s);
    cr_assert(!st, "%s", loom_status_message(st));
    return s;
}

Test(sampler, greedy_ties_go_to_the_lowest_id) {
    loom_sampling_params p = loom_sampling_defaults();
    p.temperature = 0;
    loom_sampler *s = make_sampler(p, 6);
    float l[6] = {0, 3, 1, 3, -2, 3};
    cr_assert_eq(loom_sampler_sample(s, l), 1);
    loom_sampler_free(s);
}

/* llama.cpp's infill sampler (sampler.h): the draws over 200 seeds of
 * hand-made distributions. Tokens: 0 end of generation, 1 "a", 2 "ab",
 * 3 "abc", 4 "x", 5 "y", 6 a control token, 7 "z", 8 "w", 9 "v". */
static int infill_draws(const float *p, int top_k, bool infill, int32_t *seen) {
    static const uint32_t off[] = {0, 0, 1, 3, 6, 7, 8, 8, 9, 10, 11};
    static const uint8_t kind[] = {1, 0, 0, 0, 0, 0, 2, 0, 0, 0};
    const loom_sampler_vocab v = {.n = 10, .off = off, .text = "aababcxyzwv", .kind = kind, .end_token = 0};
    int distinct = 0;
    memset(seen, 0, 10 * sizeof *seen);
    for (int seed = 0; seed < 200; seed++) {
        loom_sampling_params sp = loom_sampling_defaults();
        sp.temperature = 1, sp.top_k = top_k, sp.top_p = 1, sp.min_p = 0, sp.infill = infill, sp.seed = (uint64_t)seed;
        loom_sampler *s = make_sampler(sp, 10);
        loom_sampler_set_vocab(s, &v);
        float l[10];
        for (int i = 0; i < 10; i++) l[i] = p[i] > 0 ? logf(p[i]) : -30;
        const int32_t t = loom_sampler_sample(s, l);
        cr_assert(t >= 0 && t < 10);
        distinct += seen[t]++ == 0;
        loom_sampler_free(s);
    }
    return distinct;
}

Test(sampler, infill_keeps_what_llama_cpp_keeps) {
    int32_t seen[10];
    /* the end holds 0.3 of 3 candidates: 3 * 0.3 * 3 > 0.7, only the end is drawn */
    const float eog[10] = {0.3f, 0.4f, 0, 0, 0.3f};
    cr_assert_eq(infill_draws(eog, 3, true, seen), 1);
    cr_assert_eq(seen[0], 200);
    cr_assert_gt(infill_draws(eog, 3, false, seen), 1, "without it the others are drawn too");
    /* "a" begins "ab": the likelier "ab" takes its 0.3 (0.65); "x" (0.2) passes 0.2 but not
     * 1/3 of what is left; "y" (0.15) neither: "ab" every time */
    const float merge[10] = {0, 0.3f, 0.35f, 0, 0.2f, 0.15f};
    cr_assert_eq(infill_draws(merge, 4, true, seen), 1);
    cr_assert_eq(seen[2], 200, "\"ab\" drawn %d times", seen[2]);
    /* no candidate reaches 0.2 and none begins another: the end token */
    const float flat[10] = {0, 0.18f, 0, 0, 0.17f, 0.17f, 0, 0.16f, 0.16f, 0.16f};
    cr_assert_eq(infill_draws(flat, 6, true, seen), 1);
    cr_assert_eq(seen[0], 200);
    /* two strong candidates, a control token and weak ones: both strong are drawn, nothing else */
    const float two[10] = {0, 0, 0, 0, 0.45f, 0.4f, 0.05f, 0.05f, 0.05f};
    cr_assert_eq(infill_draws(two, 6, true, seen), 2);
    cr_assert(seen[4] && seen[5]);
}

Test(sampler, seeded_draws_reproduce_and_differ_by_seed) {
    enum { V = 1000, N = 50 };
    float base[V];
    for (int i = 0; i < V; i++) base[i] = sinf((float)i) * 3;
    int32_t run[2][N], other[N];
    for (int r = 0; r < 3; r++) {
        loom_sampling_params p = loom_sampling_defaults();
        p.seed = r < 2 ? 42 : 43;
        p.top_k = 0;
        loom_sampler *s = make_sampler(p, V);
        for (int i = 0; i < N; i++) {
            float l[V];
            memcpy(l, base, sizeof l);
            int32_t t = loom_sampler_sample(s, l);
            cr_assert(t >= 0 && t < V);
            if (r < 2) run[r][i] = t;
            else other[i] = t;
        }
        loom_sampler_free(s);
    }
    cr_assert_arr_eq(run[0], run[1], sizeof run[0], "same seed, different tokens");
    cr_assert(memcmp(run[0], other, sizeof other) != 0, "seeds 42 and 43 drew the same 50 tokens");
}

/* top-k over a large vocabulary (the one-pass heap) keeps exactly the k
 * best, lower ids first among equal logits: with a high temperature every
 * kept token is drawn, none other. */
Test(sampler, top_k_keeps_exactly_the_k_best_with_ties_to_lower_ids) {
    enum { V = 4000, K = 40, DRAWS = 4000 };
    static float base[V], l[V];
    for (int i = 0; i < V; i++) base[i] = (float)((i * 7919) % 97) / 8.0f; /* many equal logits */
    base[V - 1] = NAN;
    /* the expected set: logits desc, ids asc */
    static bool want[V];
    int got_k = 0;
    for (int v = 96; v >= 0 && got_k < K; v--)
        for (int i = 0; i < V && got_k < K; i++)
            if (base[i] == (float)v / 8.0f) want[i] = true, got_k++;
    cr_assert_eq(got_k, K);
    loom_sampling_params p = loom_sampling_defaults();
    p.top_k = K;
    p.top_p = 1;
    p.min_p = 0;
    p.temperature = 1000;
    loom_sampler *s = make_sampler(p, V);
    static bool seen[V];
    for (int r = 0; r < DRAWS; r++) {
        memcpy(l, base, sizeof l);
        int32_t t = loom_sampler_sample(s, l);
        cr_assert(t >= 0 && t < V && want[t], "drew token %d, not among the %d best", t, K);
        seen[t] = true;
    }
    for (int i = 0; i < V; i++) cr_assert(!want[i] || seen[i], "token %d of the top %d never drawn in %d draws", i, K, DRAWS);
    loom_sampler_free(s);
}

Test(sampler, top_k_one_is_greedy_and_min_p_cuts) {
    enum { V = 300 };
    float l[V];
    loom_sampling_params p = loom_sampling_defaults();
    p.top_k = 1;
    p.temperature = 5;
    loom_sampler *s = make_sampler(p, V);
    for (int r = 0; r < 20; r++) {
        for (int i = 0; i < V; i++) l[i] = cosf((float)(i * (r + 1)));
        l[(r * 37) % V] = 10;
        cr_assert_eq(loom_sampler_sample(s, l), (r * 37) % V);
    }
    loom_sampler_free(s);
    /* min-p 0.5: only tokens within log(2) of the top survive */
    p = loom_sampling_defaults();
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0.5f;
    p.temperature = 1;
    s = make_sampler(p, V);
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < V; i++) l[i] = 0;
        l[7] = 5;
        l[9] = 4.6f; /* p ratio e^-0.4 = 0.67 > 0.5: allowed */
        l[11] = 4.0f; /* ratio e^-1 = 0.37: cut */
        int32_t t = loom_sampler_sample(s, l);
        cr_assert(t == 7 || t == 9, "min-p let token %d through", t);
    }
    loom_sampler_free(s);
}

Test(sampler, repetition_penalty_and_bad_params) {
    loom_sampling_params p = loom_sampling_defaults();
    p.temperature = 0;
    p.repeat_penalty = 2;
    loom_sampler *s = make_sampler(p, 4);
    loom_sampler_accept(s, 2);
    float l[4] = {0, 1, 1.5f, -1};
    cr_assert_eq(loom_sampler_sample(s, l), 1, "penalised token 2 (1.5 / 2) should lose to token 1");
    loom_sampler_free(s);
    p = loom_sampling_defaults();
    p.top_p = 0;
    loom_status st = loom_sampling_check(&p);
    cr_assert(st && strstr(loom_status_message(st), "top-p"));
    loom_status_free(st);
    p = loom_sampling_defaults();
    p.temperature = NAN;
    st = loom_sampling_check(&p);
    cr_assert(st && strstr(loom_status_message(st), "temperature"));
    loom_status_free(st);
}

Test(sampler, logit_bias_first) {
    loom_sampling_params p = loom_sampling_defaults();
    p.temperature = 0;
    p.repeat_penalty = 2;
    int32_t tok[2] = {3, 1}; /* -1 + 2.5 = 1.5, then the penalty halves it; token 1 banned */
    float val[2] = {2.5f, -100};
    p.n_logit_bias = 2, p.bias_token = tok, p.bias_value = val;
    loom_sampler *s = make_sampler(p, 4);
    val[0] = -100; /* the sampler keeps its own copy of the bias */
    loom_sampler_accept(s, 3);
    float l[4] = {0.6f, 1, 0.5f, -1};
    cr_assert_eq(loom_sampler_sample(s, l), 3, "token 3: (-1 + 2.5) / 2 = 0.75 > 0.6; token 1 banned");
    cr_assert_float_eq(l[3], 0.75f, 1e-6, "the bias comes before the repetition penalty");
    cr_assert_float_eq(l[1], -99.0f, 1e-6);
    loom_sampler_free(s);
    tok[0] = 4; /* outside the vocabulary of 4 */
    loom_sampler *bad = NULL;
    loom_status st = loom_sampler_create(&p, 4, &bad);
    cr_assert(st && strstr(loom_status_message(st), "token 4"), "%s", st ? loom_status_message(st) : "accepted");
    loom_status_free(st);
    tok[0] = 0, val[0] = NAN;
    st = loom_sampling_check(&p);
    cr_assert(st && strstr(loom_status_message(st), "[-100, 100]"));
    loom_status_free(st);
    val[0] = 1, p.n_logit_bias = LOOM_LOGIT_BIAS_MAX + 1;
    st = loom_sampling_check(&p);
    cr_assert(st && strstr(loom_status_message(st), "at most 300"));
    loom_status_free(st);
}

/* ------------------------------------------------------------ thread pool */

typedef struct {
    atomic_int hits[8];
    atomic_long sum;
} pool_ctx;

static void pool_fn(void *vctx, int ith, int nth) {
    pool_ctx *c = vctx;
    atomic_fetch_add(&c->hits[ith], 1);
    int64_t b, e;
    loom_split_range(1000, 16, ith, nth, &b, &e);
    long s = 0;
    for (int64_t i = b; i < e; i++) s += i;
    atomic_fetch_add(&c->sum, s);
}

Test(threadpool, every_thread_runs_every_job_once) {
    for (int n = 1; n <= 4; n++) {
        loom_pool *p;
        cr_assert(!loom_pool_create(n, &p));
        pool_ctx c;
        memset(&c, 0, sizeof c);
        for (int r = 0; r < 500; r++) loom_pool_run(p, pool_fn, &c);
        for (int i = 0; i < n; i++) cr_assert_eq(atomic_load(&c.hits[i]), 500);
        cr_assert_eq(atomic_load(&c.sum), 500L * 999 * 1000 / 2);
        loom_pool_free(p);
    }
    loom_pool *p;
    loom_status st = loom_pool_create(0, &p);
    cr_assert(st && !p);
    loom_status_free(st);
}

/* Thread 0 answers each worker in turn and returns (a worker left out
 * would hang it); one thread measures nothing. Works oversubscribed (4
 * threads on 2 cores): a round trip then waits for a time slice. */
Test(threadpool, handoff_probe_visits_every_worker) {
    for (int n = 1; n <= 4; n++) {
        loom_pool *p;
        cr_assert(!loom_pool_create(n, &p));
        const double ns = loom_pool_handoff_ns(p, 16);
        if (n == 1) cr_assert_eq(ns, 0, "one thread: %g ns", ns);
        else cr_assert(ns > 0 && ns < 1e9, "%d threads: %g ns", n, ns);
        cr_assert_eq(loom_pool_handoff_ns(p, 0), 0);
        pool_ctx c; /* the pool still runs jobs afterwards */
        memset(&c, 0, sizeof c);
        loom_pool_run(p, pool_fn, &c);
        for (int i = 0; i < n; i++) cr_assert_eq(atomic_load(&c.hits[i]), 1);
        loom_pool_free(p);
    }
}

Test(threadpool, split_range_covers_once_on_alignment) {
    for (int64_t n = 0; n < 300; n += 7)
        for (int nth = 1; nth <= 5; nth++) {
            int64_t next = 0;
            for (int i = 0; i < nth; i++) {
                int64_t b, e;
                loom_split_range(n, 16, i, nth, &b, &e);
                cr_assert_eq(b, next);
                cr_assert(e >= b);
                if (e < n) cr_assert_eq(e % 16, 0);
                next = e;
            }
            cr_assert_eq(next, n);
        }
}

/* Every thread of a pool takes pieces from the front of its own span and
 * then from the backs of the others' (as the forward pass's matmuls do):
 * each unit is taken exactly once, whatever the interleaving, and the
 * pieces are no larger than asked. */
#define SPAN_UNITS 5000
typedef struct {
    loom_span spans[4];
    _Atomic int taken[4 * SPAN_UNITS];
    _Atomic int too_big;
} span_ctx;

static void span_fn(void *vctx, int ith, int nth) {
    span_ctx *c = vctx;
    int64_t a, b;
    for (int o = 0; o < nth; o++) {
        const bool own = o == 0;
        loom_span *sp = &c->spans[(ith + o) % nth];
        const int64_t want = own ? 3 : 1 + ith;
        while (loom_span_take(sp, own, want, &a, &b)) {
            if (b - a > want || b <= a) atomic_fetch_add(&c->too_big, 1);
            for (int64_t u = a; u < b; u++) atomic_fetch_add(&c->taken[u], 1);
        }
    }
}

Test(threadpool, spans_give_every_unit_once) {
    static span_ctx c;
    for (int n = 1; n <= 4; n++) {
        loom_pool *p;
        cr_assert(!loom_pool_create(n, &p));
        for (int r = 0; r < 20; r++) {
            memset(&c, 0, sizeof c);
            for (int i = 0; i < n; i++) {
                int64_t a, b;
                loom_split_range(n * SPAN_UNITS - 7 * r, 1, i, n, &a, &b);
                loom_span_init(&c.spans[i], a, b);
            }
            loom_pool_run(p, span_fn, &c);
            cr_assert_eq(atomic_load(&c.too_big), 0, "%d threads: a piece larger than asked or empty", n);
            for (int u = 0; u < n * SPAN_UNITS; u++)
                cr_assert_eq(atomic_load(&c.taken[u]), u < n * SPAN_UNITS - 7 * r,
                             "%d threads, round %d: unit %d taken %d times", n, r, u, atomic_load(&c.taken[u]));
            for (int i = 0; i < n; i++) cr_assert_eq(loom_span_left(&c.spans[i]), 0);
        }
        loom_pool_free(p);
    }
    loom_span s;
    int64_t a, b;
    loom_span_init(&s, 10, 10);
    cr_assert(!loom_span_take(&s, true, 4, &a, &b) && !loom_span_take(&s, false, 4, &a, &b),
              "an empty span gives nothing");
    loom_span_init(&s, 10, 15);
    cr_assert(loom_span_take(&s, false, 4, &a, &b) && a == 11 && b == 15);
    cr_assert(loom_span_take(&s, true, 4, &a, &b) && a == 10 && b == 11);
    cr_assert(!loom_span_take(&s, true, 1, &a, &b));
}

/* ------------------------------------------------------------ ops */

Test(ops, rmsnorm_rope_softmax) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 1}, y[4];
    loom_rmsnorm_row(y, x, w, 4, 0);
    float r = sqrtf((1 + 4 + 9 + 16) / 4.0f);
    cr_assert_float_eq(y[2], 3 / r * 2, 1e-6);
    /* rotation keeps the norm; position 0 is the identity; pairs rotate by pos·θ */
    float cs[4], h[4] = {1, 0, 0, 1}, g[4] = {1, 0, 0, 1};
    loom_rope_angles(cs, 0, 4, 10000, 1, NULL);
    loom_rope_head(h, cs, 4, 0);
    cr_assert_float_eq(h[0], 1, 1e-7);
    loom_rope_angles(cs, 3, 4, 10000, 1, NULL);
    loom_rope_head(h, cs, 4, 0);
    cr_assert_float_eq(h[0], cosf(3), 1e-6);
    cr_assert_float_eq(h[1], sinf(3), 1e-6);
    loom_rope_head(g, cs, 4, 1); /* neox pairs (0,2) and (1,3) */
    cr_assert_float_eq(g[0], cosf(3), 1e-6);
    cr_assert_float_eq(g[2], sinf(3), 1e-6);
    float sm[3] = {1000, 1000, -INFINITY};
    loom_softmax_row(sm, 3);
    cr_assert_float_eq(sm[0], 0.5f, 1e-7);
    cr_assert_float_eq(sm[2], 0.0f, 1e-7);
}

Test(sampler, argmax_lowest_index_any_length) {
    float x[100];
    for (int n = 1; n <= 100; n++)
        for (int at = 0; at < n; at += 7) {
            for (int i = 0; i < n; i++) x[i] = (float)(i % 5);
            x[at] = 9;
            if (at + 3 < n) x[at + 3] = 9; /* a later tie */
            cr_assert_eq(loom_argmax(x, n), at, "n %d at %d", n, at);
        }
    x[0] = NAN;
    x[1] = -1;
    x[2] = -0.5f;
    cr_assert_eq(loom_argmax(x, 3), 2);
}

/* ------------------------------------------------------------ row ops */

#include "runtime/rowops.h"

Test(rowops, every_isa_matches_ops_h) {
    enum { N = 1541 }; /* odd: tails on every ISA */
    static float x[N], w[N], g[N], u[N], ref[N], out[N];
    for (int i = 0; i < N; i++) {
        x[i] = sinf(i * 0.37f) * (i % 97 == 0 ? 60.0f : 2.0f);
        w[i] = 1.0f + 0.1f * cosf((float)i);
        g[i] = i < 8 ? (float[]){-200, -100, -88.5f, -20, 0, 20, 88.5f, 100}[i] : cosf(i * 0.11f) * 6;
        u[i] = sinf(i * 0.05f) + 0.5f;
    }
    loom_isa best = loom_isa_detect();
    for (int isa = 0; isa <= (int)best; isa++) {
        cr_assert(!loom_isa_set((loom_isa)isa));
        for (int n = 1; n <= N; n += n < 40 ? 1 : 97) {
            loom_rmsnorm_row(ref, x, w, n, 1e-5f);
            loom_row_rmsnorm(out, x, w, n, 1e-5f);
            for (int i = 0; i < n; i++)
                cr_assert(fabsf(out[i] - ref[i]) <= 2e-6f * fabsf(ref[i]) + 1e-30f, "%s rmsnorm n %d [%d]: %g vs %g",
                          loom_isa_name((loom_isa)isa), n, i, out[i], ref[i]);
            memcpy(ref, g, sizeof(float) * n);
            memcpy(out, g, sizeof(float) * n);
            loom_swiglu_row(ref, u, n);
            loom_row_swiglu(out, u, n);
            for (int i = 0; i < n; i++)
                cr_assert(fabsf(out[i] - ref[i]) <= 1e-6f * fabsf(ref[i]) + 1e-30f, "%s swiglu n %d [%d] (g=%g): %g vs %g",
                          loom_isa_name((loom_isa)isa), n, i, g[i], out[i], ref[i]);
        }
    }
    cr_assert(!loom_isa_set(best));
}
