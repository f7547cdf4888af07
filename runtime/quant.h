/*
 * runtime/quant.h — quantized block layouts and per-block dequantization.
 *
 * Contract: header-only, no state, nothing can fail. Every function here is
 * `static inline` and compiles both as C11 and as CUDA C++ (LOOM_HD marks
 * them __host__ __device__ under nvcc): no VLAs, no _Generic, no compound
 * literals, F16/BF16 by bit manipulation. These are the reference semantics:
 * the CPU kernels (runtime/cpu/) and later the CUDA kernels must agree with
 * them.
 *
 * Byte layouts are GGML's exactly (ggml-common.h), so tensors are used as
 * they lie in an mmapped GGUF file. Blocks inside a GGUF tensor row can start
 * at any address (a row slice may begin at an odd byte), so the functions
 * take `const uint8_t *` and read multi-byte fields byte by byte (little
 * endian); the structs below document the layouts and give sizes/offsets,
 * and are never dereferenced through a possibly misaligned pointer.
 *
 * Element order inside a block (what dequantization produces, j = 0..):
 *   Q4_0/Q4_1  element j<16 is the low nibble of qs[j], j>=16 the high nibble
 *              of qs[j-16].
 *   Q5_0/Q5_1  as Q4_x for the low 4 bits; bit 4 of element j is bit j of
 *              the little-endian uint32 qh.
 *   Q8_0       qs[j].
 *   Q4_K       256 elements in 4 chunks of 64; chunk c uses qs[32c..32c+31]:
 *              low nibbles are sub-block 2c, high nibbles sub-block 2c+1.
 *              Sub-block s (32 elements) has a 6-bit scale and a 6-bit min
 *              packed in scales[12] (see loom_q4k_scale_min).
 *              x = d*sc[s]*q - dmin*m[s].
 *   Q5_K       as Q4_K plus bit 4 of element 64c+l (l<32) = bit 2c of
 *              qh[l], of element 64c+32+l = bit 2c+1 of qh[l].
 *   Q2_K       two halves of 128; in half n, quants byte qs[32n + l] holds
 *              elements 128n + 32j + l (j = 0..3) at bits 2j, 2j+1 (q 0..3);
 *              group g of 16 elements has scale scales[g] & 15 and min
 *              scales[g] >> 4: x = d * sc * q - dmin * m.
 *   Q3_K       two halves of 128; in half n, quants byte qs[32n + l] holds
 *              the low two bits of elements 128n + 32j + l at bits 2j, 2j+1
 *              (j = 0..3); bit 4n + j of hmask[l] set means their third bit
 *              is 1: q = low | third << 2 (0..7), x = d * (sc - 32) * (q - 4),
 *              sc the 6-bit scale of the element's group of 16
 *              (loom_q3k_scales).
 *   Q6_K       two halves of 128; in half h, with L = ql + 64h, H = qh + 32h,
 *              for l<32: e[l]    = (L[l]    & 15) | ((H[l]>>0)&3)<<4,
 *                        e[l+32] = (L[l+32] & 15) | ((H[l]>>2)&3)<<4,
 *                        e[l+64] = (L[l]    >> 4) | ((H[l]>>4)&3)<<4,
 *                        e[l+96] = (L[l+32] >> 4) | ((H[l]>>6)&3)<<4;
 *              x = d * scales[e/16] * (q - 32).
 *   Q8_K       (activations only) x = d * qs[j]; bsums[i] = sum of qs[16i..16i+15].
 *   IQ4_NL     Q4_0's layout (d, then the nibbles); a nibble indexes
 *              llama.cpp's non-linear grid LOOM_KV_IQ4NL (int8 values,
 *              -127..113): x = d * LOOM_KV_IQ4NL[q]. Computed as Q8_0 is
 *              once the nibble has become its value.
 *   IQ4_XS     256-element super-blocks: d (f16), the high 2 bits of eight
 *              6-bit scales ls (u16), their low 4 bits (4 bytes), then 8
 *              sub-blocks of IQ4_NL's nibbles: x = d * (ls - 32) * grid[q].
 *              Not computed as it is: a rank holds it as IQ4_NL, sub-block
 *              by sub-block (loom_iq4_xs_to_nl).
 *   MXFP4      (OCP microscaling FP4, gpt-oss's experts) as Q4_0's nibble
 *              order; a nibble is an E2M1 code, x = LOOM_KV_MXFP4[q] *
 *              2^(e - 128) with e the block's E8M0 exponent byte (GGML keeps
 *              the E2M1 values doubled, {0, 1, 2, 3, 4, 6, 8, 12} and their
 *              negatives, and halves the scale: ggml_e8m0_to_fp32_half).
 *
 * Rounding: each function performs the same float operations, in the same
 * order, as GGML's dequantize_row_* and gguf-py's numpy dequantization
 * (e.g. Q4_K: (d*sc)*q - (dmin*m)), so results are bit-equal to both when
 * the compiler does not fuse a multiply and an add into an FMA. Host code
 * in translation units built without FMA (the baseline x86-64 files) never
 * fuses; on the device, LOOM_FMUL/LOOM_FADD use the __fmul_rn/__fadd_rn
 * intrinsics, which nvcc never contracts.
 */
