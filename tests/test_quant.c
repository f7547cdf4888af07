/*
 * tests/test_quant.c — quantized types: dequantization against gguf-py's
 * numpy reference (fixtures from tests/fixtures/gen_quant_fixtures.py),
 * quant.h's per-block functions against loom_dequant_row, fp16/bf16
 * conversions, and activation quantization round trips.
 *
 * Dequantization is compared bit for bit: loom does the same float
 * operations in the same order as GGML/gguf-py (see quant.h), so there is no
 * tolerance. loom_dequant_row has one (portable C) implementation, shared by
 * every ISA level, so there is no per-ISA variant to force here.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/quant.h"

typedef struct {
    uint32_t type, n, nbytes;
    uint8_t *data;    /* (nbytes) quantized row, GGML layout */
    float *expected;  /* (n) gguf-py's dequantization */
} fixture;

static fixture fixture_load(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/fixtures/quant/%s.bin", LOOM_TEST_DATA, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open fixture %s", path);
    char magic[4];
    uint32_t hdr[3];
    cr_assert(fread(magic, 1, 4, f) == 4 && memcmp(magic, "LQF1", 4) == 0, "%s: bad magic", path);
    cr_assert(fread(hdr, 4, 3, f) == 3, "%s: short header", path);
    fixture fx = {hdr[0], hdr[1], hdr[2], NULL, NULL};
    cr_assert(fx.n > 0 && fx.n <= (1u << 16) && fx.nbytes <= (1u << 20), "%s: bad sizes", path);
    fx.data = malloc(fx.nbytes);
    fx.expected = malloc(fx.n * sizeof(float));
    cr_assert(fread(fx.data, 1, fx.nbytes, f) == fx.nbytes, "%s: short data", path);
    cr_assert(fread(fx.expected, sizeof(float), fx.n, f) == fx.n, "%s: short expected", path);
    fclose(f);
    cr_assert_eq(loom_type_row_bytes((loom_type)fx.type, fx.n), fx.nbytes, "%s: size mismatch", path);
    return fx;
}

