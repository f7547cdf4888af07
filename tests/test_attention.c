/* tests/test_attention.c — attention over the paged KV cache
 * (runtime/attention.h) against a double-precision reference computed from
 * the same cache contents, for every ISA level the CPU has, F16 and F32
 * keys/values, many shapes and batches, 1..3 threads; what other families
 * add (a query scale, soft-capping, sliding windows, bidirectional rows);
 * the KV store's layout and bits; the SIMD exp2; the KV cache API. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/attention.h"
#include "runtime/kernels.h"
#include "runtime/kv_cache.h"
#include "runtime/quant.h"
#include "runtime/threadpool.h"

/* Output error bound, absolute (values are in [-1, 1], so outputs are too):
 * float scores, exp2 within 1.2e-7 and float sums; the largest error seen on
 * every level and thread count is ~1.5e-7. */
#define OUT_TOL 2e-6

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float frand(void) { return (float)(urand() >> 8) / (float)(1u << 24) * 2.0f - 1.0f; }

/* ------------------------------------------------------------ fixture */

typedef struct {
    int n_q, n_kv, hd, bt, max_seqs, max_ctx, n_blocks;
    loom_type type;
    loom_kv_cache *kv;
    int *q_to_kv;
    int *len; /* (max_seqs) positions stored */
} cache_fx;

/* Fixture options: caches without value blocks (kv_cache.h's v_is_k: the
 * values are the keys); values stored equal to the keys (fx_fill). */
static int fx_v_is_k, fx_same_kv;

static void fx_create(cache_fx *f, int n_q, int n_kv, int hd, int bt, loom_type type, int max_seqs, int max_ctx) {
    memset(f, 0, sizeof *f);
    f->n_q = n_q, f->n_kv = n_kv, f->hd = hd, f->bt = bt, f->type = type, f->max_seqs = max_seqs, f->max_ctx = max_ctx;
    f->n_blocks = loom_kv_blocks_for(max_seqs, max_ctx, bt) + 3;
    loom_kv_config c = {.n_layers = 2, .n_kv_heads = n_kv, .head_dim = hd, .type = type, .block_tokens = bt,
                        .n_blocks = f->n_blocks, .max_seqs = max_seqs, .max_ctx = max_ctx, .v_is_k = fx_v_is_k};
    loom_status st = loom_kv_create(&c, &f->kv);
    cr_assert(!st, "%s", loom_status_message(st));
    f->q_to_kv = malloc(sizeof(int) * n_q);
    for (int h = 0; h < n_q; h++) f->q_to_kv[h] = h * n_kv / n_q; /* GQA: consecutive heads share */
    f->len = calloc((size_t)max_seqs, sizeof(int));
}

static void fx_free(cache_fx *f) {
    loom_kv_free(f->kv);
    free(f->q_to_kv);
    free(f->len);
}

/* Reserves len[s] positions for every sequence, one block at a time round
 * robin (so tables interleave), with a released dummy in between so ids are
 * out of order. */
static void fx_reserve(cache_fx *f, const int *len) {
    int more = 1;
    for (int step = 1; more; step++) {
        more = 0;
        for (int s = 0; s < f->max_seqs; s++) {
            int want = step * f->bt < len[s] ? step * f->bt : len[s];
            if (want > loom_kv_capacity(f->kv, s)) {
                cr_assert(!loom_kv_reserve(f->kv, s, want));
                more = 1;
            }
        }
        if (step == 2 && loom_kv_free_blocks(f->kv) > 0 && f->max_seqs > 1) {
            /* a short-lived sequence in slot max_seqs-1 takes and returns a block */
            int last = f->max_seqs - 1;
            if (loom_kv_capacity(f->kv, last) == 0 && len[last] == 0) {
                cr_assert(!loom_kv_reserve(f->kv, last, 1));
                loom_kv_release(f->kv, last);
            }
        }
    }
}

/* Stores positions [len_old, len) of sequence s with random keys/values, in
 * batches of up to 37 rows whose order is shuffled. */
static void fx_fill(cache_fx *f, int layer, int s, int len) {
    int kvdim = f->n_kv * f->hd, cap = 37;
    int32_t pos[37], seq[37];
    float *k = malloc(sizeof(float) * cap * kvdim), *v = malloc(sizeof(float) * cap * kvdim);
    for (int p0 = f->len[s]; p0 < len; p0 += cap) {
        int n = len - p0 < cap ? len - p0 : cap;
        for (int i = 0; i < n; i++) pos[i] = p0 + i, seq[i] = s;
        for (int i = n - 1; i > 0; i--) { /* shuffle rows */
            int j = (int)(urand() % (uint32_t)(i + 1)), t = pos[i];
            pos[i] = pos[j], pos[j] = t;
        }
        for (int i = 0; i < n * kvdim; i++) {
            k[i] = frand(), v[i] = frand(); /* both drawn either way: the same keys with and without fx_same_kv */
            if (fx_same_kv) v[i] = k[i];
        }
        loom_attention_args a = {f->kv, layer, n, pos, seq, f->n_q, f->n_kv, f->hd, f->q_to_kv, NULL, k, v, NULL, .scale = 0};
        loom_attention_store(&a);
    }
    f->len[s] = len > f->len[s] ? len : f->len[s];
    free(k);
    free(v);
}

/* The options of other families (loom_attention_args' last fields) that
 * check_batch passes on and the reference follows; zero: llama. */
