/*
 * runtime/pooling.h — an encoder's sentence embedding from its per-token
 * hidden states, as llama.cpp pools (<arch>.pooling_type): the mean over
 * the tokens, the first (CLS) token, or the last; then optionally scaled to
 * unit length (L2), as OpenAI's and llama-server's embeddings are.
 * Pure functions; nothing is allocated, nothing fails.
 */
#ifndef LOOM_POOLING_H
#define LOOM_POOLING_H

#include <stdbool.h>

#include "runtime/model.h"

/* "none", "mean", "cls", "last", "rank"; "?" for anything else. */
const char *loom_pooling_name(loom_pooling p);
/* The pooling named `name` (none, mean, cls, last: an embedding's); false if it names none. */
bool loom_pooling_parse(const char *name, loom_pooling *out);

/* out (dim) = pooled hidden (n, dim), n >= 1; p must not be LOOM_POOL_NONE.
 * With normalize, out is divided by its L2 norm (unless that is 0). */
void loom_embedding_pool(loom_pooling p, const float *hidden, int n, int dim, bool normalize, float *out);

/* x (dim) /= |x|_2 unless |x| is 0. */
void loom_embedding_normalize(float *x, int dim);

#endif