static void fixture_free(fixture *fx) {
    free(fx->data);
    free(fx->expected);
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const char *const fixture_names[] = {"F32",  "F16",  "BF16", "Q4_0", "Q4_1", "Q5_0",
                                            "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "MXFP4", "Q3_K", "Q2_K",
                                            "IQ4_NL", "IQ4_XS"};
enum { N_FIXTURES = sizeof fixture_names / sizeof fixture_names[0] };

/* loom_dequant_row == gguf-py, bit for bit, from an aligned and from an odd
 * address. */
Test(quant, dequant_row_matches_gguf_py) {
    for (int i = 0; i < N_FIXTURES; i++) {
        fixture fx = fixture_load(fixture_names[i]);
        cr_assert_str_eq(loom_type_name(fx.type), fixture_names[i]);
        float *out = malloc(fx.n * sizeof(float));
        uint8_t *odd = malloc(fx.nbytes + 1);
        memcpy(odd + 1, fx.data, fx.nbytes);
        for (int pass = 0; pass < 2; pass++) {
            memset(out, 0xAB, fx.n * sizeof(float));
            loom_dequant_row((loom_type)fx.type, pass ? odd + 1 : fx.data, out, fx.n);
            for (uint32_t j = 0; j < fx.n; j++)
                cr_assert_eq(bits(out[j]), bits(fx.expected[j]),
                             "%s element %u (%s address): loom %a, gguf-py %a", fixture_names[i],
                             j, pass ? "odd" : "aligned", out[j], fx.expected[j]);
        }
        free(odd);
        free(out);
        fixture_free(&fx);
    }
}

/* quant.h's per-block functions (what CUDA will run) == loom_dequant_row. */
Test(quant, block_functions_match_dequant_row) {
    for (int i = 0; i < N_FIXTURES; i++) {
        fixture fx = fixture_load(fixture_names[i]);
        const loom_type_traits *tr = loom_type_info(fx.type);
        float *row = malloc(fx.n * sizeof(float));
        loom_dequant_row((loom_type)fx.type, fx.data, row, fx.n);
        float blk[256];
        for (uint32_t b = 0; b < fx.n / tr->block_size; b++) {
            int got = loom_dequant_block((loom_type)fx.type, fx.data + b * tr->type_size, blk);
            cr_assert_eq(got, (int)tr->block_size, "%s: block function size", fixture_names[i]);
            for (uint32_t j = 0; j < tr->block_size; j++)
                cr_assert_eq(bits(blk[j]), bits(row[b * tr->block_size + j]),
                             "%s block %u element %u", fixture_names[i], b, j);
        }
        free(row);
        fixture_free(&fx);
    }
}

Test(quant, type_coverage) {
    const loom_type yes[] = {LOOM_TYPE_F32,  LOOM_TYPE_F16,  LOOM_TYPE_BF16, LOOM_TYPE_Q4_0,
                             LOOM_TYPE_Q4_1, LOOM_TYPE_Q5_0, LOOM_TYPE_Q5_1, LOOM_TYPE_Q8_0,
                             LOOM_TYPE_Q4_K, LOOM_TYPE_Q5_K, LOOM_TYPE_Q6_K, LOOM_TYPE_MXFP4,
                             LOOM_TYPE_Q3_K, LOOM_TYPE_Q2_K, LOOM_TYPE_IQ4_NL};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        cr_assert(loom_type_can_matmul(yes[i]), "%s", loom_type_name(yes[i]));
        cr_assert(loom_type_info(yes[i])->can_compute, "types.c disagrees on %s",
                  loom_type_name(yes[i]));
    }
    cr_assert(!loom_type_can_matmul(LOOM_TYPE_IQ2_XXS));
    cr_assert(!loom_type_can_matmul(LOOM_TYPE_IQ4_XS));
    cr_assert_eq(loom_act_row_bytes(LOOM_TYPE_IQ2_XXS, 256), 0);
    cr_assert_eq(loom_act_row_bytes(LOOM_TYPE_Q4_0, 33), 0);
    cr_assert_eq(loom_act_row_bytes(LOOM_TYPE_Q4_K, 288), 0);
    cr_assert_eq(loom_act_row_bytes(LOOM_TYPE_Q4_0, 64), 64 + 16);
    cr_assert_eq(loom_act_row_bytes(LOOM_TYPE_Q6_K, 512), 2 * 292);
    cr_assert_eq(loom_act_row_bytes(LOOM_TYPE_BF16, 5), 20);
    float y[32] = {0};
    int got = loom_dequant_block(LOOM_TYPE_IQ2_XXS, (const uint8_t *)y, y);
    cr_assert_eq(got, 0, "no block function for IQ2_XXS");
}

/* Every half converts exactly and back; NaNs stay NaN. */
Test(quant, f16_round_trip_all_values) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = loom_f16_to_f32((uint16_t)h);
        const bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (nan) {
            cr_assert(isnan(f), "half %04x should be NaN", h);
            cr_assert(((loom_f32_to_f16(f) >> 10) & 0x1f) == 0x1f && (loom_f32_to_f16(f) & 0x3ff),
                      "NaN %04x must stay NaN", h);
            continue;
        }
        cr_assert_eq(loom_f32_to_f16(f), h, "half %04x -> %a -> %04x", h, f, loom_f32_to_f16(f));
        /* value check independent of the bit code: mant * 2^(e-25) */
        const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double v = e == 0x1f ? INFINITY : e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (h & 0x8000) v = -v;
        cr_assert_eq((double)f, v, "half %04x value", h);
    }
}

/* Halfway between two neighbouring halves rounds to the even one; just
 * above/below rounds to the nearer one. */
Test(quant, f16_rounding_is_nearest_even) {
    for (uint32_t h = 0; h < 0x7bff; h++) {
        const double lo = loom_f16_to_f32((uint16_t)h), hi = loom_f16_to_f32((uint16_t)(h + 1));
        const float mid = (float)((lo + hi) / 2); /* exact: halves have 11 bits */
        const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(loom_f32_to_f16(mid), even, "tie above %04x", h);
        cr_assert_eq(loom_f32_to_f16(nextafterf(mid, 0)), h, "below mid of %04x", h);
        cr_assert_eq(loom_f32_to_f16(nextafterf(mid, INFINITY)), h + 1, "above mid of %04x", h);
        cr_assert_eq(loom_f32_to_f16(-mid), even | 0x8000, "negative tie above %04x", h);
    }
    cr_assert_eq(loom_f32_to_f16(65519.99f), 0x7bff);
    cr_assert_eq(loom_f32_to_f16(65520.0f), 0x7c00, "65520 rounds to inf");
    cr_assert_eq(loom_f32_to_f16(1e30f), 0x7c00);
    cr_assert_eq(loom_f32_to_f16(ldexpf(1, -25)), 0, "2^-25 ties to zero");
    cr_assert_eq(loom_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 1);
}

