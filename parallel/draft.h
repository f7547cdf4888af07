/*
 * parallel/draft.h — proposals for speculative decoding from the sequence's
 * own tokens (prompt lookup, as vLLM's "ngram" method and llama.cpp's
 * lookup decoding do): when the last few tokens occurred before, the tokens
 * that followed them then are proposed to follow now. The model checks
 * every proposal in one step (parallel/vocab_sampler.h): what it would not
 * have sampled costs a row of compute, never a different token.
 */
#ifndef LOOM_DRAFT_H
#define LOOM_DRAFT_H

#include <stdint.h>

/* Looks for the most recent earlier occurrence of the longest suffix of
 * toks[0..n) of ngram_min .. ngram_max tokens (longer wins; among equal
 * lengths the later) and copies up to max_out of the tokens that followed
 * it to out. Returns how many (0: no occurrence). */
int loom_draft_lookup(const int32_t *toks, int n, int ngram_min, int ngram_max, int max_out, int32_t *out);

/* The same with the occurrence looked for in corpus[0..n_corpus) (an
 * expected output): the longest suffix of toks[0..n) that occurs there
 * with a token after it (of equal lengths the one that ends nearest
 * position n - 1: an edit keeps the order; shorter than ngram_min only when
 * it is all of toks); with n 0, the corpus's start. */
int loom_draft_lookup_in(const int32_t *toks, int n, const int32_t *corpus, int n_corpus, int ngram_min, int ngram_max,
                         int max_out, int32_t *out);

#endif
