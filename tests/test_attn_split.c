/* tests/test_attn_split.c — the flash-decoding split and merge that the
 * device kernels share with the CPU (runtime/attn_split.h), and the device
 * attention plan (runtime/attn_plan.h), against runtime/attention.c:
 *   - the segments tile every key range with no gap or overlap, at most
 *     LOOM_ATTN_SEG_MAX_PARTS of them for a full context;
 *   - the GPU's way — the plan's units, every segment computed on its own
 *     (the CPU's unit kernel stands in for the GPU's), the partials merged
 *     in order with loom_attn_merge1 — gives loom_attention_compute's
 *     output bit for bit, on every ISA level, decode and prefill, F16 and
 *     F32, short and long contexts (up to 32768 positions), GQA 1..8,
 *     heads of 64 and 128;
 *   - the host device's attention entry (the same plan and split) likewise. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/attention.h"
#include "runtime/attn_plan.h"
#include "runtime/attn_split.h"
#include "runtime/device.h"
#include "runtime/kernels.h"
#include "runtime/threadpool.h"

static uint64_t rng = 0xa4093822299f31d0ull;
static uint32_t urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(urand() >> 8) / (float)(1u << 24) * 2.0f - 1.0f; }

Test(attn_split, segments_tile_the_range) {
    const int bts[] = {1, 7, 16, 64, 2048}, ctxs[] = {1, 17, 512, 4096, 4100, 32768, 131072};
    for (size_t b = 0; b < sizeof bts / sizeof bts[0]; b++)
        for (size_t c = 0; c < sizeof ctxs / sizeof ctxs[0]; c++) {
            const int bt = bts[b], ctx = ctxs[c], sb = loom_attn_seg_blocks(bt, ctx);
            cr_assert(sb >= 1 && sb * bt >= LOOM_ATTN_SEG_MIN);
            cr_assert(loom_attn_n_segs(ctx, bt, sb) <= LOOM_ATTN_SEG_MAX_PARTS, "bt %d ctx %d: %d segments", bt, ctx,
                      loom_attn_n_segs(ctx, bt, sb));
            const int lens[] = {1, bt, bt + 1, ctx / 2 + 1, ctx};
            for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
                const int len = lens[l], P = loom_attn_n_segs(len, bt, sb);
                int end = 0;
                for (int s = 0; s < P; s++) {
                    int p0, p1;
                    loom_attn_seg_range(s, len, bt, sb, &p0, &p1);
                    cr_assert_eq(p0, end, "bt %d ctx %d len %d: segment %d starts at %d, previous ended at %d", bt, ctx,
                                 len, s, p0, end);
                    cr_assert(p1 > p0 && p0 % bt == 0);
                    end = p1;
                }
                cr_assert_eq(end, len);
            }
        }
}

typedef struct {
    int n_q, n_kv, hd, bt, max_ctx, n_seqs;
    loom_type type;
    loom_kv_cache *kv;
    int *q_to_kv;
    int *len;
} fx;

static void fx_make(fx *f, int n_q, int n_kv, int hd, int bt, loom_type type, int max_ctx, const int *lens, int n_seqs) {
    memset(f, 0, sizeof *f);
    f->n_q = n_q, f->n_kv = n_kv, f->hd = hd, f->bt = bt, f->type = type, f->max_ctx = max_ctx, f->n_seqs = n_seqs;
    loom_kv_config c = {.n_layers = 1, .n_kv_heads = n_kv, .head_dim = hd, .type = type, .block_tokens = bt,
                        .n_blocks = loom_kv_blocks_for(n_seqs, max_ctx, bt), .max_seqs = n_seqs, .max_ctx = max_ctx};
    cr_assert(!loom_kv_create(&c, &f->kv));
    f->q_to_kv = malloc(sizeof(int) * (size_t)n_q);
    for (int h = 0; h < n_q; h++) f->q_to_kv[h] = h * n_kv / n_q;
    f->len = malloc(sizeof(int) * (size_t)n_seqs);
    const int kvdim = n_kv * hd, chunk = 256;
    float *k = malloc(sizeof(float) * (size_t)chunk * kvdim), *v = malloc(sizeof(float) * (size_t)chunk * kvdim);
    int32_t pos[256], seq[256];
    for (int s = 0; s < n_seqs; s++) {
        f->len[s] = lens[s];
        cr_assert(!loom_kv_reserve(f->kv, s, lens[s]));
        for (int p0 = 0; p0 < lens[s]; p0 += chunk) {
            const int n = lens[s] - p0 < chunk ? lens[s] - p0 : chunk;
            for (int i = 0; i < n; i++) pos[i] = p0 + i, seq[i] = s;
            for (int i = 0; i < n * kvdim; i++) k[i] = frand(), v[i] = frand();
            loom_attention_args a = {f->kv, 0, n, pos, seq, n_q, n_kv, hd, f->q_to_kv, NULL, k, v, NULL, .scale = 0};
            loom_attention_store(&a);
        }
    }
    free(k);
    free(v);
}

static void fx_drop(fx *f) {
    loom_kv_free(f->kv);
    free(f->q_to_kv);
    free(f->len);
}

/* The GPU's schedule, on the CPU: every unit's segments computed apart into
 * their own partial slots, then merged in order and finished. */
