/*
 * tests/test_matmul.c — loom_matmul for every weight type on every ISA level
 * this CPU supports (each forced with loom_isa_set), on odd shapes.
 *
 * Reference: the double-precision sum of dequantized weight (loom_dequant_row,
 * itself checked bit-exact against gguf-py in test_quant) times dequantized
 * activation (loom_act_dequantize). The kernels compute the same products
 * with exact integer block sums, so the only differences are float rounding
 * and accumulation order:
 *     |y - ref| <= 2e-5 * sum_j (|w_j| + |o_j|) * |a_j|
 * where o_j is the block's offset/min term (the dequantization of the block
 * with its quants zeroed), since the kernels scale and subtract the two parts
 * separately. A looser check against the unquantized float activations
 * bounds the activation quantization error: each activation moves by at most
 * d/2 (d = its block's max|x| / 127), so
 *     |y - sum_j w_j x_j| <= sum_j |w_j| * d_j/2 * (1 + 1e-5) + the above.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/quant.h"

static const loom_type all_types[] = {LOOM_TYPE_F32,  LOOM_TYPE_F16,  LOOM_TYPE_BF16, LOOM_TYPE_Q4_0,
                                      LOOM_TYPE_Q4_1, LOOM_TYPE_Q5_0, LOOM_TYPE_Q5_1, LOOM_TYPE_Q8_0,
                                      LOOM_TYPE_Q4_K, LOOM_TYPE_Q5_K, LOOM_TYPE_Q6_K, LOOM_TYPE_MXFP4,
                                      LOOM_TYPE_Q3_K, LOOM_TYPE_Q2_K, LOOM_TYPE_IQ4_NL};
enum { N_TYPES = sizeof all_types / sizeof all_types[0] };

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(urand() >> 8) * (1.0f / 8388608.0f) - 1.0f; } /* [-1, 1) */

/* byte offsets of the fp16 scale/min fields in a block (-1 ends) */
static const int *scale_fields(loom_type t) {
    static const int d0[] = {0, -1}, dm[] = {0, 2, -1}, q6k[] = {208, -1}, q3k[] = {108, -1}, q2k[] = {80, 82, -1}, none[] = {-1};
    switch (t) {
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q8_0:
    case LOOM_TYPE_IQ4_NL: return d0;
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q5_1:
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K: return dm;
    case LOOM_TYPE_Q6_K: return q6k;
    case LOOM_TYPE_Q3_K: return q3k;
    case LOOM_TYPE_Q2_K: return q2k;
    default: return none;
    }
}

/* One random row of type t, k elements, into dst (row bytes). */
static void random_row(loom_type t, uint8_t *dst, int64_t k) {
    const loom_type_traits *tr = loom_type_info(t);
    const size_t nbytes = loom_type_row_bytes(t, k);
    if (t == LOOM_TYPE_F32) {
        for (int64_t j = 0; j < k; j++) {
            float v = frand();
            memcpy(dst + 4 * j, &v, 4);
        }
        return;
    }
    if (t == LOOM_TYPE_F16 || t == LOOM_TYPE_BF16) {
        for (int64_t j = 0; j < k; j++) {
            uint16_t h = t == LOOM_TYPE_F16 ? loom_f32_to_f16(frand()) : loom_f32_to_bf16(frand());
            memcpy(dst + 2 * j, &h, 2);
        }
        return;
    }
    for (size_t i = 0; i < nbytes; i++) dst[i] = (uint8_t)urand();
    if (t == LOOM_TYPE_MXFP4) /* block scales 2^-6 .. 2^-1 (E8M0 122..127), as the others' */
        for (size_t b = 0; b < nbytes / tr->type_size; b++) dst[b * tr->type_size] = (uint8_t)(122 + urand() % 6);
    for (size_t b = 0; b < nbytes / tr->type_size; b++)
        for (const int *f = scale_fields(t); *f >= 0; f++) {
            uint16_t h = loom_f32_to_f16(frand() * 0.05f);
            memcpy(dst + b * tr->type_size + *f, &h, 2);
        }
}

/* Per-element offset magnitude: dequantization of the row with every quant
 * zeroed (scale/min fields kept). Zero for float types. */
