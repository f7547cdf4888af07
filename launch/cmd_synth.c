/*
 * launch/cmd_synth.c — `loom synth`: writes a random-weight model as GGUF.
 *
 * The file is a llama or qwen2 model with llama.cpp's tensor names, shapes
 * and metadata and a small SentencePiece-style vocabulary, so llama.cpp and
 * loom both load it. Weights are deterministic in (--seed, tensor name,
 * shape, type): the same arguments give the same bytes on every machine
 * (own PRNG, integer-only randomness, one float multiply per value, F16/BF16
 * by bit manipulation), and a tensor does not change when other tensors do
 * (a model with more layers starts with the same layers).
 *
 * Scale: embeddings have std ~1; each projection has std ~1/sqrt(fan_in)
 * (fan_in = ne[0]); norm weights are 1; qwen2 Q/K/V biases have std 0.05.
 * Quantized tensors are random blocks with a per-tensor scale d chosen so
 * that the dequantized values have that std and mean 0:
 *   Q8_0  q in [-127,127];  Q4_0 q-8 in [-7,7];  Q5_0 q-16 in [-15,15];
 *   Q4_1/Q5_1  q over its full range with m = -(qmax/2)*d;
 *   Q4_K/Q5_K  per-sub-block scales sc in [16,47], mins m = sc, dmin =
 *              (qmax/2)*d, so x = d*sc*(q - qmax/2);
 *   Q6_K  q-32 in [-31,31], sub-block scales in [16,63].
 *
 * Mixes follow llama.cpp's llama-quant.cpp for a dense llama/qwen2 model:
 *   Q4_K_M  everything Q4_K, except output.weight (and token_embd.weight when
 *           --tied) Q6_K, and attn_v / ffn_down Q6_K in the layers where
 *           use_more_bits(i, n) holds (i < n/8, i >= 7n/8, or (i - n/8) % 3
 *           == 2); with llama, 80 layers and GQA (llama.cpp's "70B") the
 *           remaining attn_v are Q5_K.
 *   Q5_K_M  the same with Q5_K as the base.
 * Plain types (F32 ... Q6_K) put every 2-D weight, output and token_embd
 * included, in that type. 1-D tensors (norms, biases) are always F32.
 *
 * --header-only writes only the header and extends the file with ftruncate:
 * a sparse file of the full size, for planning tests on huge shapes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "runtime/gguf_write.h"
#include "runtime/quant.h"

/* ---- deterministic randomness ---- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t s[4];
} xoshiro;

static void rng_seed(xoshiro *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(xoshiro *r) { /* xoshiro256** */
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform integer in [lo, hi]. */
static int rng_int(xoshiro *r, int lo, int hi) {
    uint64_t span = (uint64_t)(hi - lo + 1);
    return lo + (int)(((rng_next(r) >> 32) * span) >> 32);
}

/* Approximately normal: the sum of four 16-bit uniforms, centred, as an
 * exact integer with std 65536/sqrt(3). */
#define NORMAL_STD 37837.22649 /* 65536 / sqrt(3) */
static int32_t rng_normal_int(xoshiro *r) {
    uint64_t x = rng_next(r);
    int32_t s = (int32_t)(x & 0xffff) + (int32_t)((x >> 16) & 0xffff) + (int32_t)((x >> 32) & 0xffff) +
                (int32_t)(x >> 48);
    return s - 2 * 65535;
}