static void split_attention(const fx *f, loom_attn_plan *plan, int n, const int32_t *pos, const int32_t *seq,
                            const float *q, float *out) {
    cr_assert(!loom_attn_plan_build(plan, f->kv, n, pos, seq));
    int nu, nt;
    const loom_attn_dunit *units = loom_attn_plan_units(plan, &nu);
    const int32_t *tables = loom_attn_plan_tables(plan, &nt);
    const loom_kv_config *kc = loom_kv_config_of(f->kv);
    const int hd = f->hd, NQ = LOOM_ATTN_UNIT_NQ, sb = loom_attn_seg_blocks(kc->block_tokens, kc->max_ctx);
    const loom_kernels *K = loom_kernels_get();
    while (hd % K->attn_head_multiple) K = K->lower;
    const size_t part = LOOM_ATTN_PART_FLOATS(hd);
    float *slots = aligned_alloc(64, sizeof(float) * part * LOOM_ATTN_SEG_MAX_PARTS);
    float *qs = aligned_alloc(64, sizeof(float) * (size_t)hd * NQ), *acc = aligned_alloc(64, sizeof(float) * NQ * (size_t)hd);
    float *work = aligned_alloc(64, sizeof(float) * LOOM_ATTN_WORK_FLOATS(hd)), m[16], l[16];
    const uint8_t *k0 = loom_kv_k_block(f->kv, 0, 0), *v0 = loom_kv_v_block(f->kv, 0, 0);
    const size_t bb = (size_t)((const uint8_t *)loom_kv_k_block(f->kv, 0, 1) - k0);
    for (int ui = 0; ui < nu; ui++) {
        const loom_attn_dunit *un = &units[ui];
        const float *qp[16];
        float *op[16];
        for (int j = 0; j < un->nq; j++) qp[j] = q + un->q_off[j], op[j] = out + un->q_off[j];
        loom_attn_unit u = {.k = k0, .v = v0, .block_bytes = bb, .block_tokens = f->bt, .head_dim = hd,
                            .f16 = f->type == LOOM_TYPE_F16, .kvh = un->kvh, .table = tables + un->table,
                            .nq = un->nq, .p_pf = un->len, .qp = qp,
                            .qscale = (float)(1.4426950408889634 / sqrt((double)hd)), .lim = un->lim, .q = qs,
                            .m = m, .l = l, .acc = acc, .work = work};
        const int P = loom_attn_n_segs(un->len, f->bt, sb);
        if (P == 1) {
            u.p_begin = 0, u.p_end = un->len, u.out = op;
            K->attn_unit(&u);
            continue;
        }
        for (int s = 0; s < P; s++) { /* apart: each segment from a fresh state */
            float *sl = slots + (size_t)s * part;
            loom_attn_seg_range(s, un->len, f->bt, sb, &u.p_begin, &u.p_end);
            u.out = NULL, u.m = sl, u.l = sl + NQ, u.acc = sl + 2 * NQ;
            K->attn_unit(&u);
        }
        for (int s = 1; s < P; s++) { /* then merged in order */
            const float *b = slots + (size_t)s * part;
            for (int j = 0; j < un->nq; j++)
                loom_attn_merge1(&slots[j], &slots[NQ + j], slots + 2 * NQ + (size_t)j * hd, b[j], b[NQ + j],
                                 b + 2 * NQ + (size_t)j * hd, hd);
        }
        for (int j = 0; j < un->nq; j++) loom_attn_finish(slots + 2 * NQ + (size_t)j * hd, slots[NQ + j], op[j], hd);
    }
    free(slots);
    free(qs);
    free(acc);
    free(work);
}

