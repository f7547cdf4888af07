#include "parallel/comm.h"

#include <stdlib.h>
#include <string.h>

size_t loom_dtype_size(loom_dtype dt) {
    switch (dt) {
    case LOOM_DT_F32: return 4;
    case LOOM_DT_F16: return 2;
    case LOOM_DT_BF16: return 2;
    case LOOM_DT_I32: return 4;
    case LOOM_DT_I64: return 8;
    case LOOM_DT_U8: return 1;
    case LOOM_DT_F64: return 8;
    default: return 0;
    }
}

loom_status loom_comm_all_reduce(loom_comm *c, void *buf, size_t count, loom_dtype dt, loom_redop op) {
    if (!c || (c->size == 1 && !c->vt->device_buffers) || count == 0) return NULL;
    return c->vt->all_reduce(c, buf, buf, count, dt, op, NULL);
}

loom_status loom_comm_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv,
                                  const size_t *counts, const size_t *displs, loom_dtype dt) {
    if (!c || (c->size == 1 && !c->vt->device_buffers)) {
        memmove((char *)recv + displs[0] * loom_dtype_size(dt), send, send_count * loom_dtype_size(dt));
        return NULL;
    }
    return c->vt->all_gatherv(c, send, send_count, recv, counts, displs, dt, NULL);
}

loom_status loom_comm_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root) {
    if (!c || (c->size == 1 && !c->vt->device_buffers) || count == 0) return NULL;
    return c->vt->broadcast(c, buf, count, dt, root, NULL);
}

loom_status loom_comm_send(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag) {
    return c->vt->send(c, buf, count, dt, peer, tag, NULL);
}

loom_status loom_comm_recv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag) {
    return c->vt->recv(c, buf, count, dt, peer, tag, NULL);
}

loom_status loom_comm_isend(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag,
                            loom_comm_req **req) {
    *req = NULL;
    if (c->vt->isend) return c->vt->isend(c, buf, count, dt, peer, tag, NULL, req);
    return c->vt->send(c, buf, count, dt, peer, tag, NULL);
}

loom_status loom_comm_irecv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag,
                            loom_comm_req **req) {
    *req = NULL;
    if (c->vt->irecv) return c->vt->irecv(c, buf, count, dt, peer, tag, NULL, req);
    return c->vt->recv(c, buf, count, dt, peer, tag, NULL);
}

loom_status loom_comm_wait(loom_comm *c, loom_comm_req *req) {
    if (!req) return NULL;
    return c->vt->wait(c, req);
}

loom_status loom_comm_barrier(loom_comm *c) {
    if (!c || c->size == 1) return NULL;
    return c->vt->barrier(c);
}

void loom_comm_free(loom_comm *c) {
    if (c) c->vt->free(c);
}

/* ---- the one-rank communicator ---- */

static loom_status self_all_reduce(loom_comm *c, const void *send, void *recv, size_t count, loom_dtype dt,
                                   loom_redop op, void *stream) {
    (void)c, (void)op, (void)stream;
    if (send != recv) memmove(recv, send, count * loom_dtype_size(dt));
    return NULL;
}

static loom_status self_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv,
                                    const size_t *counts, const size_t *displs, loom_dtype dt, void *stream) {
    (void)c, (void)counts, (void)stream;
    memmove((char *)recv + displs[0] * loom_dtype_size(dt), send, send_count * loom_dtype_size(dt));
    return NULL;
}

static loom_status self_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root, void *stream) {
    (void)c, (void)buf, (void)count, (void)dt, (void)root, (void)stream;
    return NULL;
}

static loom_status self_p2p(loom_comm *c, int peer) {
    (void)c;
    return loom_error(LOOM_ERR_COMM, "a one-rank communicator has no rank %d to talk to", peer);
}

static loom_status self_send(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag,
                             void *stream) {
    (void)buf, (void)count, (void)dt, (void)tag, (void)stream;
    return self_p2p(c, peer);
}

static loom_status self_recv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    (void)buf, (void)count, (void)dt, (void)tag, (void)stream;
    return self_p2p(c, peer);
}

static loom_status self_barrier(loom_comm *c) {
    (void)c;
    return NULL;
}

static void self_free(loom_comm *c) { free(c); }

static const loom_comm_vtable self_vt = {
    .name = "self",
    .all_reduce = self_all_reduce,
    .all_gatherv = self_all_gatherv,
    .broadcast = self_broadcast,
    .send = self_send,
    .recv = self_recv,
    .barrier = self_barrier,
    .free = self_free,
};

loom_status loom_comm_self_create(loom_comm **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return loom_error(LOOM_ERR_NOMEM, "out of memory creating a communicator");
    (*out)->vt = &self_vt;
    (*out)->rank = 0;
    (*out)->size = 1;
    return NULL;
}
