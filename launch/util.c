#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/kernels.h"
#include "launch/launch_util.h"
#include "runtime/clock.h"
#include "runtime/kv_blocks.h"
#include "runtime/text/dry_breakers.h"


int loom_usage_error(const char *msg) {
    fprintf(stderr, "loom: %s (see --help)\n", msg);
    return 2;
}

/* loom_usage_error of "cmd: msg". */
static int usage_of(const char *cmd, const char *msg) {
    char line[256];
    snprintf(line, sizeof line, "%s: %s", cmd, msg);
    return loom_usage_error(line);
}

int loom_fail(const char *cmd, loom_status st) {
    /* a peer's failure is reported by the rank where it happened */
    if (loom_status_code(st) != LOOM_ERR_PEER) fprintf(stderr, "loom %s: %s\n", cmd, loom_status_message(st));
    loom_status_free(st);
    return 1;
}

loom_status loom_read_file(const char *path, loom_strbuf *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return loom_error(LOOM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char buf[1 << 16];
    size_t n;
    loom_status st = NULL;
    while (!st && (n = fread(buf, 1, sizeof buf, f)) > 0) st = loom_strbuf_append(out, buf, n);
    if (!st && ferror(f)) st = loom_error(LOOM_ERR_IO, "cannot read %s", path);
    if (!st && !out->data) st = loom_strbuf_append(out, "", 0);
    fclose(f);
    return st;
}

void loom_progress_init(loom_progress *p, const char *what) {
    p->what = what;
    p->t0 = loom_now_s();
    p->shown = 0;
    p->last_pct = -1;
}

void loom_progress_update(void *vp, double frac) {
    loom_progress *p = vp;
    if (!isatty(2) || loom_now_s() - p->t0 < 0.3) return;
    int pct = (int)(frac * 100 + 0.5);
    if (pct == p->last_pct) return;
    p->last_pct = pct;
    p->shown = 1;
    char bar[41];
    int fill = pct * 40 / 100;
    for (int i = 0; i < 40; i++) bar[i] = i < fill ? '#' : ' ';
    bar[40] = 0;
    fprintf(stderr, "\r%s [%s] %3d%%", p->what, bar, pct);
    fflush(stderr);
}

void loom_progress_done(loom_progress *p) {
    if (p->shown) fprintf(stderr, "\n");
}

int loom_parse_device(const char *cmd, const char *s, loom_device_kind *out) {
    loom_status st = loom_device_kind_parse(s, out);
    if (!st) return 0;
    fprintf(stderr, "loom %s: --device: %s\n", cmd, loom_status_message(st));
    loom_status_free(st);
    return 2;
}

int loom_parse_kv_type(const char *cmd, const char *s, loom_type *out) {
    static const struct {
        const char *name;
        loom_type t;
    } kinds[] = {{"f16", LOOM_TYPE_F16}, {"f32", LOOM_TYPE_F32}, {"q8_0", LOOM_TYPE_Q8_0}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcasecmp(s, kinds[i].name)) {
            *out = kinds[i].t;
            return 0;
        }
    fprintf(stderr, "loom %s: --kv-type %s: expected f16, f32 or q8_0\n", cmd, s);
    return 2;
}

loom_status loom_load_chat_template(const loom_gguf *g, const loom_tokenizer *tok, const char *path,
                                    loom_chat_template **out) {
    if (!path) return loom_chat_template_from_gguf(g, tok, out);
    loom_strbuf src = {0};
    loom_status st = loom_read_file(path, &src);
    if (!st) st = loom_chat_template_from_text(src.data, src.len, tok, out);
    loom_strbuf_free(&src);
    return st ? loom_error_wrap(st, "%s", path) : NULL;
}

int loom_grid_check(const char *cmd, int64_t tp, int64_t pp, double watchdog) {
    const char *bad = tp < 1 || pp < 1 || tp > 65536 || pp > 65536 ? "--tp and --pp must be >= 1"
                      : !(watchdog >= 0)                            ? "--watchdog-timeout must be >= 0"
                                                                    : NULL;
    return bad ? usage_of(cmd, bad) : 0;
}

loom_sampling_args loom_sampling_args_defaults(void) {
    const loom_sampling_params d = loom_sampling_defaults();
    return (loom_sampling_args){.temp = d.temperature, .top_p = d.top_p, .min_p = d.min_p, .rep = d.repeat_penalty,
                                .top_k = d.top_k, .seed = -1, .typical = d.typical_p, .top_n_sigma = -1,
                                .xtc_p = d.xtc_probability, .xtc_t = d.xtc_threshold, .dyn_range = d.dynatemp_range,
                                .dyn_exp = d.dynatemp_exponent, .dry_mult = d.dry_multiplier, .dry_base = d.dry_base,
                                .dry_allowed = d.dry_allowed_length, .dry_last_n = d.dry_penalty_last_n,
                                .miro_tau = d.mirostat_tau, .miro_eta = d.mirostat_eta};
}

int loom_sampling_from_args(const char *cmd, const loom_sampling_args *a, loom_sampling_params *sp) {
    if (a->top_k < 0 || a->top_k > (1 << 30)) return usage_of(cmd, "--top-k must be >= 0");
    *sp = loom_sampling_defaults();
    sp->temperature = (float)a->temp;
    sp->top_k = (int32_t)a->top_k;
    sp->top_p = (float)a->top_p;
    sp->min_p = (float)a->min_p;
    sp->repeat_penalty = (float)a->rep;
    if (a->dry_allowed < 0 || a->dry_allowed > (1 << 24) || a->dry_last_n < -1 || a->dry_last_n > INT32_MAX)
        return usage_of(cmd, "--dry-allowed-length must be >= 0 and --dry-penalty-last-n >= -1");
    sp->typical_p = (float)a->typical;
    sp->top_n_sigma = (float)a->top_n_sigma;
    sp->xtc_probability = (float)a->xtc_p;
    sp->xtc_threshold = (float)a->xtc_t;
    sp->dynatemp_range = (float)a->dyn_range;
    sp->dynatemp_exponent = (float)a->dyn_exp;
    sp->dry_multiplier = (float)a->dry_mult;
    sp->dry_base = (float)a->dry_base;
    sp->dry_allowed_length = (int32_t)a->dry_allowed;
    sp->dry_penalty_last_n = (int32_t)a->dry_last_n;
    if (a->mirostat < 0 || a->mirostat > 2) return usage_of(cmd, "--mirostat must be 0, 1 or 2");
    sp->mirostat = (int32_t)a->mirostat;
    sp->mirostat_tau = (float)a->miro_tau;
    sp->mirostat_eta = (float)a->miro_eta;
    if (sp->dry_multiplier != 0) sp->dry_breakers = loom_dry_default_breakers, sp->n_dry_breakers = LOOM_DRY_N_DEFAULT;
    sp->seed = a->seed < 0 ? (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16) : (uint64_t)a->seed;
    loom_status st = loom_sampling_check(sp);
    return st ? loom_fail(cmd, st) : 0;
}

loom_draft_args loom_draft_args_defaults(void) {
    return (loom_draft_args){.ngram_min = LOOM_DRAFT_MIN_NGRAM, .ngram_max = LOOM_DRAFT_MAX_NGRAM};
}

static int lora_usage(const char *cmd, const char *fmt, ...) LOOM_PRINTF(2, 3);
static int lora_usage(const char *cmd, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return usage_of(cmd, msg);
}

int loom_lora_options(const char *cmd, loom_lora_args *a, bool without_apply) {
    size_t used = 0;
    a->n = 0;
    for (int i = 0; i < a->given.n; i++) {
        const bool scaled = !strcmp(a->given.opt[i], "--lora-scaled");
        for (const char *p = a->given.v[i];;) { /* each item copied into buf, then split there */
            const char *end = strchr(p, ',');
            const size_t len = end ? (size_t)(end - p) : strlen(p);
            if (a->n == LOOM_LORA_MAX) return lora_usage(cmd, "at most %d LoRA adapters", LOOM_LORA_MAX);
            if (used + len + 1 > sizeof a->buf) return lora_usage(cmd, "the LoRA adapters' paths are too long");
            char *item = memcpy(a->buf + used, p, len);
            item[len] = '\0';
            used += len + 1;
            float scale = 1.0f;
            if (scaled) {
                char *colon = strrchr(item, ':'), *e = NULL;
                if (colon) scale = strtof(colon + 1, &e);
                if (!colon || e == colon + 1 || *e || !isfinite(scale))
                    return lora_usage(cmd, "--lora-scaled %s: expected FILE:SCALE[,FILE:SCALE...]", a->given.v[i]);
                *colon = '\0';
            }
            if (!*item) return lora_usage(cmd, "%s %s: an empty file name", a->given.opt[i], a->given.v[i]);
            a->spec[a->n++] = (loom_lora_spec){item, without_apply ? 0.0f : scale};
            if (!end) break;
            p = end + 1;
        }
    }
    return 0;
}

int loom_draft_options(const char *cmd, const loom_draft_args *a, loom_scheduler_options *o) {
    const char *bad = a->draft < 0 || a->draft > 64                              ? "--draft must be 0..64"
                      : a->ngram_min < 1 || a->ngram_min > 64                    ? "--draft-ngram-min must be 1..64"
                      : a->ngram_max < a->ngram_min || a->ngram_max > 64         ? "--draft-ngram-max must be --draft-ngram-min..64"
                      : !(a->p_min >= 0 && a->p_min <= 1)                        ? "--draft-p-min must be 0..1"
                      : a->model && !*a->model                                   ? "--draft-model needs a path"
                                                                                 : NULL;
    if (bad) return usage_of(cmd, bad);
    o->draft_max = (int)a->draft;
    o->draft_min_ngram = (int)a->ngram_min;
    o->draft_max_ngram = (int)a->ngram_max;
    return 0;
}

loom_status loom_draft_model_start(const loom_draft_args *a, loom_engine *e, const loom_gguf *target,
                                   loom_scheduler_options *o) {
    if (!a->model) return NULL;
    const loom_engine_options *eo = loom_engine_options_of(e);
    /* its cache holds as many positions as the target's pool (what the sequences can hold at once) */
    const loom_drafter_options d = {.max_seqs = eo->max_seqs,
                                    .ctx = eo->ctx_size,
                                    .kv_tokens = loom_kv_blocks_total(loom_engine_blocks(e)) * eo->block_tokens,
                                    .batch_rows = eo->batch_rows,
                                    .p_min = (float)a->p_min};
    /* what a draft pass costs: measured, unless LOOM_DRAFT_COST fixes it as a share of a decode step
     * (0: free, so even the model itself as its draft proposes: tests) */
    o->draft_cost = -1;
    const char *cost = getenv("LOOM_DRAFT_COST");
    if (cost) {
        char *end;
        o->draft_cost = strtod(cost, &end);
        if (end == cost || *end || !(o->draft_cost >= 0 && o->draft_cost <= 100))
            return loom_error(LOOM_ERR_INVALID, "LOOM_DRAFT_COST=%s: expected a share of a decode step, 0..100", cost);
    }
    LOOM_TRY(loom_drafter_create(a->model, target, loom_engine_pool(e), &d, &o->drafter));
    fprintf(stderr, "draft model %s on the coordinator: weights %.1f MiB, KV cache up to %.1f MiB; up to %d proposals a step\n",
            a->model, (double)loom_drafter_weight_bytes(o->drafter) / (1 << 20),
            (double)loom_drafter_kv_bytes(o->drafter) / (1 << 20), o->draft_max ? o->draft_max : LOOM_DRAFT_MODEL_MAX);
    return NULL;
}

void loom_print_config(FILE *f, const char *model_path, const loom_model_config *mc, const loom_engine_options *eo,
                       const loom_tokenizer *tok) {
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    fprintf(f, "+------------------+------------------------------------------+\n");
#define ROW(k, fmt, ...) fprintf(f, "| %-16s | " fmt "\n", k, __VA_ARGS__)
    ROW("model", "%-40s |", base);
    ROW("architecture", "%-40s |", mc->arch_name);
    char buf[64];
    snprintf(buf, sizeof buf, "%d layers, width %d, ffn %d", mc->n_layers, mc->dim, mc->ffn);
    ROW("shape", "%-40s |", buf);
    snprintf(buf, sizeof buf, "%d query / %d KV, head size %d", mc->n_heads, mc->n_kv_heads, mc->head_dim);
    ROW("heads", "%-40s |", buf);
    snprintf(buf, sizeof buf, "%d (%s, pre %s)", mc->vocab, tok ? loom_tokenizer_model(tok) : "?",
             tok ? loom_tokenizer_pre(tok) : "?");
    ROW("vocabulary", "%-40s |", buf);
    if (mc->encoder) /* a step's texts at a time (parallel/plan.c) */
        snprintf(buf, sizeof buf, "%d positions a text, a step's, %s", eo->ctx_size,
                 eo->kv_type == LOOM_TYPE_F32 ? "f32" : "f16");
    else
        snprintf(buf, sizeof buf, "%d positions x %d sequences, %s", eo->ctx_size, eo->max_seqs,
                 eo->kv_type == LOOM_TYPE_F32 ? "f32" : "f16");
    ROW("kv cache", "%-40s |", buf);
    if (eo->device == LOOM_DEVICE_CUDA) snprintf(buf, sizeof buf, "GPU %d (CUDA)", eo->device_ordinal);
    else if (eo->device == LOOM_DEVICE_HOST)
        snprintf(buf, sizeof buf, "host device, %d threads, %s kernels", eo->n_threads, loom_isa_name(loom_isa_get()));
    else snprintf(buf, sizeof buf, "%d threads, %s kernels", eo->n_threads, loom_isa_name(loom_isa_get()));
    ROW("compute", "%-40s |", buf);
#undef ROW
    fprintf(f, "+------------------+------------------------------------------+\n");
}