static uint64_t fnv1a(const char *s) {
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

typedef struct {
    const char *name; /* owned by the synth plan */
    double std;       /* 0 with ones: all elements 1.0 */
    bool ones;
    uint64_t seed;
    xoshiro rng;
    double k;         /* per-element multiplier (float types) */
    uint16_t d, d2;   /* f16 scale(s) (quantized types) */
} tensor_gen;

/* Sets up the per-tensor constants for `type` (called at offset 0). */
static void gen_start(tensor_gen *g, loom_type type) {
    rng_seed(&g->rng, g->seed);
    double sq = 1; /* E[(integer part)^2] of one value */
    switch (type) {
    case LOOM_TYPE_Q8_0: sq = uniform_sq(-127, 127); break;
    case LOOM_TYPE_Q4_0: sq = uniform_sq(-7, 7); break;
    case LOOM_TYPE_Q4_1: sq = uniform_sq(0, 15) - 7.5 * 7.5; break;
    case LOOM_TYPE_Q5_0: sq = uniform_sq(-15, 15); break;
    case LOOM_TYPE_Q5_1: sq = uniform_sq(0, 31) - 15.5 * 15.5; break;
    case LOOM_TYPE_Q4_K: sq = uniform_sq(KSC_LO, KSC_HI) * (uniform_sq(0, 15) - 7.5 * 7.5); break;
    case LOOM_TYPE_Q5_K: sq = uniform_sq(KSC_LO, KSC_HI) * (uniform_sq(0, 31) - 15.5 * 15.5); break;
    case LOOM_TYPE_Q6_K: sq = uniform_sq(Q6SC_LO, Q6SC_HI) * uniform_sq(-31, 31); break;
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

static void random_bytes(xoshiro *r, uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = rng_next(r);
        for (size_t k = 0; k < 8 && i + k < n; k++) p[i + k] = (uint8_t)(x >> (8 * k));
    }
}

/* One block of `type` at b (type_size bytes). */
static void gen_block(tensor_gen *g, loom_type type, uint8_t *b) {
    xoshiro *r = &g->rng;
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

static loom_status gen_fill(void *user, const loom_gguf_tensor *t, uint64_t offset, void *dst, size_t n) {
    tensor_gen *g = user;
    if (offset == 0) gen_start(g, t->type);
    uint8_t *p = dst;
    switch (t->type) {
    case LOOM_TYPE_F32:
        for (size_t i = 0; i < n / 4; i++) {
            float v = g->ones ? 1.0f : (float)(rng_normal_int(&g->rng) * g->k);
            memcpy(p + 4 * i, &v, 4);
        }
        return NULL;
    case LOOM_TYPE_F16:
    case LOOM_TYPE_BF16:
        for (size_t i = 0; i < n / 2; i++) {
            float v = g->ones ? 1.0f : (float)(rng_normal_int(&g->rng) * g->k);
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

/* ---- the model plan ---- */

typedef struct {
    const char *arch; /* "llama" | "qwen2" */
    int64_t layers, dim, heads, kv_heads, head_dim, ffn, vocab, ctx;
    double rope_theta, norm_eps;
    bool tied, header_only;
    uint64_t seed;
} synth_cfg;

typedef struct {
    const char *name; /* "Q4_K_M" */
    loom_type base;   /* the plain type, or the mix's base */
    bool mix;
    uint32_t ftype;   /* llama_ftype for general.file_type */
} type_choice;

static const type_choice type_choices[] = {
    {"F32", LOOM_TYPE_F32, false, 0},    {"F16", LOOM_TYPE_F16, false, 1},   {"BF16", LOOM_TYPE_BF16, false, 32},
    {"Q8_0", LOOM_TYPE_Q8_0, false, 7},  {"Q4_0", LOOM_TYPE_Q4_0, false, 2}, {"Q4_1", LOOM_TYPE_Q4_1, false, 3},
    {"Q5_0", LOOM_TYPE_Q5_0, false, 8},  {"Q5_1", LOOM_TYPE_Q5_1, false, 9}, {"Q4_K", LOOM_TYPE_Q4_K, false, 14},
    {"Q5_K", LOOM_TYPE_Q5_K, false, 16}, {"Q6_K", LOOM_TYPE_Q6_K, false, 18}, {"Q4_K_M", LOOM_TYPE_Q4_K, true, 15},
    {"Q5_K_M", LOOM_TYPE_Q5_K, true, 17},
};

static bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

typedef enum { W_EMBD, W_OUTPUT, W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN } weight_kind;

static loom_type weight_type(const synth_cfg *c, const type_choice *tc, weight_kind kind, int64_t layer) {
    if (!tc->mix) return tc->base;
    if (kind == W_OUTPUT || (kind == W_EMBD && c->tied)) return LOOM_TYPE_Q6_K;
    if ((kind == W_V || kind == W_DOWN) && use_more_bits(layer, c->layers)) return LOOM_TYPE_Q6_K;
    bool is_70b = !strcmp(c->arch, "llama") && c->layers == 80 && c->heads != c->kv_heads;
    if (kind == W_V && is_70b && tc->base == LOOM_TYPE_Q4_K) return LOOM_TYPE_Q5_K;
    return tc->base;
}

typedef struct {
    loom_gguf_writer *w;
    tensor_gen *gens; /* (cap) */
    char **names;
    int64_t n, cap;
    uint64_t params;
    const synth_cfg *cfg;
} plan;

static loom_status plan_tensor(plan *p, const char *name, loom_type type, uint32_t n_dims, int64_t ne0, int64_t ne1,
                               double std, bool ones) {
    const loom_type_traits *tt = loom_type_info((uint32_t)type);
    if (ne0 % tt->block_size)
        return loom_error(LOOM_ERR_INVALID,
                          "%s is %s, whose rows need a multiple of %u elements, but its ne[0] is %" PRId64
                          " (choose dims that are multiples of %u, or another --type)",
                          name, tt->name, tt->block_size, ne0, tt->block_size);
    if (p->n == p->cap) return loom_error(LOOM_ERR_INVALID, "internal: too many tensors");
    tensor_gen *g = &p->gens[p->n];
    p->names[p->n] = strdup(name);
    if (!p->names[p->n]) return loom_error(LOOM_ERR_NOMEM, "out of memory");
    g->name = p->names[p->n];
    g->std = std;
    g->ones = ones;
    uint64_t s = p->cfg->seed ^ fnv1a(name);
    g->seed = splitmix64(&s) ^ ((uint64_t)type << 56) ^ ((uint64_t)ne0 * 0x9e3779b97f4a7c15ull) ^ (uint64_t)ne1;
    int64_t ne[2] = {ne0, ne1};
    LOOM_TRY(loom_gguf_writer_add_tensor_fill(p->w, name, type, n_dims, ne, gen_fill, g));
    p->n++;
    p->params += (uint64_t)ne0 * (uint64_t)(n_dims > 1 ? ne1 : 1);
    return NULL;
}

static loom_status add_vocab(loom_gguf_writer *w, int64_t n) {
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

static loom_status add_metadata(loom_gguf_writer *w, const synth_cfg *c, const type_choice *tc) {
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, c->arch), key)
    LOOM_TRY(loom_gguf_writer_add_str(w, "general.architecture", c->arch));
    LOOM_TRY(loom_gguf_writer_add_str(w, "general.name", "loom-synth"));
    LOOM_TRY(loom_gguf_writer_add_uint(w, "general.file_type", LOOM_GGUF_U32, tc->ftype));
    LOOM_TRY(loom_gguf_writer_add_uint(w, "general.quantization_version", LOOM_GGUF_U32, 2));
    LOOM_TRY(loom_gguf_writer_add_uint(w, "general.seed", LOOM_GGUF_U64, c->seed)); /* informational */
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("block_count"), LOOM_GGUF_U32, (uint64_t)c->layers));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("context_length"), LOOM_GGUF_U32, (uint64_t)c->ctx));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("embedding_length"), LOOM_GGUF_U32, (uint64_t)c->dim));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("feed_forward_length"), LOOM_GGUF_U32, (uint64_t)c->ffn));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("attention.head_count"), LOOM_GGUF_U32, (uint64_t)c->heads));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("attention.head_count_kv"), LOOM_GGUF_U32, (uint64_t)c->kv_heads));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("attention.key_length"), LOOM_GGUF_U32, (uint64_t)c->head_dim));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("attention.value_length"), LOOM_GGUF_U32, (uint64_t)c->head_dim));
    LOOM_TRY(loom_gguf_writer_add_float(w, KEY("rope.freq_base"), LOOM_GGUF_F32, c->rope_theta));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("rope.dimension_count"), LOOM_GGUF_U32, (uint64_t)c->head_dim));
    LOOM_TRY(loom_gguf_writer_add_float(w, KEY("attention.layer_norm_rms_epsilon"), LOOM_GGUF_F32, c->norm_eps));
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("vocab_size"), LOOM_GGUF_U32, (uint64_t)c->vocab));
#undef KEY
    return add_vocab(w, c->vocab);
}