static struct {
    float scale, softcap;
    int window, bidirectional;
    const float *sinks; /* (n_q) per query head, or NULL */
} opt;

/* Double-precision attention of one query (row at pos of seq s, head h) from
 * the cache contents; it sees positions [lo, lim] (opt: window, bidirectional). */
static void reference(const cache_fx *f, int layer, int s, int pos, int lim, int h, int kvh, const float *q,
                      double *out) {
    const int32_t *table = loom_kv_table(f->kv, s);
    const int lo = opt.window > 0 && pos - opt.window + 1 > 0 ? pos - opt.window + 1 : 0;
    const double scale = opt.scale > 0 ? opt.scale : 1 / sqrt((double)f->hd);
    double *sc = malloc(sizeof(double) * (size_t)(lim + 1)), mx = -INFINITY, sum = 0;
    for (int t = lo; t <= lim; t++) {
        const void *kb = loom_kv_k_block(f->kv, layer, table[t / f->bt]);
        double d = 0;
        for (int i = 0; i < f->hd; i++) d += (double)q[i] * loom_kv_key_at(f->kv, kb, kvh, t % f->bt, i);
        sc[t] = d * scale;
        if (opt.softcap > 0) sc[t] = opt.softcap * tanh(sc[t] / opt.softcap);
        mx = sc[t] > mx ? sc[t] : mx;
    }
    if (opt.sinks) { /* one more term in the sum, no value */
        mx = opt.sinks[h] > mx ? opt.sinks[h] : mx;
        sum = exp(opt.sinks[h] - mx);
    }
    for (int i = 0; i < f->hd; i++) out[i] = 0;
    for (int t = lo; t <= lim; t++) {
        double p = exp(sc[t] - mx);
        sum += p;
        const void *vb = loom_kv_v_block(f->kv, layer, table[t / f->bt]), *kb = loom_kv_k_block(f->kv, layer, table[t / f->bt]);
        for (int i = 0; i < f->hd; i++) /* no value blocks (v_is_k): the values are the keys */
            out[i] += p * loom_kv_value_at(f->kv, kb, vb, kvh, t % f->bt, i);
    }
    for (int i = 0; i < f->hd; i++) out[i] /= sum;
    free(sc);
}

/* Runs a batch (rows (seq[i], pos[i]), random queries scaled by qmul) on
 * every ISA level and 1..3 threads and checks every output against the
 * reference. */
static void check_batch(cache_fx *f, int layer, int n, const int32_t *seq, const int32_t *pos, float qmul,
                        const char *what) {
    const int qdim = f->n_q * f->hd;
    float *q = malloc(sizeof(float) * n * qdim), *out = malloc(sizeof(float) * n * qdim);
    double *ref = malloc(sizeof(double) * n * qdim);
    for (int i = 0; i < n * qdim; i++) q[i] = frand() * qmul;
    for (int i = 0; i < n; i++) {
        int lim = pos[i];
        for (int j = 0; opt.bidirectional && j < n; j++)
            if (seq[j] == seq[i] && pos[j] > lim) lim = pos[j];
        for (int h = 0; h < f->n_q; h++)
            reference(f, layer, seq[i], pos[i], lim, h, f->q_to_kv[h], q + (size_t)i * qdim + (size_t)h * f->hd,
                      ref + (size_t)i * qdim + (size_t)h * f->hd);
    }
    loom_kv_config kc = *loom_kv_config_of(f->kv);
    size_t sf = loom_attention_scratch_floats(&kc, f->n_q, f->n_kv, f->hd, n);
    loom_isa best = loom_isa_detect();
    for (int isa = 0; isa <= (int)best; isa++) {
        cr_assert(!loom_isa_set((loom_isa)isa));
        for (int th = 1; th <= 3; th++) {
            loom_pool *pool;
            cr_assert(!loom_pool_create(th, &pool));
            float *scratch = malloc(sizeof(float) * sf * th);
            for (int i = 0; i < n * qdim; i++) out[i] = NAN;
            loom_attention_args a = {f->kv, layer, n, pos, seq, f->n_q, f->n_kv, f->hd, f->q_to_kv, q, NULL, NULL, out,
                                     .scale = opt.scale, .softcap = opt.softcap, .window = opt.window,
                                     .bidirectional = opt.bidirectional, .sinks = opt.sinks};
            loom_attention_compute(&a, pool, scratch);
            double worst = 0;
            int wi = 0;
            for (int i = 0; i < n * qdim; i++) {
                double e = fabs((double)out[i] - ref[i]);
                if (!(e <= worst)) worst = e, wi = i; /* NaN counts as worst */
            }
            cr_assert(worst <= OUT_TOL,
                      "%s: %s, %s KV, hd %d, %d/%d heads, block %d, %d threads: row %d (seq %d pos %d) head %d dim %d: "
                      "%.9g vs %.9g (error %.3g)",
                      what, loom_isa_name((loom_isa)isa), loom_type_name(f->type), f->hd, f->n_q,
                      f->n_kv, f->bt, th, wi / qdim, seq[wi / qdim], pos[wi / qdim], wi % qdim / f->hd, wi % f->hd,
                      out[wi], ref[wi], worst);
            free(scratch);
            loom_pool_free(pool);
        }
    }
    cr_assert(!loom_isa_set(best));
    free(q);
    free(out);
    free(ref);
}

/* ------------------------------------------------------------ attention */

