/* tests/test_qdot.c — the dp4a integer dot products the GPU's quantized
 * matrix-vector kernels run (runtime/qdot.h, compiled here as C with dp4a
 * emulated) against the CPU kernels:
 *   - the emulated dp4a against plain signed-byte arithmetic;
 *   - per block, the sum of a block's slice integers equals the integer the
 *     scalar CPU kernel (runtime/cpu/matmul_scalar.c) forms, recomputed
 *     here independently from quant.h's dequantized weights (every weight is
 *     an integer times the block's scales);
 *   - per row, the block floats of loom_qdot_f32_* added in the CPU's order
 *     give the scalar kernel's output bit for bit (so every block's
 *     integer and float are the CPU's), for every quantized type, several
 *     row widths and random blocks — scales of every magnitude included;
 *   - slices are independent: adding them in reverse or interleaved order
 *     gives the same integers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/qdot.h"

static uint64_t rng = 0x13198a2e03707344ull;
static uint32_t urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(urand() >> 8) / (float)(1u << 24) * 2.0f - 1.0f; }

static const loom_type qtypes[] = {LOOM_TYPE_Q4_0, LOOM_TYPE_Q4_1, LOOM_TYPE_Q5_0, LOOM_TYPE_Q5_1,
                                   LOOM_TYPE_Q8_0, LOOM_TYPE_Q4_K, LOOM_TYPE_Q5_K, LOOM_TYPE_Q6_K};

/* a finite fp16 of magnitude ~2^e */
static uint16_t rand_f16(int e) {
    return loom_f32_to_f16(ldexpf(0.5f + 0.5f * (float)(urand() >> 8) / (float)(1u << 24), e) * (urand() & 1 ? 1 : -1));
}

/* random bytes, with the block's fp16 scales set to finite values */
static void random_row(loom_type t, uint8_t *w, int64_t k) {
    const loom_type_traits *tr = loom_type_info(t);
    const int64_t nb = k / tr->block_size;
    for (size_t i = 0; i < (size_t)nb * tr->type_size; i++) w[i] = (uint8_t)urand();
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = w + (size_t)b * tr->type_size;
        const int e = -12 + (int)(urand() % 10);
        uint16_t h;
        if (t == LOOM_TYPE_Q6_K) {
            h = rand_f16(e);
            memcpy(blk + 208, &h, 2);
            continue;
        }
        h = rand_f16(e);
        memcpy(blk, &h, 2);
        if (t == LOOM_TYPE_Q4_1 || t == LOOM_TYPE_Q5_1 || t == LOOM_TYPE_Q4_K || t == LOOM_TYPE_Q5_K) {
            h = rand_f16(e);
            memcpy(blk + 2, &h, 2);
        }
    }
}

static bool is_k(loom_type t) { return t == LOOM_TYPE_Q4_K || t == LOOM_TYPE_Q5_K || t == LOOM_TYPE_Q6_K; }

Test(qdot, dp4a_emulation) {
    for (int i = 0; i < 100000; i++) {
        const int a = (int)urand(), b = (int)urand(), c = (int)(urand() % 100000) - 50000;
        int want = c;
        for (int j = 0; j < 4; j++) want += (int)(int8_t)(uint8_t)((uint32_t)a >> (8 * j)) * (int)(int8_t)(uint8_t)((uint32_t)b >> (8 * j));
        cr_assert_eq(loom_dp4a(a, b, c), want);
    }
}

/* The integer the CPU forms for one block, independently: dequantize the
 * block with unit scales (quant.h, d = 1, dmin/m = 0 where the layout
 * allows it) to read off each element's integer (offset removed), then
 * multiply by the activation's quants. */
static void block_ints(loom_type t, const uint8_t *blk, const int8_t *a, int *isum, int *msum) {
    uint8_t unit[256];
    const loom_type_traits *tr = loom_type_info(t);
    memcpy(unit, blk, tr->type_size);
    const uint16_t one = loom_f32_to_f16(1.0f), zero = 0;
    float y[256];
    *isum = 0, *msum = 0;
    if (t == LOOM_TYPE_Q6_K) {
        memcpy(unit + 208, &one, 2);
        /* x = d·sc·(q-32): with d = 1, y is sc·(q-32) */
        loom_dequant_block(t, unit, y);
        for (int j = 0; j < 256; j++) *isum += (int)lrintf(y[j]) * a[j];
        return;
    }
    if (is_k(t)) { /* x = d·sc·q − dmin·m: d = 1, dmin = 0 gives sc·q */
        memcpy(unit, &one, 2);
        memcpy(unit + 2, &zero, 2);
        loom_dequant_block(t, unit, y);
        for (int j = 0; j < 256; j++) *isum += (int)lrintf(y[j]) * a[j];
        return; /* the min term is checked with the rows below */
    }
    memcpy(unit, &one, 2);
    if (t == LOOM_TYPE_Q4_1 || t == LOOM_TYPE_Q5_1) memcpy(unit + 2, &zero, 2);
    loom_dequant_block(t, unit, y);
    for (int j = 0; j < 32; j++) *isum += (int)lrintf(y[j]) * a[j];
}

