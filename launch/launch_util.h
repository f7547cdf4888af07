/*
 * launch/launch_util.h — what the subcommands share: error exits, reading a
 * file, a load progress bar, the configuration table.
 */
#ifndef LOOM_LAUNCH_UTIL_H
#define LOOM_LAUNCH_UTIL_H

#include <stdio.h>

#include "launch/args.h"
#include "parallel/engine.h"
#include "parallel/scheduler.h"
#include "runtime/clock.h"
#include "runtime/status.h"
#include "runtime/text/chat.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/utf8.h"

/* Prints "loom: <msg>" and returns 2 (usage error). */
int loom_usage_error(const char *msg);
/* Prints "loom <cmd>: <status message>" (nothing for LOOM_ERR_PEER: the
 * failing rank speaks), frees st, returns 1. */
int loom_fail(const char *cmd, loom_status st);

/* --device's value into *out; prints "loom <cmd>: ..." and returns nonzero
 * when it names no device kind. */
int loom_parse_device(const char *cmd, const char *s, loom_device_kind *out);

/* The flags of every command that runs a model on a cluster: the table
 * entries of --tp, --pp and --watchdog-timeout (and --device), and their
 * check (a usage error naming the flag, and nonzero, when out of range). */
#define LOOM_GRID_ARGS(tp, pp, watchdog)                                                                            \
    {"--tp", LOOM_ARG_INT, &(tp), "T", "tensor-parallel ranks per stage (under mpirun; tp x pp = ranks)"},          \
    {"--pp", LOOM_ARG_INT, &(pp), "P", "pipeline stages (under mpirun)"},                                          \
    {"--watchdog-timeout", LOOM_ARG_FLOAT, &(watchdog), "S", "seconds before a silent rank stops the job; 0 = off"}
#define LOOM_DEVICE_ARG(device)                                                                                     \
    {"--device", LOOM_ARG_STR, &(device), "auto|cpu|cuda",                                                          \
     "where each rank computes: its GPU (cuda; under mpirun the GPU of its local rank) or the CPU; auto: cuda when a " \
     "GPU is visible"}
int loom_grid_check(const char *cmd, int64_t tp, int64_t pp, double watchdog);

/* --kv-type's value (f16, f32, q8_0; any case) into *out; prints "loom
 * <cmd>: ..." and returns nonzero when it names none. */
int loom_parse_kv_type(const char *cmd, const char *s, loom_type *out);
#define LOOM_KV_TYPE_HELP "KV cache element type: f16, f32 or q8_0 (int8 with a scale per 32: ~53 % of f16's bytes)"

/* The sampling flags of generate and chat: their values, the table
 * entries (seed_help: what --seed does), and the check that fills *sp
 * (a seed of -1 from the clock; a usage error and nonzero when a value is
 * out of range). */
typedef struct {
    double temp, top_p, min_p, rep;
    int64_t top_k, seed;
    double typical, top_n_sigma, xtc_p, xtc_t, dyn_range, dyn_exp, dry_mult, dry_base;
    int64_t dry_allowed, dry_last_n, mirostat;
    double miro_tau, miro_eta;
} loom_sampling_args;
loom_sampling_args loom_sampling_args_defaults(void);
#define LOOM_SAMPLING_ARGS(a, seed_help)                                                                           \
    {"--temperature", LOOM_ARG_FLOAT, &(a).temp, "T", "sampling temperature; 0 = greedy"},                          \
    {"--top-k", LOOM_ARG_INT, &(a).top_k, "K", "keep the K most likely tokens; 0 = off"},                           \
    {"--top-p", LOOM_ARG_FLOAT, &(a).top_p, "P", "keep the smallest set with probability >= P; 1 = off"},           \
    {"--min-p", LOOM_ARG_FLOAT, &(a).min_p, "P", "drop tokens less likely than P x the top one; 0 = off"},          \
    {"--repeat-penalty", LOOM_ARG_FLOAT, &(a).rep, "R", "penalise tokens of the last 64; 1 = off"},                 \
    {"--typical", LOOM_ARG_FLOAT, &(a).typical, "P", "locally typical sampling; 1 = off"},                         \
    {"--top-n-sigma", LOOM_ARG_FLOAT, &(a).top_n_sigma, "N", "keep logits within N std devs of the top one; -1 = off"}, \
    {"--xtc-probability", LOOM_ARG_FLOAT, &(a).xtc_p, "P", "XTC: the chance a token drops the top choices; 0 = off"}, \
    {"--xtc-threshold", LOOM_ARG_FLOAT, &(a).xtc_t, "P", "XTC: ... those at least this likely but the last"},      \
    {"--dynatemp-range", LOOM_ARG_FLOAT, &(a).dyn_range, "R", "dynamic temperature: T +- R by entropy; 0 = off"},    \
    {"--dynatemp-exp", LOOM_ARG_FLOAT, &(a).dyn_exp, "E", "dynamic temperature's exponent"},                        \
    {"--dry-multiplier", LOOM_ARG_FLOAT, &(a).dry_mult, "M", "DRY: penalise repeats of sequences (breakers \\n : \" *); 0 = off"}, \
    {"--dry-base", LOOM_ARG_FLOAT, &(a).dry_base, "B", "DRY: the penalty's base"},                                  \
    {"--dry-allowed-length", LOOM_ARG_INT, &(a).dry_allowed, "N", "DRY: repeats longer than N are penalised"},     \
    {"--dry-penalty-last-n", LOOM_ARG_INT, &(a).dry_last_n, "N", "DRY: tokens looked back on; -1 = all"},          \
    {"--mirostat", LOOM_ARG_INT, &(a).mirostat, "V", "mirostat 1 or 2 for the chain above (not the logit bias); 0 = off"}, \
    {"--mirostat-ent", LOOM_ARG_FLOAT, &(a).miro_tau, "TAU", "mirostat: the target surprise (bits)"},              \
    {"--mirostat-lr", LOOM_ARG_FLOAT, &(a).miro_eta, "ETA", "mirostat: the learning rate"},                        \
    {"--seed", LOOM_ARG_INT, &(a).seed, "S", seed_help}
