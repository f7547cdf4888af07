/*
 * runtime/text/dry_breakers.h — DRY's sequence breakers (runtime/sampler.h)
 * from strings to token sequences, as llama.cpp prepares them: a token
 * whose text holds a breaker is one on its own; a token whose text ends
 * with the breaker's first bytes is the head of a sequence whose tail is
 * the rest of the breaker tokenized (at most 20 tokens). Breakers are cut
 * to 40 bytes; empty ones are skipped.
 */
#ifndef LOOM_DRY_BREAKERS_H
#define LOOM_DRY_BREAKERS_H

#include "runtime/sampler.h"
#include "runtime/status.h"
#include "runtime/text/tokenizer.h"

#define LOOM_DRY_MAX_BREAKERS 64 /* strings (llama-server sets no bound; a request's must be) */

/* llama.cpp's default breakers: "\n", ":", "\"", "*". */
#define LOOM_DRY_N_DEFAULT 4
extern const char *const loom_dry_default_breakers[LOOM_DRY_N_DEFAULT];

/* The table and the memory it points into. */
typedef struct {
    loom_dry_breakers b;
    int32_t *head, *tails;
    uint32_t *tail_off;
} loom_dry_table;

/* Tokens 0 .. n_vocab - 1 (those the tokenizer lacks have no text). */
loom_status loom_dry_table_build(const loom_tokenizer *tok, int32_t n_vocab, const char *const *breakers, int n,
                                 loom_dry_table *out) LOOM_MUST_USE;
void loom_dry_table_free(loom_dry_table *t);

#endif
