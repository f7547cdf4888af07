/*
 * runtime/cpu/repack.c — the r8 layout of runtime/kernels.h: GGUF rows to
 * groups of 8 interleaved rows, once at load time. Plain C; it runs at
 * about the speed of a copy.
 */
#include "runtime/cpu/cpu_kernels.h"

size_t loom_r8_row_bytes(loom_type wt, int64_t k) {
    if (!loom_type_has_r8(wt) || k <= 0) return 0;
    const int64_t bs = loom_type_info(wt)->block_size, bb = (int64_t)loom_r8_block_bytes(wt);
    if (k % bs || k / bs > (int64_t)(SIZE_MAX / bb)) return 0;
    return (size_t)(k / bs) * bb / 8;
}

size_t loom_r8_bytes(loom_type wt, int64_t nr, int64_t k) {
    const size_t rb = loom_r8_row_bytes(wt, k);
    const uint64_t groups = nr >= 0 ? ((uint64_t)nr + 7) / 8 : 0;
    if (rb == 0 || groups == 0 || groups > SIZE_MAX / 8 / rb) return 0;
    return (size_t)groups * 8 * rb;
}

/* Row r of a group, block b of it (blk: its GGUF bytes; zeros for the
 * padding rows of a last group), into the group's block at p. */
typedef struct {
    uint8_t *r8;
    const uint8_t *gguf;
} copy_in_args;
static void copy_in(copy_in_args *a, int o8, int og, int n) { memcpy(a->r8 + o8, a->gguf + og, (size_t)n); }

static void put_pieces(int type, uint8_t *p, int r, const uint8_t *blk) {
    copy_in_args a = {p, blk};
    LOOM_R8_PIECES(type, r, copy_in, &a);
}

static void put_k45(int type, bool whole, uint8_t *p, int r, const uint8_t *blk) {
    const int qs = type == LOOM_TYPE_Q5_K ? 48 : 16; /* the GGUF block's quants */
    memcpy(p + 2 * r, blk, 2);      /* d */
    memcpy(p + 16 + 2 * r, blk + 2, 2); /* dmin */
    for (int s = 0; s < 8; s++) loom_q4k_scale_min(s, blk + 4, p + 32 + 8 * s + r, p + 96 + 8 * s + r);
    if (whole) {
        int q[256];
        loom_k_quants(LOOM_TYPE_Q5_K, blk, q);
        for (int l = 0; l < 32; l++) { /* elements 32s + l */
            const int ql[8] = {q[l], q[32 + l], q[64 + l], q[96 + l], q[128 + l], q[160 + l], q[192 + l], q[224 + l]};
            uint8_t c[5];
            loom_r8_q5_set(c, ql);
            for (int i = 0; i < 5; i++) p[LOOM_R8_Q5_Q(l / 4, i) + 4 * r + l % 4] = c[i];
        }
        return;
    }
    if (type == LOOM_TYPE_Q5_K)
        for (int j = 0; j < 8; j++) memcpy(p + 160 + 32 * j + 4 * r, blk + 16 + 4 * j, 4); /* qh */
    for (int j = 0; j < 32; j++) memcpy(p + LOOM_R8_K45_QS(type) + 32 * j + 4 * r, blk + qs + 4 * j, 4);
}

/* Q6_K: elements e, e+32, e+64 (e = 128h + 4g + i) in the low 6 bits of
 * chunks 0, 1, 2, and element e+96's bits 0-1, 2-3, 4-5 in their top two */
static void put_q6k(uint8_t *p, int r, const uint8_t *blk) {
    put_pieces(LOOM_TYPE_Q6_K, p, r, blk);
    int q[256];
    loom_k_quants(LOOM_TYPE_Q6_K, blk, q);
    for (int h = 0; h < 2; h++)
        for (int g = 0; g < 8; g++)
            for (int i = 0; i < 4; i++) {
                const int e = 128 * h + 4 * g + i;
                for (int j = 0; j < 3; j++)
                    p[LOOM_R8_Q6_Q(h, g, j) + 4 * r + i] = (uint8_t)(q[e + 32 * j] | ((q[e + 96] >> (2 * j)) & 3) << 6);
            }
}

