/*
 * parallel/stage_device.h — one rank's part of the forward pass on a
 * device (runtime/device_forward.h), composed with a device TP
 * communicator: what parallel/stage.c runs when the engine's device is
 * CUDA or HOST.
 *
 * Owns the device (GPU `ordinal`, or the host device), the device forward
 * pass (weights uploaded, KV pool) and the TP communicator on device
 * buffers, built over the stage's MPI TP group (borrowed): NCCL when every
 * rank of the group can load it, else the staged backend; LOOM_COMM=nccl
 * or LOOM_COMM=staged forces one (nccl then fails where NCCL is missing).
 * The host device always stages. Creating it is collective over the TP
 * group (every rank learns whether any failed before NCCL's collective
 * init starts).
 *
 * Graphs. With one TP rank, or over NCCL, a step of at most
 * LOOM_GRAPH_MAX_ROWS rows (decode) is captured once per shape (rows,
 * attention units, logit rows: loom_dforward_shape) into a device graph
 * and replayed for later steps of that shape; LOOM_CUDA_GRAPHS=0 turns
 * graphs off. The staged backend synchronises inside a call, which a graph
 * cannot hold, so it never uses graphs.
 *
 * Hidden states leave the device only when a next stage needs them (the
 * transfer to it is host memory, parallel/transfer.h); logits come back
 * for the rows that asked.
 */
#ifndef LOOM_STAGE_DEVICE_H
#define LOOM_STAGE_DEVICE_H

#include "parallel/comm.h"
#include "runtime/device.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"

#define LOOM_GRAPH_MAX_ROWS 8

typedef struct loom_dstage loom_dstage;

loom_status loom_dstage_create(const loom_weights *w, loom_kv_cache *tables, loom_device_kind kind, int ordinal,
                               int n_threads, loom_comm *tp, int max_rows, loom_dstage **out) LOOM_MUST_USE;
void loom_dstage_free(loom_dstage *s);

/* loom_stage_forward's contract. */
loom_status loom_dstage_forward(loom_dstage *s, const loom_batch *b, float **hidden, float *logits,
                                int *n_logits) LOOM_MUST_USE;

double loom_dstage_comm_seconds(const loom_dstage *s);
/* "cuda GPU 0 (NVIDIA H200), TP over nccl, graphs on" */
const char *loom_dstage_describe(const loom_dstage *s);
/* graph replays and captures so far (for tests and benchmarks) */
void loom_dstage_graph_counts(const loom_dstage *s, long *replays, long *captures);

#endif
