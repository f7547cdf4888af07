/*
 * tests/support/nccl_mpi.h — NCCL's interface (parallel/nccl_api.h)
 * emulated over MPI on host memory, so the NCCL backend's code runs under
 * mpirun without a GPU. It enforces what NCCL demands of its callers:
 *   - ncclCommInitRank: every rank passes the same unique id (checked with
 *     an all-gather of the ids) and its own rank of the right size;
 *   - collectives are issued in the same order, with the same kind, count
 *     and type, on every rank (checked before each one runs: a mismatch is
 *     ncclInvalidUsage, never a hang or a silent mix-up);
 *   - point-to-point calls between group start and end are posted together
 *     at group end (so a group of pairs cannot deadlock); outside a group a
 *     send blocks until its receive is posted (MPI_Ssend), as NCCL's kernel
 *     would; messages of a pair match in issue order (one MPI tag);
 *   - ncclCommGetAsyncError reports what loom_nccl_mpi_inject_error set.
 * Buffers are host memory (the host device's "device" buffers).
 */
#ifndef LOOM_TEST_NCCL_MPI_H
#define LOOM_TEST_NCCL_MPI_H

#include <mpi.h>

#include "parallel/nccl_api.h"

/* The MPI communicator the emulated NCCL groups span (default: MPI_COMM_WORLD). */
void loom_nccl_mpi_set_world(MPI_Comm world);
const loom_nccl_api *loom_nccl_mpi_api(void);

typedef struct {
    int all_reduce, broadcast, all_gather, send, recv, groups, aborts, destroys;
    long long send_elems, recv_elems;
} loom_nccl_mpi_stats;

/* Counters of this process's calls since the last reset. */
loom_nccl_mpi_stats loom_nccl_mpi_get_stats(void);
void loom_nccl_mpi_reset_stats(void);

/* The next ncclCommGetAsyncError on comm reports err. */
void loom_nccl_mpi_inject_error(loom_nccl_comm comm, int err);

#endif