static void offsets_of(loom_type t, const uint8_t *row, int64_t k, float *o) {
    const loom_type_traits *tr = loom_type_info(t);
    if (tr->block_size == 1) {
        memset(o, 0, (size_t)k * sizeof(float));
        return;
    }
    const size_t nbytes = loom_type_row_bytes(t, k);
    uint8_t *z = calloc(1, nbytes);
    for (size_t b = 0; b < nbytes / tr->type_size; b++) {
        const uint8_t *src = row + b * tr->type_size;
        uint8_t *d = z + b * tr->type_size;
        if (t == LOOM_TYPE_Q4_K || t == LOOM_TYPE_Q5_K) memcpy(d, src, 16); /* d, dmin, scales */
        else if (t == LOOM_TYPE_Q6_K) memcpy(d + 192, src + 192, 18);     /* scales, d */
        else if (t == LOOM_TYPE_Q3_K) memcpy(d + 96, src + 96, 14);       /* scales, d */
        else if (t == LOOM_TYPE_Q2_K) memcpy(d, src, 16), memcpy(d + 80, src + 80, 4); /* scales, d, dmin */
        else
            for (const int *f = scale_fields(t); *f >= 0; f++) memcpy(d + *f, src + *f, 2);
    }
    loom_dequant_row(t, z, o, k);
    free(z);
}

typedef struct {
    int fails;
    double worst; /* largest error / tolerance seen */
} check_stats;

/* Runs one case for the active ISA and checks it. Returns false (after
 * reporting) on the first wrong value. */
static bool run_case(loom_type t, int64_t k, int64_t rows, int64_t r0, int64_t n, bool odd,
                     check_stats *st) {
    const char *isa = loom_isa_name(loom_isa_get());
    const size_t rb = loom_type_row_bytes(t, k);
    const size_t w_stride = rb + (odd ? 7 : 0);
    const int64_t total_rows = r0 + rows;
    /* exact sizes (no slack after the last row), so ASan catches over-reads */
    uint8_t *wbuf = malloc((total_rows - 1) * w_stride + rb + 1);
    uint8_t *w = wbuf + 1; /* odd start address */
    for (int64_t r = 0; r < total_rows; r++) random_row(t, w + r * w_stride, k);

    float *x = malloc((size_t)(n * k) * sizeof(float));
    for (int64_t tk = 0; tk < n; tk++)
        for (int64_t j = 0; j < k; j++) /* magnitudes vary between blocks of 32 */
            x[tk * k + j] = frand() * ldexpf(1.0f, (int)((j / 32 + tk) % 5) - 2);
    const size_t ab = loom_act_row_bytes(t, k);
    cr_assert(ab > 0);
    const size_t xq_stride = ab + 3;
    uint8_t *xbuf = malloc((n - 1) * xq_stride + ab + 1);
    uint8_t *xq = xbuf + 1;
    for (int64_t tk = 0; tk < n; tk++) loom_act_quantize(t, x + tk * k, xq + tk * xq_stride, k);

    const int64_t ldy = rows + 5;
    float *y = malloc((size_t)(n * ldy) * sizeof(float));
    for (int64_t i = 0; i < n * ldy; i++) y[i] = NAN;
    loom_matmul(t, w, w_stride, k, r0, r0 + rows, xq, xq_stride, n, y, ldy);

    float *wd = malloc((size_t)k * sizeof(float)), *od = malloc((size_t)k * sizeof(float));
    float *ad = malloc((size_t)k * sizeof(float));
    bool ok = true;
    for (int64_t r = 0; r < rows && ok; r++) {
        loom_dequant_row(t, w + (r0 + r) * w_stride, wd, k);
        offsets_of(t, w + (r0 + r) * w_stride, k, od);
        for (int64_t tk = 0; tk < n && ok; tk++) {
            loom_act_dequantize(t, xq + tk * xq_stride, ad, k);
            double ref = 0, mag = 0, exact = 0, qerr = 0;
            const int bs = (int)loom_type_info(t)->block_size;
            const int abs_ = bs == 256 ? 256 : 32;
            for (int64_t j = 0; j < k; j++) {
                ref += (double)wd[j] * ad[j];
                mag += (fabs(wd[j]) + fabs(od[j])) * fabs(ad[j]);
                exact += (double)wd[j] * x[tk * k + j];
                if (bs > 1 && j % abs_ == 0) { /* activation block scale */
                    float amax = 0;
                    for (int i = 0; i < abs_; i++) amax = fmaxf(amax, fabsf(x[tk * k + j + i]));
                    for (int i = 0; i < abs_; i++)
                        qerr += fabs(wd[j + i]) * (amax / 127.0) * 0.5 * (1 + 1e-5);
                }
            }
            const double got = y[tk * ldy + r];
            const double tol = 2e-5 * mag + 1e-30;
            const double err = fabs(got - ref);
            if (err / tol > st->worst) st->worst = err / tol;
            if (!(err <= tol)) {
                cr_log_error("%s/%s k=%ld rows=%ld r0=%ld n=%ld: y[%ld][%ld] = %.9g, reference %.9g "
                             "(error %.3g > tolerance %.3g)",
                             isa, loom_type_name(t), (long)k, (long)rows, (long)r0, (long)n, (long)tk,
                             (long)r, got, ref, err, tol);
                ok = false;
            } else if (!(fabs(got - exact) <= qerr + tol)) {
                cr_log_error("%s/%s k=%ld rows=%ld n=%ld: y[%ld][%ld] = %.9g, float activations give "
                             "%.9g, beyond the activation quantization bound %.3g",
                             isa, loom_type_name(t), (long)k, (long)rows, (long)n, (long)tk, (long)r,
                             got, exact, qerr + tol);
                ok = false;
            }
        }
    }
    for (int64_t tk = 0; tk < n && ok; tk++) /* nothing written outside [0, rows) of each y row */
        for (int64_t i = rows; i < ldy; i++)
            if (!isnan(y[tk * ldy + i])) {
                cr_log_error("%s/%s: wrote y[%ld][%ld] outside the row range", isa,
                             loom_type_name(t), (long)tk, (long)i);
                ok = false;
                break;
            }
    if (!ok) st->fails++;
    free(wd);
    free(od);
    free(ad);
    free(y);
    free(xbuf);
    free(x);
    free(wbuf);
    return ok;
}