Test(quant, bf16_conversions) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = loom_bf16_to_f32((uint16_t)h);
        if (isnan(f)) {
            cr_assert(isnan(loom_bf16_to_f32(loom_f32_to_bf16(f))), "bf16 NaN %04x", h);
            continue;
        }
        cr_assert_eq(loom_f32_to_bf16(f), h, "bf16 %04x round trip", h);
    }
    cr_assert_eq(loom_f32_to_bf16(loom_bits_to_f32(0x3f808000u)), 0x3f80, "tie to even (down)");
    cr_assert_eq(loom_f32_to_bf16(loom_bits_to_f32(0x3f818000u)), 0x3f82, "tie to even (up)");
    cr_assert_eq(loom_f32_to_bf16(loom_bits_to_f32(0x3f808001u)), 0x3f81, "above tie");
    cr_assert_eq(loom_f32_to_bf16(loom_bits_to_f32(0x7f7fffffu)), 0x7f80, "max float -> inf");
}

/* ---- activation quantization ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* Round trip within d/2 of each input (d = block max / 127), bsums and block
 * sums consistent with the quants. */
Test(quant, act_round_trip) {
    const loom_type types[] = {LOOM_TYPE_Q4_0, LOOM_TYPE_Q8_0, LOOM_TYPE_Q4_K, LOOM_TYPE_Q6_K,
                               LOOM_TYPE_F16};
    const int64_t k = 1024;
    float x[1024], back[1024];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const loom_type wt = types[ti];
        const int bs = wt == LOOM_TYPE_Q4_K || wt == LOOM_TYPE_Q6_K ? 256 : 32;
        for (int64_t j = 0; j < k; j++) {
            /* blocks of very different magnitudes, one all-zero block */
            float scale = ldexpf(1.0f, (int)(j / bs) % 7 * 3 - 9);
            x[j] = j / bs == 1 ? 0.0f : frand() * scale;
        }
        x[5] = 1e-30f;  /* tiny values next to larger ones */
        const size_t rb = loom_act_row_bytes(wt, k);
        cr_assert(rb > 0);
        uint8_t *buf = malloc(rb + 1);
        loom_act_quantize(wt, x, buf + 1, k); /* odd address */
        loom_act_dequantize(wt, buf + 1, back, k);
        for (int64_t b = 0; b < k / bs; b++) {
            float amax = 0;
            for (int j = 0; j < bs; j++) amax = fmaxf(amax, fabsf(x[b * bs + j]));
            const float d = amax / 127.0f;
            for (int j = 0; j < bs; j++) {
                const int64_t i = b * bs + j;
                if (wt == LOOM_TYPE_F16) {
                    cr_assert_eq(bits(back[i]), bits(x[i]), "F16 weights take float activations");
                    continue;
                }
                const float err = fabsf(back[i] - x[i]);
                cr_assert(err <= 0.5f * d * (1 + 1e-5f) + 1e-37f,
                          "%s element %ld: %g -> %g, error %g > d/2 = %g", loom_type_name(wt),
                          (long)i, x[i], back[i], err, 0.5f * d);
            }
            if (b == 1) /* all-zero block quantizes to exact zeros */
                for (int j = 0; j < bs; j++) cr_assert_eq(back[b * bs + j], 0.0f);
        }
        if (wt == LOOM_TYPE_Q4_0 || wt == LOOM_TYPE_Q8_0) {
            const int8_t *qs = (const int8_t *)(buf + 1);
            for (int64_t b = 0; b < k / 32; b++) {
                float d, s;
                memcpy(&d, buf + 1 + k + 4 * b, 4);
                memcpy(&s, buf + 1 + k + 4 * (k / 32) + 4 * b, 4);
                int sum = 0;
                for (int j = 0; j < 32; j++) {
                    sum += qs[32 * b + j];
                    cr_assert(qs[32 * b + j] >= -127, "quants stay in [-127, 127]");
                }
                cr_assert_eq(s, d * (float)sum, "block %ld sum", (long)b);
            }
        } else if (wt != LOOM_TYPE_F16) {
            for (int64_t b = 0; b < k / 256; b++) {
                loom_block_q8_K blk;
                memcpy(&blk, buf + 1 + b * sizeof blk, sizeof blk);
                for (int g = 0; g < 16; g++) {
                    int sum = 0;
                    for (int j = 0; j < 16; j++) sum += blk.qs[16 * g + j];
                    cr_assert_eq(blk.bsums[g], sum, "super-block %ld group %d bsum", (long)b, g);
                }
            }
        }
        free(buf);
    }
}

