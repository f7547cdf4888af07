/* tests/test_actq.c — the activation quantization the GPU runs
 * (runtime/actq.h, compiled here as C) writes exactly the bytes of the
 * CPU's loom_act_quantize, for both row layouts, on random rows and on the
 * inputs where quantizers usually part ways: ties at x·(1/d) = k + 1/2,
 * blocks of zeros, one huge value, denormals, ±inf and NaN. Also: the
 * block's scale, quants and sums are independent of the order in which
 * amax and the sums are reduced (what a warp does), shown by reducing them
 * in a scrambled order. Every level's quantizer (scalar, AVX2, AVX-512, as
 * far as this CPU runs them) is checked the same way. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/actq.h"
#include "runtime/kernels.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(float scale) { return ((float)(urand() >> 8) / (float)(1u << 24) * 2.0f - 1.0f) * scale; }

/* rows that stress the quantizer, by kind */
static void fill(float *x, int64_t k, int kind) {
    for (int64_t i = 0; i < k; i++) x[i] = frand(1.0f);
    switch (kind) {
    case 0: break;                                              /* uniform */
    case 1: for (int64_t i = 0; i < k; i++) x[i] *= 1000.0f; break; /* wide */
    case 2: /* exact ties: block max 127 so inv = 1, values k + 1/2 */
        for (int64_t i = 0; i < k; i++) x[i] = (float)((int)(urand() % 254) - 127) + ((urand() & 1) ? 0.5f : 0.0f);
        for (int64_t b = 0; b < k; b += 32) x[b] = 127.0f;
        break;
    case 3: /* zero blocks and one spike per 256 */
        for (int64_t i = 0; i < k; i++) x[i] = (i / 32) % 3 == 0 ? 0.0f : x[i] * 1e-3f;
        for (int64_t b = 0; b + 77 < k; b += 256) x[b + 77] = 3.0e4f; /* a spike at element 77 of each 256 */
        break;
    case 4: /* denormals and tiny values */
        for (int64_t i = 0; i < k; i++) x[i] = frand(1e-38f);
        break;
    case 5: /* infinities and NaNs sprinkled in */
        for (int64_t i = 0; i < k; i++) {
            uint32_t r = urand() % 40;
            if (r == 0) x[i] = INFINITY;
            else if (r == 1) x[i] = -INFINITY;
            else if (r == 2) x[i] = NAN;
        }
        break;
    case 6: /* whole blocks of NaN */
        for (int64_t i = 0; i < 32 && i < k; i++) x[i] = NAN;
        break;
    }
}

/* Every level this CPU runs: its table's quantizer over the whole row, and
 * over blocks [1, nb - 1) of it (the bytes of those blocks only), equal the
 * header's; and loom_act_quantize (the active level's) too. */
static void check_rows(loom_type wt, int64_t k) {
    const size_t rb = loom_act_row_bytes(wt, k);
    cr_assert(rb > 0);
    const bool kq = wt == LOOM_TYPE_Q4_K || wt == LOOM_TYPE_Q5_K || wt == LOOM_TYPE_Q6_K;
    const int64_t nb = k / (kq ? 256 : 32);
    float *x = malloc(sizeof(float) * (size_t)k);
    uint8_t *cpu = malloc(rb), *hd = malloc(rb), *part = malloc(rb);
    for (int kind = 0; kind <= 6; kind++)
        for (int rep = 0; rep < 8; rep++) {
            fill(x, k, kind);
            memset(hd, 0x55, rb);
            if (kq) {
                for (int64_t b = 0; b < k / 256; b++) {
                    loom_block_q8_K blk;
                    memset(&blk, 0, sizeof blk);
                    loom_actq_block_q8K(x + 256 * b, &blk);
                    memcpy(hd + (size_t)b * sizeof blk, &blk, sizeof blk);
                }
            } else {
                loom_actq_row32(x, hd, k);
            }
            for (int lv = -1; lv < LOOM_ISA_COUNT; lv++) {
                const loom_kernels *K = lv < 0 ? NULL : loom_kernels_of((loom_isa)lv);
                if (K && !loom_isa_supported((loom_isa)lv, NULL, 0)) continue;
                loom_act_q8_fn *q = K ? (kq ? K->act_q8_K : K->act_q8_32) : NULL;
                memset(cpu, 0xAA, rb);
                if (q) q(x, cpu, k, 0, nb);
                else loom_act_quantize(wt, x, cpu, k);
                const char *who = K ? K->name : "loom_act_quantize";
                for (size_t i = 0; i < rb; i++)
                    cr_assert_eq(cpu[i], hd[i], "%s, %s k=%lld kind %d rep %d: byte %zu differs (cpu %02x, header %02x)",
                                 who, loom_type_name(wt), (long long)k, kind, rep, i, cpu[i], hd[i]);
                if (!q || nb < 3) continue;
                memset(part, 0xAA, rb);
                q(x, part, k, 1, nb - 1);
                for (size_t i = 0; i < rb; i++) {
                    /* block b's bytes: Q8_K blocks whole; 32-blocks' quants, scale and sum apart */
                    const int64_t b = kq ? (int64_t)(i / sizeof(loom_block_q8_K))
                                    : i < (size_t)k ? (int64_t)i / 32 : (int64_t)((i - (size_t)k) / 4) % nb;
                    const uint8_t want = b >= 1 && b < nb - 1 ? hd[i] : 0xAA;
                    cr_assert_eq(part[i], want, "%s, %s k=%lld blocks 1..%lld: byte %zu (block %lld) is %02x, not %02x",
                                 who, loom_type_name(wt), (long long)k, (long long)nb - 2, i, (long long)b, part[i], want);
                }
            }
        }
    free(x);
    free(cpu);
    free(hd);
    free(part);
}

Test(actq, q8_32_rows_equal_cpu) {
    const int64_t ks[] = {32, 64, 576, 1536, 4096};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        check_rows(LOOM_TYPE_Q4_0, ks[i]);
        check_rows(LOOM_TYPE_Q8_0, ks[i]);
    }
}

Test(actq, q8_K_rows_equal_cpu) {
    const int64_t ks[] = {256, 512, 2048, 4096};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        check_rows(LOOM_TYPE_Q4_K, ks[i]);
        check_rows(LOOM_TYPE_Q6_K, ks[i]);
    }
}

/* a warp reduces amax and the sums in a tree: any order gives the same */
Test(actq, reduction_order_is_free) {
    float x[256];
    for (int rep = 0; rep < 200; rep++) {
        fill(x, 256, rep % 7);
        loom_block_q8_K ref;
        loom_actq_block_q8K(x, &ref);
        /* tree order: pairwise maxima as a warp's shuffles take them */
        float m[256];
        for (int i = 0; i < 256; i++) m[i] = loom_actq_absmax(0.0f, x[i]);
        for (int w = 128; w >= 1; w /= 2)
            for (int i = 0; i < w; i++) m[i] = loom_actq_absmax(m[i], m[i + w]);
        float inv;
        const float d = loom_actq_scale(m[0], &inv);
        cr_assert_eq(loom_f32_to_bits(d), loom_f32_to_bits(ref.d), "rep %d: scale differs", rep);
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 15; j >= 0; j--) s += loom_actq_round(x[16 * g + j], inv);
            cr_assert_eq(s, ref.bsums[g]);
        }
    }
}
