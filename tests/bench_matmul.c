/*
 * tests/bench_matmul.c — speed of loom_matmul per weight type and ISA level,
 * one thread. Not a test: built with the tests (tests/CMakeLists.txt), run
 * by hand:
 *
 *   build/tests/bench_matmul [-t TYPE] [-i ISA] [--rows R] [-k K] [-n N] [--ms MS] [--r8] [--stream L]
 *
 * Prints per (type, ISA): decode (n = 1) weight streaming in GB/s and GMAC
 * rate, and prefill (n = N, default 128) in GFLOP/s (2 flops per multiply-
 * add). Default shape 2048 rows x 4096 columns (the weights of one such
 * matrix are 4.5..32 MiB). Each figure is the best single call over about
 * --ms milliseconds of repeated calls (robust to a busy machine; note that
 * repeated decode calls may find the weights in the L3 cache). --r8: the
 * types that have the r8 layout (runtime/kernels.h) repacked into it and
 * multiplied by loom_matmul_r8 (the other types are skipped); the copy in
 * 2 MiB pages where the kernel grants them, as the model loader makes it
 * (the rows in malloc's pages, like a mapped file's).
 *
 * --stream L: decode's walk instead — L layers of a llama's seven matrices
 * (dim = K: q and o K x K, k and v K/8 x K, gate and up F x K, down K x F,
 * F = 2.75 K rounded to 256), all of the type, multiplied by one token in
 * order as a forward pass does (-n N: N tokens, a batched step), so the weights come from DRAM and the
 * kernels cross from one matrix to the next (one big matrix called again
 * and again lets the hardware prefetchers run ahead undisturbed). Prints
 * the GB/s of each of 5 walks after a warm-up walk.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "runtime/kernels.h"
#include "runtime/quant.h"
#include "runtime/clock.h"


static uint64_t rng = 88172645463325252ull;
static uint32_t urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* as runtime/model.c: alloc_copy: 2 MiB pages from 2 MiB up, malloc below
 * (every small matrix on a 2 MiB boundary would put their first lines in
 * the same L2 sets: a --stream 2 -k 576 walk read 7.3 GB/s so, 11.7 packed) */
static void *alloc_huge(size_t bytes) {
    if (bytes < (2 << 20)) return malloc(bytes ? bytes : 1);
    void *p;
    if (posix_memalign(&p, 2 << 20, bytes ? bytes : 1)) return NULL;
    (void)madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

static void fill_weights(loom_type t, uint8_t *w, size_t bytes) {
    const loom_type_traits *tr = loom_type_info(t);
    for (size_t i = 0; i < bytes; i++) w[i] = (uint8_t)urand();
    if (t == LOOM_TYPE_F32) {
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            float v = (float)(urand() % 2000) / 1000.0f - 1.0f;
            memcpy(w + i, &v, 4);
        }
        return;
    }
    if (t == LOOM_TYPE_F16 || t == LOOM_TYPE_BF16) {
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            float v = (float)(urand() % 2000) / 1000.0f - 1.0f;
            uint16_t h = t == LOOM_TYPE_F16 ? loom_f32_to_f16(v) : loom_f32_to_bf16(v);
            memcpy(w + i, &h, 2);
        }
        return;
    }
    /* finite scales: overwrite the fp16 fields */
    const uint16_t h = loom_f32_to_f16(0.01f);
    for (size_t b = 0; b + tr->type_size <= bytes; b += tr->type_size) {
        if (t == LOOM_TYPE_Q6_K || t == LOOM_TYPE_Q3_K) {
            memcpy(w + b + (t == LOOM_TYPE_Q6_K ? 208 : 108), &h, 2);
        } else if (t == LOOM_TYPE_Q2_K) {
            memcpy(w + b + 80, &h, 2), memcpy(w + b + 82, &h, 2);
        } else if (t == LOOM_TYPE_MXFP4) {
            w[b] = 120; /* 2^-8 */
        } else {
            memcpy(w + b, &h, 2);
            if (t == LOOM_TYPE_Q4_1 || t == LOOM_TYPE_Q5_1 || t == LOOM_TYPE_Q4_K || t == LOOM_TYPE_Q5_K)
                memcpy(w + b + 2, &h, 2);
        }
    }
}

/* Best (shortest) time of one call over repeated calls for about budget_s:
 * the minimum is what the kernel costs when it has the core to itself,
 * which is the number wanted on a shared, busy machine. */
