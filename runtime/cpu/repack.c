/*
 * runtime/cpu/repack.c — the r8 layout of runtime/kernels.h: GGUF rows to
 * groups of 8 interleaved rows, once at load time. Plain C (a few hundred
 * MB/s would do; this runs at memcpy speed).
 */
#include "runtime/cpu/cpu_kernels.h"

size_t loom_r8_bytes(loom_type wt, int64_t nr, int64_t k) {
    if (!loom_type_has_r8(wt) || nr < 0) return 0;
    const size_t ws = loom_type_row_bytes(wt, k);
    const uint64_t groups = ((uint64_t)nr + 7) / 8;
    if (ws == 0 || groups > SIZE_MAX / 8 / ws) return 0;
    return (size_t)groups * 8 * ws;
}

void loom_repack_r8(loom_type wt, const void *src, size_t src_stride, int64_t nr, int64_t k, void *dst) {
    if (!loom_type_has_r8(wt)) return;
    const size_t ws = loom_type_row_bytes(wt, k);
    const int64_t nb = k / 32;
    for (int64_t g = 0; g * 8 < nr; g++) {
        uint8_t *out = (uint8_t *)dst + (size_t)g * 8 * ws;
        for (int r = 0; r < 8; r++) {
            const int64_t row = 8 * g + r;
            const uint8_t *in = row < nr ? (const uint8_t *)src + (size_t)row * src_stride : NULL;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *p = out + (size_t)b * LOOM_R8_BLOCK;
                static const uint8_t zero[18];
                const uint8_t *blk = in ? in + (size_t)b * 18 : zero; /* padding rows: d = 0, quants 0 */
                memcpy(p + 2 * r, blk, 2);
                for (int j = 0; j < 4; j++) memcpy(p + 16 + 32 * j + 4 * r, blk + 2 + 4 * j, 4);
            }
        }
    }
}
