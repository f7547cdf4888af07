/*
 * launch/synth_gen.c — what `loom synth` writes into a tensor and its
 * vocabulary (contract in launch/synth.h; the method is described at the
 * top of launch/cmd_synth.c).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/synth.h"
#include "runtime/quant.h"

/* ---- deterministic randomness ---- */

uint64_t loom_synth_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(loom_synth_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = loom_synth_splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(loom_synth_rng *r) { /* xoshiro256** */
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform integer in [lo, hi]. */
static int rng_int(loom_synth_rng *r, int lo, int hi) {
    uint64_t span = (uint64_t)(hi - lo + 1);
    return lo + (int)(((rng_next(r) >> 32) * span) >> 32);
}

/* Approximately normal: the sum of four 16-bit uniforms, centred, as an
 * exact integer with std 65536/sqrt(3). */
#define NORMAL_STD 37837.22649 /* 65536 / sqrt(3) */
static int32_t rng_normal_int(loom_synth_rng *r) {
    uint64_t x = rng_next(r);
    int32_t s = (int32_t)(x & 0xffff) + (int32_t)((x >> 16) & 0xffff) + (int32_t)((x >> 32) & 0xffff) +
                (int32_t)(x >> 48);
    return s - 2 * 65535;
}

uint64_t loom_synth_fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* E[x^2] of a uniform integer on [lo, hi]. */
static double uniform_sq(int lo, int hi) {
    double n = hi - lo + 1, mean = (lo + hi) / 2.0;
    return (n * n - 1) / 12 + mean * mean;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ---- tensor contents ---- */

#define KSC_LO 16 /* Q4_K/Q5_K sub-block scales */
#define KSC_HI 47
#define Q6SC_LO 16
#define Q6SC_HI 63
#define Q3SC_LO 16 /* Q3_K group scales, less 32 */
#define Q3SC_HI 31
#define Q2SC_LO 8 /* Q2_K group scales (and mins) */
#define Q2SC_HI 15

/* Sets up the per-tensor constants for `type` (called at offset 0). */
static void gen_start(loom_synth_gen *g, loom_type type) {
    rng_seed(&g->rng, g->seed);
    double sq = 1; /* E[(integer part)^2] of one value */
    switch (type) {
    case LOOM_TYPE_Q8_0: sq = uniform_sq(-127, 127); break;
    case LOOM_TYPE_IQ4_NL: sq = 4548.0; break; /* nibbles uniform: the mean square of kvalues_iq4nl */
    case LOOM_TYPE_IQ4_XS: sq = uniform_sq(8, 15) * 4548.0; break; /* sub-block scales (ls - 32) in [8, 15] */
    case LOOM_TYPE_Q4_0: sq = uniform_sq(-7, 7); break;
    case LOOM_TYPE_Q4_1: sq = uniform_sq(0, 15) - 7.5 * 7.5; break;
    case LOOM_TYPE_Q5_0: sq = uniform_sq(-15, 15); break;
    case LOOM_TYPE_Q5_1: sq = uniform_sq(0, 31) - 15.5 * 15.5; break;
    case LOOM_TYPE_Q4_K: sq = uniform_sq(KSC_LO, KSC_HI) * (uniform_sq(0, 15) - 7.5 * 7.5); break;
    case LOOM_TYPE_Q5_K: sq = uniform_sq(KSC_LO, KSC_HI) * (uniform_sq(0, 31) - 15.5 * 15.5); break;
    case LOOM_TYPE_Q6_K: sq = uniform_sq(Q6SC_LO, Q6SC_HI) * uniform_sq(-31, 31); break;
    case LOOM_TYPE_Q3_K: sq = uniform_sq(Q3SC_LO, Q3SC_HI) * uniform_sq(-3, 3); break;
    case LOOM_TYPE_Q2_K: sq = uniform_sq(Q2SC_LO, Q2SC_HI) * (uniform_sq(0, 3) - 1.5 * 1.5); break;
    case LOOM_TYPE_MXFP4: { /* codes uniform: E[v^2] of the doubled E2M1 values = 34.25; the nearest power of two */
        const double e = floor(log2(g->std / sqrt(34.25)) + 0.5) + 128;
        g->d = (uint16_t)(e < 2 ? 2 : e > 254 ? 254 : e);
        return;
    }
    default: g->k = g->std / NORMAL_STD; return;
    }
    double d = g->std / sqrt(sq);
    g->d = loom_f32_to_f16((float)d);
    double dq = loom_f16_to_f32(g->d);
    switch (type) { /* the offset that centres q: m (Q4_1/Q5_1) or dmin (K) */
    case LOOM_TYPE_Q4_1: g->d2 = loom_f32_to_f16((float)(-7.5 * dq)); break;
    case LOOM_TYPE_Q5_1: g->d2 = loom_f32_to_f16((float)(-15.5 * dq)); break;
    case LOOM_TYPE_Q4_K: g->d2 = loom_f32_to_f16((float)(7.5 * dq)); break;
    case LOOM_TYPE_Q5_K: g->d2 = loom_f32_to_f16((float)(15.5 * dq)); break;
    case LOOM_TYPE_Q2_K: g->d2 = loom_f32_to_f16((float)(1.5 * dq)); break;
    default: break;
    }
}

/* Packs eight 6-bit scales and mins the way loom_q4k_scale_min reads them. */
static void pack_k_scales(uint8_t *q, const uint8_t *sc, const uint8_t *m) {
    memset(q, 0, 12);
    for (int j = 0; j < 4; j++) {
        q[j] = sc[j] & 63;
        q[j + 4] = m[j] & 63;
    }
    for (int j = 4; j < 8; j++) {
        q[j + 4] = (uint8_t)((sc[j] & 15) | ((m[j] & 15) << 4));
        q[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        q[j] |= (uint8_t)((m[j] >> 4) << 6);
    }
}

static void random_bytes(loom_synth_rng *r, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = rng_next(r);
        for (size_t k = 0; k < 8 && i + k < n; k++) p[i + k] = (uint8_t)(x >> (8 * k));
    }
}

/* One block of `type` at b (type_size bytes). */
static void gen_block(loom_synth_gen *g, loom_type type, uint8_t *b) {
    loom_synth_rng *r = &g->rng;
    uint8_t q[256];
    switch (type) {
    case LOOM_TYPE_Q8_0:
        put16(b, g->d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)rng_int(r, -127, 127);
        return;
    case LOOM_TYPE_Q4_0:
        put16(b, g->d);
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)rng_int(r, 1, 15);
        for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
        return;
    case LOOM_TYPE_Q4_1:
        put16(b, g->d), put16(b + 2, g->d2);
        random_bytes(r, b + 4, 16);
        return;
    case LOOM_TYPE_Q5_0: {
        put16(b, g->d);
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) {
            q[j] = (uint8_t)rng_int(r, 1, 31);
            qh |= (uint32_t)(q[j] >> 4) << j;
        }
        for (int k = 0; k < 4; k++) b[2 + k] = (uint8_t)(qh >> (8 * k));
        for (int j = 0; j < 16; j++) b[6 + j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
        return;
    }
    case LOOM_TYPE_Q5_1:
        put16(b, g->d), put16(b + 2, g->d2);
        random_bytes(r, b + 4, 20);
        return;
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K: {
        put16(b, g->d), put16(b + 2, g->d2);
        uint8_t sc[8];
        for (int j = 0; j < 8; j++) sc[j] = (uint8_t)rng_int(r, KSC_LO, KSC_HI);
        pack_k_scales(b + 4, sc, sc);
        random_bytes(r, b + 16, type == LOOM_TYPE_Q4_K ? 128 : 160); /* qs (Q5_K: qh then qs) */
        return;
    }
    case LOOM_TYPE_MXFP4:
        b[0] = (uint8_t)g->d;
        random_bytes(r, b + 1, 16);
        return;
    case LOOM_TYPE_IQ4_NL:
        put16(b, g->d);
        random_bytes(r, b + 2, 16);
        return;
    case LOOM_TYPE_IQ4_XS: { /* d, the scales' high 2 bits, their low 4 bits, the nibbles */
        put16(b, g->d);
        uint16_t hi = 0;
        memset(b + 4, 0, 4);
        for (int ib = 0; ib < 8; ib++) {
            const int ls = 32 + rng_int(r, 8, 15);
            hi |= (uint16_t)((ls >> 4) << 2 * ib);
            b[4 + ib / 2] |= (uint8_t)((ls & 0xF) << 4 * (ib % 2));
        }
        put16(b + 2, hi);
        random_bytes(r, b + 8, 128);
        return;
    }
    case LOOM_TYPE_Q2_K:
        for (int g = 0; g < 16; g++) { /* scale = min */
            const int s = rng_int(r, Q2SC_LO, Q2SC_HI);
            b[g] = (uint8_t)(s | s << 4);
        }
        random_bytes(r, b + 16, 64);
        put16(b + 80, g->d), put16(b + 82, g->d2);
        return;
    case LOOM_TYPE_Q3_K: { /* loom_q3k_scales and quant.h's layout, inverted */
        memset(b, 0, 108);
        for (int e = 0; e < 256; e++) {
            const int v = rng_int(r, 1, 7), n = e / 128, j = e % 128 / 32, l = e % 32;
            b[32 + 32 * n + l] |= (uint8_t)((v & 3) << (2 * j));
            b[l] |= (uint8_t)((v >> 2) << (4 * n + j));
        }
        for (int g = 0; g < 16; g++) {
            const int s = rng_int(r, Q3SC_LO, Q3SC_HI) + 32;
            b[96 + (g & 7)] |= (uint8_t)((s & 15) << (g < 8 ? 0 : 4));
            b[96 + 8 + g % 4] |= (uint8_t)((s >> 4) << (2 * (g / 4)));
        }
        put16(b + 108, g->d);
        return;
    }
    case LOOM_TYPE_Q6_K: {
        uint8_t *ql = b, *qh = b + 128;
        int8_t *scales = (int8_t *)(b + 192);
        for (int j = 0; j < 256; j++) q[j] = (uint8_t)rng_int(r, 1, 63);
        for (int h = 0; h < 2; h++) {
            const uint8_t *e = q + 128 * h;
            uint8_t *L = ql + 64 * h, *H = qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                L[l] = (uint8_t)((e[l] & 15) | ((e[l + 64] & 15) << 4));
                L[l + 32] = (uint8_t)((e[l + 32] & 15) | ((e[l + 96] & 15) << 4));
                H[l] = (uint8_t)((e[l] >> 4) | ((e[l + 32] >> 4) << 2) | ((e[l + 64] >> 4) << 4) |
                                 ((e[l + 96] >> 4) << 6));
            }
        }
        for (int j = 0; j < 16; j++) scales[j] = (int8_t)rng_int(r, Q6SC_LO, Q6SC_HI);
        put16(b + 208, g->d);
        return;
    }
    default: return;
    }
}

/* One float element: mean + std·(approximately normal). */
static float value(loom_synth_gen *g) {
    double x = rng_normal_int(&g->rng) * g->k;
    return (float)(g->mean != 0 ? g->mean + x : x);
}

loom_status loom_synth_fill(void *user, const loom_gguf_tensor *t, uint64_t offset, void *dst, size_t n) {
    loom_synth_gen *g = user;
    if (offset == 0) gen_start(g, t->type);
    uint8_t *p = dst;
    switch (t->type) {
    case LOOM_TYPE_F32:
        for (size_t i = 0; i < n / 4; i++) {
            float v = g->ones ? 1.0f : value(g);
            memcpy(p + 4 * i, &v, 4);
        }
        return NULL;
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16:
        for (size_t i = 0; i < n / 2; i++) {
            float v = g->ones ? 1.0f : value(g);
            put16(p + 2 * i, t->type == LOOM_TYPE_F16 ? loom_f32_to_f16(v) : loom_f32_to_bf16(v));
        }
        return NULL;
    default: {
        size_t bs = loom_type_info((uint32_t)t->type)->type_size;
        for (size_t i = 0; i < n; i += bs) gen_block(g, t->type, p + i);
        return NULL;
    }
    }
}

/* ---- vocabulary ---- */

loom_status loom_synth_vocab_count(const char *path, int64_t *n) {
    loom_gguf *g;
    LOOM_TRY(loom_gguf_open(path, &g));
    const loom_gguf_value *toks = loom_gguf_get_arr(g, "tokenizer.ggml.tokens", LOOM_GGUF_STRING);
    *n = toks ? (int64_t)toks->v.arr.n : 0;
    loom_gguf_free(g);
    return toks ? NULL : loom_error(LOOM_ERR_FORMAT, "%s has no tokenizer.ggml.tokens", path);
}

static loom_status vocab_copy(loom_gguf_writer *w, const char *path) {
    loom_gguf *g;
    LOOM_TRY(loom_gguf_open(path, &g));
    loom_status st = NULL;
    for (int64_t i = 0; i < loom_gguf_n_kv(g) && !st; i++) {
        const loom_gguf_kv *kv = loom_gguf_kv_at(g, i);
        if (!strncmp(kv->key, "tokenizer.", 10) && strcmp(kv->key, "tokenizer.ggml.token_type_count"))
            st = loom_gguf_writer_add_value(w, kv->key, &kv->value);
    }
    loom_gguf_free(g);
    return st;
}

loom_status loom_synth_vocab(loom_gguf_writer *w, int64_t n, const char *from) {
    if (from) return vocab_copy(w, from);
    /* <unk> <s> </s>, 256 byte tokens, then single characters, common
     * words, and generated letter strings (with and without the ▁ word
     * boundary), all distinct */
    static const char *const words[] = {
        "a",    "about", "after", "all",   "also", "an",    "and",   "are",   "as",    "at",    "be",   "because",
        "been", "but",   "by",    "can",   "come", "could", "day",   "do",    "even",  "first", "for",  "from",
        "get",  "give",  "go",    "good",  "have", "he",    "her",   "him",   "his",   "how",   "i",    "if",
        "in",   "into",  "is",    "it",    "its",  "just",  "know",  "like",  "look",  "make",  "man",  "me",
        "more", "most",  "my",    "new",   "no",   "not",   "now",   "of",    "on",    "one",   "only", "or",
        "other", "our",  "out",   "over",  "people", "say", "see",   "she",   "so",    "some",  "take", "than",
        "that", "the",   "their", "them",  "then", "there", "these", "they",  "think", "this",  "time", "to",
        "two",  "up",    "us",    "use",   "want", "was",   "way",   "we",    "well",  "what",  "when", "which",
        "who",  "will",  "with",  "work",  "would", "year", "you",   "your",
    };
    const int n_words = (int)(sizeof words / sizeof words[0]);
    const char *punct = ".,!?;:'\"()-0123456789";
    char **toks = calloc((size_t)n, sizeof *toks);
    float *scores = calloc((size_t)n, sizeof *scores);
    int32_t *types = calloc((size_t)n, sizeof *types);
    char *pool = malloc((size_t)n * 16);
    loom_status st = NULL;
    if (!toks || !scores || !types || !pool) {
        st = loom_error(LOOM_ERR_NOMEM, "out of memory for a %" PRId64 "-token vocabulary", n);
        goto out;
    }
    char *at = pool;
    int64_t i = 0;
#define PIECE(type, ...)                            \
    do {                                            \
        int len_ = sprintf(at, __VA_ARGS__);        \
        toks[i] = at;                               \
        types[i++] = type;                          \
        at += len_ + 1;                             \
    } while (0)
    PIECE(2, "<unk>");
    PIECE(3, "<s>");
    PIECE(3, "</s>");
    for (int b = 0; b < 256; b++) PIECE(6, "<0x%02X>", b);
    int64_t first = i;
    const char *space = "\xe2\x96\x81"; /* ▁ */
    if (i < n) PIECE(1, "%s", space);
    for (int c = 0; c < 26 && i < n; c++) PIECE(1, "%c", 'a' + c);
    for (int c = 0; c < 26 && i < n; c++) PIECE(1, "%s%c", space, 'a' + c);
    for (const char *c = punct; *c && i < n; c++) PIECE(1, "%c", *c);
    for (int k = 0; k < n_words && i < n; k++)
        if (words[k][1]) PIECE(1, "%s%s", space, words[k]); /* one-letter ones exist already */
    for (int k = 0; k < n_words && i < n; k++)
        if (words[k][1]) PIECE(1, "%s", words[k]);
    /* letter strings of length >= 2, shortest first, skipping the words */
    for (uint64_t k = 0; i < n; k++) {
        char s[16];
        int len = 2;
        uint64_t rest = k, count = 26 * 26;
        while (rest >= count) rest -= count, len++, count *= 26;
        for (int c = len - 1; c >= 0; c--) s[c] = (char)('a' + rest % 26), rest /= 26;
        s[len] = 0;
        bool known = false;
        for (int w2 = 0; w2 < n_words && !known; w2++) known = !strcmp(words[w2], s);
        if (known) continue;
        PIECE(1, "%s%s", space, s);
        if (i < n) PIECE(1, "%s", s);
    }
#undef PIECE
    for (int64_t k = first; k < n; k++) scores[k] = (float)-(k - first);
    if ((st = loom_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"))) goto out;
    if ((st = loom_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)n)))
        goto out;
    if ((st = loom_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LOOM_GGUF_F32, scores, (uint64_t)n))) goto out;
    if ((st = loom_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types, (uint64_t)n)))
        goto out;
    if ((st = loom_gguf_writer_add_uint(w, "tokenizer.ggml.unknown_token_id", LOOM_GGUF_U32, 0))) goto out;
    if ((st = loom_gguf_writer_add_uint(w, "tokenizer.ggml.bos_token_id", LOOM_GGUF_U32, 1))) goto out;
    if ((st = loom_gguf_writer_add_uint(w, "tokenizer.ggml.eos_token_id", LOOM_GGUF_U32, 2))) goto out;
    if ((st = loom_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true))) goto out;
    st = loom_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", false);
out:
    free(toks);
    free(scores);
    free(types);
    free(pool);
    return st;
}