/* reference (attention.c on 1 thread, and 3 at the best level), the split, the host device */
static void compare(const fx *f, int n, const int32_t *pos, const int32_t *seq, const char *what) {
    const int qdim = f->n_q * f->hd;
    float *q = malloc(sizeof(float) * (size_t)n * qdim), *ref = malloc(sizeof(float) * (size_t)n * qdim);
    float *got = malloc(sizeof(float) * (size_t)n * qdim);
    for (int i = 0; i < n * qdim; i++) q[i] = frand() * 2.0f;
    const loom_kv_config *kc = loom_kv_config_of(f->kv);
    loom_attn_plan *plan;
    cr_assert(!loom_attn_plan_create(n, f->n_q, f->n_kv, f->hd, f->q_to_kv, kc, &plan));
    const size_t sf = loom_attention_scratch_floats(kc, f->n_q, f->n_kv, f->hd, n);
    float *scratch = malloc(sizeof(float) * sf * 3);
    loom_device *dev;
    cr_assert(!loom_device_create_host(2, &dev));
    const loom_isa best = loom_isa_detect();
    for (int isa = 0; isa <= (int)best; isa++) {
        cr_assert(!loom_isa_set((loom_isa)isa));
        for (int th = 1; th <= (isa == (int)best ? 3 : 1); th += 2) { /* (thread invariance: test_attention) */
            loom_pool *pool;
            cr_assert(!loom_pool_create(th, &pool));
            loom_attention_args a = {f->kv, 0, n, pos, seq, f->n_q, f->n_kv, f->hd, f->q_to_kv, q, NULL, NULL, ref, .scale = 0};
            loom_attention_compute(&a, pool, scratch);
            loom_pool_free(pool);
            memset(got, 0xff, sizeof(float) * (size_t)n * qdim);
            split_attention(f, plan, n, pos, seq, q, got);
            cr_assert(!memcmp(got, ref, sizeof(float) * (size_t)n * qdim),
                      "%s (%s, %d threads): the split and merge differ from attention.c", what,
                      loom_isa_name((loom_isa)isa), th);
        }
        /* the host device's entry, with the plan's tables */
        int nu, nt;
        const loom_attn_dunit *units = loom_attn_plan_units(plan, &nu);
        const int32_t *tables = loom_attn_plan_tables(plan, &nt);
        const uint8_t *k0 = loom_kv_k_block(f->kv, 0, 0);
        loom_dev_attn_args da = {.kc = k0, .vc = loom_kv_v_block(f->kv, 0, 0),
                                 .block_bytes = (size_t)((const uint8_t *)loom_kv_k_block(f->kv, 0, 1) - k0),
                                 .block_tokens = f->bt, .head_dim = f->hd, .f16 = f->type == LOOM_TYPE_F16, .q = q,
                                 .out = got, .units = units, .n_units = nu, .tables = tables,
                                 .seg_blocks = loom_attn_seg_blocks(f->bt, f->max_ctx),
                                 .max_segs = loom_attn_n_segs(f->max_ctx, f->bt, loom_attn_seg_blocks(f->bt, f->max_ctx)),
                                 .qscale = (float)(1.4426950408889634 / sqrt((double)f->hd))};
        memset(got, 0xff, sizeof(float) * (size_t)n * qdim);
        dev->vt->attention(dev, &da);
        cr_assert(!memcmp(got, ref, sizeof(float) * (size_t)n * qdim), "%s (%s): the host device differs", what,
                  loom_isa_name((loom_isa)isa));
    }
    cr_assert(!loom_isa_set(best));
    loom_device_free(dev);
    loom_attn_plan_free(plan);
    free(scratch);
    free(q);
    free(ref);
    free(got);
}

static void decode_and_prefill(int n_q, int n_kv, int hd, loom_type type, int max_ctx, int long_len, int prefill) {
    const int lens[3] = {long_len, 17, 1};
    fx f;
    fx_make(&f, n_q, n_kv, hd, 16, type, max_ctx, lens, 3);
    int32_t pos[64], seq[64];
    for (int s = 0; s < 3; s++) pos[s] = lens[s] - 1, seq[s] = s;
    compare(&f, 3, pos, seq, "decode of 3 sequences");
    compare(&f, 1, pos, seq, "decode of the long sequence alone");
    if (!prefill) {
        fx_drop(&f);
        return;
    }
    int n = 0; /* a prefill chunk at the end of the long sequence, and rows of the others, shuffled */
    for (int i = 0; i < 40 && i < long_len; i++) pos[n] = long_len - 40 + i, seq[n++] = 0;
    for (int i = 0; i < 17; i++) pos[n] = i, seq[n++] = 1;
    pos[n] = 0, seq[n++] = 2;
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(urand() % (uint32_t)(i + 1)), tp = pos[i], ts = seq[i];
        pos[i] = pos[j], seq[i] = seq[j], pos[j] = tp, seq[j] = ts;
    }
    compare(&f, n, pos, seq, "mixed prefill");
    fx_drop(&f);
}

Test(attn_split, gqa_1_to_8_head_64_f16) {
    decode_and_prefill(4, 4, 64, LOOM_TYPE_F16, 4096, 2100, 1);   /* GQA 1 */
    decode_and_prefill(8, 4, 64, LOOM_TYPE_F16, 4096, 1500, 1);   /* GQA 2 */
    decode_and_prefill(9, 3, 64, LOOM_TYPE_F16, 4096, 4096, 1);   /* GQA 3, SmolLM2's heads, a full context */
    decode_and_prefill(32, 4, 64, LOOM_TYPE_F16, 4096, 700, 1);   /* GQA 8, two units per group of 16 */
}

Test(attn_split, head_128_f32_and_f16) {
    decode_and_prefill(8, 1, 128, LOOM_TYPE_F32, 4096, 3000, 1);  /* GQA 8 */
    decode_and_prefill(4, 2, 128, LOOM_TYPE_F16, 2048, 2048, 1);
}

Test(attn_split, context_32768_decode) {
    decode_and_prefill(8, 1, 128, LOOM_TYPE_F16, 32768, 32768, 0); /* decode only: 16 segments of 2048 */
}