/* Every ISA this CPU supports, forced in turn; prints which were exercised
 * and which are not testable here. Returns how many were run. */
typedef void (*isa_body)(loom_isa isa);

static int for_each_isa(const char *what, isa_body body) {
    char line[256] = "", missing[200];
    int ran = 0;
    const loom_isa best = loom_isa_detect();
    for (int i = 0; i < LOOM_ISA_COUNT; i++) {
        const loom_isa isa = (loom_isa)i;
        if (!loom_isa_supported(isa, missing, sizeof missing)) {
            cr_assert(i > (int)best, "detect says %s is supported but loom_isa_supported disagrees",
                      loom_isa_name(isa));
            fprintf(stderr, "[%s] %s: not testable on this CPU (missing %s)\n", what,
                    loom_isa_name(isa), missing);
            continue;
        }
        loom_status s = loom_isa_set(isa);
        cr_assert(s == NULL, "loom_isa_set(%s) failed although supported: %s", loom_isa_name(isa),
                  loom_status_message(s));
        cr_assert_eq(loom_isa_get(), isa);
        body(isa);
        ran++;
        strncat(line, " ", sizeof line - strlen(line) - 1);
        strncat(line, loom_isa_name(isa), sizeof line - strlen(line) - 1);
    }
    fprintf(stderr, "[%s] ISAs exercised:%s\n", what, line);
    return ran;
}

static check_stats stats_by_isa[LOOM_ISA_COUNT];