#ifndef LOOM_QUANT_H
#define LOOM_QUANT_H

#include <stddef.h>
#include <stdint.h>
#ifndef __CUDACC__
#include <string.h>
#endif

#include "runtime/types.h"

#ifdef __CUDACC__
#define LOOM_HD __host__ __device__
#else
#define LOOM_HD
#endif

#ifdef __cplusplus
#define LOOM_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define LOOM_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#if defined(__CUDA_ARCH__)
#define LOOM_FMUL(a, b) __fmul_rn((a), (b))
#define LOOM_FADD(a, b) __fadd_rn((a), (b))
#define LOOM_FSUB(a, b) __fsub_rn((a), (b))
#else
#define LOOM_FMUL(a, b) ((a) * (b))
#define LOOM_FADD(a, b) ((a) + (b))
#define LOOM_FSUB(a, b) ((a) - (b))
#endif

enum {
    LOOM_QK = 32,     /* elements per block of the Q4_0..Q8_0 family */
    LOOM_QK_K = 256,  /* elements per K-quant super-block */
};

/* ---- block layouts (GGML's; fp16 fields are raw IEEE half bits) ---- */

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint8_t qs[16];    /* 32 x 4-bit, x = d * (q - 8) */
} loom_block_q4_0;

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint16_t m;        /* fp16 min */
    uint8_t qs[16];    /* 32 x 4-bit, x = d * q + m */
} loom_block_q4_1;

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint8_t qh[4];     /* bit 4 of each of the 32 quants */
    uint8_t qs[16];    /* low 4 bits, x = d * (q - 16) */
} loom_block_q5_0;

typedef struct {
    uint16_t d;        /* fp16 scale */
    uint16_t m;        /* fp16 min */
    uint8_t qh[4];     /* bit 4 of each of the 32 quants */
    uint8_t qs[16];    /* low 4 bits, x = d * q + m */
} loom_block_q5_1;

typedef struct {
    uint16_t d;        /* fp16 scale */
    int8_t qs[32];     /* x = d * q */
} loom_block_q8_0;

typedef struct {
    uint16_t d;          /* fp16 super-block scale of the sub-block scales */
    uint16_t dmin;       /* fp16 super-block scale of the sub-block mins */
    uint8_t scales[12];  /* 8 x (6-bit scale, 6-bit min), packed */
    uint8_t qs[128];     /* 256 x 4-bit */
} loom_block_q4_K;

typedef struct {
    uint16_t d;          /* fp16 super-block scale of the sub-block scales */
    uint16_t dmin;       /* fp16 super-block scale of the sub-block mins */
    uint8_t scales[12];  /* 8 x (6-bit scale, 6-bit min), packed */
    uint8_t qh[32];      /* bit 4 of the quants */
    uint8_t qs[128];     /* low 4 bits */
} loom_block_q5_K;