typedef struct {
    int hd, n_q, n_kv, bt;
} shape;

/* Several sequences (lengths around block edges, one spanning many blocks),
 * one decode row each, then prefill-like chunks, then rows at scattered
 * positions of several sequences mixed and shuffled in one batch. */
static void run_shape(shape sh, loom_type type) {
    enum { S = 6 };
    static const int lens[S] = {1, 16, 17, 5, 230, 64};
    cache_fx f;
    fx_create(&f, sh.n_q, sh.n_kv, sh.hd, sh.bt, type, S + 1, 256);
    int want[S + 1] = {0};
    memcpy(want, lens, sizeof lens);
    fx_reserve(&f, want);
    for (int s = 0; s < S; s++) fx_fill(&f, 1, s, lens[s]);
    int32_t seq[64], pos[64];
    /* decode: the last position of every sequence */
    for (int s = 0; s < S; s++) seq[s] = s, pos[s] = lens[s] - 1;
    check_batch(&f, 1, S, seq, pos, 1.0f, "decode");
    /* prefill: 40 consecutive rows of the long sequence, then its first 9 */
    for (int i = 0; i < 40; i++) seq[i] = 4, pos[i] = 150 + i;
    check_batch(&f, 1, 40, seq, pos, 1.0f, "prefill chunk");
    for (int i = 0; i < 9; i++) seq[i] = 4, pos[i] = i;
    check_batch(&f, 1, 9, seq, pos, 3.0f, "prefill start");
    /* mixed: scattered positions, duplicates, several sequences, shuffled */
    int n = 0;
    static const int scat[] = {229, 3, 100, 17, 16, 15, 228, 0, 64, 65, 199, 100};
    for (size_t i = 0; i < sizeof scat / sizeof scat[0]; i++) seq[n] = 4, pos[n++] = scat[i];
    for (int s = 0; s < S; s++)
        if (s != 4) seq[n] = s, pos[n++] = (int)(urand() % (uint32_t)lens[s]);
    for (int i = 0; i < 7; i++) seq[n] = 5, pos[n++] = 40 + i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(urand() % (uint32_t)(i + 1)), t = seq[i], u = pos[i];
        seq[i] = seq[j], pos[i] = pos[j], seq[j] = t, pos[j] = u;
    }
    check_batch(&f, 1, n, seq, pos, 2.0f, "mixed");
    fx_free(&f);
}

