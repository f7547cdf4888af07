/* parallel/comm_nccl.c — the NCCL backend of the communicator (contract in
 * comm_nccl.h). */
#include "parallel/comm_nccl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const loom_nccl_api *api;
    loom_nccl_comm nc;
    loom_device *dev;
    void *cstream;         /* the communication stream */
    int32_t *scratch;      /* one device integer (barrier) */
    char what[48];
    int group_depth;       /* open loom groups */
    void *group_stream;    /* the caller's stream seen first in the open group */
    int group_ops;
    /* watchdog */
    pthread_t wd;
    bool wd_running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    int poll_ms;
    _Atomic int aborted;   /* 1 once aborted: nc is gone */
    char why[256];
} nccl_impl;

static const loom_comm_vtable nccl_vt;

bool loom_comm_is_nccl(const loom_comm *c) { return c && c->vt == &nccl_vt; }

loom_nccl_comm loom_comm_nccl_handle(const loom_comm *c) {
    return loom_comm_is_nccl(c) ? ((const nccl_impl *)c->impl)->nc : NULL;
}

static int nccl_dtype(loom_dtype dt) {
    switch (dt) {
    case LOOM_DT_F32: return LOOM_NCCL_FLOAT32;
    case LOOM_DT_F16: return LOOM_NCCL_FLOAT16;
    case LOOM_DT_BF16: return LOOM_NCCL_BFLOAT16;
    case LOOM_DT_I32: return LOOM_NCCL_INT32;
    case LOOM_DT_I64: return LOOM_NCCL_INT64;
    case LOOM_DT_F64: return LOOM_NCCL_FLOAT64;
    default: return LOOM_NCCL_UINT8;
    }
}

static int nccl_op(loom_redop op) {
    return op == LOOM_RED_MAX ? LOOM_NCCL_MAX : op == LOOM_RED_MIN ? LOOM_NCCL_MIN : LOOM_NCCL_SUM;
}

static loom_status failed(loom_comm *c, int r, const char *op, int peer) {
    nccl_impl *m = c->impl;
    const char *s = m->api->get_error_string ? m->api->get_error_string(r) : "?";
    const char *last = !atomic_load(&m->aborted) && m->api->get_last_error ? m->api->get_last_error(m->nc) : NULL;
    if (peer >= 0)
        return loom_error(LOOM_ERR_COMM, "NCCL %s with rank %d of the %s failed: %s%s%s", op, peer, m->what, s,
                          last && *last ? ": " : "", last ? last : "");
    return loom_error(LOOM_ERR_COMM, "NCCL %s on the %s failed: %s%s%s", op, m->what, s, last && *last ? ": " : "",
                      last ? last : "");
}

static loom_status check_alive(loom_comm *c, const char *op) {
    nccl_impl *m = c->impl;
    if (!atomic_load(&m->aborted)) return NULL;
    pthread_mutex_lock(&m->mu);
    loom_status st = loom_error(LOOM_ERR_COMM, "NCCL %s on the %s: the communicator was aborted (%s)", op, m->what,
                                m->why);
    pthread_mutex_unlock(&m->mu);
    return st;
}

/* ---- ordering with the caller's stream ---- */

static void *caller_stream(nccl_impl *m, void *stream) {
    return stream ? stream : m->dev->vt->compute_stream(m->dev);
}

/* Before an operation: the communication stream waits for the caller's
 * work (once per group: grouped calls are launched at group_end, after it). */
static loom_status enter(loom_comm *c, const char *op, void *stream) {
    nccl_impl *m = c->impl;
    LOOM_TRY(check_alive(c, op));
    void *s = caller_stream(m, stream);
    if (m->group_depth > 0) {
        if (m->group_ops++ > 0) return NULL;
        m->group_stream = s;
    }
    return m->dev->vt->stream_wait(m->dev, m->cstream, s);
}

/* After an operation (outside groups): the caller's stream waits for it. */
static loom_status leave(loom_comm *c, void *stream) {
    nccl_impl *m = c->impl;
    if (m->group_depth > 0) return NULL;
    return m->dev->vt->stream_wait(m->dev, caller_stream(m, stream), m->cstream);
}

#define CALL(c, opname, peer, expr)                          \
    do {                                                     \
        int r_ = (expr);                                     \
        if (r_ != LOOM_NCCL_SUCCESS) return failed((c), r_, (opname), (peer)); \
    } while (0)

/* ---- the vtable ---- */

static loom_status n_all_reduce(loom_comm *c, const void *send, void *recv, size_t count, loom_dtype dt, loom_redop op,
                                void *stream) {
    nccl_impl *m = c->impl;
    LOOM_TRY(enter(c, "all-reduce", stream));
    CALL(c, "all-reduce", -1, m->api->all_reduce(send, recv, count, nccl_dtype(dt), nccl_op(op), m->nc, m->cstream));
    return leave(c, stream);
}

