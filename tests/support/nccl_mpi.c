/* tests/support/nccl_mpi.c — NCCL emulated over MPI (contract in nccl_mpi.h). */
#include "nccl_mpi.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct loom_nccl_comm_s {
    MPI_Comm comm;
    int rank, size;
    long long seq;        /* collectives issued */
    _Atomic int injected; /* the async error to report */
    int aborted;
};

typedef struct {
    int kind; /* 0 send, 1 recv */
    void *buf;
    size_t bytes;
    int peer;
    loom_nccl_comm comm;
} p2p;

static MPI_Comm world = MPI_COMM_NULL;
static int depth;
static p2p *pending;
static int n_pending, cap_pending;
static loom_nccl_mpi_stats stats;

void loom_nccl_mpi_set_world(MPI_Comm w) { world = w; }
loom_nccl_mpi_stats loom_nccl_mpi_get_stats(void) { return stats; }
void loom_nccl_mpi_reset_stats(void) { memset(&stats, 0, sizeof stats); }
void loom_nccl_mpi_inject_error(loom_nccl_comm comm, int err) { atomic_store(&comm->injected, err); }

static size_t dt_size(int dt) {
    switch (dt) {
    case LOOM_NCCL_INT8:
    case LOOM_NCCL_UINT8: return 1;
    case LOOM_NCCL_FLOAT16:
    case LOOM_NCCL_BFLOAT16: return 2;
    case LOOM_NCCL_INT32:
    case LOOM_NCCL_UINT32:
    case LOOM_NCCL_FLOAT32: return 4;
    default: return 8;
    }
}

static MPI_Datatype mpi_dt(int dt) {
    switch (dt) {
    case LOOM_NCCL_INT8: return MPI_INT8_T;
    case LOOM_NCCL_UINT8: return MPI_UINT8_T;
    case LOOM_NCCL_INT32: return MPI_INT32_T;
    case LOOM_NCCL_UINT32: return MPI_UINT32_T;
    case LOOM_NCCL_INT64: return MPI_INT64_T;
    case LOOM_NCCL_UINT64: return MPI_UINT64_T;
    case LOOM_NCCL_FLOAT32: return MPI_FLOAT;
    case LOOM_NCCL_FLOAT64: return MPI_DOUBLE;
    default: return MPI_DATATYPE_NULL; /* 16-bit floats: not emulated */
    }
}

static int e_version(int *v) {
    *v = 22800;
    return LOOM_NCCL_SUCCESS;
}

static int e_unique_id(loom_nccl_id *id) {
    uint64_t s = (uint64_t)time(NULL) * 6364136223846793005ull ^ (uint64_t)getpid();
    for (size_t i = 0; i < sizeof id->internal; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        id->internal[i] = (char)(s >> 56);
    }
    return LOOM_NCCL_SUCCESS;
}

static int e_init(loom_nccl_comm *out, int nranks, loom_nccl_id id, int rank) {
    *out = NULL;
    MPI_Comm w = world == MPI_COMM_NULL ? MPI_COMM_WORLD : world;
    int r, n;
    MPI_Comm_rank(w, &r);
    MPI_Comm_size(w, &n);
    /* every rank must hold rank 0's id */
    char *all = malloc(sizeof id.internal * (size_t)n);
    MPI_Allgather(id.internal, sizeof id.internal, MPI_CHAR, all, sizeof id.internal, MPI_CHAR, w);
    int same = 1;
    for (int i = 1; i < n; i++) same &= memcmp(all, all + i * sizeof id.internal, sizeof id.internal) == 0;
    free(all);
    if (!same || nranks != n || rank != r) return LOOM_NCCL_INVALID_USAGE;
    loom_nccl_comm c = calloc(1, sizeof *c);
    MPI_Comm_dup(w, &c->comm);
    c->rank = r, c->size = n;
    *out = c;
    return LOOM_NCCL_SUCCESS;
}

static int e_destroy(loom_nccl_comm c) {
    stats.destroys++;
    /* the MPI communicator is left to MPI_Finalize: freeing it is collective,
     * and a rank whose communicator was aborted never calls destroy */
    free(c);
    return LOOM_NCCL_SUCCESS;
}

static int e_abort(loom_nccl_comm c) {
    stats.aborts++;
    c->aborted = 1; /* like ncclCommAbort, frees what it can: the MPI communicator stays for the job's end */
    return LOOM_NCCL_SUCCESS;
}

static int e_async(loom_nccl_comm c, int *err) {
    *err = atomic_load(&c->injected);
    return LOOM_NCCL_SUCCESS;
}

static const char *e_string(int r) {
    static const char *const s[] = {"no error", "unhandled cuda error", "unhandled system error", "internal error",
                                    "invalid argument", "invalid usage", "remote process exited or there was a network error",
                                    "operation in progress"};
    return r >= 0 && r < 8 ? s[r] : "unknown result code";
}

/* every rank must issue the same collective next: compare (seq, kind, count, dt) */
static int agree(loom_nccl_comm c, int kind, size_t count, int dt) {
    if (c->aborted) return LOOM_NCCL_INVALID_USAGE;
    long long mine[4] = {c->seq++, kind, (long long)count, dt}, lo[4], hi[4];
    MPI_Allreduce(mine, lo, 4, MPI_LONG_LONG, MPI_MIN, c->comm);
    MPI_Allreduce(mine, hi, 4, MPI_LONG_LONG, MPI_MAX, c->comm);
    if (memcmp(lo, hi, sizeof lo)) {
        fprintf(stderr, "nccl_mpi: rank %d: collective %lld (kind %lld, count %lld, type %lld) differs across ranks\n",
                c->rank, mine[0], mine[1], mine[2], mine[3]);
        return LOOM_NCCL_INVALID_USAGE;
    }
    return LOOM_NCCL_SUCCESS;
}