Test(attention, gqa_groups_head_64_f16) {
    static const shape shapes[] = {{64, 3, 3, 16}, {64, 9, 3, 16}, {64, 8, 2, 16}, {64, 8, 1, 16}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(shapes[i], LOOM_TYPE_F16);
}

Test(attention, gqa_groups_head_64_f32) {
    static const shape shapes[] = {{64, 3, 3, 16}, {64, 9, 3, 16}, {64, 8, 2, 16}, {64, 8, 1, 16}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(shapes[i], LOOM_TYPE_F32);
}

Test(attention, head_128) {
    static const shape shapes[] = {{128, 4, 1, 16}, {128, 12, 3, 16}, {128, 16, 2, 32}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        run_shape(shapes[i], LOOM_TYPE_F16);
        run_shape(shapes[i], LOOM_TYPE_F32);
    }
}

Test(attention, odd_blocks_heads_and_groups) {
    /* blocks not a multiple of 16 (partial tiles), groups above 16 query
     * heads (split), head sizes that only AVX2 (40) or only scalar (12)
     * take, uneven groups of a sharded rank */
    static const shape shapes[] = {{64, 9, 3, 4}, {64, 6, 2, 24}, {64, 6, 3, 7}, {64, 20, 1, 16},
                                   {40, 6, 2, 16}, {12, 4, 2, 8}, {64, 5, 2, 16}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        run_shape(shapes[i], LOOM_TYPE_F16);
        run_shape(shapes[i], LOOM_TYPE_F32);
    }
}

/* Q8_0 elements (int8, an F16 scale per 32 dimensions of a position),
 * against the reference over the dequantized cache: heads of 64, 96 and
 * 128, GQA groups, partial tiles (blocks of 24, 7 and 4), groups above a
 * unit; latent shapes without value blocks. */
Test(attention, q8_0_cache) {
    static const shape shapes[] = {{64, 9, 3, 16}, {64, 8, 1, 16}, {128, 12, 3, 16}, {96, 4, 2, 16},
                                   {64, 6, 2, 24}, {64, 6, 3, 7},  {64, 20, 1, 16},  {64, 9, 3, 4}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(shapes[i], LOOM_TYPE_Q8_0);
    fx_v_is_k = 1;
    static const shape latent[] = {{288, 6, 1, 16}, {64, 20, 1, 16}, {64, 6, 3, 7}};
    for (size_t i = 0; i < sizeof latent / sizeof latent[0]; i++) run_shape(latent[i], LOOM_TYPE_Q8_0);
    fx_v_is_k = 0;
}

/* A cache without value blocks (multi-head latent attention's: the values
 * are the keys, read from the transposed key blocks): against the reference
 * in latent shapes (one KV head of 256 + 32, all query heads on it; more
 * query heads than a unit holds), partial tiles, and head sizes only AVX2 or
 * only scalar take; then bit for bit the same outputs as a cache with value
 * blocks holding the keys' copies, on every level and 1..2 threads. */
Test(attention, values_are_keys) {
    static const shape shapes[] = {{288, 6, 1, 16}, {64, 20, 1, 16}, {64, 9, 3, 4}, {64, 6, 3, 7}, {40, 6, 2, 16},
                                   {12, 4, 2, 8}};
    fx_v_is_k = 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        run_shape(shapes[i], LOOM_TYPE_F16);
        run_shape(shapes[i], LOOM_TYPE_F32);
    }
    opt.window = 40; /* chunks no query sees (only a rescale to carry) */
    run_shape(shapes[1], LOOM_TYPE_F16);
    opt.window = 0;
    static const loom_type types[] = {LOOM_TYPE_F16, LOOM_TYPE_F32, LOOM_TYPE_Q8_0};
    for (int ty = 0; ty < 3; ty++) {
        cache_fx f[2];
        const uint64_t seed = rng_state;
        for (int c = 0; c < 2; c++) { /* the same draws: the same keys */
            fx_v_is_k = c == 0, fx_same_kv = c == 1, rng_state = seed;
            fx_create(&f[c], 6, 1, 288, 16, types[ty], 2, 700);
            int want[2] = {700, 45};
            fx_reserve(&f[c], want);
            fx_fill(&f[c], 0, 0, 700);
            fx_fill(&f[c], 0, 1, 45);
        }
        fx_v_is_k = fx_same_kv = 0;
        cr_assert(!loom_kv_v_block(f[0].kv, 0, 0) && loom_kv_v_block(f[1].kv, 0, 0));
        enum { N = 7 };
        int32_t seq[N] = {0, 1, 0, 0, 1, 0, 0}, pos[N] = {699, 44, 3, 16, 20, 500, 377};
        const int qdim = 6 * 288;
        float *q = malloc(sizeof(float) * N * qdim), *out[2] = {malloc(sizeof(float) * N * qdim),
                                                                  malloc(sizeof(float) * N * qdim)};
        for (int i = 0; i < N * qdim; i++) q[i] = frand();
        loom_kv_config kc = *loom_kv_config_of(f[0].kv);
        const size_t sf = loom_attention_scratch_floats(&kc, 6, 1, 288, N);
        float *scratch = malloc(sizeof(float) * sf * 2);
        loom_isa best = loom_isa_detect();
        for (int isa = 0; isa <= (int)best; isa++) {
            cr_assert(!loom_isa_set((loom_isa)isa));
            for (int th = 1; th <= 2; th++) {
                loom_pool *pool;
                cr_assert(!loom_pool_create(th, &pool));
                for (int n = 1; n <= N; n += N - 1) /* one decode row (split over the threads), then all */
                    for (int c = 0; c < 2; c++) {
                        loom_attention_args a = {f[c].kv, 0, n, pos, seq, 6, 1, 288, f[c].q_to_kv, q, NULL, NULL, out[c],
                                                 .scale = 0};
                        loom_attention_compute(&a, pool, scratch);
                        if (c)
                            cr_assert(!memcmp(out[0], out[1], sizeof(float) * n * qdim),
                                      "%s, %s, %d threads, %d rows: values read from the keys differ from stored copies",
                                      loom_isa_name((loom_isa)isa), loom_type_name(types[ty]), th, n);
                    }
                loom_pool_free(pool);
            }
        }
        cr_assert(!loom_isa_set(best));
        free(scratch);
        free(q);
        free(out[0]);
        free(out[1]);
        fx_free(&f[0]);
        fx_free(&f[1]);
    }
}

/* One or two long sequences decoded with 2 and 3 threads: fewer units than
 * 2 × threads, so key ranges are split and merged (flash-decoding). */
Test(attention, long_context_decode_split) {
    for (int f32 = 0; f32 < 2; f32++) {
        cache_fx f;
        fx_create(&f, 9, 3, 64, 16, f32 ? LOOM_TYPE_F32 : LOOM_TYPE_F16, 3, 2100);
        int want[3] = {2100, 1000, 0};
        fx_reserve(&f, want);
        fx_fill(&f, 0, 0, 2100);
        fx_fill(&f, 0, 1, 1000);
        int32_t seq[3] = {0, 1, 0}, pos[3] = {2099, 999, 1234};
        check_batch(&f, 0, 1, seq, pos, 4.0f, "long decode");
        check_batch(&f, 0, 2, seq, pos, 1.0f, "two long decodes");
        check_batch(&f, 0, 3, seq, pos, 1.0f, "three long rows");
        fx_free(&f);
    }
}

/* One KV head (one unit per row): 2 and 3 threads split the key range into
 * 2 and 3 parts; with blocks of 2048 positions a part can be empty. */
Test(attention, split_parts_and_empty_parts) {
    static const int bts[] = {16, 2048};
    for (size_t b = 0; b < sizeof bts / sizeof bts[0]; b++) {
        cache_fx f;
        fx_create(&f, 4, 1, 128, bts[b], LOOM_TYPE_F16, 2, 4100);
        int want[2] = {4100, 0};
        fx_reserve(&f, want);
        fx_fill(&f, 0, 0, 4100);
        int32_t seq[2] = {0, 0}, pos[2] = {4099, 2047};
        check_batch(&f, 0, 1, seq, pos, 2.0f, "one-unit decode");
        check_batch(&f, 0, 1, seq + 1, pos + 1, 2.0f, "one-unit decode at a block end");
        fx_free(&f);
    }
}

/* A query's result does not depend on the rows batched with it nor on the
 * thread count: rows of two sequences (contexts past several segments, some
 * rows before the first segment boundary) computed in one batch on 1, 2 and
 * 3 threads equal, bit for bit, each row computed alone on 1 and on 2
 * threads (alone, few units: a job per segment; batched: a job per unit). */
Test(attention, batch_and_thread_invariant) {
    cache_fx f;
    fx_create(&f, 9, 3, 64, 16, LOOM_TYPE_F16, 2, 1600);
    int want[2] = {1600, 700};
    fx_reserve(&f, want);
    fx_fill(&f, 0, 0, 1600);
    fx_fill(&f, 0, 1, 700);
    enum { N = 23 };
    int32_t seq[N], pos[N];
    const int qdim = 9 * 64;
    float *q = malloc(sizeof(float) * N * qdim), *out = malloc(sizeof(float) * N * qdim), one[9 * 64];
    for (int i = 0; i < N * qdim; i++) q[i] = frand();
    for (int i = 0; i < N; i++) seq[i] = i % 3 == 0, pos[i] = seq[i] ? 100 + 27 * i : (i < 6 ? 250 + i : 1577 + i);
    loom_kv_config kc = *loom_kv_config_of(f.kv);
    const size_t sf = loom_attention_scratch_floats(&kc, 9, 3, 64, N);
    float *scratch = malloc(sizeof(float) * sf * 3);
    loom_pool *pools[4] = {NULL};
    for (int th = 1; th <= 3; th++) cr_assert(!loom_pool_create(th, &pools[th]));
    loom_isa best = loom_isa_detect();
    for (int isa = 0; isa <= (int)best; isa++) {
        cr_assert(!loom_isa_set((loom_isa)isa));
        for (int th = 1; th <= 3; th++) {
            loom_attention_args a = {f.kv, 0, N, pos, seq, 9, 3, 64, f.q_to_kv, q, NULL, NULL, out, .scale = 0};
            loom_attention_compute(&a, pools[th], scratch);
            for (int i = 0; i < N; i++)
                for (int th1 = 1; th1 <= 2; th1++) {
                    loom_attention_args b = {f.kv, 0, 1, pos + i, seq + i, 9, 3, 64, f.q_to_kv, q + (size_t)i * qdim,
                                             NULL, NULL, one, .scale = 0};
                    loom_attention_compute(&b, pools[th1], scratch);
                    cr_assert(!memcmp(one, out + (size_t)i * qdim, sizeof one),
                              "%s: row %d (seq %d pos %d) in a batch on %d threads differs from it alone on %d",
                              loom_isa_name((loom_isa)isa), i, seq[i], pos[i], th, th1);
                }
        }
    }
    cr_assert(!loom_isa_set(best));
    for (int th = 1; th <= 3; th++) loom_pool_free(pools[th]);
    free(scratch);
    free(q);
    free(out);
    fx_free(&f);
}

/* What the other families add: gemma's query scale and soft-capping, sliding
 * windows (gemma2/3) shorter and longer than a tile, a block and a segment
 * (decode rows past several segments: split and merged), and the
 * bidirectional rows of encoders (each row sees its sequence's last row in
 * the batch), alone and combined, on every level and 1..3 threads. */
Test(attention, scale_softcap_window_bidirectional) {
    cache_fx f;
    fx_create(&f, 8, 2, 64, 16, LOOM_TYPE_F16, 3, 1400);
    int want[3] = {1400, 90, 0};
    fx_reserve(&f, want);
    fx_fill(&f, 0, 0, 1400);
    fx_fill(&f, 0, 1, 90);
    int32_t seq[40], pos[40];
    static const int windows[] = {1, 5, 16, 37, 600};
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        opt.window = windows[w];
        for (int sc = 0; sc < 2; sc++) {
            opt.softcap = sc ? 2.0f : 0.0f; /* scores of |q·k| up to ~8 are capped hard */
            opt.scale = sc ? 0.0625f : 0.0f;
            for (int i = 0; i < 3; i++) seq[i] = i == 1, pos[i] = i == 1 ? 89 : 1399 - 500 * i;
            check_batch(&f, 0, 3, seq, pos, 3.0f, "window decode");
            for (int i = 0; i < 30; i++) seq[i] = i % 2, pos[i] = i % 2 ? 60 + i : 700 + 13 * i;
            check_batch(&f, 0, 30, seq, pos, 3.0f, "window prefill");
        }
    }
    opt.window = 0, opt.softcap = 0, opt.scale = 0;
    opt.bidirectional = 1;
    for (int i = 0; i < 40; i++) seq[i] = i % 3 == 0, pos[i] = i % 3 == 0 ? 40 + i : 10 + i;
    check_batch(&f, 0, 40, seq, pos, 2.0f, "bidirectional");
    opt.window = 9;
    check_batch(&f, 0, 40, seq, pos, 2.0f, "bidirectional with a window");
    memset(&opt, 0, sizeof opt);
    fx_free(&f);
}

/* gpt-oss's attention sinks: one logit per query head in every softmax's
 * sum, below, near and far above the scores (the running max moves to it),
 * on one segment and on several (decode past 512 positions: split and
 * merged, then the sink), with a window, on every level and 1..3 threads. */
Test(attention, sinks) {
    cache_fx f;
    fx_create(&f, 8, 2, 64, 16, LOOM_TYPE_F16, 2, 1400);
    int want[2] = {1400, 70};
    fx_reserve(&f, want);
    fx_fill(&f, 0, 0, 1400);
    fx_fill(&f, 0, 1, 70);
    static const float sinks[8] = {-20.0f, -1.0f, 0.0f, 0.5f, 2.0f, 4.0f, 9.0f, 40.0f};
    opt.sinks = sinks;
    int32_t seq[30], pos[30];
    for (int w = 0; w < 2; w++) {
        opt.window = w ? 128 : 0;
        for (int i = 0; i < 3; i++) seq[i] = i == 1, pos[i] = i == 1 ? 69 : 1399 - 600 * i;
        check_batch(&f, 0, 3, seq, pos, 2.0f, "sinks decode");
        for (int i = 0; i < 30; i++) seq[i] = i % 2, pos[i] = i % 2 ? 30 + i : 600 + 17 * i;
        check_batch(&f, 0, 30, seq, pos, 2.0f, "sinks prefill");
    }
    memset(&opt, 0, sizeof opt);
    fx_free(&f);
}

/* ------------------------------------------------------------ store */

Test(attention, store_layout_and_f16_bits) {
    static const float specials[] = {0.0f, -0.0f, 65504.0f, 65520.0f, -1e9f, 5.9604645e-8f, 2.9802322e-8f,
                                     1e-6f, 6.1035156e-5f, 3.0517578e-5f, 1.0f / 3.0f, INFINITY, -INFINITY, NAN};
    for (int f32 = 0; f32 < 2; f32++)
        for (int isa = 0; isa <= (int)loom_isa_detect(); isa++) {
            cr_assert(!loom_isa_set((loom_isa)isa));
            cache_fx f;
            fx_create(&f, 4, 2, 72, 5, f32 ? LOOM_TYPE_F32 : LOOM_TYPE_F16, 2, 40);
            int want[2] = {13, 40};
            fx_reserve(&f, want);
            enum { N = 6 };
            int32_t seq[N] = {1, 0, 1, 1, 0, 1}, pos[N] = {39, 12, 0, 5, 4, 6};
            const int kvdim = 2 * 72;
            float k[N * 2 * 72], v[N * 2 * 72];
            for (int i = 0; i < N * kvdim; i++) {
                k[i] = i % 7 == 0 ? specials[(i / 7) % 14] : frand() * 100.0f;
                v[i] = i % 5 == 0 ? specials[(i / 5) % 14] : frand();
            }
            loom_attention_args a = {f.kv, 1, N, pos, seq, 4, 2, 72, f.q_to_kv, NULL, k, v, NULL, .scale = 0};
            loom_attention_store(&a);
            const loom_kv_config *c = loom_kv_config_of(f.kv);
            for (int i = 0; i < N; i++) {
                int32_t blk = loom_kv_table(f.kv, seq[i])[pos[i] / 5];
                const uint8_t *kb = loom_kv_k_block(f.kv, 1, blk), *vb = loom_kv_v_block(f.kv, 1, blk);
                cr_assert(((uintptr_t)kb & 63) == 0 && ((uintptr_t)vb & 63) == 0, "blocks are 64-byte aligned");
                for (int h = 0; h < 2; h++)
                    for (int d = 0; d < 72; d++) {
                        float kx = k[i * kvdim + h * 72 + d], vx = v[i * kvdim + h * 72 + d];
                        size_t ko = loom_kv_k_offset(c, h, pos[i] % 5, d), vo = loom_kv_v_offset(c, h, pos[i] % 5, d);
                        if (f32) {
                            cr_assert(!memcmp((const float *)kb + ko, &kx, 4) && !memcmp((const float *)vb + vo, &vx, 4));
                        } else {
                            cr_assert_eq(((const uint16_t *)kb)[ko], loom_f32_to_f16(kx), "%s key %g",
                                         loom_isa_name((loom_isa)isa), kx);
                            cr_assert_eq(((const uint16_t *)vb)[vo], loom_f32_to_f16(vx), "%s value %g",
                                         loom_isa_name((loom_isa)isa), vx);
                        }
                    }
            }
            fx_free(&f);
        }
    cr_assert(!loom_isa_set(loom_isa_detect()));
}

/* Q8_0: every 32 dimensions of a position as int8 codes and the F16 scale
 * absmax / 127 (kv_cache.h's layout, read here byte by byte): the largest
 * code of a group is +-127, every element within half a step of the stored scale, an all-zero
 * group all zeros; the same bytes from every level. */
Test(attention, store_q8_0) {
    enum { N = 6, HD = 96, BT = 5 };
    uint8_t *first = NULL;
    for (int isa = 0; isa <= (int)loom_isa_detect(); isa++) {
        cr_assert(!loom_isa_set((loom_isa)isa));
        cache_fx f;
        const uint64_t seed = rng_state;
        fx_create(&f, 4, 2, HD, BT, LOOM_TYPE_Q8_0, 2, 40);
        int want[2] = {13, 40};
        fx_reserve(&f, want);
        int32_t seq[N] = {1, 0, 1, 1, 0, 1}, pos[N] = {39, 12, 0, 5, 4, 6};
        const int kvdim = 2 * HD;
        float k[N * 2 * HD], v[N * 2 * HD];
        for (int i = 0; i < N * kvdim; i++) {
            k[i] = frand() * 100.0f, v[i] = frand();
            if (i / 32 == 3) k[i] = v[i] = 0.0f; /* a group of zeros */
        }
        loom_attention_args a = {f.kv, 1, N, pos, seq, 4, 2, HD, f.q_to_kv, NULL, k, v, NULL, .scale = 0};
        loom_attention_store(&a);
        const loom_kv_config *c = loom_kv_config_of(f.kv);
        const size_t head = loom_kv_head_bytes(c);
        cr_assert_eq(head, (size_t)HD * BT + HD / 32 * BT * 2);
        for (int i = 0; i < N; i++) {
            const int32_t blk = loom_kv_table(f.kv, seq[i])[pos[i] / BT];
            const uint8_t *kb = loom_kv_k_block(f.kv, 1, blk), *vb = loom_kv_v_block(f.kv, 1, blk);
            const int t = pos[i] % BT;
            for (int h = 0; h < 2; h++)
                for (int g = 0; g < HD / 32; g++) {
                    const uint8_t *kh = kb + h * head, *vh = vb + h * head;
                    const float ks = loom_f16_to_f32(loom_rd_u16(kh + HD * BT + 2 * (g * BT + t)));
                    const float vs = loom_f16_to_f32(loom_rd_u16(vh + HD * BT + 2 * (t * (HD / 32) + g)));
                    int kmax = 0, vmax = 0;
                    for (int d = 32 * g; d < 32 * g + 32; d++) {
                        const int kq = (int8_t)kh[d * BT + t], vq = (int8_t)vh[t * HD + d];
                        const float kx = k[i * kvdim + h * HD + d], vx = v[i * kvdim + h * HD + d];
                        kmax = abs(kq) > kmax ? abs(kq) : kmax, vmax = abs(vq) > vmax ? abs(vq) : vmax;
                        cr_assert(fabsf(kq * ks - kx) <= 0.502f * ks + 1e-6f * fabsf(kx), "key %g stored as %d x %g", kx, kq, ks);
                        cr_assert(fabsf(vq * vs - vx) <= 0.502f * vs + 1e-6f * fabsf(vx), "value %g stored as %d x %g", vx, vq, vs);
                        cr_assert_eq(loom_kv_key_at(f.kv, kb, h, t, d), kq * ks);
                        cr_assert_eq(loom_kv_value_at(f.kv, kb, vb, h, t, d), vq * vs);
                    }
                    const int zero = i == 0 && h == 1 && g == 0; /* elements 96..127 of row 0 */
                    cr_assert(zero ? kmax == 0 && ks == 0.0f && vmax == 0 && vs == 0.0f : kmax == 127 && vmax == 127,
                              "row %d head %d group %d: largest codes %d, %d", i, h, g, kmax, vmax);
                }
        }
        const size_t bytes = loom_kv_bytes(c) / 2;
        if (!first) {
            first = malloc(bytes);
            memcpy(first, loom_kv_k_block(f.kv, 0, 0), bytes);
        } else {
            cr_assert(!memcmp(first, loom_kv_k_block(f.kv, 0, 0), bytes), "%s stores other bytes", loom_isa_name((loom_isa)isa));
        }
        fx_free(&f);
        rng_state = seed;
    }
    free(first);
    cr_assert(!loom_isa_set(loom_isa_detect()));
}

/* ------------------------------------------------------------ exp2 */

Test(attention, simd_exp2_accuracy) {
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) x[i] = -126.0f * (float)i / (float)(N - 1);
    x[1] = -1e-30f, x[2] = -0.5f, x[3] = -0.49999997f, x[4] = -1.5f;
    loom_isa best = loom_isa_detect();
    int tested = 0;
    for (int isa = 0; isa <= (int)best; isa++) {
        loom_exp2_fn *exp2_v = loom_kernels_of((loom_isa)isa)->exp2; /* optional: the levels with a vector exp2 */
        if (!exp2_v) continue;
        tested++;
        exp2_v(x, y, N);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double r = exp2((double)x[i]), e = fabs(y[i] - r) / r;
            worst = e > worst ? e : worst;
        }
        cr_assert(worst <= 1.2e-7, "%s exp2: relative error %.3g", loom_isa_name((loom_isa)isa), worst);
        cr_assert(y[0] == 1.0f, "exp2(0) is exactly 1");
        float sp[5] = {-INFINITY, -126.5f, -1000.0f, NAN, -126.0f}, o[5];
        exp2_v(sp, o, 5);
        cr_assert(o[0] == 0.0f && o[1] == 0.0f && o[2] == 0.0f && isnan(o[3]), "%s specials", loom_isa_name((loom_isa)isa));
        cr_assert(fabs(o[4] - exp2(-126.0)) <= 1.2e-7 * exp2(-126.0));
    }
    cr_assert(tested || best == LOOM_ISA_SCALAR, "no level with a vector exp2 was tested");
    free(x);
    free(y);
}