static loom_status n_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root, void *stream) {
    nccl_impl *m = c->impl;
    if (root < 0 || root >= c->size)
        return loom_error(LOOM_ERR_INVALID, "NCCL broadcast on the %s: root %d of %d ranks", m->what, root, c->size);
    LOOM_TRY(enter(c, "broadcast", stream));
    CALL(c, "broadcast", root, m->api->broadcast(buf, buf, count, nccl_dtype(dt), root, m->nc, m->cstream));
    return leave(c, stream);
}

static loom_status n_send(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    (void)tag; /* NCCL matches a pair's messages in issue order */
    nccl_impl *m = c->impl;
    LOOM_TRY(enter(c, "send", stream));
    CALL(c, "send", peer, m->api->send(buf, count, nccl_dtype(dt), peer, m->nc, m->cstream));
    return leave(c, stream);
}

static loom_status n_recv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    (void)tag;
    nccl_impl *m = c->impl;
    LOOM_TRY(enter(c, "recv", stream));
    CALL(c, "recv", peer, m->api->recv(buf, count, nccl_dtype(dt), peer, m->nc, m->cstream));
    return leave(c, stream);
}

static loom_status n_group_begin(loom_comm *c) {
    nccl_impl *m = c->impl;
    LOOM_TRY(check_alive(c, "group start"));
    CALL(c, "group start", -1, m->api->group_start());
    if (m->group_depth++ == 0) m->group_ops = 0, m->group_stream = NULL;
    return NULL;
}

static loom_status n_group_end(loom_comm *c) {
    nccl_impl *m = c->impl;
    if (m->group_depth == 0) return loom_error(LOOM_ERR_INVALID, "NCCL group end on the %s without a start", m->what);
    const int r = m->api->group_end();
    const int outer = --m->group_depth == 0;
    if (r != LOOM_NCCL_SUCCESS) return failed(c, r, "group", -1);
    if (outer && m->group_ops > 0) return m->dev->vt->stream_wait(m->dev, m->group_stream, m->cstream);
    return NULL;
}

/* Equal counts at rank · count: NCCL's all-gather; else grouped pairs. */
static loom_status n_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv, const size_t *counts,
                                 const size_t *displs, loom_dtype dt, void *stream) {
    nccl_impl *m = c->impl;
    const size_t es = loom_dtype_size(dt);
    if (send_count != counts[c->rank])
        return loom_error(LOOM_ERR_INVALID, "NCCL all-gather-v on the %s: rank %d sends %zu elements but counts say %zu",
                          m->what, c->rank, send_count, counts[c->rank]);
    bool uniform = true;
    for (int r = 0; r < c->size && uniform; r++) uniform = counts[r] == counts[0] && displs[r] == (size_t)r * counts[0];
    if (uniform) {
        LOOM_TRY(enter(c, "all-gather", stream));
        CALL(c, "all-gather", -1, m->api->all_gather(send, recv, counts[0], nccl_dtype(dt), m->nc, m->cstream));
        return leave(c, stream);
    }
    LOOM_TRY(n_group_begin(c));
    loom_status st = enter(c, "all-gather-v", stream);
    char *own = (char *)recv + displs[c->rank] * es;
    if (!st && send_count && (const char *)send != own)
        st = m->dev->vt->copy(m->dev, own, send, send_count * es, LOOM_COPY_D2D, m->cstream);
    /* peers in ring order from this rank: every rank posts its pairs in the same pattern */
    for (int k = 1; k < c->size && !st; k++) {
        const int to = (c->rank + k) % c->size, from = (c->rank - k + c->size) % c->size;
        int r = LOOM_NCCL_SUCCESS;
        if (send_count) r = m->api->send(send, send_count, nccl_dtype(dt), to, m->nc, m->cstream);
        if (r == LOOM_NCCL_SUCCESS && counts[from])
            r = m->api->recv((char *)recv + displs[from] * es, counts[from], nccl_dtype(dt), from, m->nc, m->cstream);
        if (r != LOOM_NCCL_SUCCESS) st = failed(c, r, "all-gather-v", to);
    }
    loom_status end = n_group_end(c);
    if (st) {
        loom_status_free(end);
        return st;
    }
    return end;
}

static loom_status n_barrier(loom_comm *c) {
    nccl_impl *m = c->impl;
    LOOM_TRY(n_all_reduce(c, m->scratch, m->scratch, 1, LOOM_DT_I32, LOOM_RED_SUM, NULL));
    LOOM_TRY(m->dev->vt->sync(m->dev, m->cstream));
    return m->dev->vt->sync(m->dev, NULL);
}

/* ---- watchdog ---- */

static void do_abort(loom_comm *c, const char *why) {
    nccl_impl *m = c->impl;
    pthread_mutex_lock(&m->mu);
    const int was = atomic_exchange(&m->aborted, 1);
    if (!was) {
        snprintf(m->why, sizeof m->why, "%s", why);
        m->api->comm_abort(m->nc);
    }
    pthread_mutex_unlock(&m->mu);
}

void loom_comm_nccl_abort(loom_comm *c, const char *why) {
    if (loom_comm_is_nccl(c)) do_abort(c, why);
}

