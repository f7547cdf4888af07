/*
 * parallel/transfer.h — what travels between ranks while a step runs.
 *
 * A Step (packed protobuf) enters a stage at its TP rank 0 — from the
 * coordinator on stage 0, from the previous stage otherwise — and is
 * broadcast inside the stage's TP group. Hidden states go from each TP rank
 * of stage s to the same TP rank of stage s+1, one column slice each, and
 * are all-gathered there (FasterTransformer's trick: traffic drops by the
 * TP size). The last stage's leader (TP rank 0) sends the StepResult, and
 * raw logits when scoring, point-to-point to the coordinator.
 *
 * Sends to the next stage do not wait: a ring of n_stages slots keeps each
 * send's buffers alive until it completes, so a stage can start micro-batch
 * m+1 while m is still on the wire.
 *
 * Owns its buffers, borrows the topology's communicators. Every message
 * size read from the network is checked before use. Time is counted in two
 * bins: TP collectives (the Step broadcast, the hidden-state all-gather)
 * and stage transfers (time blocked in sends and receives between stages,
 * waiting for a slower peer included).
 */
#ifndef LOOM_TRANSFER_H
#define LOOM_TRANSFER_H

#include <stddef.h>
#include <stdint.h>

#include "parallel/topology.h"
#include "runtime/status.h"

typedef struct loom_transfer loom_transfer;

/* dim: width of a hidden state; batch_rows: rows of a step at most. */
loom_status loom_transfer_create(const loom_topology *t, int dim, int batch_rows, loom_transfer **out) LOOM_MUST_USE;
/* Completes outstanding sends (errors ignored), then frees. */
void loom_transfer_free(loom_transfer *x);

/* TP rank 0 broadcasts the packed step (*bytes, *size) to its group; on
 * the other ranks *bytes and *size are set to the received copy, valid
 * until the next receive. */
loom_status loom_transfer_step_broadcast(loom_transfer *x, uint8_t **bytes, int64_t *size) LOOM_MUST_USE;
/* Receives a packed step from the previous stage; *bytes valid until the
 * next receive. */
loom_status loom_transfer_step_recv(loom_transfer *x, uint8_t **bytes, int64_t *size) LOOM_MUST_USE;
/* Sends the packed step and this TP rank's column slice of hidden (n, dim)
 * to the next stage without waiting for the sends to complete. */
loom_status loom_transfer_forward(loom_transfer *x, const uint8_t *bytes, int64_t size, const float *hidden,
                                  int n) LOOM_MUST_USE;
/* Receives this TP rank's slice of the previous stage's output and
 * assembles the full hidden state (n, dim) in *hidden (valid until the next
 * call). */
loom_status loom_transfer_hidden_recv(loom_transfer *x, int n, float **hidden) LOOM_MUST_USE;

/* Last stage's leader → coordinator: a packed StepResult. */
loom_status loom_transfer_result_send(loom_transfer *x, const uint8_t *bytes, int64_t size) LOOM_MUST_USE;
/* Coordinator: the next packed StepResult; *bytes valid until the next receive. */
loom_status loom_transfer_result_recv(loom_transfer *x, uint8_t **bytes, int64_t *size) LOOM_MUST_USE;
/* Leader → coordinator: n raw floats (scoring logits), after the result. */
loom_status loom_transfer_floats_send(loom_transfer *x, const float *v, size_t n) LOOM_MUST_USE;
loom_status loom_transfer_floats_recv(loom_transfer *x, float *v, size_t n) LOOM_MUST_USE;

/* Worker → coordinator: this rank's figures (n doubles). */
loom_status loom_transfer_report_send(loom_transfer *x, const double *v, size_t n) LOOM_MUST_USE;
/* Coordinator: posts receives of every other rank's figures into
 * v (world, n); loom_transfer_report_wait completes them. */
loom_status loom_transfer_report_post(loom_transfer *x, double *v, size_t n) LOOM_MUST_USE;
loom_status loom_transfer_report_wait(loom_transfer *x) LOOM_MUST_USE;

/* Waits for every outstanding send; the first error is returned. */
loom_status loom_transfer_flush(loom_transfer *x) LOOM_MUST_USE;

/* Seconds in TP collectives and in stage transfers since creation. */
void loom_transfer_times(const loom_transfer *x, double *tp_s, double *pp_s);

#endif