static void odd_shapes(loom_isa isa) {
    static const int64_t rows_list[] = {1, 3, 17, 33};
    static const int64_t n_list[] = {1, 2, 3, 5, 8, 13};
    check_stats *st = &stats_by_isa[isa];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const loom_type t = all_types[ti];
        const int bs = (int)loom_type_info(t)->block_size;
        const int unit = bs == 256 ? 256 : 32; /* float types: use 32-multiples too */
        int64_t kb_list[] = {1, 3, 7, 9};
        const int nk = unit == 256 ? 3 : 4; /* 9 x 32 = 288: not a multiple of 256 */
        int case_no = 0;
        for (int ki = 0; ki < nk; ki++)
            for (int ri = 0; ri < 4; ri++)
                for (int ni = 0; ni < 6; ni++, case_no++) {
                    const int64_t k = kb_list[ki] * unit;
                    const int64_t r0 = case_no % 3 == 0 ? 0 : 1 + case_no % 5;
                    run_case(t, k, rows_list[ri], r0, n_list[ni], case_no % 2, st);
                }
        /* float types also at widths that are not multiples of the vector length */
        if (bs == 1)
            for (int64_t k = 1; k <= 40; k += 13) run_case(t, k, 5, 2, 3, true, st);
    }
    fprintf(stderr, "[matmul] %s: worst error / tolerance %.3g\n", loom_isa_name(isa), st->worst);
    cr_assert_eq(st->fails, 0, "%s: %d failing cases (see errors above)", loom_isa_name(isa),
                 st->fails);
}

Test(matmul, every_type_every_isa_odd_shapes) {
    cr_assert(for_each_isa("matmul odd shapes", odd_shapes) >= 1);
}

static void larger_shapes(loom_isa isa) {
    check_stats *st = &stats_by_isa[isa];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const loom_type t = all_types[ti];
        run_case(t, 2048, 40, 4, 37, false, st); /* full tiles in both directions */
        run_case(t, 1024, 9, 0, 64, true, st);
        /* enough tokens for the prefill GEMM, odd widths, partial panels */
        const int64_t bs = loom_type_info(t)->block_size;
        run_case(t, bs == 1 ? 27 : 3 * bs, 19, 3, 21, true, st);
        run_case(t, bs == 1 ? 300 : 9 * (bs == 256 ? 256 : 32), 35, 1, 29, false, st);
    }
    cr_assert_eq(st->fails, 0, "%s: %d failing cases", loom_isa_name(isa), st->fails);
}

Test(matmul, larger_shapes_every_isa) { cr_assert(for_each_isa("matmul larger", larger_shapes) >= 1); }

/* ---- batch invariance (runtime/kernels.h) ----
 * A row's result must not depend on the other tokens or rows of the call:
 * the same row computed alone (n = 1, which takes the decode tiles), in
 * batches of every size around the tile / GEMM crossovers (n = 2..33), and
 * in a call over a different row range (other tile and panel groupings).
 * Bit-identical on the levels that promise it (scalar, AVX2); on AVX-512,
 * whose register tiles and panel GEMM still round differently, within the
 * accuracy tolerance of run_case (2e-5 * sum_j (|w_j| + |o_j|) * |a_j|). */
static const bool promises_bit_identical[LOOM_ISA_COUNT] = {true, true, false};

static check_stats invariance_stats[LOOM_ISA_COUNT];