int loom_sampling_from_args(const char *cmd, const loom_sampling_args *a, loom_sampling_params *sp);

/* Speculative decoding's options (generate, serve, chat): the table
 * entries, their check, which fills o's draft fields (a usage error and
 * nonzero when a value is out of range), and on the coordinator the draft
 * model's start once the engine exists (o->drafter; free it with
 * loom_drafter_free). */
typedef struct {
    int64_t draft, ngram_min, ngram_max;
    const char *model; /* --draft-model, or NULL */
    double p_min;
} loom_draft_args;
loom_draft_args loom_draft_args_defaults(void);
#define LOOM_DRAFT_ARGS(a)                                                                                        \
    {"--draft", LOOM_ARG_INT, &(a).draft, "N",                                                                    \
     "speculative decoding: propose up to N tokens a step that followed the sequence's last tokens where\n"      \
     "they occurred before (prompt lookup), or that --draft-model continues with; the model checks them in\n"   \
     "the same step and keeps what it would have sampled anyway, so the output is the same; 0 = off\n"          \
     "(with --draft-model: 8)"},                                                                                 \
    {"--draft-ngram-min", LOOM_ARG_INT, &(a).ngram_min, "N", "with --draft: the shortest run of last tokens looked up"}, \
    {"--draft-ngram-max", LOOM_ARG_INT, &(a).ngram_max, "N", "with --draft: the longest run of last tokens looked up"},  \
    {"--draft-model", LOOM_ARG_STR, &(a).model, "PATH",                                                          \
     "speculative decoding with a small model of the same vocabulary (GGUF), held whole by the\n"               \
     "coordinator: its greedy continuations are the proposals"},                                                 \
    {"--draft-p-min", LOOM_ARG_FLOAT, &(a).p_min, "P",                                                           \
     "with --draft-model: stop a sequence's proposals at a token the draft model gives less than P"}
int loom_draft_options(const char *cmd, const loom_draft_args *a, loom_scheduler_options *o);
loom_status loom_draft_model_start(const loom_draft_args *a, loom_engine *e, const loom_gguf *target,
                                   loom_scheduler_options *o) LOOM_MUST_USE;

/* LoRA adapters' options (generate, chat, serve, perplexity, bench), as
 * llama.cpp's: --lora FILE[,FILE...] (scale 1), --lora-scaled
 * FILE:SCALE[,...]; the adapters are numbered in the order given. Every
 * rank parses its own command line (each loads its own copy of each file).
 * loom_lora_options fills a->spec (a usage error and nonzero when a value
 * is malformed); scale 0 for all where without_apply (serve's
 * --lora-init-without-apply). */
typedef struct {
    loom_arg_strs given;
    loom_lora_spec spec[LOOM_LORA_MAX];
    int n;
    char buf[8192]; /* the paths, split out of the lists */
} loom_lora_args;
#define LOOM_LORA_ARGS(a)                                                                                         \
    {"--lora", LOOM_ARG_STRS, &(a).given, "FILE[,FILE...]",                                                      \
     "LoRA adapter(s) (GGUF, as llama.cpp's convert_lora_to_gguf.py writes them) applied at scale 1"},          \
    {"--lora-scaled", LOOM_ARG_STRS, &(a).given, "FILE:SCALE[,...]", "LoRA adapter(s) applied at SCALE"}
int loom_lora_options(const char *cmd, loom_lora_args *a, bool without_apply);

/* The chat template of a Jinja file (path), or the model's when path is
 * NULL, with bos/eos texts from tok. */
loom_status loom_load_chat_template(const loom_gguf *g, const loom_tokenizer *tok, const char *path,
                                    loom_chat_template **out) LOOM_MUST_USE;

/* Reads a whole file (NUL-terminated in out->data). */
loom_status loom_read_file(const char *path, loom_strbuf *out) LOOM_MUST_USE;

/* A progress bar on stderr that appears only when the work takes longer
 * than a moment (0.3 s) and stderr is a terminal. */
typedef struct {
    const char *what;
    double t0;
    int shown;
    int last_pct;
} loom_progress;
void loom_progress_init(loom_progress *p, const char *what);
void loom_progress_update(void *p, double frac); /* loom_engine_create's callback */
void loom_progress_done(loom_progress *p);

/* The run's configuration as an aligned table (rank 0 only). */
void loom_print_config(FILE *f, const char *model_path, const loom_model_config *mc, const loom_engine_options *eo,
                       const loom_tokenizer *tok);


#endif
