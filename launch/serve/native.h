/*
 * launch/serve/native.h — llama-server's own completion API: POST
 * /completion (also /completions) and /infill, as llama.cpp's server
 * serves them to its clients (llama.vscode and llama.vim send /infill).
 *
 * A request becomes the /v1/completions request it asks for, with
 * llama-server's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p
 * 0.05) and its names (n_predict, repeat_penalty, n_probs, logit_bias as
 * [id, bias] pairs, json_schema, samplers); /infill builds its prompt as
 * llama-server does (format_prompt_infill: the input_extra chunks in the
 * repo-level pattern where the model has FIM_REP / FIM_SEP, BOS, FIM_PRE
 * prefix prompt, FIM_SUF suffix, FIM_MID; the prefix cut to 3/4 and the
 * suffix to 1/4 of a 2048-token batch). `samplers` (names or llama.cpp's
 * letters) may drop samplers and add `infill` last; the others keep
 * llama.cpp's default order, the one loom applies (another order is a
 * 400). DRY, XTC, typical-p, top-n-sigma, dynamic temperature and
 * mirostat (mirostat_tau, mirostat_eta) pass on as given; lazy grammars and
 * images are refused when asked for with other than their neutral values,
 * never ignored.
 * cache_prompt (loom's prefix cache is always on) and t_max_prompt_ms
 * (unimplemented in llama-server too) are accepted.
 *
 * The reply is llama-server's: content, stop, stop_type (eos, word, limit),
 * stopping_word, tokens_predicted, tokens_evaluated, tokens_cached,
 * generation_settings, timings, completion_probabilities (n_probs), tokens
 * (return_tokens); one object per prompt (an array for several), or as
 * events of the same shape with "stop": false until the last;
 * response_fields (llama.vim's "timings/prompt_n", ...) keeps only the
 * paths named, each flat under its path. n_indent
 * ends at the first line indented less than it (that line's text cut);
 * t_max_predict_ms ends at a newline once generation took longer.
 */
#ifndef LOOM_SERVE_NATIVE_H
#define LOOM_SERVE_NATIVE_H

#include <jansson.h>
#include <stdbool.h>

#include "launch/serve/openai.h"
#include "runtime/text/tokenizer.h"

typedef struct {
    bool infill;           /* POST /infill */
    int n_probs;           /* completion_probabilities with this many alternatives; 0: none */
    bool probs;            /* completion_probabilities wanted (n_probs > 0) */
    bool return_tokens;    /* "tokens": the generated ids */
    int n_indent;          /* 0: off */
    double t_max_predict_ms; /* 0: off */
    bool discard;          /* n_predict 0: the prompt goes into the cache, nothing is generated back */
    bool timings_per_token;
    json_t *settings;      /* generation_settings */
    json_t *fields;        /* response_fields: the paths ("timings/prompt_n") the reply keeps, or NULL: all */
} srv_native;

/* Translates a native request into a /v1/completions body (*oai,
 * malloc'd). tok, ctx_size: the server's (the infill prompt's tokens and
 * cuts). On error *e says why (400 naming the field) and nothing is owned. */
bool srv_native_request(const loom_tokenizer *tok, int ctx_size, const char *body, size_t len, bool infill, char **oai,
                        srv_native *n, srv_error *e);
void srv_native_free(srv_native *n);

/* GET /props (llama-server's server properties, what clients read the
 * context size and defaults from): default_generation_settings (n_ctx and
 * the sampling defaults above), total_slots, model_path, chat_template,
 * modalities, build_info. New reference. */
json_t *srv_native_props(const char *model_name, int ctx_size, int slots, const char *chat_template);

/* A reply object as response_fields asks (llama-server's
 * json_get_nested_values: each path found becomes a key of its own, "a/b"
 * for o.a.b; absent ones are left out); o itself without them. Steals o. */
json_t *srv_native_fields(const srv_native *n, json_t *o);

/* Where to cut text[0..len) for n_indent, given the state carried from the
 * text before (*line_start: a newline came and the line's indentation is
 * being counted, *indent so far): the offset of the first character of a
 * line indented less than n_indent, or -1. The first line (the cursor's)
 * is never cut. */
long srv_native_indent_cut(const char *text, size_t len, int n_indent, bool *line_start, int *indent);

#endif