Test(qdot, block_integers_equal_cpu_integers) {
    uint8_t blk[256];
    int8_t a[256];
    for (size_t ti = 0; ti < sizeof qtypes / sizeof qtypes[0]; ti++) {
        const loom_type t = qtypes[ti];
        const int slices = is_k(t) ? LOOM_QDOT_SLICESK : LOOM_QDOT_SLICES32, n = is_k(t) ? 256 : 32;
        for (int rep = 0; rep < 2000; rep++) {
            random_row(t, blk, n);
            for (int j = 0; j < n; j++) a[j] = (int8_t)((int)(urand() % 255) - 127);
            int want, wm;
            block_ints(t, blk, a, &want, &wm);
            int got = 0, rev = 0;
            for (int i = 0; i < slices; i++) got += loom_qdot_slice(t, blk, a, i);
            for (int i = slices - 1; i >= 0; i--) rev += loom_qdot_slice(t, blk, a, i);
            cr_assert_eq(got, want, "%s rep %d: slices sum to %d, the CPU's integer is %d", loom_type_name(t), rep, got,
                         want);
            cr_assert_eq(rev, got);
        }
    }
}

/* The row sum in the scalar kernel's order (block by block, sum +=). */
static float row_dot(loom_type t, const uint8_t *w, const uint8_t *xq, int64_t k) {
    float sum = 0.0f;
    if (is_k(t)) {
        for (int64_t b = 0; b < k / 256; b++) {
            const uint8_t *wb = w + (size_t)b * loom_type_info(t)->type_size;
            loom_block_q8_K a;
            memcpy(&a, xq + (size_t)b * sizeof a, sizeof a);
            int isum = 0;
            for (int i = 0; i < LOOM_QDOT_SLICESK; i++) isum += loom_qdot_slice(t, wb, a.qs, i);
            if (t == LOOM_TYPE_Q6_K) sum += loom_qdot_f32_q6K(wb, a.d, isum);
            else sum += loom_qdot_f32_k45(wb, a.d, isum, loom_qdot_kmins(wb, a.bsums));
        }
        return sum;
    }
    const int8_t *qs = (const int8_t *)xq;
    for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *wb = w + (size_t)b * loom_type_info(t)->type_size;
        int isum = 0;
        for (int i = 0; i < LOOM_QDOT_SLICES32; i++) isum += loom_qdot_slice(t, wb, qs + 32 * b, i);
        float dw, m, d, s;
        loom_qdot_scale32(t, wb, &dw, &m);
        memcpy(&d, xq + k + 4 * b, 4);
        memcpy(&s, xq + k + 4 * (k / 32) + 4 * b, 4);
        sum += loom_qdot_f32_32(dw, m, d, s, isum);
    }
    return sum;
}

Test(qdot, rows_equal_scalar_kernel_bit_for_bit) {
    const loom_kernels *scalar = loom_kernels_of(LOOM_ISA_SCALAR);
    const int64_t ks[] = {256, 512, 1536, 4096};
    for (size_t ti = 0; ti < sizeof qtypes / sizeof qtypes[0]; ti++) {
        const loom_type t = qtypes[ti];
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            const int64_t k = ks[ki], rows = 24;
            const size_t ws = loom_type_row_bytes(t, k), xs = loom_act_row_bytes(t, k);
            uint8_t *w = malloc(ws * rows), *xq = malloc(xs);
            float *x = malloc(sizeof(float) * (size_t)k), y[24];
            for (int64_t r = 0; r < rows; r++) random_row(t, w + r * ws, k);
            for (int64_t j = 0; j < k; j++) x[j] = frand() * (j % 97 == 0 ? 30.0f : 1.0f);
            loom_act_quantize(t, x, xq, k);
            scalar->matmul[t](w, ws, k, rows, xq, xs, 1, y, rows);
            for (int64_t r = 0; r < rows; r++) {
                const float got = row_dot(t, w + r * ws, xq, k);
                cr_assert_eq(loom_f32_to_bits(got), loom_f32_to_bits(y[r]),
                             "%s k=%lld row %lld: qdot.h gives %.9g, the scalar kernel %.9g", loom_type_name(t),
                             (long long)k, (long long)r, got, y[r]);
            }
            free(w);
            free(xq);
            free(x);
        }
    }
}
