/*
 * launch/cmd_synth.c — `loom synth`: writes a random-weight model as GGUF.
 *
 * The file is a model of one of loom's families (llama, qwen2 here; qwen3,
 * gemma2, gemma3, phi3, gpt2, bert, nomic-bert in synth_families.c) with
 * llama.cpp's tensor names, shapes
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
 *   Q6_K  q-32 in [-31,31], sub-block scales in [16,63];
 *   Q3_K  q-4 in [-3,3], group scales (less 32) in [16,31];
 *   Q2_K  q over 0..3 with group scales sc in [8,15], mins m = sc and dmin =
 *         1.5*d, so x = d*sc*(q - 1.5);
 *   IQ4_NL  nibbles uniform over llama.cpp's grid, d = std / sqrt(4548)
 *           (the grid's mean square); IQ4_XS the same with sub-block
 *           scales (ls - 32) in [8, 15].
 *
 * Mixes follow llama.cpp's llama-quant.cpp for a dense llama/qwen2 model:
 *   Q4_K_M  everything Q4_K, except output.weight (and token_embd.weight when
 *           --tied) Q6_K, and attn_v / ffn_down Q6_K in the layers where
 *           use_more_bits(i, n) holds (i < n/8, i >= 7n/8, or (i - n/8) % 3
 *           == 2); with llama, 80 layers and GQA (llama.cpp's "70B") the
 *           remaining attn_v are Q5_K.
 *   Q5_K_M  the same with Q5_K as the base.
 *   Q2_K    (a mix, as llama.cpp's Q2_K file type) Q2_K, but output.weight
 *           (and a tied token_embd) Q6_K, attn_v Q4_K with 4 or more query
 *           heads per KV head and Q3_K otherwise, ffn_down and attn_output
 *           Q3_K.
 *   Q3_K_M  Q3_K, but output.weight (and a tied token_embd) Q6_K, attn_v
 *           Q5_K in layers 0-1 and Q4_K after, ffn_down Q5_K in the first
 *           n/16 layers and Q4_K after, attn_output Q4_K.
 *   MXFP4_MOE  the experts' tensors MXFP4 (E2M1 codes uniform, one E8M0
 *           exponent per tensor: the power of two nearest the std's
 *           scale), everything else Q8_0.
 * Plain types (F32 ... Q6_K, IQ4_NL, IQ4_XS) put every 2-D weight, output and token_embd
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
#include "launch/synth.h"
#include "runtime/model.h"
#include "runtime/gguf_write.h"
#include "runtime/quant.h"

/* ---- the model plan ---- */

typedef loom_synth_cfg synth_cfg;
typedef loom_synth_type type_choice;

static const type_choice type_choices[] = {
    {"F32", LOOM_TYPE_F32, false, 0},    {"F16", LOOM_TYPE_F16, false, 1},   {"BF16", LOOM_TYPE_BF16, false, 32},
    {"Q8_0", LOOM_TYPE_Q8_0, false, 7},  {"Q4_0", LOOM_TYPE_Q4_0, false, 2}, {"Q4_1", LOOM_TYPE_Q4_1, false, 3},
    {"Q5_0", LOOM_TYPE_Q5_0, false, 8},  {"Q5_1", LOOM_TYPE_Q5_1, false, 9}, {"Q4_K", LOOM_TYPE_Q4_K, false, 14},
    {"Q5_K", LOOM_TYPE_Q5_K, false, 16}, {"Q6_K", LOOM_TYPE_Q6_K, false, 18}, {"Q4_K_M", LOOM_TYPE_Q4_K, true, 15},
    {"Q5_K_M", LOOM_TYPE_Q5_K, true, 17}, {"MXFP4_MOE", LOOM_TYPE_MXFP4, true, 38},
    {"Q3_K", LOOM_TYPE_Q3_K, false, 11},  {"Q3_K_M", LOOM_TYPE_Q3_K, true, 12}, {"Q2_K", LOOM_TYPE_Q2_K, true, 10},
    {"IQ4_NL", LOOM_TYPE_IQ4_NL, false, 25}, {"IQ4_XS", LOOM_TYPE_IQ4_XS, false, 30},
};

static bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

