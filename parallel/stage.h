/*
 * parallel/stage.h — one rank's part of the forward pass, composed from the
 * runtime's block pieces and the tensor-parallel collectives.
 *
 * As in FasterTransformer's TensorParallel layers, a tensor-parallel block is
 * the single-rank piece on a slice plus one all-reduce: after the attention
 * output projection and after the MLP down projection. A vocabulary split
 * adds an all-reduce of the embedding. With a size-1 (or NULL) TP
 * communicator every collective is a no-op, so one rank holding the whole
 * model is the special case, not a separate path.
 */
#ifndef LOOM_STAGE_H
#define LOOM_STAGE_H

#include "parallel/comm.h"
#include "runtime/device.h"
#include "runtime/forward.h"

typedef struct loom_stage loom_stage;

/* Borrows everything; tp may be NULL (one rank). */
loom_status loom_stage_create(const loom_weights *w, loom_kv_cache *kv, loom_pool *pool, loom_comm *tp,
                              int max_rows, loom_stage **out) LOOM_MUST_USE;
/* The same stage on a device (parallel/stage_device.h): kind CUDA (GPU
 * `ordinal`) or HOST (the CPU through the device interface). Owns the
 * device and a device TP communicator built over tp (borrowed, MPI);
 * collective over tp. The KV cache provides the block tables only. */
loom_status loom_stage_create_device(const loom_weights *w, loom_kv_cache *kv, loom_device_kind kind, int ordinal,
                                     int n_threads, loom_comm *tp, int max_rows, loom_stage **out) LOOM_MUST_USE;
void loom_stage_free(loom_stage *s);
/* "cpu", or the device stage's description */
const char *loom_stage_describe(const loom_stage *s);

/* Runs the batch through this rank's layers. On return the residual stream
 * (n, dim) is in *hidden (valid until the next call). When the rank holds the
 * lm head, logits (n_out, n_vocab held) are written for the rows with logits
 * set and *n_logits is n_out; otherwise *n_logits is 0. */
loom_status loom_stage_forward(loom_stage *s, const loom_batch *b, float **hidden, float *logits,
                               int *n_logits) LOOM_MUST_USE;

/* Whether the stage applies LoRA adapters (a CPU stage; a device stage
 * does not), and the adapters' scales for the sequence in KV slot `slot`
 * (loom_forward_set_lora). */
bool loom_stage_takes_lora(const loom_stage *s);
loom_status loom_stage_set_lora(loom_stage *s, int slot, const float *scale, int n) LOOM_MUST_USE;

/* Time spent in collectives since creation, seconds. */
double loom_stage_comm_seconds(const loom_stage *s);

#endif