/* ------------------------------------------------------------ KV cache API */

Test(kv_cache_api, reserve_release_full_and_layout) {
    loom_kv_config c = {.n_layers = 3, .n_kv_heads = 2, .head_dim = 64, .type = LOOM_TYPE_F16, .block_tokens = 16,
                        .n_blocks = 5, .max_seqs = 3, .max_ctx = 64};
    loom_kv_cache *kv;
    cr_assert(!loom_kv_create(&c, &kv));
    cr_assert_eq(loom_kv_bytes(&c), (size_t)2 * 3 * 5 * 2 * 16 * 64 * 2);
    cr_assert_eq(loom_kv_blocks_missing(kv, 0, 33), 3);
    cr_assert(!loom_kv_reserve(kv, 0, 33));
    cr_assert_eq(loom_kv_capacity(kv, 0), 48);
    cr_assert_eq(loom_kv_free_blocks(kv), 2);
    loom_status st = loom_kv_reserve(kv, 1, 48);
    cr_assert(st && loom_status_code(st) == LOOM_ERR_KV_FULL, "%s", loom_status_message(st));
    loom_status_free(st);
    cr_assert_eq(loom_kv_free_blocks(kv), 2, "a failed reserve changes nothing");
    cr_assert_eq(loom_kv_capacity(kv, 1), 0);
    st = loom_kv_reserve(kv, 1, 65);
    cr_assert(st && loom_status_code(st) == LOOM_ERR_CONTEXT);
    loom_status_free(st);
    cr_assert(!loom_kv_reserve(kv, 1, 20));
    const int32_t *t0 = loom_kv_table(kv, 0), *t1 = loom_kv_table(kv, 1);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) cr_assert_neq(t0[i], t1[j], "no block is shared");
    /* every block of every layer is distinct and aligned; offsets cover the block exactly */
    for (int l = 0; l < 3; l++)
        for (int b = 0; b < 5; b++) {
            uint8_t *k = loom_kv_k_block(kv, l, b), *v = loom_kv_v_block(kv, l, b);
            cr_assert(((uintptr_t)k & 63) == 0 && ((uintptr_t)v & 63) == 0);
            /* block-major: a block's layers adjacent, a layer's blocks 3 layers apart */
            if (l) cr_assert_eq((size_t)(k - (uint8_t *)loom_kv_k_block(kv, l - 1, b)), (size_t)2 * 16 * 64 * 2);
            if (b) cr_assert_eq((size_t)(k - (uint8_t *)loom_kv_k_block(kv, l, b - 1)), (size_t)3 * 2 * 16 * 64 * 2);
        }
    cr_assert_eq(loom_kv_k_offset(&c, 1, 15, 63), (size_t)2 * 16 * 64 - 1);
    cr_assert_eq(loom_kv_v_offset(&c, 1, 15, 63), (size_t)2 * 16 * 64 - 1);
    cr_assert_eq(loom_kv_k_offset(&c, 0, 3, 1), (size_t)16 + 3);
    cr_assert_eq(loom_kv_v_offset(&c, 0, 3, 1), (size_t)3 * 64 + 1);
    loom_kv_release(kv, 0);
    cr_assert_eq(loom_kv_free_blocks(kv), 3);
    cr_assert_eq(loom_kv_capacity(kv, 0), 0);
    cr_assert(!loom_kv_reserve(kv, 2, 48), "released blocks are reused");
    cr_assert_eq(loom_kv_free_blocks(kv), 0);
    loom_kv_free(kv);
}

