/*
 * parallel/comm_nccl.h — the NCCL backend of the communicator (comm.h):
 * device buffers, NCCL collectives, plain C over nccl_api.h's table.
 *
 * Bring-up (llm.c's way): rank 0 of the group creates the unique id, which
 * travels to the others over the group's MPI (host) communicator; every
 * rank then joins with ncclCommInitRank (collective; a rank that never
 * joins leaves the others waiting — the cluster's watchdog ends that).
 *
 * Semantics (what tests/test_comm_nccl.c and mpi_comm_backends check):
 *   - every call runs on the backend's own communication stream, ordered
 *     after the work queued so far on the caller's stream (NULL: the
 *     device's compute stream), and the caller's stream waits for it
 *     (events: stream_wait of device.h); a call returns once queued;
 *   - all-gather-v: an NCCL all-gather when every count is equal and the
 *     displacements are rank · count; otherwise one group of send/receive
 *     pairs (each rank's chunk straight into its displacement on every
 *     peer; zero counts send nothing) plus a device copy of the rank's own
 *     chunk (skipped when already in place);
 *   - group_begin/group_end are NCCL groups (calls in between are fused);
 *   - send/recv ignore the tag: NCCL matches the messages between two ranks
 *     in issue order;
 *   - barrier: an all-reduce of one integer, then both streams synchronised.
 * A watchdog thread polls ncclCommGetAsyncError every LOOM_NCCL_POLL_MS
 * milliseconds (default 50); on an asynchronous error it aborts the
 * communicator (ncclCommAbort, which also unblocks kernels waiting on a
 * dead peer), and every later call fails with a message naming the group
 * and the error. loom_comm_nccl_abort does the same on request (e.g. the
 * cluster watchdog found a silent peer).
 */
#ifndef LOOM_COMM_NCCL_H
#define LOOM_COMM_NCCL_H

#include <stdbool.h>

#include "parallel/comm.h"
#include "parallel/nccl_api.h"
#include "runtime/device.h"

/* Collective over `boot` (a host communicator of the same ranks, borrowed
 * only during the call). Borrows dev and api. `what` names the group in
 * errors ("TP group of stage 1"). */
loom_status loom_comm_nccl_create(loom_comm *boot, loom_device *dev, const loom_nccl_api *api, const char *what,
                                  loom_comm **out) LOOM_MUST_USE;

/* Wraps an NCCL communicator that already exists (tests): takes ownership
 * of nc (destroyed by loom_comm_free). */
loom_status loom_comm_nccl_wrap(const loom_nccl_api *api, loom_nccl_comm nc, int rank, int size, loom_device *dev,
                                const char *what, loom_comm **out) LOOM_MUST_USE;

/* Aborts the communicator (any thread, once): later calls fail naming why. */
void loom_comm_nccl_abort(loom_comm *c, const char *why);

bool loom_comm_is_nccl(const loom_comm *c);

/* The NCCL communicator inside (NULL for another backend). */
loom_nccl_comm loom_comm_nccl_handle(const loom_comm *c);

#endif
