#include "parallel/comm_mpi.h"

#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    MPI_Comm comm;
    char what[32]; /* "tp group of stage 1" — names the communicator in errors */
} mpi_impl;

struct loom_comm_req {
    MPI_Request req;
};

static int thread_level = -1;

loom_status loom_mpi_init(int *argc, char ***argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited) return NULL;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return loom_error(LOOM_ERR_COMM, "MPI_Init_thread failed");
    thread_level = provided;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return NULL;
}

int loom_mpi_thread_level(void) { return thread_level; }

void loom_mpi_finalize(void) {
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Finalize();
}

static MPI_Datatype mpi_type(loom_dtype dt) {
    switch (dt) {
    case LOOM_DT_F32: return MPI_FLOAT;
    case LOOM_DT_F16: return MPI_UINT16_T;
    case LOOM_DT_BF16: return MPI_UINT16_T;
    case LOOM_DT_I32: return MPI_INT32_T;
    case LOOM_DT_I64: return MPI_INT64_T;
    case LOOM_DT_F64: return MPI_DOUBLE;
    default: return MPI_UINT8_T;
    }
}

static MPI_Op mpi_op(loom_redop op) { return op == LOOM_RED_MAX ? MPI_MAX : op == LOOM_RED_MIN ? MPI_MIN : MPI_SUM; }

static loom_status fail(loom_comm *c, int rc, const char *op, int peer) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    mpi_impl *m = c->impl;
    if (peer >= 0)
        return loom_error(LOOM_ERR_COMM, "%s with rank %d of the %s failed: %s", op, peer, m->what, msg);
    return loom_error(LOOM_ERR_COMM, "%s on the %s failed: %s", op, m->what, msg);
}

/* MPI counts are int: larger transfers are rejected (callers chunk). */
static loom_status check_count(loom_comm *c, size_t count, const char *op) {
    if (count > INT32_MAX) return loom_error(LOOM_ERR_COMM, "%s of %zu elements exceeds MPI's int count", op, count);
    (void)c;
    return NULL;
}

static loom_status m_all_reduce(loom_comm *c, const void *send, void *recv, size_t count, loom_dtype dt,
                                loom_redop op, void *stream) {
    (void)stream;
    mpi_impl *m = c->impl;
    if (dt == LOOM_DT_F16 || dt == LOOM_DT_BF16)
        return loom_error(LOOM_ERR_UNSUPPORTED, "MPI all-reduce of 16-bit floats is not supported");
    LOOM_TRY(check_count(c, count, "all-reduce"));
    int rc = MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mpi_type(dt), mpi_op(op), m->comm);
    return rc == MPI_SUCCESS ? NULL : fail(c, rc, "all-reduce", -1);
}

static loom_status m_all_gatherv(loom_comm *c, const void *send, size_t send_count, void *recv,
                                 const size_t *counts, const size_t *displs, loom_dtype dt, void *stream) {
    (void)stream;
    mpi_impl *m = c->impl;
    int rc_counts[1024], rc_displs[1024];
    int *ic = rc_counts, *id = rc_displs;
    if (c->size > 1024) {
        ic = malloc(sizeof(int) * (size_t)c->size);
        id = malloc(sizeof(int) * (size_t)c->size);
        if (!ic || !id) {
            free(ic);
            free(id);
            return loom_error(LOOM_ERR_NOMEM, "all-gather-v: out of memory");
        }
    }
    loom_status st = NULL;
    for (int r = 0; r < c->size && !st; r++) {
        if (counts[r] > INT32_MAX || displs[r] > INT32_MAX)
            st = loom_error(LOOM_ERR_COMM, "all-gather-v of %zu elements exceeds MPI's int count", counts[r]);
        else {
            ic[r] = (int)counts[r];
            id[r] = (int)displs[r];
        }
    }
    if (!st) {
        int rc = MPI_Allgatherv(send, (int)send_count, mpi_type(dt), recv, ic, id, mpi_type(dt), m->comm);
        if (rc != MPI_SUCCESS) st = fail(c, rc, "all-gather-v", -1);
    }
    if (ic != rc_counts) {
        free(ic);
        free(id);
    }
    return st;
}

static loom_status m_broadcast(loom_comm *c, void *buf, size_t count, loom_dtype dt, int root, void *stream) {
    (void)stream;
    mpi_impl *m = c->impl;
    LOOM_TRY(check_count(c, count, "broadcast"));
    int rc = MPI_Bcast(buf, (int)count, mpi_type(dt), root, m->comm);
    return rc == MPI_SUCCESS ? NULL : fail(c, rc, "broadcast", root);
}

