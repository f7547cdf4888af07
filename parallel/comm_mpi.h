/*
 * parallel/comm_mpi.h — the MPI backend of the communicator (host buffers).
 *
 * loom_mpi_init() initialises MPI at MPI_THREAD_MULTIPLE when the library
 * offers it (the watchdog and, later, the HTTP server run in their own
 * threads) and records the level obtained. Open MPI aborts the job by
 * itself on a dead process; errors are returned (MPI_ERRORS_RETURN) so a
 * failing call becomes a status naming the operation and the peer.
 */
#ifndef LOOM_COMM_MPI_H
#define LOOM_COMM_MPI_H

#include <mpi.h>

#include "parallel/comm.h"

/* Initialises MPI (once; later calls are no-ops). */
loom_status loom_mpi_init(int *argc, char ***argv) LOOM_MUST_USE;
/* The thread level MPI granted (MPI_THREAD_*). */
int loom_mpi_thread_level(void);
void loom_mpi_finalize(void);

/* Wraps a duplicate of `comm` (the caller keeps its own). */
loom_status loom_comm_mpi_create(MPI_Comm comm, const char *what, loom_comm **out) LOOM_MUST_USE;
/* The MPI communicator behind an MPI-backend loom_comm. */
MPI_Comm loom_comm_mpi_handle(const loom_comm *c);

#endif