static void batch_invariance(loom_isa isa) {
    static const int64_t n_list[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 16, 17, 20, 21, 32, 33};
    enum { ROWS = 21, NMAX = 33, R0 = 5, R1 = 13 };
    const int64_t k = 1536; /* 48 blocks, 6 super-blocks: several GEMM k-chunks on every level */
    check_stats *st = &invariance_stats[isa];
    for (int ti = 0; ti < N_TYPES; ti++) {
        const loom_type t = all_types[ti];
        const size_t rb = loom_type_row_bytes(t, k), ab = loom_act_row_bytes(t, k);
        uint8_t *w = malloc(rb * ROWS), *xq = malloc(ab * NMAX);
        float *x = malloc(sizeof(float) * k), *yb = malloc(sizeof(float) * NMAX * ROWS), one[ROWS];
        float *yp = malloc(sizeof(float) * NMAX * (R1 - R0));
        float *wd = malloc(sizeof(float) * k), *od = malloc(sizeof(float) * k), *ad = malloc(sizeof(float) * k);
        for (int r = 0; r < ROWS; r++) random_row(t, w + r * rb, k);
        for (int tk = 0; tk < NMAX; tk++) {
            for (int64_t j = 0; j < k; j++) x[j] = frand() * ldexpf(1.0f, (int)((j / 32 + tk) % 5) - 2);
            loom_act_quantize(t, x, xq + tk * ab, k);
        }
        for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++) {
            const int64_t n = n_list[ni];
            loom_matmul(t, w, rb, k, 0, ROWS, xq, ab, n, yb, ROWS);
            loom_matmul(t, w, rb, k, R0, R1, xq, ab, n, yp, R1 - R0);
            for (int64_t tk = 0; tk < n; tk++) {
                loom_matmul(t, w, rb, k, 0, ROWS, xq + tk * ab, ab, 1, one, ROWS);
                for (int r = 0; r < ROWS; r++) {
                    const float got = yb[tk * ROWS + r];
                    const int n_other = r >= R0 && r < R1 ? 2 : 1;
                    const float other[2] = {one[r], n_other == 2 ? yp[tk * (R1 - R0) + r - R0] : 0.0f};
                    for (int o = 0; o < n_other; o++) {
                        const bool same = memcmp(&got, &other[o], sizeof got) == 0;
                        if (same) continue;
                        const char *how = o ? "from rows [5, 13)" : "alone";
                        if (promises_bit_identical[isa]) {
                            if (st->fails < 20) /* the first few; the count follows */
                                cr_log_error("%s/%s n=%ld: row %d of token %ld is %.9g in the batch, %.9g %s",
                                             loom_isa_name(isa), loom_type_name(t), (long)n, r, (long)tk, got, other[o],
                                             how);
                            st->fails++;
                            continue;
                        }
                        loom_dequant_row(t, w + r * rb, wd, k);
                        offsets_of(t, w + r * rb, k, od);
                        loom_act_dequantize(t, xq + tk * ab, ad, k);
                        double mag = 0;
                        for (int64_t j = 0; j < k; j++) mag += (fabs(wd[j]) + fabs(od[j])) * fabs(ad[j]);
                        const double err = fabs((double)got - other[o]), tol = 2e-5 * mag;
                        if (err / tol > st->worst) st->worst = err / tol;
                        if (!(err <= tol)) {
                            if (st->fails < 20)
                                cr_log_error("%s/%s n=%ld: row %d of token %ld is %.9g in the batch, %.9g %s "
                                             "(difference %.3g > %.3g)",
                                             loom_isa_name(isa), loom_type_name(t), (long)n, r, (long)tk, got,
                                             other[o], how, err, tol);
                            st->fails++;
                        }
                    }
                }
            }
        }
        free(w), free(xq), free(x), free(yb), free(yp), free(wd), free(od), free(ad);
    }
    fprintf(stderr, "[matmul batch invariance] %s: %s\n", loom_isa_name(isa),
            promises_bit_identical[isa] ? "bit-identical" : "within the tolerance");
    cr_assert_eq(st->fails, 0, "%s: %d rows depend on the batch (see errors above)", loom_isa_name(isa), st->fails);
}

Test(matmul, batch_invariance_every_isa) {
    cr_assert(for_each_isa("matmul batch invariance", batch_invariance) >= 1);
}

/* ---- the r8 layout (runtime/kernels.h) ----
 * Weights repacked by loom_repack_r8 and multiplied by loom_matmul_r8 give
 * the bits the GGUF rows give: on the scalar level the scalar ones, on the
 * SIMD levels the AVX2 level's (the same integer sums and float steps), but
 * the AVX-512 K-quants' from loom_r8_gemm_bits_from tokens the AVX-512 rows'
 * GEMM's.
 * Every row count (whole and partial groups of 8), ranges starting at a
 * later group, token counts around every tile size; nothing is written past
 * a range's rows. loom_r8_dequant_row gives every row's loom_dequant_row. */
/* r8_layout_extreme: every quant and scale byte at its largest (0xFF), the
 * activations at +-127, so the kernels' integer sums reach their bounds
 * (matmul_avx512.c: r8_kscale keeps Q4_K's within int16 that way only) */
static bool r8_extreme;