typedef struct {
    uint8_t scales[16];  /* per group of 16: scale (low nibble), min (high nibble) */
    uint8_t qs[64];      /* 2-bit quants */
    uint16_t d;          /* fp16 super-block scale of the scales */
    uint16_t dmin;       /* fp16 super-block scale of the mins */
} loom_block_q2_K;

typedef struct {
    uint8_t hmask[32];   /* third bit of the quants */
    uint8_t qs[64];      /* low 2 bits */
    uint8_t scales[12];  /* 16 x 6-bit scales, packed */
    uint16_t d;          /* fp16 super-block scale */
} loom_block_q3_K;

typedef struct {
    uint8_t ql[128];     /* low 4 bits of 256 quants */
    uint8_t qh[64];      /* high 2 bits */
    int8_t scales[16];   /* one signed 8-bit scale per 16 elements */
    uint16_t d;          /* fp16 super-block scale */
} loom_block_q6_K;

typedef struct {
    uint8_t e;         /* E8M0 exponent: scale 2^(e - 128) with doubled values */
    uint8_t qs[16];    /* 32 x 4-bit E2M1 codes */
} loom_block_mxfp4;

typedef struct {
    float d;             /* scale */
    int8_t qs[256];      /* x = d * q */
    int16_t bsums[16];   /* sums of qs in groups of 16 */
} loom_block_q8_K;

LOOM_STATIC_ASSERT(sizeof(loom_block_q4_0) == 18, "Q4_0 block is 18 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q4_1) == 20, "Q4_1 block is 20 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q5_0) == 22, "Q5_0 block is 22 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q5_1) == 24, "Q5_1 block is 24 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q8_0) == 34, "Q8_0 block is 34 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q2_K) == 84, "Q2_K block is 84 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q3_K) == 110, "Q3_K block is 110 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q4_K) == 144, "Q4_K block is 144 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q5_K) == 176, "Q5_K block is 176 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q6_K) == 210, "Q6_K block is 210 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_q8_K) == 292, "Q8_K block is 292 bytes");
LOOM_STATIC_ASSERT(sizeof(loom_block_mxfp4) == 17, "MXFP4 block is 17 bytes");

/* IQ4_NL's grid (ggml's kvalues_iq4nl), and the same plus 128 as bytes, the
 * unsigned form the VNNI kernels multiply as they do Q8_0's. */
#define LOOM_KV_IQ4NL_INIT {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
#define LOOM_KV_IQ4NL_U_INIT {1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241}

/* MXFP4's E2M1 codes as GGML keeps them (doubled: integers), and the same
 * plus 12, the unsigned form the integer kernels multiply (>= 0, <= 24). */
#define LOOM_KV_MXFP4_INIT {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
#define LOOM_KV_MXFP4_U_INIT {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0}
enum { LOOM_MXFP4_OFFSET = 12 };

/* ---- scalar bit helpers ---- */

static inline LOOM_HD uint16_t loom_rd_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline LOOM_HD uint32_t loom_rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline LOOM_HD float loom_bits_to_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

static inline LOOM_HD uint32_t loom_f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

/* IEEE half -> float, exact for every input (subnormals, inf, NaN payload). */
static inline LOOM_HD float loom_f16_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
    /* the hardware conversion: exact too, and branch-free (a branch here
     * splits the matvec kernels' unrolled steps and serialises their loads) */
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1fu) return loom_bits_to_f32(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) return loom_bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
    /* zero or subnormal: mant * 2^-24, exact, and never a subnormal float */
    float v = (float)mant * 5.9604644775390625e-8f;
    return loom_bits_to_f32(sign | loom_f32_to_bits(v));
#endif
}

/* float -> IEEE half, round to nearest even; overflow gives inf, NaN stays
 * NaN (quiet, top payload bits kept). */
