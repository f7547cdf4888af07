/*
 * parallel/comm.h — the communicator: one small interface, several backends.
 *
 * Model code talks to its peers only through this vtable, so the same code
 * runs over MPI on host buffers and over NCCL (comm_nccl.h) or a staged
 * copy through host memory (comm_staged.h) on device buffers. A
 * backend that cannot do something natively emulates it (NCCL has no
 * all-gather-v: it is emulated with grouped send/recv). `stream` is the
 * device stream for device backends (NULL: the device's compute stream,
 * which is what the wrappers below pass), ignored by host ones. Async calls
 * return a request to wait on; a backend without overlap completes the call
 * and returns a finished request.
 *
 * Every call returns a status naming the rank, the operation and the peer.
 * A communicator is owned by whoever created it; free() releases it.
 */
#ifndef LOOM_COMM_H
#define LOOM_COMM_H

#include <stddef.h>

#include "runtime/status.h"

typedef enum { LOOM_DT_F32, LOOM_DT_F16, LOOM_DT_BF16, LOOM_DT_I32, LOOM_DT_I64, LOOM_DT_U8, LOOM_DT_F64, LOOM_DT_COUNT } loom_dtype;
typedef enum { LOOM_RED_SUM, LOOM_RED_MAX, LOOM_RED_MIN } loom_redop;

size_t loom_dtype_size(loom_dtype dt);

typedef struct loom_comm loom_comm;
typedef struct loom_comm_req loom_comm_req;

typedef struct {
    const char *name;
    int device_buffers; /* 1: buffers are device memory (also for one rank: the wrappers call the backend) */
    loom_status (*all_reduce)(loom_comm *c, const void *send, void *recv, size_t count, loom_dtype dt,
                              loom_redop op, void *stream);
    /* recv = concatenation of every rank's `counts[r]` elements at displs[r] */
    loom_status (*all_gatherv)(loom_comm *c, const void *send, size_t send_count, void *recv,
                               const size_t *counts, const size_t *displs, loom_dtype dt, void *stream);
    loom_status (*broadcast)(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root, void *stream);
    loom_status (*send)(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream);
    loom_status (*recv)(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream);
    /* optional (NULL: use send/recv): */
    loom_status (*isend)(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag,
                         void *stream, loom_comm_req **req);
    loom_status (*irecv)(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream,
                         loom_comm_req **req);
    loom_status (*wait)(loom_comm *c, loom_comm_req *req); /* frees req */
    loom_status (*barrier)(loom_comm *c);
    /* optional: calls between begin and end may be fused (NCCL groups) */
    loom_status (*group_begin)(loom_comm *c);
    loom_status (*group_end)(loom_comm *c);
    void (*free)(loom_comm *c);
} loom_comm_vtable;

struct loom_comm {
    const loom_comm_vtable *vt;
    int rank, size;
    void *impl;
};

/* Convenience wrappers: a size-1 communicator makes collectives no-ops. */
loom_status loom_comm_all_reduce(loom_comm *c, void *buf, size_t count, loom_dtype dt, loom_redop op) LOOM_MUST_USE;
loom_status loom_comm_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv,
                                  const size_t *counts, const size_t *displs, loom_dtype dt) LOOM_MUST_USE;
loom_status loom_comm_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root) LOOM_MUST_USE;
loom_status loom_comm_send(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag) LOOM_MUST_USE;
loom_status loom_comm_recv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag) LOOM_MUST_USE;
loom_status loom_comm_isend(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag,
                            loom_comm_req **req) LOOM_MUST_USE;
loom_status loom_comm_irecv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag,
                            loom_comm_req **req) LOOM_MUST_USE;
loom_status loom_comm_wait(loom_comm *c, loom_comm_req *req) LOOM_MUST_USE; /* NULL req: no-op */
loom_status loom_comm_barrier(loom_comm *c) LOOM_MUST_USE;
void loom_comm_free(loom_comm *c);

/* A communicator of one rank (a process without MPI): collectives copy
 * their input to their output, point-to-point calls fail. */
loom_status loom_comm_self_create(loom_comm **out) LOOM_MUST_USE;

#endif