static void r8_layout(loom_isa isa) {
    static const int64_t rows_list[] = {1, 7, 8, 13, 40, 61};
    /* blocks (Q4_0: 32 elements, Q4_K: 256); 0: k = 2560, 10 super-blocks (the K-quants' prefill panels
     * of 4 and 8 carried over a second and third chunk) */
    static const int64_t kb_list[] = {1, 3, 0};
    /* (AVX-512 K-quants: passes over the r8 bytes up to 8 / 16 / 24 tokens, panels above) */
    static const int64_t n_list[] = {1, 2, 3, 4, 5, 8, 9, 16, 17, 24, 25, 33};
    enum { NMAX = 33, LDY = 64 };
    const loom_isa ref_isa = isa == LOOM_ISA_SCALAR ? LOOM_ISA_SCALAR : LOOM_ISA_AVX2;
    int cases = 0;
    for (int t = 0; t < LOOM_TYPE_COUNT; t++) {
        if (!loom_type_has_r8((loom_type)t)) continue;
        for (int ki = 0; ki < 3; ki++)
            for (int ri = 0; ri < (int)(sizeof rows_list / sizeof rows_list[0]); ri++) {
                const int64_t k = kb_list[ki] ? kb_list[ki] * loom_type_info((uint32_t)t)->block_size : 2560,
                              rows = rows_list[ri];
                const size_t rb = loom_type_row_bytes((loom_type)t, k), ab = loom_act_row_bytes((loom_type)t, k);
                const size_t pb = loom_r8_bytes((loom_type)t, rows, k), prb = loom_r8_row_bytes((loom_type)t, k);
                cr_assert(prb >= rb && pb == (size_t)((rows + 7) / 8) * 8 * prb, "%s: %zu r8 bytes per row, %zu in all",
                          loom_type_name(t), prb, pb);
                uint8_t *w = malloc(rb * rows), *p = malloc(pb), *xq = malloc(ab * NMAX);
                float *x = malloc(sizeof(float) * k), *ref = malloc(sizeof(float) * NMAX * LDY),
                      *got = malloc(sizeof(float) * NMAX * LDY);
                for (int64_t r = 0; r < rows; r++) random_row((loom_type)t, w + r * rb, k);
                if (t == LOOM_TYPE_MXFP4) /* every fifth block at E8M0 0, 1 or 2 (the layout's vector
                                           * decode of the two subnormal scales and the first normal one) */
                    for (size_t b = 0; b < rb * rows / 17; b += 5) w[17 * b] = (uint8_t)(b / 5 % 3);
                if (r8_extreme) { /* 0xFF but the float scales random_row chose */
                    const size_t bs = loom_type_info((uint32_t)t)->type_size;
                    for (size_t i = 0; i < rb * rows; i++) {
                        bool scale = false;
                        for (const int *f = scale_fields((loom_type)t); *f >= 0; f++)
                            scale |= i % bs == (size_t)*f || i % bs == (size_t)*f + 1;
                        if (!scale) w[i] = 0xFF;
                    }
                }
                for (int j = 0; j < NMAX; j++) {
                    for (int64_t i = 0; i < k; i++) x[i] = r8_extreme ? (j & 1 ? -1.0f : 1.0f) : frand();
                    loom_act_quantize((loom_type)t, x, xq + j * ab, k);
                }
                memset(p, 0xA5, pb);
                loom_repack_r8((loom_type)t, w, rb, rows, k, p);
                for (int64_t r = 0; r < rows; r++) { /* a tied embedding's rows, read from the layout */
                    float *e = malloc(sizeof(float) * k), *g = malloc(sizeof(float) * k);
                    loom_dequant_row((loom_type)t, w + r * rb, e, k);
                    loom_r8_dequant_row((loom_type)t, p, r, k, g);
                    cr_assert(memcmp(e, g, sizeof(float) * (size_t)k) == 0,
                              "%s %s k %lld: row %lld of %lld dequantized from the r8 layout differs from the row's",
                              loom_isa_name(isa), loom_type_name(t), (long long)k, (long long)r, (long long)rows);
                    free(e), free(g);
                }
                for (size_t ni = 0; ni < sizeof n_list / sizeof n_list[0]; ni++)
                    for (int64_t r0 = 0; r0 < rows; r0 += 8) {
                        const int64_t n = n_list[ni];
                        /* the scalar kernel has one walk (row by row, 16 tokens at a time): its 1, 3 and
                         * 33 tokens from the first and the last group only (every n and start took 48 of
                         * the ASan build's 86 s in this test, repeating one path) */
                        if (isa == LOOM_ISA_SCALAR && ((n != 1 && n != 3 && n != NMAX) || (r0 && r0 + 8 < rows)))
                            continue;
                        /* the AVX-512 K-quants' r8 GEMM: the rows' GEMM's bits (NMAX tokens surely take it;
                         * a token's bits do not depend on the others there) */
                        cr_assert(loom_isa_set(isa) == NULL);
                        const int64_t gb = loom_r8_gemm_bits_from((loom_type)t);
                        const bool gemm_bits = gb > 0 && n >= gb;
                        cr_assert(!gemm_bits || NMAX >= loom_matmul_invariant_rows());
                        cr_assert(loom_isa_set(gemm_bits ? isa : ref_isa) == NULL);
                        loom_matmul((loom_type)t, w, rb, k, r0, rows, xq, ab, gemm_bits ? NMAX : n, ref, LDY);
                        cr_assert(loom_isa_set(isa) == NULL);
                        for (int i = 0; i < NMAX * LDY; i++) got[i] = -12345.0f;
                        loom_matmul_r8((loom_type)t, p, prb, k, r0, rows, xq, ab, n, got, LDY);
                        for (int64_t j = 0; j < n; j++)
                            for (int64_t r = 0; r < LDY; r++) {
                                const float g = got[j * LDY + r];
                                if (r >= rows - r0) {
                                    cr_assert(g == -12345.0f, "%s %s: r8 wrote row %lld of a %lld-row range",
                                              loom_isa_name(isa), loom_type_name(t), (long long)r,
                                              (long long)(rows - r0));
                                    continue;
                                }
                                const float e = ref[j * LDY + r];
                                cr_assert(memcmp(&g, &e, sizeof g) == 0,
                                          "%s %s k %lld rows [%lld, %lld) n %lld: token %lld row %lld is %.9g "
                                          "in the r8 layout, %.9g from the GGUF rows (%s)",
                                          loom_isa_name(isa), loom_type_name(t), (long long)k, (long long)r0,
                                          (long long)rows, (long long)n, (long long)j, (long long)(r0 + r), g, e,
                                          gemm_bits ? "the rows' GEMM" : loom_isa_name(ref_isa));
                            }
                        cases++;
                    }
                free(w), free(p), free(xq), free(x), free(ref), free(got);
            }
    }
    cr_assert(cases > 0, "no type has the r8 layout");
    cr_assert(loom_isa_set(isa) == NULL);
}

