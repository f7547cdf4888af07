/* parallel/comm_staged.c — device buffers through pinned host memory over a
 * host communicator (contract in comm_staged.h). */
#include "parallel/comm_staged.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    loom_comm *host;
    loom_device *dev;
    char what[48];
    void *pin[2];   /* pinned staging: [0] what this rank sends, [1] what it receives */
    size_t cap[2];
} staged_impl;

static loom_status pinned(loom_comm *c, int i, size_t bytes, void **out) {
    staged_impl *m = c->impl;
    if (bytes > m->cap[i]) {
        if (m->pin[i]) m->dev->vt->host_free(m->dev, m->pin[i]);
        m->pin[i] = NULL, m->cap[i] = 0;
        size_t cap = bytes < 4096 ? 4096 : bytes + bytes / 2;
        loom_status st = m->dev->vt->host_alloc(m->dev, cap, &m->pin[i]);
        if (st) return loom_error_wrap(st, "staging %zu bytes for the %s", bytes, m->what);
        m->cap[i] = cap;
    }
    *out = m->pin[i];
    return NULL;
}

/* device -> pinned, waited for */
static loom_status down(loom_comm *c, void *pin, const void *dev, size_t bytes, void *stream) {
    staged_impl *m = c->impl;
    if (!bytes) return NULL;
    LOOM_TRY(m->dev->vt->copy(m->dev, pin, dev, bytes, LOOM_COPY_D2H, stream));
    return m->dev->vt->sync(m->dev, stream);
}

/* pinned -> device, waited for (the pinned buffer is reused by the next call) */
static loom_status up(loom_comm *c, void *dev, const void *pin, size_t bytes, void *stream) {
    staged_impl *m = c->impl;
    if (!bytes) return NULL;
    LOOM_TRY(m->dev->vt->copy(m->dev, dev, pin, bytes, LOOM_COPY_H2D, stream));
    return m->dev->vt->sync(m->dev, stream);
}

static loom_status s_all_reduce(loom_comm *c, const void *send, void *recv, size_t count, loom_dtype dt, loom_redop op,
                                void *stream) {
    staged_impl *m = c->impl;
    const size_t bytes = count * loom_dtype_size(dt);
    void *p;
    LOOM_TRY(pinned(c, 0, bytes, &p));
    LOOM_TRY(down(c, p, send, bytes, stream));
    LOOM_TRY(loom_comm_all_reduce(m->host, p, count, dt, op));
    return up(c, recv, p, bytes, stream);
}

static loom_status s_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv, const size_t *counts,
                                 const size_t *displs, loom_dtype dt, void *stream) {
    staged_impl *m = c->impl;
    const size_t es = loom_dtype_size(dt);
    if (send_count != counts[c->rank])
        return loom_error(LOOM_ERR_INVALID, "staged all-gather-v on the %s: rank %d sends %zu elements but counts say %zu",
                          m->what, c->rank, send_count, counts[c->rank]);
    size_t end = 0;
    for (int r = 0; r < c->size; r++)
        if (counts[r] && displs[r] + counts[r] > end) end = displs[r] + counts[r];
    void *ps, *pr;
    LOOM_TRY(pinned(c, 0, send_count * es, &ps));
    LOOM_TRY(pinned(c, 1, end * es, &pr));
    LOOM_TRY(down(c, ps, send, send_count * es, stream));
    LOOM_TRY(loom_comm_all_gatherv(m->host, ps, send_count, pr, counts, displs, dt));
    /* each rank's chunk to its place; gaps between chunks stay untouched */
    for (int r = 0; r < c->size; r++)
        if (counts[r])
            LOOM_TRY(m->dev->vt->copy(m->dev, (char *)recv + displs[r] * es, (char *)pr + displs[r] * es,
                                      counts[r] * es, LOOM_COPY_H2D, stream));
    return m->dev->vt->sync(m->dev, stream);
}

static loom_status s_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root, void *stream) {
    staged_impl *m = c->impl;
    const size_t bytes = count * loom_dtype_size(dt);
    void *p;
    LOOM_TRY(pinned(c, 0, bytes, &p));
    if (c->rank == root) LOOM_TRY(down(c, p, buf, bytes, stream));
    LOOM_TRY(loom_comm_broadcast(m->host, p, count, dt, root));
    return c->rank == root ? NULL : up(c, buf, p, bytes, stream);
}

static loom_status s_send(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    staged_impl *m = c->impl;
    const size_t bytes = count * loom_dtype_size(dt);
    void *p;
    LOOM_TRY(pinned(c, 0, bytes, &p));
    LOOM_TRY(down(c, p, buf, bytes, stream));
    return loom_comm_send(m->host, p, count, dt, peer, tag);
}

static loom_status s_recv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    staged_impl *m = c->impl;
    const size_t bytes = count * loom_dtype_size(dt);
    void *p;
    LOOM_TRY(pinned(c, 1, bytes, &p));
    LOOM_TRY(loom_comm_recv(m->host, p, count, dt, peer, tag));
    return up(c, buf, p, bytes, stream);
}

static loom_status s_barrier(loom_comm *c) {
    staged_impl *m = c->impl;
    LOOM_TRY(m->dev->vt->sync(m->dev, NULL));
    return loom_comm_barrier(m->host);
}

static void s_free(loom_comm *c) {
    staged_impl *m = c->impl;
    (void)m->dev->vt->sync(m->dev, NULL);
    for (int i = 0; i < 2; i++)
        if (m->pin[i]) m->dev->vt->host_free(m->dev, m->pin[i]);
    free(m);
    free(c);
}

static const loom_comm_vtable staged_vt = {
    .name = "staged",
    .device_buffers = 1,
    .all_reduce = s_all_reduce,
    .all_gatherv = s_all_gatherv,
    .broadcast = s_broadcast,
    .send = s_send,
    .recv = s_recv,
    .barrier = s_barrier,
    .free = s_free,
};

loom_status loom_comm_staged_create(loom_comm *host, loom_device *dev, const char *what, loom_comm **out) {
    *out = NULL;
    loom_comm *c = calloc(1, sizeof *c);
    staged_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating the staged communicator of the %s", what);
    }
    m->host = host, m->dev = dev;
    snprintf(m->what, sizeof m->what, "%s", what);
    c->vt = &staged_vt, c->rank = host->rank, c->size = host->size, c->impl = m;
    *out = c;
    return NULL;
}