/* Q3_K: d and the quant chunks as the file's (LOOM_R8_PIECES), the 16
 * scales unpacked, less 32, as int8 (Q6_K's form) */
static void put_q3k(uint8_t *p, int r, const uint8_t *blk) {
    put_pieces(LOOM_TYPE_Q3_K, p, r, blk);
    int8_t sc[16];
    loom_q3k_scales(blk + 96, sc);
    for (int G = 0; G < 16; G++) p[16 + 8 * G + r] = (uint8_t)sc[G];
}

void loom_repack_r8(loom_type wt, const void *src, size_t src_stride, int64_t nr, int64_t k, void *dst) {
    const size_t rb = loom_r8_row_bytes(wt, k);
    if (!rb) return;
    const size_t gb = loom_r8_block_bytes(wt), bs = loom_type_info(wt)->type_size; /* group block, GGUF block */
    const int64_t nb = k / loom_type_info(wt)->block_size;
    static const uint8_t zero[256];
    const bool q5_whole = wt == LOOM_TYPE_Q5_K && loom_r8_q5_whole();
    for (int64_t g = 0; g * 8 < nr; g++) {
        uint8_t *out = (uint8_t *)dst + (size_t)g * 8 * rb;
        for (int r = 0; r < 8; r++) {
            const int64_t row = 8 * g + r;
            const uint8_t *in = row < nr ? (const uint8_t *)src + (size_t)row * src_stride : NULL;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = in ? in + (size_t)b * bs : zero;
                if (wt == LOOM_TYPE_Q4_K || wt == LOOM_TYPE_Q5_K) put_k45(wt, q5_whole, out + (size_t)b * gb, r, blk);
                else if (wt == LOOM_TYPE_Q6_K) put_q6k(out + (size_t)b * gb, r, blk);
                else if (wt == LOOM_TYPE_Q3_K) put_q3k(out + (size_t)b * gb, r, blk);
                else put_pieces(wt, out + (size_t)b * gb, r, blk);
            }
        }
    }
}

void loom_r8_dequant_row(loom_type wt, const void *r8, int64_t row, int64_t k, float *dst) {
    const size_t rb = loom_r8_row_bytes(wt, k), gb = loom_r8_block_bytes(wt);
    if (!rb) return;
    const uint8_t *grp = (const uint8_t *)r8 + (size_t)(row / 8) * 8 * rb;
    const int r = (int)(row % 8);
    if (!loom_is_kquant(wt)) {
        for (int64_t b = 0; b < k / 32; b++) {
            uint8_t blk[256]; /* (a 32-element block; sized for any r8 type's pieces) */
            loom_r8_gguf_block(wt, grp, b, r, blk);
            loom_dequant_block(wt, blk, dst + 32 * b);
        }
        return;
    }
    const bool q5_whole = wt == LOOM_TYPE_Q5_K && loom_r8_q5_whole();
    for (int64_t sb = 0; sb < k / 256; sb++) { /* quant.h's float steps: bit-equal to loom_dequant_row on the rows */
        loom_r8_ksb o;
        loom_r8_k_unpack(wt, q5_whole, grp + (size_t)sb * gb, r, &o);
        const float d = loom_f16_to_f32(o.d), dmin = loom_f16_to_f32(o.dmin);
        float *y = dst + 256 * sb;
        for (int e = 0; e < 256; e++) {
            if (wt == LOOM_TYPE_Q2_K) { /* as loom_dequant_block_q2_K */
                const float dl = LOOM_FMUL(d, (float)o.sc2[e / 16]), ml = LOOM_FMUL(dmin, (float)o.m2[e / 16]);
                y[e] = LOOM_FSUB(LOOM_FMUL(dl, (float)o.q[e]), ml);
            } else if (wt == LOOM_TYPE_Q6_K || wt == LOOM_TYPE_Q3_K) {
                y[e] = LOOM_FMUL(LOOM_FMUL(d, (float)o.sc6[e / 16]), (float)(o.q[e] - (wt == LOOM_TYPE_Q6_K ? 32 : 4)));
            } else {
                y[e] = LOOM_FSUB(LOOM_FMUL(LOOM_FMUL(d, (float)o.sc[e / 32]), (float)o.q[e]), LOOM_FMUL(dmin, (float)o.m[e / 32]));
            }
        }
    }
}