Test(matmul, r8_layout_every_isa) { cr_assert(for_each_isa("matmul r8 layout", r8_layout) >= 1); }

/* The same bits whichever walk the CPU would choose (runtime/cpu/dispatch.c):
 * decode in 1, 2 or 4 streams (61 rows: a partial last group inside a
 * stream), on AVX-512 up to 4 tokens so, both levels' Q4_0 / Q4_1 panel
 * GEMM (and AVX-512's K-quants', to the rows' GEMM's bits) from 9 tokens
 * (so n = 9..33 take it, over k-chunks at k = 2560) or never (the pairs,
 * AVX2's groups). The SIMD levels only: the scalar
 * kernels have one walk. */
static void r8_layout_simd(loom_isa isa) {
    if (isa != LOOM_ISA_SCALAR) r8_layout(isa);
}
Test(matmul, r8_layout_every_walk) {
    static const struct { int streams, stream_n; int64_t gemm; int kmul; } walks[] = {
        {1, 1, 0, 0}, {1, 1, 0, 1}, {2, 4, 9, 0}, {4, 4, 9, 1}};
    for (size_t i = 0; i < sizeof walks / sizeof walks[0]; i++) {
        loom_r8_walk_set(walks[i].streams, walks[i].stream_n, walks[i].gemm, walks[i].kmul);
        cr_assert(for_each_isa("matmul r8 walks", r8_layout_simd) >= 1);
    }
    loom_r8_walk_set(0, 0, -1, -1);
}

Test(matmul, r8_layout_extreme) {
    r8_extreme = true;
    for (int kmul = 0; kmul < 2; kmul++) {
        loom_r8_walk_set(0, 0, -1, kmul);
        cr_assert(for_each_isa("matmul r8 extremes", r8_layout_simd) >= 1);
    }
    loom_r8_walk_set(0, 0, -1, -1);
    r8_extreme = false;
}

