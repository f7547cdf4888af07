/*
 * parallel/comm_staged.h — a communicator on device buffers that stages
 * every transfer through pinned host memory over a host communicator:
 * device → pinned host → MPI → pinned host → device.
 *
 * For ranks where NCCL is absent or refuses, and between nodes without a
 * direct GPU path. Slower than NCCL (two copies and a synchronisation per
 * call, nothing overlaps), never different: the host communicator computes
 * the same sums. Borrows the host communicator (MPI, or a size-1 one) and
 * the device; owns two pinned buffers that grow to the largest message
 * seen. A call returns when its result is in device memory (it synchronises
 * the caller's stream — NULL: the device's compute stream). The host
 * communicator never sees a device pointer (tests/mpi_comm_backends checks
 * it with a guard). Group calls are not fused (group_begin/end absent).
 */
#ifndef LOOM_COMM_STAGED_H
#define LOOM_COMM_STAGED_H

#include "parallel/comm.h"
#include "runtime/device.h"

loom_status loom_comm_staged_create(loom_comm *host, loom_device *dev, const char *what, loom_comm **out) LOOM_MUST_USE;

#endif