static int e_all_reduce(const void *send, void *recv, size_t count, int dt, int op, loom_nccl_comm c, void *stream) {
    (void)stream;
    stats.all_reduce++;
    if (depth) return LOOM_NCCL_INVALID_USAGE; /* loom never groups collectives; keep the emulation simple */
    int r = agree(c, 1, count, dt);
    if (r) return r;
    if (mpi_dt(dt) == MPI_DATATYPE_NULL) return LOOM_NCCL_INVALID_ARGUMENT;
    MPI_Op mo = op == LOOM_NCCL_MAX ? MPI_MAX : op == LOOM_NCCL_MIN ? MPI_MIN : MPI_SUM;
    MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mpi_dt(dt), mo, c->comm);
    return LOOM_NCCL_SUCCESS;
}

static int e_broadcast(const void *send, void *recv, size_t count, int dt, int root, loom_nccl_comm c, void *stream) {
    (void)stream;
    stats.broadcast++;
    if (depth) return LOOM_NCCL_INVALID_USAGE;
    int r = agree(c, 2, count, dt);
    if (r) return r;
    if (c->rank == root && send != recv) memmove(recv, send, count * dt_size(dt));
    MPI_Bcast(recv, (int)(count * dt_size(dt)), MPI_BYTE, root, c->comm);
    return LOOM_NCCL_SUCCESS;
}

static int e_all_gather(const void *send, void *recv, size_t count, int dt, loom_nccl_comm c, void *stream) {
    (void)stream;
    stats.all_gather++;
    if (depth) return LOOM_NCCL_INVALID_USAGE;
    int r = agree(c, 3, count, dt);
    if (r) return r;
    const size_t b = count * dt_size(dt);
    const bool in_place = (const char *)send == (char *)recv + (size_t)c->rank * b;
    MPI_Allgather(in_place ? MPI_IN_PLACE : send, (int)b, MPI_BYTE, recv, (int)b, MPI_BYTE, c->comm);
    return LOOM_NCCL_SUCCESS;
}

static int queue(int kind, void *buf, size_t bytes, int peer, loom_nccl_comm c) {
    if (n_pending == cap_pending) {
        cap_pending = cap_pending ? 2 * cap_pending : 16;
        pending = realloc(pending, sizeof *pending * (size_t)cap_pending);
    }
    pending[n_pending++] = (p2p){kind, buf, bytes, peer, c};
    return LOOM_NCCL_SUCCESS;
}

static int e_send(const void *buf, size_t count, int dt, int peer, loom_nccl_comm c, void *stream) {
    (void)stream;
    stats.send++;
    stats.send_elems += (long long)count;
    if (c->aborted || peer < 0 || peer >= c->size) return LOOM_NCCL_INVALID_ARGUMENT;
    if (depth) return queue(0, (void *)buf, count * dt_size(dt), peer, c);
    MPI_Ssend(buf, (int)(count * dt_size(dt)), MPI_BYTE, peer, 0, c->comm);
    return LOOM_NCCL_SUCCESS;
}

static int e_recv(void *buf, size_t count, int dt, int peer, loom_nccl_comm c, void *stream) {
    (void)stream;
    stats.recv++;
    stats.recv_elems += (long long)count;
    if (c->aborted || peer < 0 || peer >= c->size) return LOOM_NCCL_INVALID_ARGUMENT;
    if (depth) return queue(1, buf, count * dt_size(dt), peer, c);
    MPI_Status s;
    MPI_Recv(buf, (int)(count * dt_size(dt)), MPI_BYTE, peer, 0, c->comm, &s);
    int got = 0;
    MPI_Get_count(&s, MPI_BYTE, &got);
    return (size_t)got == count * dt_size(dt) ? LOOM_NCCL_SUCCESS : LOOM_NCCL_INVALID_USAGE;
}

static int e_group_start(void) {
    if (depth++ == 0) stats.groups++;
    return LOOM_NCCL_SUCCESS;
}

/* the outermost end posts every queued pair at once, in issue order */
static int e_group_end(void) {
    if (depth == 0) return LOOM_NCCL_INVALID_USAGE;
    if (--depth) return LOOM_NCCL_SUCCESS;
    MPI_Request *rq = malloc(sizeof *rq * (size_t)(n_pending ? n_pending : 1));
    for (int i = 0; i < n_pending; i++) {
        p2p *p = &pending[i];
        if (p->kind == 0) MPI_Isend(p->buf, (int)p->bytes, MPI_BYTE, p->peer, 0, p->comm->comm, &rq[i]);
        else MPI_Irecv(p->buf, (int)p->bytes, MPI_BYTE, p->peer, 0, p->comm->comm, &rq[i]);
    }
    MPI_Waitall(n_pending, rq, MPI_STATUSES_IGNORE);
    free(rq);
    n_pending = 0;
    return LOOM_NCCL_SUCCESS;
}

static const loom_nccl_api api = {
    .name = "NCCL emulated over MPI",
    .get_version = e_version,
    .get_unique_id = e_unique_id,
    .comm_init_rank = e_init,
    .comm_destroy = e_destroy,
    .comm_abort = e_abort,
    .comm_get_async_error = e_async,
    .get_error_string = e_string,
    .all_reduce = e_all_reduce,
    .broadcast = e_broadcast,
    .all_gather = e_all_gather,
    .send = e_send,
    .recv = e_recv,
    .group_start = e_group_start,
    .group_end = e_group_end,
};

const loom_nccl_api *loom_nccl_mpi_api(void) { return &api; }
