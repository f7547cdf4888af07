/*
 * runtime/sampler.h — per-sequence token sampling.
 *
 * Each sequence owns a sampler: its parameters, its random state and its
 * penalty history, so a sequence samples the same tokens whatever else is
 * batched with it and however the model is split. The chain follows
 * llama.cpp's default order: logit bias → repetition penalty →
 * presence/frequency penalties → DRY → top-n-sigma → top-k → typical →
 * top-p → min-p → XTC → temperature (or dynamic temperature) → draw, each
 * computing what llama.cpp's sampler of that name computes (the random
 * numbers are loom's own). Temperature <= 0 is greedy: the argmax after
 * penalties, ties going to the lowest token id (with typical or XTC on,
 * the best token those leave; with dynamic temperature, a draw at the
 * temperature the entropy gives, as in llama.cpp).
 *
 * Penalties: the repetition penalty (llama.cpp, HF) divides positive logits
 * (multiplies negative ones) of every distinct token among the last
 * repeat_last_n tokens, prompt included; the presence and frequency
 * penalties (OpenAI, vLLM) subtract presence + frequency × count from the
 * logit of every token the sequence has generated so far (output only).
 * A draw consumes exactly one random number (and XTC, while on, one of its
 * own stream), so a sequence resumed after k drawn tokens continues its
 * random streams with loom_sampler_skip(k).
 *
 * Mirostat (llama.cpp's versions 1 and 2, which replace the chain after
 * the logit bias, as in llama.cpp: no penalty or cut applies): the logits
 * at the temperature (<= 0: the best token alone), then the candidates
 * whose surprise -log2 p is at most mu (v2), or the top k for the k that
 * Zipf's exponent estimated from the 100 best gives at mu (v1), one draw
 * among them, and mu -= eta x (the drawn token's surprise among them -
 * tau); mu starts at 2 tau. mu is the sequence's running state: a resumed
 * sequence continues from the value it had (loom_sampler_set_mirostat_mu).
 *
 * DRY ("don't repeat yourself", koboldcpp's, as llama.cpp computes it): a
 * token that would extend a run of tokens repeated from earlier in the
 * last dry_penalty_last_n tokens (prompt included) beyond
 * dry_allowed_length loses dry_multiplier × dry_base^(run -
 * allowed_length); a run never reaches back past the last sequence
 * breaker (loom_sampler_set_dry), and a breaker of one token is never
 * penalised.
 */
#ifndef LOOM_SAMPLER_H
#define LOOM_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/status.h"

#define LOOM_LOGIT_BIAS_MAX 300 /* entries of a logit bias (OpenAI's limit) */

typedef struct {
    float temperature;     /* <= 0: greedy */
    int32_t top_k;         /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    int32_t repeat_last_n; /* tokens of history the penalty looks at */
    uint64_t seed;
    float presence_penalty;  /* 0: off; -2..2 */
    float frequency_penalty; /* 0: off; -2..2 */
    int32_t n_logit_bias;    /* OpenAI's logit_bias: bias_value[i] is added to the logit of */
    const int32_t *bias_token; /* token bias_token[i] before anything else (-100..100; -100 */
    const float *bias_value;   /* bans the token); both borrowed (the sampler keeps a copy) */
    bool json_object;        /* JSON mode: the output is one JSON object */
    const char *json_schema; /* or one the schema (JSON text, borrowed) accepts; NULL: none */
    const char *grammar;     /* or text the GBNF grammar (runtime/text/grammar.h; borrowed) derives; NULL: none */
    bool grammar_regex;      /* grammar is a regular expression the whole text matches instead */
    bool infill;             /* llama.cpp's infill sampler last in the chain (code completion; needs
                                loom_sampler_set_vocab) */
    float typical_p;         /* locally typical sampling: on in (0, 1) */
    float top_n_sigma;       /* keep logits within this many standard deviations of the largest; <= 0: off */
    float xtc_probability;   /* XTC: the chance a token removes the top choices; 0: off */
    float xtc_threshold;     /* ... those at or above this probability but the least likely (> 0.5: off) */
    float dynatemp_range;    /* dynamic temperature: temperature +- range by the candidates' entropy; 0: off */
    float dynatemp_exponent; /* ... normalised entropy to this power */
    float dry_multiplier;    /* DRY (above); 0: off */
    float dry_base;          /* < 1: off */
    int32_t dry_allowed_length;
    int32_t dry_penalty_last_n; /* tokens DRY looks back on; -1: all; 0: off */
    int32_t n_dry_breakers;     /* DRY's sequence breakers as strings (borrowed; the sampling rank makes */
    const char *const *dry_breakers; /* them a loom_dry_breakers table, runtime/text/dry_breakers.h) */
    int32_t mirostat;        /* 0: off; 1, 2: mirostat's version (above) */
    float mirostat_tau;      /* its target surprise (bits) */
    float mirostat_eta;      /* its learning rate */
} loom_sampling_params;

/* DRY's sequence breakers as token sequences (runtime/text/dry_breakers.h
 * builds them from strings, as llama.cpp does): entry i is a token
 * head[i] (sorted ascending) and the tokens that must follow it,
 * tails[tail_off[i] .. tail_off[i + 1]) (none: the token holds a whole
 * breaker). */