static loom_status add_tensors(plan *p, const synth_cfg *c, const type_choice *tc) {
    char name[96];
    double s_dim = 1 / sqrt((double)c->dim), s_attn = 1 / sqrt((double)(c->heads * c->head_dim)),
           s_ffn = 1 / sqrt((double)c->ffn);
    int64_t q_out = c->heads * c->head_dim, kv_out = c->kv_heads * c->head_dim;
    bool qwen2 = !strcmp(c->arch, "qwen2");
    LOOM_TRY(plan_tensor(p, "token_embd.weight", weight_type(c, tc, W_EMBD, 0), 2, c->dim, c->vocab, 1.0, false));
    for (int64_t l = 0; l < c->layers; l++) {
#define T(suffix, kind, ne0, ne1, std)                                                                       \
    do {                                                                                                      \
        snprintf(name, sizeof name, "blk.%" PRId64 "." suffix, l);                                            \
        LOOM_TRY(plan_tensor(p, name, weight_type(c, tc, kind, l), 2, ne0, ne1, std, false));                 \
    } while (0)
#define V1(suffix, ne0, std, ones)                                                                            \
    do {                                                                                                      \
        snprintf(name, sizeof name, "blk.%" PRId64 "." suffix, l);                                            \
        LOOM_TRY(plan_tensor(p, name, LOOM_TYPE_F32, 1, ne0, 1, std, ones));                                  \
    } while (0)
        V1("attn_norm.weight", c->dim, 0, true);
        T("attn_q.weight", W_Q, c->dim, q_out, s_dim);
        T("attn_k.weight", W_K, c->dim, kv_out, s_dim);
        T("attn_v.weight", W_V, c->dim, kv_out, s_dim);
        if (qwen2) {
            V1("attn_q.bias", q_out, 0.05, false);
            V1("attn_k.bias", kv_out, 0.05, false);
            V1("attn_v.bias", kv_out, 0.05, false);
        }
        T("attn_output.weight", W_O, q_out, c->dim, s_attn);
        V1("ffn_norm.weight", c->dim, 0, true);
        T("ffn_gate.weight", W_GATE, c->dim, c->ffn, s_dim);
        T("ffn_up.weight", W_UP, c->dim, c->ffn, s_dim);
        T("ffn_down.weight", W_DOWN, c->ffn, c->dim, s_ffn);
#undef T
#undef V1
    }
    LOOM_TRY(plan_tensor(p, "output_norm.weight", LOOM_TYPE_F32, 1, c->dim, 1, 0, true));
    if (!c->tied)
        LOOM_TRY(plan_tensor(p, "output.weight", weight_type(c, tc, W_OUTPUT, 0), 2, c->dim, c->vocab, s_dim, false));
    return NULL;
}