/* Every level's table has its own kernel for every type that can matmul
 * (no silent fallback to a lower level, which would leave that level
 * untested), and none for the others; every other entry but the optional
 * exp2 is there. */
Test(matmul, kernel_tables_complete) {
    for (int i = 0; i < LOOM_ISA_COUNT; i++) {
        const loom_kernels *K = loom_kernels_of((loom_isa)i);
        cr_assert(K != NULL);
        cr_expect_str_eq(K->name, loom_isa_name((loom_isa)i));
        for (int t = 0; t < LOOM_TYPE_COUNT; t++) {
            cr_expect((K->matmul[t] != NULL) == loom_type_can_matmul((loom_type)t), "%s: matmul entry of %s",
                      K->name, loom_type_name((loom_type)t));
            cr_expect((K->matmul_r8[t] != NULL) == loom_type_has_r8((loom_type)t), "%s: r8 entry of %s", K->name,
                      loom_type_name((loom_type)t));
            cr_expect(!(K->r8_prefer >> t & 1) || loom_type_has_r8((loom_type)t), "%s prefers r8 for %s", K->name,
                      loom_type_name((loom_type)t));
        }
        cr_expect(K->attn_unit && K->attn_head_multiple > 0 && K->f16_row && K->rmsnorm && K->swiglu &&
                      K->act_q8_32 && K->act_q8_K,
                  "%s: an entry is missing", K->name);
        cr_expect(i == 0 ? K->lower == NULL && K->attn_head_multiple == 1 : K->lower == loom_kernels_of((loom_isa)(i - 1)),
                  "%s: the level below", K->name);
    }
    cr_expect(loom_kernels_of(LOOM_ISA_COUNT) == NULL);
}

Test(matmul, degenerate_calls_write_nothing) {
    float y[4] = {1, 2, 3, 4};
    uint8_t w[64] = {0}, xq[64] = {0};
    loom_matmul(LOOM_TYPE_Q4_0, w, 18, 32, 3, 3, xq, 40, 1, y, 4);   /* r1 == r0 */
    loom_matmul(LOOM_TYPE_Q4_0, w, 18, 32, 0, 1, xq, 40, 0, y, 4);   /* n == 0 */
    loom_matmul(LOOM_TYPE_IQ2_XXS, w, 66, 256, 0, 1, xq, 40, 1, y, 4); /* unsupported type */
    cr_assert(y[0] == 1 && y[1] == 2 && y[2] == 3 && y[3] == 4);
}

Test(isa, names_and_set) {
    cr_assert_str_eq(loom_isa_name(LOOM_ISA_SCALAR), "scalar");
    cr_assert_str_eq(loom_isa_name(LOOM_ISA_AVX2), "avx2");
    cr_assert_str_eq(loom_isa_name(LOOM_ISA_AVX512), "avx512");
    cr_assert_str_eq(loom_isa_name(LOOM_ISA_COUNT), "?");
    loom_status s = loom_isa_set(LOOM_ISA_COUNT);
    cr_assert(s != NULL && loom_status_code(s) == LOOM_ERR_INVALID);
    loom_status_free(s);
    const loom_isa best = loom_isa_detect();
    cr_assert(loom_isa_supported(best, NULL, 0));
    if (best < LOOM_ISA_AVX512) { /* forcing more than the CPU has names what is missing */
        s = loom_isa_set(LOOM_ISA_AVX512);
        cr_assert(s != NULL && strstr(loom_status_message(s), "avx512"), "%s",
                  loom_status_message(s));
        loom_status_free(s);
        cr_assert_eq(loom_isa_get(), best, "a failed set leaves the level unchanged");
    }
    fprintf(stderr, "[isa] detected: %s\n", loom_isa_name(best));
}

Test(isa, env_selects_lower_level) {
    setenv("LOOM_ISA", "scalar", 1);
    cr_assert_eq(loom_isa_get(), LOOM_ISA_SCALAR, "LOOM_ISA=scalar is honoured");
}

Test(isa, env_cannot_exceed_cpu) {
    setenv("LOOM_ISA", "avx512", 1);
    cr_assert_eq(loom_isa_get(), loom_isa_detect() < LOOM_ISA_AVX512 ? loom_isa_detect() : LOOM_ISA_AVX512);
}
