/* tests/gpu/synth_model.c — see synth_model.h. */
#include "tests/gpu/synth_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf_write.h"
#include "runtime/quant.h"

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform integer in [lo, hi]. */
static int rng_int(uint64_t *s, int lo, int hi) {
    return lo + (int)(((splitmix64(s) >> 32) * (uint64_t)(hi - lo + 1)) >> 32);
}

/* Roughly normal, unit variance: the sum of four uniforms. */
static double rng_normal(uint64_t *s) {
    const uint64_t x = splitmix64(s);
    const double u = (double)(x & 0xffff) + (double)((x >> 16) & 0xffff) + (double)((x >> 32) & 0xffff) +
                     (double)(x >> 48);
    return (u - 2 * 65535.0) / 37837.22649;
}

static double uniform_sq(int lo, int hi) {
    const double n = hi - lo + 1, mean = (lo + hi) / 2.0;
    return (n * n - 1) / 12 + mean * mean;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

static void pack_k_scales(uint8_t *q, const uint8_t *sc, const uint8_t *m) {
    memset(q, 0, 12);
    for (int j = 0; j < 4; j++) q[j] = sc[j] & 63, q[j + 4] = m[j] & 63;
    for (int j = 4; j < 8; j++) {
        q[j + 4] = (uint8_t)((sc[j] & 15) | ((m[j] & 15) << 4));
        q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        q[j] |= (uint8_t)((m[j] >> 4) << 6);
    }
}

static void random_bytes(uint64_t *s, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        const uint64_t x = splitmix64(s);
        for (size_t k = 0; k < 8 && i + k < n; k++) p[i + k] = (uint8_t)(x >> (8 * k));
    }
}

