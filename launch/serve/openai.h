/*
 * launch/serve/openai.h — the OpenAI API's request bodies in, its response
 * bodies out. Pure functions of their inputs (no engine, no HTTP): the HTTP
 * layer (http.c) parses with these before a request reaches the scheduler
 * and renders what the scheduler produced.
 *
 * Parsing follows OpenAI's reference and vLLM's server where OpenAI is
 * silent: unknown fields are ignored; null means absent; a field of the
 * wrong type or out of range is a 400 naming it (`param`); `n` other than 1
 * is refused until supported. Defaults when absent: temperature 1, top_p 1,
 * no top-k, no min-p, no penalties, a random seed, no stop strings,
 * generation until an end-of-generation token or the context is full.
 *
 * Errors use OpenAI's envelope {"error": {"message", "type", "param",
 * "code"}}.
 */
#ifndef LOOM_SERVE_OPENAI_H
#define LOOM_SERVE_OPENAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/sampler.h"
#include "runtime/text/utf8.h"

#define SRV_MAX_STOP 16       /* stop strings per request */
#define SRV_MAX_STOP_LEN 1024 /* bytes of one stop string */
#define SRV_MAX_PROMPTS 64    /* prompts of one completions request, and choices of any request */
#define SRV_MAX_LORA 16       /* LoRA adapters (LOOM_LORA_MAX) */

typedef enum { SRV_CHAT, SRV_COMPLETION } srv_kind;

typedef struct {
    int status;           /* HTTP status */
    char message[512];
    const char *type;     /* "invalid_request_error", "server_error", ... */
    const char *param;    /* the offending field, or NULL */
    const char *code;     /* e.g. "context_length_exceeded", or NULL */
} srv_error;

/* Fills e and returns false (so callers can `return srv_fail(...)`). */
bool srv_fail(srv_error *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* One prompt of a completions request: text, or token ids. */
typedef struct {
    char *text;   /* NULL when ids are given */
    int32_t *ids; /* (n_ids) */
    int n_ids;
} srv_prompt;

typedef struct {
    srv_kind kind;
    char *model;                  /* as requested; NULL when absent */
    bool stream, include_usage;
    int max_tokens;               /* -1: until end of generation or a full context */
    int n;                        /* choices per prompt; choices in all <= SRV_MAX_PROMPTS */
    loom_sampling_params sampling; /* sampling.json_schema points at schema */
    char *schema;                 /* response_format json_schema's schema (compact JSON), or NULL */
    char *grammar;                /* a GBNF grammar (grammar, guided_grammar, guided_choice) or a regular
                                     expression (guided_regex), or NULL; sampling.grammar points at it */
    const char *constrained_by;   /* the field that constrains the reply (at most one may), or NULL */
    char **dry_breakers;          /* (n_dry_breakers) DRY's sequence breakers; sampling.dry_breakers points here */
    int n_dry_breakers;
    int32_t *bias_token;          /* logit_bias (sampling.bias_token / bias_value point here), or NULL */
    float *bias_value;
    bool ignore_eos;
    bool logprobs;
    int top_logprobs;             /* 0..20 */
    char *stop[SRV_MAX_STOP];
    int n_stop;
    bool parse_special;           /* special-token texts in prompts become their tokens */
    /* chat */
    json_t *messages;             /* the request's messages array (a reference) */
    json_t *tools, *documents;    /* arrays for the template, or NULL */
    bool tool_choice_none;        /* "tool_choice": "none": the reply's text is not parsed for calls */
    bool tool_force;              /* tool_choice forces calls ("required", or tool_force_name) */
    char *tool_force_name;        /* the function tool_choice names, or NULL */
    json_t *template_kwargs;      /* chat_template_kwargs: extra template variables, or NULL */
    bool add_generation_prompt;
    /* completions */
    srv_prompt prompts[SRV_MAX_PROMPTS];
    int n_prompts;
    bool add_special;             /* BOS as the model says */
    bool echo;                    /* the prompt leads each choice's text (and log-probabilities) */
    char *suffix;                 /* fill in the middle: the text after the completion (text prompts), or NULL */
    char *prediction;             /* predicted output (speculative decoding proposes from it), or NULL */
    /* llama-server's "lora": [{"id", "scale"}]: these adapters at these
     * scales, the others at 0 (ids checked against the adapters loaded
     * later), when lora_given */
    int lora_id[SRV_MAX_LORA];
    float lora_scale[SRV_MAX_LORA];
    int n_lora;
    bool lora_given;
} srv_params;

/* Reads llama-server's LoRA list ([{"id": N, "scale": S}, ...]; POST
 * /lora-adapters' body, a request's "lora") into ids / scales; a 400
 * naming `param` when malformed. */
bool srv_parse_lora(json_t *list, const char *param, int *ids, float *scales, int *n, srv_error *e);

/* Field readers (the other request translations use them too): *out is
 * left alone when the field is absent or null; a wrong type or a number
 * outside [lo, hi] is a 400 naming the field. */
bool srv_get_bool(json_t *o, const char *key, bool *out, srv_error *e);
bool srv_get_number(json_t *o, const char *key, double lo, double hi, double *out, srv_error *e);

/* A request body that must be a JSON object (new reference), or NULL with
 * *e a 400 saying why. */
json_t *srv_parse_body(const char *body, size_t len, srv_error *e);

/* Parses a /v1/chat/completions or /v1/completions body. seed_default
 * seeds requests without a seed. On error *e says why (400 with the
 * field) and *out owns nothing. */
bool srv_parse_request(srv_kind kind, const char *body, size_t len, uint64_t seed_default, srv_params *out,
                       srv_error *e);
void srv_params_free(srv_params *p);

/* Whether a message's content is one the server takes: null, a string, or
 * a list of text parts (the chat template joins their texts, runtime/text/
 * chat.h); fails (400) on anything else. */
bool srv_check_content(json_t *content, srv_error *e);

/* {"error": {...}} as a JSON object / a malloc'd string. */
json_t *srv_error_obj(const srv_error *e);
char *srv_error_json(const srv_error *e);

/* A JSON string of s[0..len) with every ill-formed UTF-8 subsequence
 * replaced by U+FFFD (token pieces may end mid-character). */
json_t *srv_json_text(const char *s, size_t len);

/* json_dumps with loom's settings (compact, UTF-8, floats to 8 digits);
 * malloc'd, NULL on allocation failure. */
char *srv_dump(const json_t *j);
/* Appends a named server-sent event, "event: NAME\ndata: JSON\n\n" (data
 * stolen), to *out; nothing when out or data is NULL. */
void srv_sse_event(loom_strbuf *out, const char *name, json_t *data);

#endif