static loom_status synth(const synth_cfg *c, const type_choice *tc, const char *out, uint64_t *params,
                         uint64_t *bytes) {
    plan p = {.cfg = c};
    p.cap = 3 + c->layers * 12;
    p.gens = calloc((size_t)p.cap, sizeof *p.gens);
    p.names = calloc((size_t)p.cap, sizeof *p.names);
    loom_status st = NULL;
    if (!p.gens || !p.names) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) st = loom_gguf_writer_create(&p.w);
    if (!st) st = add_metadata(p.w, c, tc);
    if (!st) st = add_tensors(&p, c, tc);
    if (!st) st = loom_gguf_writer_write_path(p.w, out, c->header_only ? LOOM_GGUF_WRITE_HEADER_ONLY : 0);
    if (!st) {
        *params = p.params;
        *bytes = loom_gguf_writer_file_size(p.w);
    }
    loom_gguf_writer_free(p.w);
    for (int64_t i = 0; i < p.n; i++) free(p.names[i]);
    free(p.names);
    free(p.gens);
    return st;
}

/* ---- the command ---- */

static int usage_error(const char *fmt, ...) LOOM_PRINTF(1, 2);
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loom synth: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 2;
}

int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *arch = "llama", *type = "F32";
    int64_t layers = 2, dim = 256, heads = 4, kv_heads = 2, head_dim = 0, ffn = 512, vocab = 512, ctx = 2048,
            seed = 1;
    double rope_theta = 10000.0, norm_eps = 1e-5;
    bool tied = false, header_only = false;
    const loom_arg args[] = {
        {"--out", LOOM_ARG_STR, &out, "PATH", "output GGUF file (required)"},
        {"--arch", LOOM_ARG_STR, &arch, "NAME", "llama or qwen2 (qwen2 adds Q/K/V biases)"},
        {"--layers", LOOM_ARG_INT, &layers, "N", "transformer blocks"},
        {"--dim", LOOM_ARG_INT, &dim, "N", "embedding width"},
        {"--heads", LOOM_ARG_INT, &heads, "N", "query heads"},
        {"--kv-heads", LOOM_ARG_INT, &kv_heads, "N", "key/value heads (divides --heads)"},
        {"--head-dim", LOOM_ARG_INT, &head_dim, "N", "width of a head; 0 means dim/heads"},
        {"--ffn", LOOM_ARG_INT, &ffn, "N", "MLP hidden width"},
        {"--vocab", LOOM_ARG_INT, &vocab, "N", "vocabulary size (>= 260)"},
        {"--ctx", LOOM_ARG_INT, &ctx, "N", "training context length (metadata)"},
        {"--rope-theta", LOOM_ARG_FLOAT, &rope_theta, "F", "RoPE base frequency"},
        {"--norm-eps", LOOM_ARG_FLOAT, &norm_eps, "F", "RMSNorm epsilon"},
        {"--type", LOOM_ARG_STR, &type, "T",
         "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K, or the mixes Q4_K_M Q5_K_M"},
        {"--tied", LOOM_ARG_FLAG, &tied, NULL, "no output.weight: the lm head is token_embd"},
        {"--seed", LOOM_ARG_INT, &seed, "N", "weights are a function of the seed and the tensor"},
        {"--header-only", LOOM_ARG_FLAG, &header_only, NULL,
         "write the header and extend the file sparsely to its full size (no weights on disk)"},
    };
    loom_args_result r = loom_args_parse(
        "synth --out PATH [options]",
        "Writes a random-weight llama/qwen2 model with a small SentencePiece-style vocabulary, "
        "deterministically from --seed.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (r == LOOM_ARGS_HELP) return 0;
    if (r == LOOM_ARGS_ERROR) return 2;
    if (!out) return usage_error("--out PATH is required");
    if (strcmp(arch, "llama") && strcmp(arch, "qwen2"))
        return usage_error("--arch %s: expected llama or qwen2", arch);
    const type_choice *tc = NULL;
    for (size_t i = 0; i < sizeof type_choices / sizeof type_choices[0]; i++)
        if (!strcasecmp(type, type_choices[i].name)) tc = &type_choices[i];
    if (!tc)
        return usage_error("--type %s: expected one of F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K "
                           "Q4_K_M Q5_K_M", type);
    const struct {
        const char *name;
        int64_t v, min, max;
    } ranges[] = {{"--layers", layers, 1, 4096},     {"--dim", dim, 1, 1 << 20},     {"--heads", heads, 1, 1 << 16},
                  {"--kv-heads", kv_heads, 1, 1 << 16}, {"--ffn", ffn, 1, 1 << 22},   {"--vocab", vocab, 260, 1 << 24},
                  {"--ctx", ctx, 1, 4294967295ll},      {"--head-dim", head_dim, 0, 1 << 16}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v < ranges[i].min || ranges[i].v > ranges[i].max)
            return usage_error("%s %" PRId64 " is out of range: expected %" PRId64 " to %" PRId64, ranges[i].name,
                               ranges[i].v, ranges[i].min, ranges[i].max);
    if (heads % kv_heads)
        return usage_error("--kv-heads %" PRId64 " must divide --heads %" PRId64, kv_heads, heads);
    if (!head_dim) {
        if (dim % heads)
            return usage_error("--dim %" PRId64 " is not a multiple of --heads %" PRId64 ": give --head-dim", dim,
                               heads);
        head_dim = dim / heads;
    }
    if (head_dim % 2) return usage_error("--head-dim %" PRId64 ": RoPE needs an even head width", head_dim);
    if (!strcmp(arch, "qwen2") && heads * head_dim != dim)
        return usage_error("--arch qwen2: llama.cpp's qwen2 needs heads * head_dim (%" PRId64 ") == dim (%" PRId64 ")",
                           heads * head_dim, dim);
    if (seed < 0) return usage_error("--seed %" PRId64 ": expected >= 0", seed);
    /* every 2-D weight's row (ne[0]) is dim, heads*head_dim or ffn */
    uint32_t block = loom_type_info((uint32_t)tc->base)->block_size;
    if (tc->mix && block < 256) block = 256;
    const struct {
        const char *what;
        int64_t v;
    } rows[] = {{"--dim", dim}, {"--ffn", ffn}, {"--heads x --head-dim", heads * head_dim}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].v % block)
            return usage_error("--type %s stores rows in blocks of %u, so %s must be a multiple of %u (it is %" PRId64
                               ")",
                               tc->name, block, rows[i].what, block, rows[i].v);

    synth_cfg c = {arch,       layers,   dim,  heads,       kv_heads, head_dim, ffn, vocab, ctx,
                   rope_theta, norm_eps, tied, header_only, (uint64_t)seed};
    uint64_t params = 0, bytes = 0;
    loom_status st = synth(&c, tc, out, &params, &bytes);
    if (st) {
        fprintf(stderr, "loom synth: %s\n", loom_status_message(st));
        loom_code code = loom_status_code(st);
        loom_status_free(st);
        return code == LOOM_ERR_INVALID ? 2 : 1;
    }
    printf("%s: %s %s, %" PRId64 " layers, %.2fM parameters, %" PRIu64 " bytes%s\n", out, arch, tc->name, layers,
           params / 1e6, bytes, header_only ? " (sparse, header only)" : "");
    return 0;
}