void gpu_synth_fill(loom_type t, uint64_t seed, double std, uint8_t *dst, size_t n) {
    uint64_t s = seed;
    double sq = 1;
    switch (t) {
    case LOOM_TYPE_Q8_0: sq = uniform_sq(-127, 127); break;
    case LOOM_TYPE_Q4_0: sq = uniform_sq(-7, 7); break;
    case LOOM_TYPE_Q4_1: sq = uniform_sq(0, 15) - 7.5 * 7.5; break;
    case LOOM_TYPE_Q5_0: sq = uniform_sq(-15, 15); break;
    case LOOM_TYPE_Q5_1: sq = uniform_sq(0, 31) - 15.5 * 15.5; break;
    case LOOM_TYPE_Q4_K: sq = uniform_sq(16, 47) * (uniform_sq(0, 15) - 7.5 * 7.5); break;
    case LOOM_TYPE_Q5_K: sq = uniform_sq(16, 47) * (uniform_sq(0, 31) - 15.5 * 15.5); break;
    case LOOM_TYPE_Q6_K: sq = uniform_sq(16, 63) * uniform_sq(-31, 31); break;
    case LOOM_TYPE_MXFP4: sq = 34.25; break;                                    /* codes uniform */
    case LOOM_TYPE_IQ4_NL: sq = 4548; break;                                    /* the grid's mean square */
    case LOOM_TYPE_Q3_K: sq = uniform_sq(-32, 31) * uniform_sq(-4, 3); break;   /* random scales and quants */
    case LOOM_TYPE_Q2_K: sq = uniform_sq(0, 15) * (uniform_sq(0, 3) - 1.5 * 1.5); break;
    case LOOM_TYPE_F32:
        for (size_t i = 0; i < n / 4; i++) {
            const float v = std == 0 ? 1.0f : (float)(rng_normal(&s) * std);
            memcpy(dst + 4 * i, &v, 4);
        }
        return;
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16:
        for (size_t i = 0; i < n / 2; i++) {
            const float v = std == 0 ? 1.0f : (float)(rng_normal(&s) * std);
            put16(dst + 2 * i, t == LOOM_TYPE_F16 ? loom_f32_to_f16(v) : loom_f32_to_bf16(v));
        }
        return;
    default: return;
    }
    const uint16_t d = loom_f32_to_f16((float)(std / sqrt(sq)));
    const double dq = loom_f16_to_f32(d);
    uint16_t d2 = 0;
    if (t == LOOM_TYPE_Q4_1) d2 = loom_f32_to_f16((float)(-7.5 * dq));
    if (t == LOOM_TYPE_Q5_1) d2 = loom_f32_to_f16((float)(-15.5 * dq));
    if (t == LOOM_TYPE_Q4_K) d2 = loom_f32_to_f16((float)(7.5 * dq));
    if (t == LOOM_TYPE_Q5_K) d2 = loom_f32_to_f16((float)(15.5 * dq));
    const size_t bs = loom_type_info((uint32_t)t)->type_size;
    for (size_t o = 0; o + bs <= n; o += bs) {
        uint8_t *b = dst + o;
        switch (t) {
        case LOOM_TYPE_Q8_0:
            put16(b, d);
            for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)rng_int(&s, -127, 127);
            break;
        case LOOM_TYPE_Q4_0:
        case LOOM_TYPE_IQ4_NL:
            put16(b, d);
            random_bytes(&s, b + 2, 16);
            break;
        case LOOM_TYPE_Q5_0:
            put16(b, d);
            random_bytes(&s, b + 2, 20);
            break;
        case LOOM_TYPE_Q4_1:
        case LOOM_TYPE_Q5_1:
            put16(b, d), put16(b + 2, d2);
            random_bytes(&s, b + 4, t == LOOM_TYPE_Q4_1 ? 16 : 20);
            break;
        case LOOM_TYPE_Q4_K:
        case LOOM_TYPE_Q5_K: {
            put16(b, d), put16(b + 2, d2);
            uint8_t sc[8];
            for (int j = 0; j < 8; j++) sc[j] = (uint8_t)rng_int(&s, 16, 47);
            pack_k_scales(b + 4, sc, sc);
            random_bytes(&s, b + 16, t == LOOM_TYPE_Q4_K ? 128 : 160);
            break;
        }
        case LOOM_TYPE_Q6_K:
            random_bytes(&s, b, 192); /* ql, qh: values 0..63, centred by the -32 of the format */
            for (int j = 0; j < 16; j++) b[192 + j] = (uint8_t)(int8_t)rng_int(&s, 16, 63);
            put16(b + 208, d);
            break;
        case LOOM_TYPE_MXFP4: { /* the power of two nearest the scale */
            const double e = floor(log2(dq) + 0.5) + 128;
            b[0] = (uint8_t)(e < 2 ? 2 : e > 254 ? 254 : e);
            random_bytes(&s, b + 1, 16);
            break;
        }
        case LOOM_TYPE_Q3_K: /* random quants and 6-bit scales (−32..31) */
            random_bytes(&s, b, 108);
            put16(b + 108, d);
            break;
        case LOOM_TYPE_Q2_K: /* random scales, mins and quants; dmin 1.5 d */
            random_bytes(&s, b, 80);
            put16(b + 80, d), put16(b + 82, loom_f32_to_f16((float)(1.5 * dq)));
            break;
        default: break;
        }
    }
}

typedef struct {
    uint64_t seed;
    double std;
} fill_ctx;

static loom_status fill(void *user, const loom_gguf_tensor *t, uint64_t offset, void *dst, size_t n) {
    const fill_ctx *c = user;
    gpu_synth_fill(t->type, c->seed ^ (offset * 0x9e3779b97f4a7c15ull), c->std, dst, n);
    return NULL;
}