loom_type loom_synth_weight_type(const synth_cfg *c, const type_choice *tc, loom_synth_kind kind, int64_t layer) {
    if (!tc->mix) return tc->base;
    if (tc->base == LOOM_TYPE_MXFP4) return LOOM_TYPE_Q8_0; /* MXFP4_MOE: all but the experts (synth_families.c) */
    if (kind == W_OUTPUT || (kind == W_EMBD && c->tied)) return LOOM_TYPE_Q6_K;
    if (tc->base == LOOM_TYPE_Q2_K) { /* llama.cpp's Q2_K mix */
        if (kind == W_V) return c->heads / c->kv_heads >= 4 ? LOOM_TYPE_Q4_K : LOOM_TYPE_Q3_K;
        if (kind == W_DOWN || kind == W_O) return LOOM_TYPE_Q3_K;
        return LOOM_TYPE_Q2_K;
    }
    if (tc->base == LOOM_TYPE_Q3_K) { /* Q3_K_M */
        if (kind == W_V) return layer < 2 ? LOOM_TYPE_Q5_K : LOOM_TYPE_Q4_K;
        if (kind == W_DOWN) return layer < c->layers / 16 ? LOOM_TYPE_Q5_K : LOOM_TYPE_Q4_K;
        if (kind == W_O) return LOOM_TYPE_Q4_K;
        return LOOM_TYPE_Q3_K;
    }
    if ((kind == W_V || kind == W_DOWN) && use_more_bits(layer, c->layers)) return LOOM_TYPE_Q6_K;
    bool is_70b = !strcmp(c->arch, "llama") && c->layers == 80 && c->heads != c->kv_heads;
    if (kind == W_V && is_70b && tc->base == LOOM_TYPE_Q4_K) return LOOM_TYPE_Q5_K;
    return tc->base;
}

typedef loom_synth_plan plan;
#define weight_type loom_synth_weight_type

loom_status loom_synth_tensor(plan *p, const char *name, loom_type type, uint32_t n_dims, int64_t ne0, int64_t ne1,
                              double std, bool ones, double mean) {
    return loom_synth_tensor3(p, name, type, n_dims, ne0, ne1, 1, std, ones, mean);
}

loom_status loom_synth_tensor3(plan *p, const char *name, loom_type type, uint32_t n_dims, int64_t ne0, int64_t ne1,
                               int64_t ne2, double std, bool ones, double mean) {
    const loom_type_traits *tt = loom_type_info((uint32_t)type);
    if (ne0 % tt->block_size)
        return loom_error(LOOM_ERR_INVALID,
                          "%s is %s, whose rows need a multiple of %u elements, but its ne[0] is %" PRId64
                          " (choose dims that are multiples of %u, or another --type)",
                          name, tt->name, tt->block_size, ne0, tt->block_size);
    if (p->n == p->cap) return loom_error(LOOM_ERR_INVALID, "internal: too many tensors");
    loom_synth_gen *g = &p->gens[p->n];
    p->names[p->n] = strdup(name);
    if (!p->names[p->n]) return loom_error(LOOM_ERR_NOMEM, "out of memory");
    g->name = p->names[p->n];
    g->std = std;
    g->ones = ones;
    g->mean = mean;
    uint64_t s = p->cfg->seed ^ loom_synth_fnv1a(name);
    g->seed = loom_synth_splitmix64(&s) ^ ((uint64_t)type << 56) ^ ((uint64_t)ne0 * 0x9e3779b97f4a7c15ull) ^ (uint64_t)ne1;
    if (ne2 > 1) g->seed ^= (uint64_t)ne2 << 40;
    int64_t ne[3] = {ne0, ne1, ne2};
    LOOM_TRY(loom_gguf_writer_add_tensor_fill(p->w, name, type, n_dims, ne, loom_synth_fill, g));
    p->n++;
    p->params += (uint64_t)ne0 * (uint64_t)(n_dims > 1 ? ne1 : 1) * (uint64_t)(n_dims > 2 ? ne2 : 1);
    return NULL;
}

