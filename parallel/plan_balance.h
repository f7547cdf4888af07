/*
 * parallel/plan_balance.h — what a weight byte of each type costs a decode
 * step on this machine, for the planner's stage balance (loom_plan_balance
 * in plan.h).
 *
 * Pipeline stages balanced by bytes alone are not balanced in time where
 * the kernels read some types faster than others: SmolLM2's Q8_0 lm head
 * streams about 1.5 times as fast per byte as its Q4_1 layers on Zen 4, so
 * the stage holding the head idled 25 % of a PP = 2 decode. The coordinator
 * measures instead, once before planning: for every type the model's layers
 * and lm head use, one thread runs the decode matmul (a micro-batch of
 * activation rows, the tensor's input width) over 128 MiB of rows, more
 * than a core's caches hold: the median of 5 passes after a warm-up, about
 * 80 ms per type. (The best of 3 passes over 64 MiB put SmolLM2's Q8_0 at
 * 0.44-0.62 of Q4_1 from run to run on Zen 4, moving the stage boundary by
 * two layers; the median of 5 over 128 MiB at 0.62-0.69.) The figures are
 * rounded to sixteenths of the main type.
 *
 * Used where the ranks compute on CPUs (a GPU's figures differ); the
 * environment variable LOOM_BALANCE=bytes keeps the byte balance.
 */
#ifndef LOOM_PARALLEL_PLAN_BALANCE_H
#define LOOM_PARALLEL_PLAN_BALANCE_H

#include "parallel/plan.h"
#include "runtime/gguf.h"

/* Fills *out for model m planned by request r: matmuls of the pipeline's
 * decode micro-batch, ceil(sequences / pp) rows (at most 16). On error (out
 * of memory) *out is zeroed. */
loom_status loom_plan_balance_measure(const loom_plan_model *m, const loom_plan_request *r,
                                      loom_plan_balance *out) LOOM_MUST_USE;

/* The lm head's decode time against the last layer's, timed on this
 * machine with the model's own weights (g): one thread runs the layer and
 * the head over bal's micro-batch of rows, one a sequence decoding after 64
 * positions, the median of 9 steps; bal->head_time becomes that ratio times
 * the layer's weighted bytes. The byte figures count a layer's matmuls
 * only: its norms, rotation, attention and activation quantization (17 %
 * of SmolLM2's layer time at 4 rows) are not in them, and the head, a
 * single matmul, has none, so the stage holding it took too little. Left
 * out (bal unchanged) for an encoder, or where the layer and the head
 * exceed 1 GiB. */
loom_status loom_plan_balance_probe_head(const loom_gguf *g, const loom_plan_model *m, const loom_plan_request *r,
                                         loom_plan_balance *bal) LOOM_MUST_USE;

/* Whether the environment asks for the byte balance (LOOM_BALANCE=bytes);
 * any other value than "bytes" or "time" is an error naming it. */
loom_status loom_plan_balance_by_bytes(bool *by_bytes) LOOM_MUST_USE;

#endif