loom_status gpu_synth_write(const gpu_synth *s, const char *path) {
    const int hd = s->dim / s->heads, n_t = 3 + 9 * s->layers;
    fill_ctx *ctx = calloc((size_t)n_t, sizeof *ctx);
    loom_gguf_writer *w = NULL;
    if (!ctx) return loom_error(LOOM_ERR_NOMEM, "out of memory");
    loom_status st = loom_gguf_writer_create(&w);
    int ti = 0;
    char name[96];
#define TRY(e)                                                                                                        \
    do {                                                                                                              \
        if (!st) st = (e);                                                                                            \
    } while (0)
#define TENSOR(nm, type, nd, ne0, ne1, sd)                                                                            \
    do {                                                                                                              \
        ctx[ti].seed = s->seed * 0x100000001b3ull + (uint64_t)ti * 0xbf58476d1ce4e5b9ull, ctx[ti].std = (sd);         \
        const int64_t ne_[2] = {(ne0), (ne1)};                                                                        \
        TRY(loom_gguf_writer_add_tensor_fill(w, nm, type, nd, ne_, fill, &ctx[ti]));                                 \
        ti++;                                                                                                         \
    } while (0)
    TRY(loom_gguf_writer_add_str(w, "general.architecture", "llama"));
    TRY(loom_gguf_writer_add_str(w, "general.name", "loom-gpu-check"));
    TRY(loom_gguf_writer_add_uint(w, "llama.block_count", LOOM_GGUF_U32, (uint64_t)s->layers));
    TRY(loom_gguf_writer_add_uint(w, "llama.context_length", LOOM_GGUF_U32, 4096));
    TRY(loom_gguf_writer_add_uint(w, "llama.embedding_length", LOOM_GGUF_U32, (uint64_t)s->dim));
    TRY(loom_gguf_writer_add_uint(w, "llama.feed_forward_length", LOOM_GGUF_U32, (uint64_t)s->ffn));
    TRY(loom_gguf_writer_add_uint(w, "llama.attention.head_count", LOOM_GGUF_U32, (uint64_t)s->heads));
    TRY(loom_gguf_writer_add_uint(w, "llama.attention.head_count_kv", LOOM_GGUF_U32, (uint64_t)s->kv_heads));
    TRY(loom_gguf_writer_add_float(w, "llama.rope.freq_base", LOOM_GGUF_F32, 10000.0));
    TRY(loom_gguf_writer_add_uint(w, "llama.rope.dimension_count", LOOM_GGUF_U32, (uint64_t)hd));
    TRY(loom_gguf_writer_add_float(w, "llama.attention.layer_norm_rms_epsilon", LOOM_GGUF_F32, 1e-5));
    TRY(loom_gguf_writer_add_uint(w, "llama.vocab_size", LOOM_GGUF_U32, (uint64_t)s->vocab));
    const double sd = 1 / sqrt((double)s->dim), sf = 1 / sqrt((double)s->ffn);
    const int64_t kvo = (int64_t)s->kv_heads * hd;
    TENSOR("token_embd.weight", s->type, 2, s->dim, s->vocab, 1.0);
    for (int l = 0; l < s->layers && !st; l++) {
#define L(suffix, type, nd, ne0, ne1, sdv)                                                                            \
    do {                                                                                                              \
        snprintf(name, sizeof name, "blk.%d." suffix, l);                                                             \
        TENSOR(name, type, nd, ne0, ne1, sdv);                                                                        \
    } while (0)
        L("attn_norm.weight", LOOM_TYPE_F32, 1, s->dim, 1, 0.0);
        L("attn_q.weight", s->type, 2, s->dim, s->dim, sd);
        L("attn_k.weight", s->type, 2, s->dim, kvo, sd);
        L("attn_v.weight", s->type, 2, s->dim, kvo, sd);
        L("attn_output.weight", s->type, 2, s->dim, s->dim, sd);
        L("ffn_norm.weight", LOOM_TYPE_F32, 1, s->dim, 1, 0.0);
        L("ffn_gate.weight", s->type, 2, s->dim, s->ffn, sd);
        L("ffn_up.weight", s->type, 2, s->dim, s->ffn, sd);
        L("ffn_down.weight", s->type, 2, s->ffn, s->dim, sf);
#undef L
    }
    TENSOR("output_norm.weight", LOOM_TYPE_F32, 1, s->dim, 1, 0.0);
    TENSOR("output.weight", s->type, 2, s->dim, s->vocab, sd);
    TRY(loom_gguf_writer_write_path(w, path, 0));
#undef TENSOR
#undef TRY
    loom_gguf_writer_free(w);
    free(ctx);
    return st ? loom_error_wrap(st, "writing the check model %s", path) : NULL;
}
