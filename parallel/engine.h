/*
 * parallel/engine.h — one rank's share of the model and how it runs a Step.
 *
 * The engine owns this rank's weights, KV cache, thread pool, stage (its
 * layers with the TP collectives), transfers and — on the last stage — the
 * vocabulary-parallel sampler. Every rank applies Steps with one function:
 * clear the KV tables of ended sequences, append the KV blocks each sequence
 * was given, start samplers for starting ones, turn the Step into a batch of rows, run this rank's
 * layers and, on the last stage, sample once per sequence that asked.
 *
 * The coordinator (world rank 0) builds Steps in the scheduler
 * (scheduler.h) and hands them to loom_engine_launch(); every other rank
 * sits in loom_engine_work(), receiving Steps from its TP rank 0 or the
 * previous stage, until the coordinator calls loom_engine_shutdown().
 * With one rank there is nothing to send: launch runs the Step and the
 * sampled tokens are in the result on return.
 */
#ifndef LOOM_ENGINE_H
#define LOOM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "parallel/options.h"
#include "parallel/topology.h"
#include "proto/step.pb-c.h"
#include "runtime/gguf.h"
#include "runtime/kv_cache.h"
#include "runtime/lora.h"
#include "runtime/model.h"
#include "runtime/threadpool.h"

#define LOOM_PROTOCOL 4 /* version of the Step / StepResult messages (3: logit bias, structured output; 4: mirostat) */

typedef struct loom_engine loom_engine;

/* Where a rank with these options computes: loom_dforward_resolve's choice,
 * but `auto` stays on the CPU for a q8_0 KV cache (the CPU's only). */
loom_device_kind loom_engine_device(loom_device_kind k, loom_type kv_type, const loom_model_config *c);

/* Loads this rank's part of the model from an open GGUF file (which must
 * outlive the engine). `progress` (optional) is called with a fraction
 * while weights load. topo may be NULL (one rank, whole model); the engine
 * copies it and borrows its communicators. On the last stage creation is
 * collective over the stage's TP group. */
loom_status loom_engine_create(const loom_gguf *g, const loom_engine_options *o, const loom_topology *topo,
                               void (*progress)(void *user, double frac), void *user,
                               loom_engine **out) LOOM_MUST_USE;
void loom_engine_free(loom_engine *e);
const loom_model_config *loom_engine_model(const loom_engine *e);
const loom_weights *loom_engine_weights(const loom_engine *e);
const loom_engine_options *loom_engine_options_of(const loom_engine *e);
const loom_topology *loom_engine_topology(const loom_engine *e);
/* Coordinator: the pool that decides which KV block holds what (the same
 * block ids on every rank); NULL elsewhere. The scheduler allocates from it
 * and sends the ids with the Steps. */
struct loom_kv_blocks *loom_engine_blocks(loom_engine *e);
/* The rank's thread pool (idle between the steps the coordinator runs: a
 * draft model borrows it there, draft_model.h). */
loom_pool *loom_engine_pool(loom_engine *e);

/* LoRA adapters (runtime/lora.h). Every rank adds the same files in the
 * same order after creation (loom_cluster_engine does); the adapter
 * becomes number loom_engine_n_lora() - 1. A sequence's scales come with
 * its first step (SeqStep.lora); one whose step gives none gets `scale`
 * of each (its default). CPU stages only. */
typedef struct {
    const char *path;
    float scale;
} loom_lora_spec;
loom_status loom_engine_add_lora(loom_engine *e, const char *path, float scale) LOOM_MUST_USE;
int loom_engine_n_lora(const loom_engine *e);
const loom_lora *loom_engine_lora(const loom_engine *e, int i);
const char *loom_engine_lora_path(const loom_engine *e, int i);
const float *loom_engine_lora_defaults(const loom_engine *e); /* (loom_engine_n_lora) */

/* Coordinator: runs a Step on stage 0 — TP broadcast, this rank's layers,
 * then the send to stage 1 without waiting. With one stage the sampled
 * tokens are in *res on return (res->slots/tokens need one entry per
 * row of the step); with several, collect them later, in launch order,
 * with loom_engine_collect(). */
loom_status loom_engine_launch(loom_engine *e, const Loom__Step *step, Loom__StepResult *res) LOOM_MUST_USE;
/* Coordinator with several stages: the next StepResult from the last stage
 * (checked: protocol). Free it with loom__step_result__free_unpacked. */
loom_status loom_engine_collect(loom_engine *e, Loom__StepResult **out) LOOM_MUST_USE;

/* Coordinator only: tells every other rank to leave loom_engine_work(). */
loom_status loom_engine_shutdown(loom_engine *e) LOOM_MUST_USE;

/* Every rank but the coordinator: receives steps and runs its part of them
 * until the coordinator shuts the cluster down. */
loom_status loom_engine_work(loom_engine *e) LOOM_MUST_USE;

/* Teacher-forced scoring for tests (coordinator): feeds `tokens` of one
 * sequence through the whole cluster in a spare KV slot and writes the
 * logits (n, vocab) of every position. For an encoder (bert: no lm head)
 * the last layer's hidden states (n, dim) instead, all n tokens in one
 * batch (LOOM_ERR_CONTEXT when n exceeds the batch rows). */
loom_status loom_engine_score(loom_engine *e, const int32_t *tokens, int n, float *logits) LOOM_MUST_USE;
/* An embedding model's (encoder: every KV slot is free) k texts in one
 * step, one slot each: tokens[i] (n[i] tokens) in a batch of sum n[i] <=
 * batch rows, k <= max_seqs + 1; their hidden states (or a reranker's
 * scores) in out, text after text, as loom_engine_score gives each: the
 * weights read once for all k. */
loom_status loom_engine_score_texts(loom_engine *e, const int32_t *const *tokens, const int *n, int k,
                                    float *out) LOOM_MUST_USE;
/* How many of the texts n[0..k) (token counts) from the first one step of
 * loom_engine_score_texts holds: at least one (k > 0), within the batch
 * rows and the slots. */
int loom_engine_step_texts(const loom_engine *e, const int *n, int k);
/* The same a chunk of rows at a time, for long prompts and large
 * vocabularies: each chunk's logits (rows, vocab) go to buf (batch_rows x
 * vocab floats) and then to chunk(user, first position, rows, buf), in
 * order. The spare slot needs free KV blocks: LOOM_ERR_KV_FULL, before any
 * step, where there are not enough. Not while a scheduler has steps in
 * flight (loom_scheduler_drain). */
loom_status loom_engine_score_chunks(loom_engine *e, const int32_t *tokens, int n, float *buf,
                                     void (*chunk)(void *user, int p0, int rows, const float *logits),
                                     void *user) LOOM_MUST_USE;

/* Coordinator: asks every rank for its figures with the next step it
 * launches (no extra message on the way there). */
void loom_engine_request_report(loom_engine *e);
/* Coordinator: every rank's figures — out (world, 4): seconds in TP
 * collectives, in stage transfers, busy, since start — rank 0's now, the
 * others' from the last report that came back. Returns false (and fills
 * only rank 0's) until a report arrived. */
bool loom_engine_rank_figures(loom_engine *e, double *out);

/* Seconds this rank spent in TP collectives and in stage-to-stage transfers. */
void loom_engine_comm_time(const loom_engine *e, double *tp_s, double *pp_s);

/* Seconds this rank spent running its part of steps (forward and sampling,
 * collectives included, waiting for the previous stage excluded). Over a
 * run's wall time, 1 - busy/wall is the rank's idle share: the pipeline
 * bubble on stages that wait for each other. */
double loom_engine_busy_seconds(const loom_engine *e);

#endif