/* Without value blocks (v_is_k): half the bytes, no value block, the same key blocks. */
Test(kv_cache_api, values_are_keys_half_the_memory) {
    loom_kv_config c = {.n_layers = 3, .n_kv_heads = 1, .head_dim = 576, .type = LOOM_TYPE_F16, .block_tokens = 16,
                        .n_blocks = 5, .max_seqs = 3, .max_ctx = 64};
    const size_t both = loom_kv_bytes(&c);
    c.v_is_k = true;
    cr_assert_eq(loom_kv_bytes(&c) * 2, both);
    cr_assert_eq(loom_kv_bytes(&c), (size_t)3 * 5 * 16 * 576 * 2);
    loom_kv_cache *kv;
    cr_assert(!loom_kv_create(&c, &kv));
    cr_assert(!loom_kv_reserve(kv, 0, 33));
    for (int b = 0; b < 5; b++) cr_assert(loom_kv_k_block(kv, 2, b) && !loom_kv_v_block(kv, 2, b));
    loom_kv_free(kv);
}

/* Q8_0: 1 + 2/32 bytes an element (17/32 of F16's); heads not a multiple of 32 are refused. */
Test(kv_cache_api, q8_0_bytes_and_refusal) {
    loom_kv_config c = {.n_layers = 3, .n_kv_heads = 2, .head_dim = 64, .type = LOOM_TYPE_Q8_0, .block_tokens = 16,
                        .n_blocks = 5, .max_seqs = 3, .max_ctx = 64};
    cr_assert_eq(loom_kv_head_bytes(&c), (size_t)16 * 64 + 2 * 16 * 2);
    cr_assert_eq(loom_kv_bytes(&c), (size_t)2 * 3 * 5 * 2 * (16 * 64 + 2 * 16 * 2));
    loom_kv_cache *kv;
    cr_assert(!loom_kv_create(&c, &kv));
    loom_kv_free(kv);
    c.head_dim = 80;
    loom_status st = loom_kv_create(&c, &kv);
    cr_assert(st && loom_status_code(st) == LOOM_ERR_UNSUPPORTED && strstr(loom_status_message(st), "multiple of 32"),
              "%s", st ? loom_status_message(st) : "created");
    loom_status_free(st);
    c.head_dim = 64, c.type = LOOM_TYPE_Q4_0;
    st = loom_kv_create(&c, &kv);
    cr_assert(st && loom_status_code(st) == LOOM_ERR_UNSUPPORTED, "a Q4_0 cache is refused");
    loom_status_free(st);
}