static double best_call_s(bool r8, loom_type t, const uint8_t *w, size_t ws, int64_t k, int64_t rows,
                          const uint8_t *xq, size_t xs, int64_t n, float *y, double budget_s) {
    void (*mm)(loom_type, const void *, size_t, int64_t, int64_t, int64_t, const void *, size_t, int64_t, float *,
               int64_t) = r8 ? loom_matmul_r8 : loom_matmul;
    mm(t, w, ws, k, 0, rows, xq, xs, n, y, rows); /* warm-up */
    double best = 1e30;
    const double t0 = loom_now_s();
    do {
        const double a = loom_now_s();
        mm(t, w, ws, k, 0, rows, xq, xs, n, y, rows);
        const double b = loom_now_s() - a;
        if (b < best) best = b;
    } while (loom_now_s() - t0 < budget_s);
    return best;
}

/* --stream: the seven matrices of `layers` layers, n tokens (decode's one
 * unless -n says) through them in order, 5 timed walks after a warm-up. */
static int stream_walk(loom_type t, bool r8, int64_t dim, int layers, int64_t n) {
    const int64_t ffn = (dim * 11 / 4 + 255) / 256 * 256;
    const int64_t shape[7][2] = {{dim, dim}, {dim / 8, dim}, {dim / 8, dim}, {dim, dim}, {ffn, dim}, {ffn, dim}, {dim, ffn}};
    const int nm = 7 * layers;
    uint8_t **m = calloc((size_t)nm, sizeof *m);
    float *x = malloc((size_t)ffn * sizeof(float)), *y = malloc((size_t)(ffn * n) * sizeof(float));
    const size_t xs[2] = {loom_act_row_bytes(t, dim), loom_act_row_bytes(t, ffn)};
    uint8_t *xq[2] = {malloc(xs[0] * (size_t)n), malloc(xs[1] * (size_t)n)};
    double bytes = 0;
    for (int64_t i = 0; i < ffn; i++) x[i] = (float)(urand() % 2000) / 1000.0f - 1.0f;
    for (int64_t j = 0; j < n; j++) {
        loom_act_quantize(t, x, xq[0] + (size_t)j * xs[0], dim);
        loom_act_quantize(t, x, xq[1] + (size_t)j * xs[1], ffn);
    }
    for (int i = 0; i < nm; i++) {
        const int64_t rows = shape[i % 7][0], k = shape[i % 7][1];
        const size_t ws = loom_type_row_bytes(t, k);
        uint8_t *w = malloc(ws * (size_t)rows);
        fill_weights(t, w, ws * (size_t)rows);
        bytes += (double)ws * (double)rows;
        if (r8) {
            m[i] = alloc_huge(loom_r8_bytes(t, rows, k));
            loom_repack_r8(t, w, ws, rows, k, m[i]);
            free(w);
        } else {
            m[i] = w;
        }
    }
    printf("%s %s, %d layers of dim %lld, ffn %lld: %.1f MiB, %lld token(s) (weights' GB/s of each walk):",
           loom_type_name(t), loom_isa_name(loom_isa_get()), layers, (long long)dim, (long long)ffn,
           bytes / 1048576.0, (long long)n);
    for (int walk = 0; walk < 6; walk++) {
        const double a = loom_now_s();
        for (int i = 0; i < nm; i++) {
            const int64_t rows = shape[i % 7][0], k = shape[i % 7][1];
            const size_t ws = r8 ? loom_r8_row_bytes(t, k) : loom_type_row_bytes(t, k);
            (r8 ? loom_matmul_r8 : loom_matmul)(t, m[i], ws, k, 0, rows, xq[k != dim], xs[k != dim], n, y, rows);
        }
        if (walk) printf(" %.2f", bytes / (loom_now_s() - a) * 1e-9);
    }
    printf("\n");
    for (int i = 0; i < nm; i++) free(m[i]);
    free(m);
    free(x);
    free(y);
    free(xq[0]);
    free(xq[1]);
    return 0;
}

