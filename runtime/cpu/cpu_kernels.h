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

#include "../quant.h"
#include "../types.h"

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

/* ---- "q8 32-block" activation rows: qs[k] | d[k/32] | s[k/32] ---- */

static inline const int8_t *loom_act32_qs(const uint8_t *row) { return (const int8_t *)row; }
static inline const uint8_t *loom_act32_d(const uint8_t *row, int64_t k) { return row + k; }
static inline const uint8_t *loom_act32_s(const uint8_t *row, int64_t k) {
    return row + k + 4 * (k / 32);
}

static inline float loom_ld_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

static inline void loom_st_f32(uint8_t *p, float f) { memcpy(p, &f, sizeof f); }

#endif
