/*
 * parallel/vocab_sampler.h — one token per sequence from logits that the
 * last stage's TP ranks hold by vocabulary slice.
 *
 * Every TP rank of the last stage computes the logits of its contiguous
 * slice of vocabulary rows. When every sequence of a step samples greedily
 * without penalties, the ranks take a distributed argmax: each sends its
 * slice's best (value, id), 8 bytes per row, and the leader (TP rank 0)
 * keeps the largest, the lowest id on ties — the same choice as one rank's
 * loom_argmax over the whole row. Otherwise the leader gathers the slices
 * and runs each sequence's own sampler (parameters, RNG, penalty history)
 * over the full row, so a sequence samples the same tokens however the
 * vocabulary is split. With one TP rank nothing is exchanged.
 *
 * The leader owns one loom_sampler per KV slot; every rank of the last
 * stage knows which slots are greedy. Creation is collective over the last
 * stage's TP group (the ranks check that their slices tile the vocabulary).
 */
#ifndef LOOM_VOCAB_SAMPLER_H
#define LOOM_VOCAB_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/topology.h"
#include "proto/step.pb-c.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/text/dry_breakers.h"
#include "runtime/text/grammar.h"
#include "runtime/text/json_schema.h"

typedef struct loom_vocab_sampler loom_vocab_sampler;

/* Last stage only. w: this rank's weights (its vocabulary slice);
 * max_rows: logit rows of a step at most; slots: KV slots. */
loom_status loom_vocab_sampler_create(const loom_topology *t, const loom_weights *w, int max_rows, int slots,
                                      loom_vocab_sampler **out) LOOM_MUST_USE;
void loom_vocab_sampler_free(loom_vocab_sampler *vs);

/* How a sequence samples: its parameters and what it reports. */
typedef struct {
    loom_sampling_params params;
    bool logprobs;    /* report the sampled token's log-probability */
    int top_logprobs; /* and this many alternatives (0..20) */
    float mirostat_mu; /* a resumed mirostat sequence (n_generated > 0): its mu after those tokens */
} loom_seq_sampling;

/* A sequence starts in `slot` (every rank of the last stage; the leader
 * creates the slot's sampler, replacing any old one). n_prompt positions
 * precede its first sampled token; the last n_generated of them were
 * generated before (a resumed sequence: they count for the presence and
 * frequency penalties, and the random stream skips their draws). */
loom_status loom_vocab_sampler_start(loom_vocab_sampler *vs, int slot, const loom_seq_sampling *p, int n_prompt,
                                     int n_generated) LOOM_MUST_USE;
/* Whether `slot` has a running sequence (always true off the leader). */
bool loom_vocab_sampler_has(const loom_vocab_sampler *vs, int slot);
/* Leader: the sequence in `slot` holds `token` at position pos; each
 * position enters the penalty history once. No-op on other ranks. */
void loom_vocab_sampler_history(loom_vocab_sampler *vs, int slot, int pos, int32_t token);

/* Chooses one token for each sequence of `step` that wants one, in row
 * order, from logits (n_out, vocabulary slice) — overwritten; a sequence
 * with proposals (n_draft) gets one after each of its last n_draft + 1 rows
 * until one differs from the next proposal, each drawn as without them (one
 * random number a token, the history of the tokens before it). On the
 * leader fills res->slots/tokens (room for one entry per row), for
 * sequences that asked, res->logprobs (entries owned by the sampler, valid
 * until the next call), and where a sequence has mirostat every token's
 * res->mirostat_mu (NaN for the others; likewise owned); for a scoring
 * step (one sequence with all_logits) instead points *scores at the full
 * logits (n_out, vocab), valid until the next call, and leaves res empty.
 * Other ranks only take part in the exchange. */
loom_status loom_vocab_sampler_sample(loom_vocab_sampler *vs, const Loom__Step *step, float *logits, int n_out,
                                      Loom__StepResult *res, const float **scores) LOOM_MUST_USE;

/* The vocabulary's text (the leader keeps a copy of every token's bytes,
 * and the tokenizer, which it takes: freed here elsewhere, when already
 * set and on failure): needed before a sequence with structured output
 * (params.json_object, json_schema or grammar), the infill sampler or
 * DRY's sequence breakers starts. */
loom_status loom_vocab_sampler_set_text(loom_vocab_sampler *vs, loom_tokenizer *tok) LOOM_MUST_USE;
bool loom_vocab_sampler_has_text(const loom_vocab_sampler *vs);
/* Whether a sequence sampled with p needs it. */
bool loom_vocab_sampler_needs_text(const loom_sampling_params *p);

/* Seconds in the TP exchanges since creation. */
double loom_vocab_sampler_comm_seconds(const loom_vocab_sampler *vs);

#endif