static loom_status m_send(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    (void)stream;
    mpi_impl *m = c->impl;
    LOOM_TRY(check_count(c, count, "send"));
    int rc = MPI_Send(buf, (int)count, mpi_type(dt), peer, tag, m->comm);
    return rc == MPI_SUCCESS ? NULL : fail(c, rc, "send", peer);
}

static loom_status m_recv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream) {
    (void)stream;
    mpi_impl *m = c->impl;
    LOOM_TRY(check_count(c, count, "recv"));
    MPI_Status s;
    int rc = MPI_Recv(buf, (int)count, mpi_type(dt), peer, tag, m->comm, &s);
    if (rc != MPI_SUCCESS) return fail(c, rc, "recv", peer);
    int got = 0;
    MPI_Get_count(&s, mpi_type(dt), &got);
    if ((size_t)got != count)
        return loom_error(LOOM_ERR_COMM, "recv from rank %d of the %s: expected %zu elements, got %d", peer, m->what,
                          count, got);
    return NULL;
}

static loom_status m_isend(loom_comm *c, const void *buf, size_t count, loom_dtype dt, int peer, int tag,
                           void *stream, loom_comm_req **req) {
    (void)stream;
    mpi_impl *m = c->impl;
    LOOM_TRY(check_count(c, count, "isend"));
    loom_comm_req *r = malloc(sizeof *r);
    if (!r) return loom_error(LOOM_ERR_NOMEM, "isend: out of memory");
    int rc = MPI_Isend(buf, (int)count, mpi_type(dt), peer, tag, m->comm, &r->req);
    if (rc != MPI_SUCCESS) {
        free(r);
        return fail(c, rc, "isend", peer);
    }
    *req = r;
    return NULL;
}

static loom_status m_irecv(loom_comm *c, void *buf, size_t count, loom_dtype dt, int peer, int tag, void *stream,
                           loom_comm_req **req) {
    (void)stream;
    mpi_impl *m = c->impl;
    LOOM_TRY(check_count(c, count, "irecv"));
    loom_comm_req *r = malloc(sizeof *r);
    if (!r) return loom_error(LOOM_ERR_NOMEM, "irecv: out of memory");
    int rc = MPI_Irecv(buf, (int)count, mpi_type(dt), peer, tag, m->comm, &r->req);
    if (rc != MPI_SUCCESS) {
        free(r);
        return fail(c, rc, "irecv", peer);
    }
    *req = r;
    return NULL;
}

static loom_status m_wait(loom_comm *c, loom_comm_req *req) {
    int rc = MPI_Wait(&req->req, MPI_STATUS_IGNORE);
    free(req);
    return rc == MPI_SUCCESS ? NULL : fail(c, rc, "wait", -1);
}

static loom_status m_barrier(loom_comm *c) {
    mpi_impl *m = c->impl;
    int rc = MPI_Barrier(m->comm);
    return rc == MPI_SUCCESS ? NULL : fail(c, rc, "barrier", -1);
}

static void m_free(loom_comm *c) {
    mpi_impl *m = c->impl;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&m->comm);
    free(m);
    free(c);
}

static const loom_comm_vtable mpi_vtable = {
    .name = "mpi",
    .all_reduce = m_all_reduce,
    .all_gatherv = m_all_gatherv,
    .broadcast = m_broadcast,
    .send = m_send,
    .recv = m_recv,
    .isend = m_isend,
    .irecv = m_irecv,
    .wait = m_wait,
    .barrier = m_barrier,
    .group_begin = NULL,
    .group_end = NULL,
    .free = m_free,
};

loom_status loom_comm_mpi_create(MPI_Comm comm, const char *what, loom_comm **out) {
    *out = NULL;
    loom_comm *c = calloc(1, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating a communicator");
    }
    if (MPI_Comm_dup(comm, &m->comm) != MPI_SUCCESS) {
        free(c);
        free(m);
        return loom_error(LOOM_ERR_COMM, "MPI_Comm_dup failed for the %s", what);
    }
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    snprintf(m->what, sizeof m->what, "%s", what);
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->size);
    c->vt = &mpi_vtable;
    c->impl = m;
    *out = c;
    return NULL;
}

MPI_Comm loom_comm_mpi_handle(const loom_comm *c) { return ((const mpi_impl *)c->impl)->comm; }