/* The quantized bytes are exactly the documented formula: d = max|x|/127,
 * q = round_to_nearest_even(x * (1/d)) (rintf here), s = d * sum(q). */
Test(quant, act_bytes_match_formula) {
    const int64_t k = 512;
    float x[512];
    for (int64_t j = 0; j < k; j++) x[j] = frand() * (j % 64 < 32 ? 3.0f : 0.01f);
    for (int j = 0; j < 32; j++) x[64 + j] = (float)(j - 16) * 0.5f; /* many exact halves */
    const loom_type types[] = {LOOM_TYPE_Q4_1, LOOM_TYPE_Q5_K};
    for (int ti = 0; ti < 2; ti++) {
        const int bs = ti == 0 ? 32 : 256;
        uint8_t buf[1024];
        loom_act_quantize(types[ti], x, buf, k);
        for (int64_t b = 0; b < k / bs; b++) {
            float amax = 0;
            for (int j = 0; j < bs; j++) amax = fmaxf(amax, fabsf(x[b * bs + j]));
            const float d = amax / 127.0f, inv = d != 0 ? 1.0f / d : 0.0f;
            int sum = 0, gsum[16] = {0};
            for (int j = 0; j < bs; j++) {
                float v = rintf(x[b * bs + j] * inv);
                v = fminf(fmaxf(v, -127.0f), 127.0f);
                const int8_t want = (int8_t)v;
                const int8_t got = ti == 0 ? (int8_t)buf[b * 32 + j] : (int8_t)buf[b * 292 + 4 + j];
                cr_assert_eq(got, want, "%s block %ld element %d: %d, formula %d",
                             loom_type_name(types[ti]), (long)b, j, got, want);
                sum += want;
                gsum[j / 16] += want;
            }
            float gd, gs;
            if (ti == 0) {
                memcpy(&gd, buf + k + 4 * b, 4);
                memcpy(&gs, buf + k + 4 * (k / 32) + 4 * b, 4);
                cr_assert_eq(bits(gs), bits(d * (float)sum), "block %ld s", (long)b);
            } else {
                memcpy(&gd, buf + b * 292, 4);
                for (int g = 0; g < 16; g++) {
                    int16_t bsum;
                    memcpy(&bsum, buf + b * 292 + 260 + 2 * g, 2);
                    cr_assert_eq(bsum, gsum[g]);
                }
            }
            cr_assert_eq(bits(gd), bits(d), "block %ld d", (long)b);
        }
    }
}

/* Non-finite input must not crash or write out of bounds (values unspecified). */
Test(quant, act_nonfinite_is_memory_safe) {
    float x[256];
    for (int j = 0; j < 256; j++) x[j] = (float)j;
    x[3] = NAN;
    x[100] = INFINITY;
    uint8_t buf[2 * 292 + 8];
    memset(buf, 0x5A, sizeof buf);
    loom_act_quantize(LOOM_TYPE_Q4_K, x, buf, 256);
    cr_assert_eq(buf[292], 0x5A, "wrote past the row");
    loom_act_quantize(LOOM_TYPE_Q4_1, x, buf, 256);
    cr_assert_eq(buf[256 + 64], 0x5A, "wrote past the row");
}