static inline LOOM_HD uint16_t loom_f32_to_f16(float f) {
    uint32_t x = loom_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax >= 0x38800000u) {                                   /* normal half */
        uint32_t r = ax - (112u << 23);
        r += 0x0fffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax < 0x33000000u) return (uint16_t)sign; /* <= 2^-25: rounds to zero */
    /* subnormal half: mantissa = round_even(|f| * 2^24) */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t s = 126u - e; /* 14..24 */
    uint32_t q = m >> s;
    uint32_t rem = m & ((1u << s) - 1u);
    uint32_t half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline LOOM_HD float loom_bf16_to_f32(uint16_t h) {
    return loom_bits_to_f32((uint32_t)h << 16);
}

/* float -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
static inline LOOM_HD uint16_t loom_f32_to_bf16(float f) {
    uint32_t x = loom_f32_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* MXFP4's block scale: 2^(e - 128) (GGML's ggml_e8m0_to_fp32_half, the
 * two smallest exponents as float subnormals). */
static inline LOOM_HD float loom_e8m0_half(uint8_t e) {
    return loom_bits_to_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

/* Q3_K's 16 group scales from its 12 packed bytes, as four little-endian
 * words of four 6-bit scales each (ggml's dequantize_row_q3_K kmask
 * shuffle): group g < 8 has its low four bits in the low nibble of byte g,
 * g >= 8 in the high nibble of byte g - 8, its top two bits at bits
 * 2(g/4).. of byte 8 + g % 4. */
static inline LOOM_HD void loom_q3k_scale_words(const uint8_t *p, uint32_t w[4]) {
    const uint32_t a0 = loom_rd_u32(p), a1 = loom_rd_u32(p + 4), t = loom_rd_u32(p + 8);
    const uint32_t m2 = 0x03030303u, m4 = 0x0f0f0f0fu;
    w[0] = (a0 & m4) | (t & m2) << 4;
    w[1] = (a1 & m4) | (t >> 2 & m2) << 4;
    w[2] = (a0 >> 4 & m4) | (t >> 4 & m2) << 4;
    w[3] = (a1 >> 4 & m4) | (t >> 6 & m2) << 4;
}

/* The same minus 32 (-32..31): the scales x = d * sc * (q - 4) uses. */
static inline LOOM_HD void loom_q3k_scales(const uint8_t *p, int8_t sc[16]) {
    uint32_t w[4];
    loom_q3k_scale_words(p, w);
    for (int g = 0; g < 16; g++) sc[g] = (int8_t)((int)(w[g / 4] >> (8 * (g % 4)) & 0xFFu) - 32);
}

/* Scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block, from the
 * 12 packed bytes: j<4: low 6 bits of q[j] / q[j+4]; j>=4: low nibble of
 * q[j+4] (scale) / high nibble of q[j+4] (min), with their top 2 bits from
 * the top 2 bits of q[j-4] (scale) / q[j] (min). */
static inline LOOM_HD void loom_q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = (uint8_t)(q[j] & 63);
        *m = (uint8_t)(q[j + 4] & 63);
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* ---- one block -> floats; y holds block_size floats ---- */

static inline LOOM_HD void loom_dequant_block_q4_0(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const uint8_t *qs = b + offsetof(loom_block_q4_0, qs);
    for (int j = 0; j < 16; j++) {
        y[j] = LOOM_FMUL(d, (float)((qs[j] & 0xF) - 8));
        y[j + 16] = LOOM_FMUL(d, (float)((qs[j] >> 4) - 8));
    }
}

static inline LOOM_HD void loom_dequant_block_q4_1(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const float m = loom_f16_to_f32(loom_rd_u16(b + 2));
    const uint8_t *qs = b + offsetof(loom_block_q4_1, qs);
    for (int j = 0; j < 16; j++) {
        y[j] = LOOM_FADD(LOOM_FMUL(d, (float)(qs[j] & 0xF)), m);
        y[j + 16] = LOOM_FADD(LOOM_FMUL(d, (float)(qs[j] >> 4)), m);
    }
}

static inline LOOM_HD void loom_dequant_block_q5_0(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const uint32_t qh = loom_rd_u32(b + offsetof(loom_block_q5_0, qh));
    const uint8_t *qs = b + offsetof(loom_block_q5_0, qs);
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = LOOM_FMUL(d, (float)(lo - 16));
        y[j + 16] = LOOM_FMUL(d, (float)(hi - 16));
    }
}