typedef struct {
    int32_t n;
    const int32_t *head;      /* (n) */
    const uint32_t *tail_off; /* (n + 1) */
    const int32_t *tails;
} loom_dry_breakers;

/* llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * no repetition penalty, last 64 tokens, seed 0; typical, top-n-sigma, XTC
 * (threshold 0.1), dynamic temperature (exponent 1), DRY (base 1.75,
 * allowed length 2, the last 64 tokens) and mirostat (tau 5, eta 0.1) off. */
loom_sampling_params loom_sampling_defaults(void);

/* Checks ranges; the message names the bad parameter. */
loom_status loom_sampling_check(const loom_sampling_params *p) LOOM_MUST_USE;

typedef struct loom_sampler loom_sampler;

loom_status loom_sampler_create(const loom_sampling_params *p, int32_t n_vocab, loom_sampler **out) LOOM_MUST_USE;
void loom_sampler_free(loom_sampler *s);

/* A constraint on the tokens a sequence may sample (structured output:
 * runtime/text/json_schema.h): fits(user, t) whether token t may come
 * next; accept(user, t) after t came (sampled, or replayed for a resumed
 * sequence). The chain runs as without; when the token it draws does not
 * fit, every token that does not is masked and the chain draws again with
 * the same random number (as llama.cpp's grammar sampling does: the result
 * is a draw from the masked distribution, one random number a token as
 * without). When no token fits, the unmasked draw stands. */
typedef struct {
    bool (*fits)(void *user, int32_t token);
    void (*accept)(void *user, int32_t token);
    void *user;
} loom_sampler_constraint;

/* Sets (or with NULL clears) the constraint; the struct is copied, user is
 * borrowed. */
void loom_sampler_set_constraint(loom_sampler *s, const loom_sampler_constraint *c);

/* The infill sampler (llama.cpp's, for fill-in-the-middle), after
 * temperature on the candidates left, each with probability p at the
 * temperature: when the end-of-generation candidates hold more than a
 * third of the others' mass divided by the candidate count (3 · p_eog · n >
 * p_text), only they are kept; otherwise a candidate whose text (control
 * tokens: none) begins another's takes that one's probability (the likelier
 * of the two keeps both), then text candidates below 0.2 are dropped
 * (none left: end_token is the token), then those below 1 / (text
 * candidates + 1). The draw is among the candidates kept, by their own
 * logits as before. Token t's text is text[off[t] .. off[t + 1]); kind[t]
 * 0 text, 1 end of generation, 2 control. Borrowed. */
typedef struct {
    int32_t n;
    const uint32_t *off;
    const char *text;
    const uint8_t *kind;
    int32_t end_token;
} loom_sampler_vocab;
void loom_sampler_set_vocab(loom_sampler *s, const loom_sampler_vocab *v);

/* DRY's sequence breakers (borrowed until the sampler is freed; NULL: none). */
void loom_sampler_set_dry(loom_sampler *s, const loom_dry_breakers *b);

/* Adds a prompt token to the repetition-penalty history. */
void loom_sampler_accept(loom_sampler *s, int32_t token);
/* Adds a generated token: the repetition history, the counts the
 * presence/frequency penalties use, the constraint's state. */
void loom_sampler_accept_output(loom_sampler *s, int32_t token);
/* Advances the random stream past n draws (a resumed sequence). */
void loom_sampler_skip(loom_sampler *s, int64_t n);
/* Mirostat's mu now (NaN when mirostat is off), and setting it (a resumed
 * sequence: the value after its generated tokens). */
float loom_sampler_mirostat_mu(const loom_sampler *s);
void loom_sampler_set_mirostat_mu(loom_sampler *s, float mu);
/* Whether sampling is a plain argmax of the logits: greedy and no penalty. */
bool loom_sampling_is_plain_greedy(const loom_sampling_params *p);

/* Log-probabilities under the model's raw distribution (log-softmax of
 * logits[0..n), as OpenAI's logprobs report them): *chosen_lp for token
 * `chosen`, and the top_n most likely tokens (ids in top_ids, values in
 * top_lps; ties to the lower id), top_n <= 20. NaN logits count as -inf. */
void loom_logprobs(const float *logits, int32_t n, int32_t chosen, int top_n, float *chosen_lp, int32_t *top_ids,
                   float *top_lps);

/* Index of the largest of x[0..n), the lowest on ties (0 if all are NaN). */
int32_t loom_argmax(const float *x, int32_t n);

/* The logits after the logit bias and the penalties (repetition,
 * presence, frequency, DRY), in place. */
void loom_sampler_penalize(loom_sampler *s, float *logits);

/* The candidates the next draw would pick from, after every sampler but
 * the draw (and the infill sampler), best first: their ids and
 * probabilities (ids and probs hold n_vocab); returns how many (greedy: 1).
 * Takes the penalties and XTC's random number as a draw would. */
int32_t loom_sampler_distribution(loom_sampler *s, float *logits, int32_t *ids, float *probs);

/* Chooses the next token from logits (n_vocab values; modified in place). */
int32_t loom_sampler_sample(loom_sampler *s, float *logits);

#endif