static void *watchdog(void *arg) {
    loom_comm *c = arg;
    nccl_impl *m = c->impl;
    pthread_mutex_lock(&m->mu);
    while (!m->stop && !atomic_load(&m->aborted)) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += (long)m->poll_ms * 1000000L;
        t.tv_sec += t.tv_nsec / 1000000000L;
        t.tv_nsec %= 1000000000L;
        int rc = 0;
        while (!m->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&m->cv, &m->mu, &t);
        if (m->stop) break;
        int err = LOOM_NCCL_SUCCESS;
        const int r = m->api->comm_get_async_error(m->nc, &err);
        if (r != LOOM_NCCL_SUCCESS || (err != LOOM_NCCL_SUCCESS && err != LOOM_NCCL_IN_PROGRESS)) {
            char why[256];
            snprintf(why, sizeof why, "asynchronous error: %s",
                     m->api->get_error_string(r != LOOM_NCCL_SUCCESS ? r : err));
            pthread_mutex_unlock(&m->mu);
            do_abort(c, why);
            fprintf(stderr, "loom: NCCL on the %s: %s; communicator aborted\n", m->what, why);
            return NULL;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static void n_free(loom_comm *c) {
    nccl_impl *m = c->impl;
    if (m->wd_running) {
        pthread_mutex_lock(&m->mu);
        m->stop = true;
        pthread_cond_signal(&m->cv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->wd, NULL);
    }
    if (m->cstream) (void)m->dev->vt->sync(m->dev, m->cstream);
    if (!atomic_load(&m->aborted) && m->nc) m->api->comm_destroy(m->nc);
    if (m->cstream) m->dev->vt->stream_free(m->dev, m->cstream);
    if (m->scratch) m->dev->vt->free(m->dev, m->scratch);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
    free(c);
}

static const loom_comm_vtable nccl_vt = {
    .name = "nccl",
    .device_buffers = 1,
    .all_reduce = n_all_reduce,
    .all_gatherv = n_all_gatherv,
    .broadcast = n_broadcast,
    .send = n_send,
    .recv = n_recv,
    .barrier = n_barrier,
    .group_begin = n_group_begin,
    .group_end = n_group_end,
    .free = n_free,
};

loom_status loom_comm_nccl_wrap(const loom_nccl_api *api, loom_nccl_comm nc, int rank, int size, loom_device *dev,
                                const char *what, loom_comm **out) {
    *out = NULL;
    loom_comm *c = calloc(1, sizeof *c);
    nccl_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        if (nc) api->comm_destroy(nc);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating the NCCL communicator of the %s", what);
    }
    c->vt = &nccl_vt, c->rank = rank, c->size = size, c->impl = m;
    m->api = api, m->nc = nc, m->dev = dev;
    snprintf(m->what, sizeof m->what, "%s", what);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    const char *poll = getenv("LOOM_NCCL_POLL_MS");
    m->poll_ms = poll && atoi(poll) > 0 ? atoi(poll) : 50;
    void *p = NULL;
    loom_status st = dev->vt->stream_create(dev, &m->cstream);
    if (!st) st = loom_device_alloc(dev, sizeof(int32_t), "NCCL barrier scratch", &p);
    m->scratch = p;
    if (!st) {
        if (pthread_create(&m->wd, NULL, watchdog, c) == 0) m->wd_running = true;
        else st = loom_error(LOOM_ERR_NOMEM, "cannot start the NCCL watchdog of the %s", what);
    }
    if (st) {
        n_free(c);
        return st;
    }
    *out = c;
    return NULL;
}

loom_status loom_comm_nccl_create(loom_comm *boot, loom_device *dev, const loom_nccl_api *api, const char *what,
                                  loom_comm **out) {
    *out = NULL;
    /* rank 0's id, preceded by whether it could make one */
    struct {
        int32_t ok;
        loom_nccl_id id;
    } msg;
    memset(&msg, 0, sizeof msg);
    const char *err = NULL;
    if (boot->rank == 0) {
        const int r = api->get_unique_id(&msg.id);
        msg.ok = r == LOOM_NCCL_SUCCESS;
        if (!msg.ok) err = api->get_error_string(r);
    }
    LOOM_TRY(loom_comm_broadcast(boot, &msg, sizeof msg, LOOM_DT_U8, 0));
    if (!msg.ok)
        return boot->rank == 0 ? loom_error(LOOM_ERR_COMM, "ncclGetUniqueId for the %s failed: %s", what, err)
                               : loom_error(LOOM_ERR_PEER, "rank 0 of the %s could not create an NCCL id", what);
    loom_nccl_comm nc = NULL;
    const int r = api->comm_init_rank(&nc, boot->size, msg.id, boot->rank);
    if (r != LOOM_NCCL_SUCCESS)
        return loom_error(LOOM_ERR_COMM, "ncclCommInitRank (rank %d of %d) for the %s failed: %s", boot->rank,
                          boot->size, what, api->get_error_string(r));
    return loom_comm_nccl_wrap(api, nc, boot->rank, boot->size, dev, what, out);
}