int main(int argc, char **argv) {
    const char *only_type = NULL, *only_isa = NULL;
    int64_t rows = 2048, k = 4096, n = 128;
    double ms = 300;
    bool r8 = false;
    int layers = 0;
    bool n_set = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) only_type = argv[++i];
        else if (!strcmp(argv[i], "-i") && i + 1 < argc) only_isa = argv[++i];
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoll(argv[++i]), n_set = true;
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc) ms = atof(argv[++i]);
        else if (!strcmp(argv[i], "--r8")) r8 = true;
        else if (!strcmp(argv[i], "--stream") && i + 1 < argc) layers = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-t TYPE] [-i scalar|avx2|avx512] [--rows R] [-k K] [-n N] [--ms MS] [--r8] [--stream L]\n",
                    argv[0]);
            return 2;
        }
    }
    const loom_type types[] = {LOOM_TYPE_F32,  LOOM_TYPE_F16,  LOOM_TYPE_BF16, LOOM_TYPE_Q8_0,
                               LOOM_TYPE_Q4_0, LOOM_TYPE_Q4_1, LOOM_TYPE_Q5_0, LOOM_TYPE_Q5_1,
                               LOOM_TYPE_Q4_K, LOOM_TYPE_Q5_K, LOOM_TYPE_Q6_K, LOOM_TYPE_MXFP4,
                               LOOM_TYPE_IQ4_NL, LOOM_TYPE_Q2_K, LOOM_TYPE_Q3_K};
    if (k <= 0 || k % 32) {
        fprintf(stderr, "k must be a positive multiple of 32 (of 256 for the K-quants)\n");
        return 2;
    }
    if (layers > 0) { /* --stream: -t TYPE, -i ISA (default: the detected one) */
        loom_type t = LOOM_TYPE_COUNT;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            if (only_type && !strcmp(only_type, loom_type_name(types[ti]))) t = types[ti];
        loom_isa isa = loom_isa_detect();
        for (int i = 0; i < LOOM_ISA_COUNT; i++)
            if (only_isa && !strcmp(only_isa, loom_isa_name((loom_isa)i))) isa = (loom_isa)i;
        loom_status st = t == LOOM_TYPE_COUNT ? NULL : loom_isa_set(isa);
        if (t == LOOM_TYPE_COUNT || st || k % loom_type_info(t)->block_size || (r8 && !loom_type_has_r8(t))) {
            fprintf(stderr, "--stream needs -t TYPE (with --r8 one that has the layout), an ISA this CPU has and k a "
                            "multiple of the type's block%s%s\n", st ? ": " : "", st ? loom_status_message(st) : "");
            loom_status_free(st);
            return 2;
        }
        return stream_walk(t, r8, k, layers, n_set ? n : 1);
    }
    printf("loom matmul, one thread, %lld rows x %lld columns; detected ISA %s\n", (long long)rows,
           (long long)k, loom_isa_name(loom_isa_detect()));
    printf("%-6s %-7s %10s %10s %12s %14s\n", "type", "isa", "MiB", "n=1 GB/s", "n=1 GMAC/s",
           "n=N GFLOP/s");
    float *x = malloc((size_t)(n * k) * sizeof(float));
    for (int64_t i = 0; i < n * k; i++) x[i] = (float)(urand() % 2000) / 1000.0f - 1.0f;
    float *y = malloc((size_t)(n * rows) * sizeof(float));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const loom_type t = types[ti];
        if (only_type && strcmp(only_type, loom_type_name(t)) != 0) continue;
        if (k % loom_type_info(t)->block_size || (r8 && !loom_type_has_r8(t))) continue;
        const size_t ws = loom_type_row_bytes(t, k), xs = loom_act_row_bytes(t, k);
        uint8_t *w = malloc(ws * (size_t)rows), *xq = malloc(xs * (size_t)n);
        fill_weights(t, w, ws * (size_t)rows);
        const size_t mws = r8 ? loom_r8_row_bytes(t, k) : ws; /* the stride the kernels get */
        uint8_t *p = r8 ? alloc_huge(loom_r8_bytes(t, rows, k)) : NULL;
        for (int64_t i = 0; i < n; i++) loom_act_quantize(t, x + i * k, xq + i * xs, k);
        for (int isa = 0; isa < LOOM_ISA_COUNT; isa++) {
            if (only_isa && strcmp(only_isa, loom_isa_name((loom_isa)isa)) != 0) continue;
            loom_status s = loom_isa_set((loom_isa)isa);
            if (s) {
                printf("%-6s %-7s not supported here: %s\n", loom_type_name(t), loom_isa_name((loom_isa)isa),
                       loom_status_message(s));
                loom_status_free(s);
                continue;
            }
            if (r8) loom_repack_r8(t, w, ws, rows, k, p); /* the bytes this level reads (Q5_K: kernels.h) */
            const uint8_t *mw = r8 ? p : w;
            const double budget = (isa == 0 ? 0.3 : 1.0) * ms / 1000.0;
            const double dsec = best_call_s(r8, t, mw, mws, k, rows, xq, xs, 1, y, budget);
            const double psec = best_call_s(r8, t, mw, mws, k, rows, xq, xs, n, y, budget);
            printf("%-6s %-7s %10.1f %10.2f %12.2f %14.2f\n", loom_type_name(t),
                   loom_isa_name((loom_isa)isa), (double)(ws * (size_t)rows) / 1048576.0,
                   (double)(ws * (size_t)rows) / dsec * 1e-9, (double)rows * (double)k / dsec * 1e-9,
                   2.0 * (double)rows * (double)k * (double)n / psec * 1e-9);
            fflush(stdout);
        }
        free(w);
        free(p);
        free(xq);
    }
    free(x);
    free(y);
    return 0;
}