static inline LOOM_HD void loom_dequant_block_q5_1(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const float m = loom_f16_to_f32(loom_rd_u16(b + 2));
    const uint32_t qh = loom_rd_u32(b + offsetof(loom_block_q5_1, qh));
    const uint8_t *qs = b + offsetof(loom_block_q5_1, qs);
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0xF) | (int)(((qh >> j) & 1u) << 4);
        int hi = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        y[j] = LOOM_FADD(LOOM_FMUL(d, (float)lo), m);
        y[j + 16] = LOOM_FADD(LOOM_FMUL(d, (float)hi), m);
    }
}

static inline LOOM_HD void loom_dequant_block_q8_0(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const int8_t *qs = (const int8_t *)(b + offsetof(loom_block_q8_0, qs));
    for (int j = 0; j < 32; j++) y[j] = LOOM_FMUL((float)qs[j], d);
}

static inline LOOM_HD void loom_dequant_block_q4_K(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const float dmin = loom_f16_to_f32(loom_rd_u16(b + 2));
    const uint8_t *scales = b + offsetof(loom_block_q4_K, scales);
    const uint8_t *qs = b + offsetof(loom_block_q4_K, qs);
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        loom_q4k_scale_min(2 * c, scales, &sc0, &m0);
        loom_q4k_scale_min(2 * c + 1, scales, &sc1, &m1);
        const float d0 = LOOM_FMUL(d, (float)sc0), dm0 = LOOM_FMUL(dmin, (float)m0);
        const float d1 = LOOM_FMUL(d, (float)sc1), dm1 = LOOM_FMUL(dmin, (float)m1);
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = LOOM_FSUB(LOOM_FMUL(d0, (float)(q[l] & 0xF)), dm0);
            y[64 * c + 32 + l] = LOOM_FSUB(LOOM_FMUL(d1, (float)(q[l] >> 4)), dm1);
        }
    }
}

static inline LOOM_HD void loom_dequant_block_q5_K(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    const float dmin = loom_f16_to_f32(loom_rd_u16(b + 2));
    const uint8_t *scales = b + offsetof(loom_block_q5_K, scales);
    const uint8_t *qh = b + offsetof(loom_block_q5_K, qh);
    const uint8_t *qs = b + offsetof(loom_block_q5_K, qs);
    for (int c = 0; c < 4; c++) {
        uint8_t sc0, m0, sc1, m1;
        loom_q4k_scale_min(2 * c, scales, &sc0, &m0);
        loom_q4k_scale_min(2 * c + 1, scales, &sc1, &m1);
        const float d0 = LOOM_FMUL(d, (float)sc0), dm0 = LOOM_FMUL(dmin, (float)m0);
        const float d1 = LOOM_FMUL(d, (float)sc1), dm1 = LOOM_FMUL(dmin, (float)m1);
        const uint8_t *q = qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            int lo = (q[l] & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4);
            int hi = (q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4);
            y[64 * c + l] = LOOM_FSUB(LOOM_FMUL(d0, (float)lo), dm0);
            y[64 * c + 32 + l] = LOOM_FSUB(LOOM_FMUL(d1, (float)hi), dm1);
        }
    }
}

