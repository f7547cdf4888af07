/*
 * runtime/cpu/cpu_kernels.h — internal seam between the dispatcher
 * (dispatch.c) and the per-ISA kernel files (matmul_scalar.c,
 * matmul_avx2.c, matmul_avx512.c). Not part of the public API.
 *
 * A kernel table holds one matmul function per weight type (NULL: the ISA
 * has no own kernel, the dispatcher falls back to the next lower level).
 * The activation-row accessors spell out the layouts documented in
 * kernels.h, so every file reads them the same way.
 */
#ifndef LOOM_CPU_KERNELS_H
#define LOOM_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/quant.h"
#include "runtime/types.h"

/* y[t*ldy + i] = dot(W row i, activation row t) for i in [0, nr), t in [0, n).
 * w is row 0 of the range (rows w_stride bytes apart, any alignment); xq
 * holds n activation rows xq_stride bytes apart. nr >= 1, n >= 1. */
typedef void (*loom_matmul_fn)(const uint8_t *w, size_t w_stride, int64_t k, int64_t nr,
                               const uint8_t *xq, size_t xq_stride, int64_t n, float *y,
                               int64_t ldy);

typedef struct {
    loom_matmul_fn matmul[LOOM_TYPE_COUNT];
} loom_cpu_kernels;