static loom_status plan_tensor(plan *p, const char *name, loom_type type, uint32_t n_dims, int64_t ne0, int64_t ne1,
                               double std, bool ones) {
    return loom_synth_tensor(p, name, type, n_dims, ne0, ne1, std, ones, 0.0);
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
    if (c->rope_scale > 0 || c->yarn > 0) {
        LOOM_TRY(loom_gguf_writer_add_str(w, KEY("rope.scaling.type"), c->yarn > 0 ? "yarn" : "linear"));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("rope.scaling.factor"), LOOM_GGUF_F32, c->yarn > 0 ? c->yarn : c->rope_scale));
        if (c->yarn > 0)
            LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("rope.scaling.original_context_length"), LOOM_GGUF_U32,
                                               (uint64_t)c->yarn_orig));
    }
    LOOM_TRY(loom_gguf_writer_add_uint(w, KEY("vocab_size"), LOOM_GGUF_U32, (uint64_t)c->vocab));
    if (!strcmp(c->arch, "mistral3") && c->yarn > 0) { /* Ministral 3's keys; betas and a temperature scale (its is 0.1) that show */
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("rope.scaling.yarn_log_multiplier"), LOOM_GGUF_F32, 1.0));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("rope.scaling.yarn_beta_fast"), LOOM_GGUF_F32, 16.0));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("rope.scaling.yarn_beta_slow"), LOOM_GGUF_F32, 2.0));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("attention.temperature_scale"), LOOM_GGUF_F32, 0.4));
    }
    if (!strcmp(c->arch, "granite")) { /* Granite 3's scales (its 8B's; the scores' 1/head_dim, muP's) */
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("embedding_scale"), LOOM_GGUF_F32, 12.0));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("residual_scale"), LOOM_GGUF_F32, 0.22));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("attention.scale"), LOOM_GGUF_F32, 1.0 / (double)c->head_dim));
        LOOM_TRY(loom_gguf_writer_add_float(w, KEY("logit_scale"), LOOM_GGUF_F32, 8.0));
    }
#undef KEY
    return loom_synth_vocab(w, c->vocab, c->vocab_from);
}

static loom_status add_tensors(plan *p, const synth_cfg *c, const type_choice *tc) {
    char name[96];
    double s_dim = 1 / sqrt((double)c->dim), s_attn = 1 / sqrt((double)(c->heads * c->head_dim)),
           s_ffn = 1 / sqrt((double)c->ffn);
    int64_t q_out = c->heads * c->head_dim, kv_out = c->kv_heads * c->head_dim;
    bool qwen2 = !strcmp(c->arch, "qwen2");
    /* granite multiplies its input embedding by 12: so that the scaled branches still move the residual */
    const double s_embd = !strcmp(c->arch, "granite") ? 1.0 / 12 : 1.0;
    LOOM_TRY(plan_tensor(p, "token_embd.weight", weight_type(c, tc, W_EMBD, 0), 2, c->dim, c->vocab, s_embd, false));
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
    p.cap = 16 + (c->layers + c->nextn) * LOOM_SYNTH_TENSORS_PER_LAYER;
    p.gens = calloc((size_t)p.cap, sizeof *p.gens);
    p.names = calloc((size_t)p.cap, sizeof *p.names);
    loom_status st = NULL;
    if (!p.gens || !p.names) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) st = loom_gguf_writer_create(&p.w);
    bool family = loom_synth_is_family(c->arch) || c->experts; /* llama's mixture: written there */
    if (!st) st = family ? loom_synth_family_metadata(p.w, c, tc) : add_metadata(p.w, c, tc);
    if (!st) st = family ? loom_synth_family_tensors(&p, c, tc) : add_tensors(&p, c, tc);
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

/* ---- a LoRA adapter for a model (--lora-of) ---- */

/* Writes an adapter (runtime/lora.h) for the model file `model`: a
 * lora_a [cols, r] (std 1/sqrt(cols)) and lora_b [r, rows] (std
 * 0.5/sqrt(r)) of type `type` for each of its block matrices whose
 * projection is in `targets` (comma-separated, e.g. "attn_q,ffn_down"),
 * alpha `alpha` (0: no key). */