static inline LOOM_HD void loom_dequant_block_q2_K(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b + offsetof(loom_block_q2_K, d)));
    const float dmin = loom_f16_to_f32(loom_rd_u16(b + offsetof(loom_block_q2_K, dmin)));
    const uint8_t *sc = b + offsetof(loom_block_q2_K, scales);
    for (int n = 0; n < 2; n++) {
        const uint8_t *q = b + offsetof(loom_block_q2_K, qs) + 32 * n;
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int e = 128 * n + 32 * j + l, s = sc[e / 16];
                const float dl = LOOM_FMUL(d, (float)(s & 0xF)), ml = LOOM_FMUL(dmin, (float)(s >> 4));
                y[e] = LOOM_FSUB(LOOM_FMUL(dl, (float)((q[l] >> (2 * j)) & 3)), ml);
            }
    }
}

static inline LOOM_HD void loom_dequant_block_q3_K(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b + offsetof(loom_block_q3_K, d)));
    int8_t sc[16];
    loom_q3k_scales(b + offsetof(loom_block_q3_K, scales), sc);
    const uint8_t *hm = b + offsetof(loom_block_q3_K, hmask);
    for (int n = 0; n < 2; n++) {
        const uint8_t *q = b + offsetof(loom_block_q3_K, qs) + 32 * n;
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                const int e = 128 * n + 32 * j + l;
                const int v = ((q[l] >> (2 * j)) & 3) - ((hm[l] >> (4 * n + j)) & 1 ? 0 : 4);
                y[e] = LOOM_FMUL(LOOM_FMUL(d, (float)sc[e / 16]), (float)v);
            }
    }
}

static inline LOOM_HD void loom_dequant_block_q6_K(const uint8_t *b, float *y) {
    const float d = loom_f16_to_f32(loom_rd_u16(b + offsetof(loom_block_q6_K, d)));
    const int8_t *sc = (const int8_t *)(b + offsetof(loom_block_q6_K, scales));
    for (int h = 0; h < 2; h++) {
        const uint8_t *L = b + offsetof(loom_block_q6_K, ql) + 64 * h;
        const uint8_t *H = b + offsetof(loom_block_q6_K, qh) + 32 * h;
        float *o = y + 128 * h;
        const int8_t *s = sc + 8 * h;
        for (int l = 0; l < 32; l++) {
            int q0 = ((L[l] & 0xF) | (((H[l] >> 0) & 3) << 4)) - 32;
            int q1 = ((L[l + 32] & 0xF) | (((H[l] >> 2) & 3) << 4)) - 32;
            int q2 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32;
            int q3 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32;
            int is = l / 16;
            o[l] = LOOM_FMUL(LOOM_FMUL(d, (float)s[is + 0]), (float)q0);
            o[l + 32] = LOOM_FMUL(LOOM_FMUL(d, (float)s[is + 2]), (float)q1);
            o[l + 64] = LOOM_FMUL(LOOM_FMUL(d, (float)s[is + 4]), (float)q2);
            o[l + 96] = LOOM_FMUL(LOOM_FMUL(d, (float)s[is + 6]), (float)q3);
        }
    }
}

/* 32 values from 16 nibble bytes (Q4_0's order) through the table kv, times d. */
static inline LOOM_HD void loom_dequant_nibbles32(const signed char kv[16], const uint8_t *qs, float d, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = LOOM_FMUL((float)kv[qs[j] & 0xF], d);
        y[j + 16] = LOOM_FMUL((float)kv[qs[j] >> 4], d);
    }
}

static inline LOOM_HD void loom_dequant_block_iq4_nl(const uint8_t *b, float *y) {
    const signed char kv[16] = LOOM_KV_IQ4NL_INIT;
    loom_dequant_nibbles32(kv, b + 2, loom_f16_to_f32(loom_rd_u16(b)), y);
}

/* IQ4_XS sub-block ib's scale, less 32 (-32..31). */
static inline LOOM_HD int loom_iq4_xs_scale(const uint8_t *b, int ib) {
    const int ls = ((b[4 + ib / 2] >> 4 * (ib % 2)) & 0xF) | (((loom_rd_u16(b + 2) >> 2 * ib) & 3) << 4);
    return ls - 32;
}