extern const loom_cpu_kernels loom_cpu_kernels_scalar;
extern const loom_cpu_kernels loom_cpu_kernels_avx2;
extern const loom_cpu_kernels loom_cpu_kernels_avx512;
/* AVX2 kernels of the 4/5/6-bit types (gemm_avx2.c), one lane per row */
void loom_avx2_lanes_q4_0(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
void loom_avx2_lanes_q4_1(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
void loom_avx2_lanes_q5_0(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
void loom_avx2_lanes_q5_1(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
void loom_avx2_lanes_q4_K(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
void loom_avx2_lanes_q5_K(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
void loom_avx2_lanes_q6_K(const uint8_t *, size_t, int64_t, int64_t, const uint8_t *, size_t, int64_t, float *, int64_t);
/* AVX-512 prefill GEMM (gemm_avx512.c); the avx512 kernels hand calls with
 * n >= loom_gemm_min_n(type) to it. It rounds differently from the register
 * tiles, so on AVX-512 a row's result changes (by float rounding) when the
 * number of tokens crosses the threshold: the batch invariance of kernels.h
 * does not hold there yet (AVX2 has it: gemm_avx2.c). Crossovers measured with bench_matmul on
 * Sapphire Rapids (one thread, GFLOP/s, register tiles vs GEMM, weights in
 * the L3 cache; from DRAM the tiles keep their lead a little longer):
 *   Q4_K  n = 6: 91 vs 70, 8: 118 vs 91, 10: 111 vs 122, 12: 119 vs 160
 *   Q6_K  n = 6: 125 vs 89, 8: 138 vs 116
 *   Q8_0  n = 4: 92 vs 55, 6: 85 vs 77, 8: 109 vs 107
 *   Q4_1  n = 4: 62 vs 57, 6: 69 vs 86 */
extern const loom_cpu_kernels loom_cpu_gemm_avx512;
static inline int64_t loom_gemm_min_n(loom_type t) {
    switch (t) {
    case LOOM_TYPE_F32:
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16: return 20;
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return 10;
    case LOOM_TYPE_Q8_0: return 8;
    default: return 5;
    }
}

/* ---- "q8 32-block" activation rows: qs[k] | d[k/32] | s[k/32] ---- */

static inline const int8_t *loom_act32_qs(const uint8_t *row) { return (const int8_t *)row; }
static inline const uint8_t *loom_act32_d(const uint8_t *row, int64_t k) { return row + k; }
static inline const uint8_t *loom_act32_s(const uint8_t *row, int64_t k) {
    return row + k + 4 * (k / 32);
}

/* Block facts the always-inline SIMD kernels need as constants (a switch
 * on a constant type folds; loom_type_info's table does not). */
static inline __attribute__((always_inline)) int loom_is_kquant(int type) {
    return type == LOOM_TYPE_Q4_K || type == LOOM_TYPE_Q5_K || type == LOOM_TYPE_Q6_K;
}
static inline __attribute__((always_inline)) size_t loom_qblock_bytes(int type) {
    switch (type) {
    case LOOM_TYPE_Q4_0: return 18;
    case LOOM_TYPE_Q4_1: return 20;
    case LOOM_TYPE_Q5_0: return 22;
    case LOOM_TYPE_Q5_1: return 24;
    case LOOM_TYPE_Q8_0: return 34;
    case LOOM_TYPE_Q4_K: return 144;
    case LOOM_TYPE_Q5_K: return 176;
    case LOOM_TYPE_Q6_K: return 210;
    default: return 0;
    }
}

/* unaligned little-endian loads from weight and activation bytes */
static inline float loom_ld_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}
static inline uint32_t loom_ld_u32(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, sizeof u);
    return u;
}
static inline uint16_t loom_ld_u16(const uint8_t *p) {
    uint16_t u;
    memcpy(&u, p, sizeof u);
    return u;
}

static inline void loom_st_f32(uint8_t *p, float f) { memcpy(p, &f, sizeof f); }

/* ---- register-tile driver shared by the SIMD files ---- */

/* rm rows x nt tokens: y[t*ldy + r] = dot(row r at w + r*ws, token t at x + t*xs) */
typedef void (*loom_tile_fn)(const uint8_t *w, size_t ws, int64_t k, const uint8_t *x, size_t xs,
                             float *y, int64_t ldy);

/* The tiles of one kernel: decode tiles (1 and rmd rows, 1 token) and
 * prefill tiles (1 and rm rows, nt = 1..rn tokens; rn <= 8). */
typedef struct {
    int rmd, rm, rn;
    loom_tile_fn dec[2];  /* [0]: 1 row, [1]: rmd rows; one token */
    loom_tile_fn one[9];  /* [nt]: 1 row x nt tokens */
    loom_tile_fn full[9]; /* [nt]: rm rows x nt tokens */
} loom_tile_set;

/* Register tiles stream each weight row once per token chunk. Rows are a
 * few KiB, so the hardware prefetcher restarts on every row and the core
 * waits on DRAM between bursts of arithmetic; a tile fetches the bytes it is
 * about to read in the next tile's rows (rm rows further on) so loads stay
 * in flight. Measured with bench_matmul on 288 MiB of Q4_K weights (AVX-512,
 * one thread): 7.3 -> 12.2 GB/s; on the 1.1B Q4_K model, batched decode of
 * 2 / 4 sequences 19.2 -> 32.3 / 32.0 -> 49.0 tok/s; from the L3 cache it
 * costs nothing measurable. */
#define LOOM_PREFETCH_NEXT_TILE(p, bytes)                                                   \
    do {                                                                                   \
        _Pragma("GCC unroll 8") for (size_t o_ = 0; o_ < (size_t)(bytes); o_ += 64)        \
            __builtin_prefetch((const char *)(p) + o_, 0, 3);                              \
    } while (0)

/* token rows whose activations stay in L2 while a row tile walks them */
#define LOOM_ACT_CHUNK_BYTES (256 * 1024)

/* Covers nr rows x n tokens with the tiles: n = 1 walks rows rmd at a time;
 * n > 1 walks token chunks that fit in L2, and in each, row tiles of rm
 * (leftover rows one by one) x token tiles of rn (leftover tokens in one
 * narrower tile), so each weight tile is read from memory once per chunk. */
static inline void loom_run_tiles(const loom_tile_set *ts, const uint8_t *w, size_t ws, int64_t k,
                                  int64_t nr, const uint8_t *xq, size_t xs, int64_t n, float *y,
                                  int64_t ldy) {
    if (n == 1) {
        int64_t r = 0;
        for (; r + ts->rmd <= nr; r += ts->rmd) ts->dec[1](w + r * ws, ws, k, xq, xs, y + r, ldy);
        for (; r < nr; r++) ts->dec[0](w + r * ws, ws, k, xq, xs, y + r, ldy);
        return;
    }
    int64_t chunk = (int64_t)(LOOM_ACT_CHUNK_BYTES / (xs ? xs : 1));
    if (chunk < ts->rn) chunk = ts->rn;
    for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        const int64_t t1 = t0 + chunk < n ? t0 + chunk : n;
        for (int64_t r = 0; r < nr; r += ts->rm) {
            const int full = r + ts->rm <= nr;
            const int64_t rows = full ? 1 : nr - r; /* tiles of rm rows, or single rows */
            for (int64_t rr = 0; rr < rows; rr++) {
                const uint8_t *wr = w + (r + rr) * ws;
                for (int64_t t = t0; t < t1; t += ts->rn) {
                    const int nt = (int)(t1 - t < ts->rn ? t1 - t : ts->rn);
                    loom_tile_fn f = full ? ts->full[nt] : ts->one[nt];
                    f(wr, ws, k, xq + t * xs, xs, y + t * ldy + r + rr, ldy);
                }
            }
        }
    }
}

#endif
