#include "parallel/comm.h"

size_t loom_dtype_size(loom_dtype dt) {
    switch (dt) {
    case LOOM_DT_F32: return 4;
    case LOOM_DT_F16: return 2;
    case LOOM_DT_BF16: return 2;
    case LOOM_DT_I32: return 4;
    case LOOM_DT_I64: return 8;
    case LOOM_DT_U8: return 1;
    default: return 0;
    }
}

loom_status loom_comm_all_reduce(loom_comm *c, void *buf, size_t count, loom_dtype dt, loom_redop op) {
    if (!c || c->size == 1 || count == 0) return NULL;
    return c->vt->all_reduce(c, buf, buf, count, dt, op, NULL);
}

loom_status loom_comm_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv,
                                  const size_t *counts, const size_t *displs, loom_dtype dt) {
    return c->vt->all_gatherv(c, send, send_count, recv, counts, displs, dt, NULL);
}

loom_status loom_comm_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root) {
    if (!c || c->size == 1 || count == 0) return NULL;
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