static inline LOOM_HD void loom_dequant_block_iq4_xs(const uint8_t *b, float *y) {
    const signed char kv[16] = LOOM_KV_IQ4NL_INIT;
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    for (int ib = 0; ib < 8; ib++)
        loom_dequant_nibbles32(kv, b + 8 + 16 * ib, LOOM_FMUL(d, (float)loom_iq4_xs_scale(b, ib)), y + 32 * ib);
}

/* One IQ4_XS super-block as eight IQ4_NL blocks (8 x 18 bytes): each
 * sub-block's scale d * (ls - 32) rounded to F16 (a relative error of at
 * most 2^-12), its nibbles as they are. */
static inline LOOM_HD void loom_iq4_xs_to_nl(const uint8_t *b, uint8_t *out) {
    const float d = loom_f16_to_f32(loom_rd_u16(b));
    for (int ib = 0; ib < 8; ib++) {
        const uint16_t h = loom_f32_to_f16(LOOM_FMUL(d, (float)loom_iq4_xs_scale(b, ib)));
        out[18 * ib] = (uint8_t)h, out[18 * ib + 1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 16; j++) out[18 * ib + 2 + j] = b[8 + 16 * ib + j];
    }
}

static inline LOOM_HD void loom_dequant_block_mxfp4(const uint8_t *b, float *y) {
    const signed char kv[16] = LOOM_KV_MXFP4_INIT;
    loom_dequant_nibbles32(kv, b + offsetof(loom_block_mxfp4, qs), loom_e8m0_half(b[0]), y);
}

static inline LOOM_HD void loom_dequant_block_q8_K(const uint8_t *b, float *y) {
    const float d = loom_bits_to_f32(loom_rd_u32(b));
    const int8_t *qs = (const int8_t *)(b + offsetof(loom_block_q8_K, qs));
    for (int j = 0; j < 256; j++) y[j] = LOOM_FMUL(d, (float)qs[j]);
}

/* One block of `type` (block_size elements: 1 for F32/F16/BF16) -> floats.
 * Returns the number of elements written, or 0 for a type this header does
 * not handle (y untouched). */
static inline LOOM_HD int loom_dequant_block(loom_type type, const uint8_t *b, float *y) {
    switch (type) {
    case LOOM_TYPE_F32: y[0] = loom_bits_to_f32(loom_rd_u32(b)); return 1;
    case LOOM_TYPE_F16: y[0] = loom_f16_to_f32(loom_rd_u16(b)); return 1;
    case LOOM_TYPE_BF16: y[0] = loom_bf16_to_f32(loom_rd_u16(b)); return 1;
    case LOOM_TYPE_Q4_0: loom_dequant_block_q4_0(b, y); return 32;
    case LOOM_TYPE_Q4_1: loom_dequant_block_q4_1(b, y); return 32;
    case LOOM_TYPE_Q5_0: loom_dequant_block_q5_0(b, y); return 32;
    case LOOM_TYPE_Q5_1: loom_dequant_block_q5_1(b, y); return 32;
    case LOOM_TYPE_Q8_0: loom_dequant_block_q8_0(b, y); return 32;
    case LOOM_TYPE_Q2_K: loom_dequant_block_q2_K(b, y); return 256;
    case LOOM_TYPE_Q3_K: loom_dequant_block_q3_K(b, y); return 256;
    case LOOM_TYPE_Q4_K: loom_dequant_block_q4_K(b, y); return 256;
    case LOOM_TYPE_Q5_K: loom_dequant_block_q5_K(b, y); return 256;
    case LOOM_TYPE_Q6_K: loom_dequant_block_q6_K(b, y); return 256;
    case LOOM_TYPE_Q8_K: loom_dequant_block_q8_K(b, y); return 256;
    case LOOM_TYPE_MXFP4: loom_dequant_block_mxfp4(b, y); return 32;
    case LOOM_TYPE_IQ4_NL: loom_dequant_block_iq4_nl(b, y); return 32;
    case LOOM_TYPE_IQ4_XS: loom_dequant_block_iq4_xs(b, y); return 256;
    default: return 0;
    }
}

#endif