static loom_status synth_lora(const char *model, const char *out, int64_t r, double alpha, loom_type type,
                              const char *targets, uint64_t seed, uint64_t *params, uint64_t *bytes) {
    loom_gguf *g = NULL;
    LOOM_TRY(loom_gguf_open(model, &g));
    synth_cfg cfg = {.seed = seed};
    plan p = {.cfg = &cfg};
    p.cap = 2 * loom_gguf_n_tensors(g) + 2;
    p.gens = calloc((size_t)p.cap, sizeof *p.gens);
    p.names = calloc((size_t)p.cap, sizeof *p.names);
    loom_status st = p.gens && p.names ? loom_gguf_writer_create(&p.w) : loom_error(LOOM_ERR_NOMEM, "out of memory");
    char list[512]; /* ",targets,": a projection is wanted where ",NAME," occurs in it */
    snprintf(list, sizeof list, ",%s,", targets);
    loom_str arch = {0};
    if (!st && !loom_gguf_get_str(g, "general.architecture", &arch))
        st = loom_error(LOOM_ERR_FORMAT, "%s has no general.architecture", model);
    if (!st) st = loom_gguf_writer_add_strn(p.w, "general.architecture", arch.ptr, (size_t)arch.len);
    if (!st) st = loom_gguf_writer_add_str(p.w, "general.type", "adapter");
    if (!st) st = loom_gguf_writer_add_str(p.w, "adapter.type", "lora");
    if (!st && alpha != 0) st = loom_gguf_writer_add_float(p.w, "adapter.lora.alpha", LOOM_GGUF_F32, alpha);
    for (int64_t i = 0; i < loom_gguf_n_tensors(g) && !st; i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
        int layer, used = 0;
        char proj[32], name[160];
        if (t->n_dims != 2 || sscanf(t->name, "blk.%d.%31[a-z_].weight%n", &layer, proj, &used) != 2 ||
            used != (int)strlen(t->name))
            continue;
        char key[40];
        snprintf(key, sizeof key, ",%s,", proj);
        if (!strstr(list, key)) continue; /* not among --lora-targets */
        snprintf(name, sizeof name, "%s.lora_a", t->name);
        st = loom_synth_tensor(&p, name, type, 2, t->ne[0], r, 1.0 / sqrt((double)t->ne[0]), false, 0.0);
        snprintf(name, sizeof name, "%s.lora_b", t->name);
        if (!st) st = loom_synth_tensor(&p, name, type, 2, r, t->ne[1], 0.5 / sqrt((double)r), false, 0.0);
    }
    if (!st && p.n == 0) st = loom_error(LOOM_ERR_INVALID, "%s has no block matrix named by --lora-targets %s", model, targets);
    if (!st) st = loom_gguf_writer_write_path(p.w, out, 0);
    if (!st) *params = p.params, *bytes = loom_gguf_writer_file_size(p.w);
    loom_gguf_writer_free(p.w);
    for (int64_t i = 0; i < p.n; i++) free(p.names[i]);
    free(p.names);
    free(p.gens);
    loom_gguf_free(g);
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
    const char *out = NULL, *arch = "llama", *type = "F32", *vocab_from = NULL;
    int64_t layers = 2, dim = 256, heads = 4, kv_heads = 2, head_dim = 0, ffn = 512, vocab = 512, ctx = 2048,
            seed = 1;
    double rope_theta = 10000.0, norm_eps = 1e-5, attn_softcap = -1, final_softcap = -1, rope_scale = 0;
    int64_t rope_dim = 0, window = 0, window_pattern = 0, longrope_ctx = 0, experts = 0, experts_used = 2, shared = 0,
            yarn_orig = 0, dense_lead = -1, dense_ffn = 0, groups = 0, groups_used = 0, nextn = 0, kv_lora = 0, q_lora = 0,
            v_head_dim = 0;
    double yarn = 0, expert_scale = 1.0, yarn_mscale = 1.0;
    bool softmax_gating = false, legacy_kv_b = false;
    const char *pooling = NULL; /* bert: mean; a decoder: none written */
    bool tied = false, header_only = false;
    const char *lora_of = NULL, *lora_type = "F16",
               *lora_targets = "attn_q,attn_k,attn_v,attn_qkv,attn_output,ffn_gate,ffn_up,ffn_down";
    int64_t lora_rank = 8;
    double lora_alpha = 16;
    const loom_arg args[] = {
        {"--out", LOOM_ARG_STR, &out, "PATH", "output GGUF file (required)"},
        {"--arch", LOOM_ARG_STR, &arch, "NAME",
         "llama, smollm3 (llama without RoPE on every fourth layer), granite (llama with Granite 3's scales), ernie4_5, mistral3 "
         "(with --yarn: Ministral 3's YaRN keys and temperature tuning), qwen2 "
         "(Q/K/V biases), qwen2moe, qwen3, qwen3moe, gemma2, gemma3, phi3, gpt2, bert, nomic-bert, nomic-bert-moe or gpt-oss, "
         "glm4moe, deepseek2"},
        {"--layers", LOOM_ARG_INT, &layers, "N", "transformer blocks"},
        {"--dim", LOOM_ARG_INT, &dim, "N", "embedding width"},
        {"--heads", LOOM_ARG_INT, &heads, "N", "query heads"},
        {"--kv-heads", LOOM_ARG_INT, &kv_heads, "N", "key/value heads (divides --heads)"},
        {"--head-dim", LOOM_ARG_INT, &head_dim, "N", "width of a head; 0 means dim/heads"},
        {"--ffn", LOOM_ARG_INT, &ffn, "N", "MLP hidden width (of each expert with --experts)"},
        {"--experts", LOOM_ARG_INT, &experts, "N",
         "llama, qwen2moe, qwen3moe, gpt-oss, glm4moe, deepseek2: a mixture of N experts in every layer (nomic-bert-moe: "
         "in every odd one) (default 8 "
         "but llama's); 0: a dense MLP"},
        {"--experts-used", LOOM_ARG_INT, &experts_used, "K", "experts each token goes through (default 2)"},
        {"--shared-ffn", LOOM_ARG_INT, &shared, "N",
         "qwen2moe: the shared expert's width (default 4 x --ffn); glm4moe, deepseek2: the shared experts' (a multiple "
         "of --ffn, default --ffn)"},
        {"--dense-lead", LOOM_ARG_INT, &dense_lead, "N",
         "glm4moe, deepseek2: the first N layers have a dense MLP (default 1)"},
        {"--dense-ffn", LOOM_ARG_INT, &dense_ffn, "N", "glm4moe, deepseek2: their width (default --ffn x --experts-used)"},
        {"--expert-scale", LOOM_ARG_FLOAT, &expert_scale, "F", "glm4moe, deepseek2: the chosen experts' weights times F"},
        {"--expert-groups", LOOM_ARG_INT, &groups, "G",
         "glm4moe, deepseek2: experts in G groups, a token choosing among --groups-used of them (DeepSeek-V3's routing)"},
        {"--groups-used", LOOM_ARG_INT, &groups_used, "U", "with --expert-groups"},
        {"--nextn", LOOM_ARG_INT, &nextn, "N", "glm4moe: N multi-token-prediction blocks after the model's"},
        {"--kv-lora", LOOM_ARG_INT, &kv_lora, "N",
         "deepseek2: the latent's width (kv_lora_rank; default 4 x (--head-dim - --rope-dim))"},
        {"--q-lora", LOOM_ARG_INT, &q_lora, "N", "deepseek2: the queries' low rank (q_lora_rank); 0: attn_q (V2-Lite)"},
        {"--v-head-dim", LOOM_ARG_INT, &v_head_dim, "N", "deepseek2: a head's value width (default --head-dim - --rope-dim)"},
        {"--softmax-gating", LOOM_ARG_FLAG, &softmax_gating, NULL,
         "deepseek2: experts scored by the softmax (DeepSeek-V2) instead of sigmoids with a selection bias (V3)"},
        {"--yarn-mscale", LOOM_ARG_FLOAT, &yarn_mscale, "F", "deepseek2 with --yarn: mscale_all_dim (V3 1.0, V2 0.707)"},
        {"--legacy-kv-b", LOOM_ARG_FLAG, &legacy_kv_b, NULL,
         "deepseek2: attn_kv_b as conversions before April 2025 wrote it (no attn_k_b / attn_v_b)"},
        {"--vocab", LOOM_ARG_INT, &vocab, "N", "vocabulary size (>= 260)"},
        {"--vocab-from", LOOM_ARG_STR, &vocab_from, "GGUF",
         "this GGUF's tokenizer (its tokenizer.* keys) instead of a generated one; its token count is the "
         "vocabulary size"},
        {"--ctx", LOOM_ARG_INT, &ctx, "N", "training context length (metadata)"},
        {"--rope-theta", LOOM_ARG_FLOAT, &rope_theta, "F", "RoPE base frequency"},
        {"--norm-eps", LOOM_ARG_FLOAT, &norm_eps, "F", "RMSNorm epsilon"},
        {"--type", LOOM_ARG_STR, &type, "T",
         "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS, or the mixes Q2_K Q3_K_M Q4_K_M "
         "Q5_K_M MXFP4_MOE"},
        {"--tied", LOOM_ARG_FLAG, &tied, NULL, "no output.weight: the lm head is token_embd"},
        {"--seed", LOOM_ARG_INT, &seed, "N", "weights are a function of the seed and the tensor"},
        {"--rope-dim", LOOM_ARG_INT, &rope_dim, "N", "rotated dimensions per head (partial rotary); 0: all"},
        {"--window", LOOM_ARG_INT, &window, "N",
         "gemma, gpt-oss: sliding window (gemma2 default 4096, gemma3 none, gpt-oss 128)"},
        {"--window-pattern", LOOM_ARG_INT, &window_pattern, "N",
         "gemma: layer l slides iff l % N < N - 1; 0: the family's default (no key)"},
        {"--attn-softcap", LOOM_ARG_FLOAT, &attn_softcap, "F", "gemma2: attention score soft-cap"},
        {"--final-softcap", LOOM_ARG_FLOAT, &final_softcap, "F", "gemma: logit soft-cap"},
        {"--rope-scale", LOOM_ARG_FLOAT, &rope_scale, "F", "linear RoPE scaling factor (gemma3: global layers)"},
        {"--yarn", LOOM_ARG_FLOAT, &yarn, "F", "YaRN RoPE scaling by this factor (needs --yarn-orig)"},
        {"--yarn-orig", LOOM_ARG_INT, &yarn_orig, "N", "YaRN: the context length before the scaling"},
        {"--longrope-ctx", LOOM_ARG_INT, &longrope_ctx, "N",
         "phi3: LongRoPE factors with this original context length"},
        {"--pooling", LOOM_ARG_STR, &pooling, "P",
         "none, mean, cls, last or rank (a reranker: a classification head); bert's default mean; a decoder\n"
         "with one is an embedding model"},
        {"--header-only", LOOM_ARG_FLAG, &header_only, NULL,
         "write the header and extend the file sparsely to its full size (no weights on disk)"},
        {"--lora-of", LOOM_ARG_STR, &lora_of, "MODEL",
         "write a random LoRA adapter for this GGUF model instead of a model (the options below and --seed; the "
         "model's shape options are not used)"},
        {"--lora-rank", LOOM_ARG_INT, &lora_rank, "R", "with --lora-of: the adapter's rank"},
        {"--lora-alpha", LOOM_ARG_FLOAT, &lora_alpha, "A", "with --lora-of: adapter.lora.alpha (0: none written)"},
        {"--lora-type", LOOM_ARG_STR, &lora_type, "T", "with --lora-of: F32, F16, BF16 or Q8_0"},
        {"--lora-targets", LOOM_ARG_STR, &lora_targets, "LIST", "with --lora-of: the projections adapted"},
    };
    loom_args_result r = loom_args_parse(
        "synth --out PATH [options]",
        "Writes a random-weight model of one of loom's families with a small SentencePiece-style vocabulary, "
        "deterministically from --seed.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (r == LOOM_ARGS_HELP) return 0;
    if (r == LOOM_ARGS_ERROR) return 2;
    if (!out) return usage_error("--out PATH is required");
    if (lora_of) {
        loom_type lt = LOOM_TYPE_COUNT;
        for (size_t i = 0; i < 4; i++)
            if (!strcmp(lora_type, type_choices[i].name)) lt = type_choices[i].base;
        if (lt == LOOM_TYPE_COUNT) return usage_error("--lora-type %s: expected F32, F16, BF16 or Q8_0", lora_type);
        if (lora_rank < 1 || lora_rank > 1024) return usage_error("--lora-rank %" PRId64 ": expected 1..1024", lora_rank);
        if (seed < 0) return usage_error("--seed %" PRId64 ": expected >= 0", seed);
        uint64_t params = 0, bytes = 0;
        loom_status st = synth_lora(lora_of, out, lora_rank, lora_alpha, lt, lora_targets, (uint64_t)seed, &params, &bytes);
        if (st) {
            fprintf(stderr, "loom synth: %s\n", loom_status_message(st));
            loom_status_free(st);
            return 1;
        }
        printf("%s: LoRA adapter of rank %" PRId64 " for %s, %.2fM parameters, %" PRIu64 " bytes\n", out, lora_rank,
               lora_of, params / 1e6, bytes);
        return 0;
    }
    /* written here (add_metadata, add_tensors); the other families in synth_families.c */
    static const char *const plain[] = {"llama", "smollm3", "granite", "ernie4_5", "mistral3", "qwen2"};
    bool known = loom_synth_is_family(arch);
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) known = known || !strcmp(arch, plain[i]);
    if (!known)
        return usage_error("--arch %s: expected llama, smollm3, granite, ernie4_5, mistral3, qwen2, qwen2moe, qwen3, qwen3moe, "
                           "gemma2, gemma3, phi3, gpt2, bert, nomic-bert, nomic-bert-moe, gpt-oss, glm4moe or deepseek2", arch);
    const bool qwen2moe = !strcmp(arch, "qwen2moe"), oss = !strcmp(arch, "gpt-oss"), glm = !strcmp(arch, "glm4moe");
    const bool ds = !strcmp(arch, "deepseek2"), v3 = glm || ds; /* DeepSeek-V3-style mixtures */
    const bool nomic_moe = !strcmp(arch, "nomic-bert-moe");
    if ((qwen2moe || oss || v3 || nomic_moe || !strcmp(arch, "qwen3moe")) && !experts) experts = 8;
    if (oss && !window) window = 128;
    if (experts && strcmp(arch, "llama") && strcmp(arch, "qwen3moe") && !qwen2moe && !oss && !v3 && !nomic_moe)
        return usage_error("--experts: only llama, qwen2moe, qwen3moe, gpt-oss, glm4moe, deepseek2 and nomic-bert-moe models "
                           "here have mixtures of experts");
    if (!v3 && (dense_lead >= 0 || dense_ffn || groups || groups_used || expert_scale != 1.0))
        return usage_error("--dense-lead, --dense-ffn, --expert-scale, --expert-groups and --groups-used are glm4moe's "
                           "and deepseek2's");
    if (!glm && nextn) return usage_error("--nextn is glm4moe's");
    if (!ds && (kv_lora || q_lora || v_head_dim || softmax_gating || yarn_mscale != 1.0 || legacy_kv_b))
        return usage_error("--kv-lora, --q-lora, --v-head-dim, --softmax-gating, --yarn-mscale and --legacy-kv-b are "
                           "deepseek2's");
    if (v3) {
        if (dense_lead < 0) dense_lead = 1;
        if (!dense_ffn) dense_ffn = ffn * experts_used;
        if (!shared) shared = ffn;
        if (dense_lead > layers || dense_ffn < 1 || dense_ffn > (1 << 22) || shared % ffn || nextn < 0 || nextn > 4 ||
            !(expert_scale > 0) || groups < 0 || (groups > 1 && (experts % groups || groups_used < 1 ||
                                                                  groups_used >= groups ||
                                                                  groups_used * (experts / groups) < experts_used)))
            return usage_error("glm4moe, deepseek2: --dense-lead 0..--layers, --dense-ffn > 0, --shared-ffn a multiple of --ffn, "
                               "--nextn 0..4, --expert-scale > 0, and --expert-groups G dividing --experts with "
                               "--groups-used U < G holding at least --experts-used experts");
    }
    if (yarn < 0 || (yarn > 0) != (yarn_orig > 0) || yarn_orig < 0 || yarn_orig > (1 << 24))
        return usage_error("--yarn F --yarn-orig N: both or neither, F > 0, N from 1 to %d", 1 << 24);
    if (yarn > 0 && (rope_scale > 0 || longrope_ctx > 0))
        return usage_error("--yarn: one RoPE scaling at a time (not with --rope-scale or --longrope-ctx)");
    if (!strcasecmp(type, "MXFP4_MOE") && !experts)
        return usage_error("--type MXFP4_MOE: puts a mixture's experts in MXFP4; this model has none (--experts N)");
    if (shared && !qwen2moe && !v3)
        return usage_error("--shared-ffn: only qwen2moe, glm4moe and deepseek2 models here have a shared expert");
    if (qwen2moe && !shared) shared = 4 * ffn;
    if (shared < 0 || shared > (1 << 22)) return usage_error("--shared-ffn %" PRId64 " is out of range", shared);
    if (experts < 0 || experts > LOOM_MAX_EXPERTS || (experts && (experts_used < 1 || experts_used > experts)))
        return usage_error("--experts %" PRId64 " --experts-used %" PRId64 ": expected 1 to %d experts, of which 1 "
                           "to all are used", experts, experts_used, LOOM_MAX_EXPERTS);
    static const char *const pools[] = {"none", "mean", "cls", "last", "rank"};
    int64_t pool = -1;
    for (int i = 0; pooling && i < 5; i++)
        if (!strcmp(pooling, pools[i])) pool = i;
    if (pooling && pool < 0) return usage_error("--pooling %s: expected none, mean, cls, last or rank", pooling);
    const type_choice *tc = NULL;
    for (size_t i = 0; i < sizeof type_choices / sizeof type_choices[0]; i++)
        if (!strcasecmp(type, type_choices[i].name)) tc = &type_choices[i];
    if (!tc)
        return usage_error("--type %s: expected one of F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q3_K Q4_K Q5_K Q6_K "
                           "IQ4_NL IQ4_XS Q2_K Q3_K_M Q4_K_M Q5_K_M MXFP4_MOE", type);
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
    bool square = !strcmp(arch, "qwen2") || qwen2moe || !strcmp(arch, "phi3") || !strcmp(arch, "gpt2") || !strcmp(arch, "bert") ||
                  !strcmp(arch, "nomic-bert") || nomic_moe;
    if (square && heads * head_dim != dim)
        return usage_error("--arch %s: llama.cpp's %s needs heads * head_dim (%" PRId64 ") == dim (%" PRId64 ")", arch,
                           arch, heads * head_dim, dim);
    if (rope_dim < 0 || rope_dim > head_dim || rope_dim % 2)
        return usage_error("--rope-dim %" PRId64 ": expected an even number up to the head width %" PRId64, rope_dim,
                           head_dim);
    if (ds) { /* MLA: the key's nope part, the latent, the value */
        if (!rope_dim) rope_dim = head_dim / 3 / 2 * 2;
        if (!kv_lora) kv_lora = 4 * (head_dim - rope_dim);
        if (!v_head_dim) v_head_dim = head_dim - rope_dim;
        if (rope_dim < 2 || rope_dim >= head_dim || kv_lora < 1 || kv_lora > (1 << 16) || kv_lora % 8 || q_lora < 0 ||
            q_lora > (1 << 16) || v_head_dim < 1 || v_head_dim > 4096 || v_head_dim % 8 || !(yarn_mscale > 0))
            return usage_error("deepseek2: --rope-dim below --head-dim, --kv-lora and --v-head-dim positive multiples "
                               "of 8, --q-lora >= 0, --yarn-mscale > 0");
    }
    if (window < 0 || window_pattern < 0 || longrope_ctx < 0 || rope_scale < 0)
        return usage_error("--window, --window-pattern, --longrope-ctx and --rope-scale must not be negative");
    if (seed < 0) return usage_error("--seed %" PRId64 ": expected >= 0", seed);
    /* every 2-D weight's row (ne[0]) is dim, heads*head_dim or ffn */
    uint32_t block = loom_type_info((uint32_t)tc->base)->block_size;
    if (tc->mix && tc->base != LOOM_TYPE_MXFP4 && block < 256) block = 256;
    const struct {
        const char *what;
        int64_t v;
    } rows[] = {{"--dim", dim}, {"--ffn", ffn}, {"--heads x --head-dim", ds ? 0 : heads * head_dim},
                {"--shared-ffn", shared}, {"--dense-ffn", dense_ffn}, {"--kv-lora", kv_lora}, {"--q-lora", q_lora},
                {"--heads x --v-head-dim", heads * v_head_dim}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].v % block)
            return usage_error("--type %s stores rows in blocks of %u, so %s must be a multiple of %u (it is %" PRId64
                               ")",
                               tc->name, block, rows[i].what, block, rows[i].v);

    if (vocab_from) {
        loom_status vs = loom_synth_vocab_count(vocab_from, &vocab);
        if (vs) {
            fprintf(stderr, "loom synth: --vocab-from: %s\n", loom_status_message(vs));
            loom_status_free(vs);
            return 1;
        }
        if (vocab < 1 || vocab > 1 << 24)
            return usage_error("--vocab-from %s: %" PRId64 " tokens, expected 1 .. 2^24", vocab_from, vocab);
    }
    synth_cfg c = {.arch = arch, .vocab_from = vocab_from, .layers = layers, .dim = dim, .heads = heads, .kv_heads = kv_heads,
                   .head_dim = head_dim, .ffn = ffn, .vocab = vocab, .ctx = ctx, .rope_theta = rope_theta,
                   .norm_eps = norm_eps, .tied = tied, .header_only = header_only, .seed = (uint64_t)seed,
                   .rope_dim = rope_dim, .window = window, .window_pattern = window_pattern,
                   .attn_softcap = attn_softcap, .final_softcap = final_softcap, .rope_scale = rope_scale,
                   .longrope_ctx = longrope_ctx, .pooling = pool, .experts = experts,
                   .experts_used = experts ? experts_used : 0, .shared_ffn = shared, .yarn = yarn,
                   .yarn_orig = yarn_orig, .dense_lead = v3 ? dense_lead : 0, .dense_ffn = dense_ffn,
                   .groups = groups > 1 ? groups : 0, .groups_used = groups > 1 ? groups_used : 0, .nextn = nextn,
                   .expert_scale = expert_scale, .kv_lora = kv_lora, .q_lora = q_lora, .v_head_dim = v_head_dim,
                   .softmax_gating = softmax_gating, .yarn_mscale = yarn_mscale, .legacy_kv_b = legacy_kv_b};
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
