/*
 * mpi_comm_backends — the device communicator backends under mpirun,
 * without a GPU: the staged backend over the MPI backend, and the NCCL
 * backend's code over NCCL emulated with MPI (tests/support/nccl_mpi.h),
 * both on the host device's buffers, against values every rank computes
 * itself (integer-valued, so every summation order gives them exactly) and
 * against the MPI backend on host buffers.
 *
 * Checked on 1, 2 and 3 ranks: all-reduce (sum, max, min; f32, i32, f64;
 * in place and not), all-gather-v with uneven counts, zero counts and gaps
 * between the displacements (gaps stay untouched), equal counts in place,
 * broadcast from every root, a ring of sends and receives, barrier. Then
 * backend specifics: the staged backend never hands a device pointer to
 * MPI (a guard communicator between them fails the call if it does); the
 * NCCL backend sends an uneven all-gather-v as one group of send/receive
 * pairs (counted: one per peer and direction, none for zero counts) and an
 * even one as one NCCL all-gather, issues the same collectives in the same
 * order on every rank (the emulation checks), shares rank 0's unique id
 * (the emulation's init checks), and after an injected asynchronous error
 * its watchdog aborts the communicator and the next call fails naming it.
 *
 *   mpirun -np 3 mpi_comm_backends
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nccl_mpi.h"
#include "parallel/comm_mpi.h"
#include "parallel/comm_nccl.h"
#include "parallel/comm_staged.h"
#include "runtime/device.h"

static int rank, world, failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define OK(expr)                                                                       \
    do {                                                                               \
        loom_status st_ = (expr);                                                      \
        if (st_) {                                                                     \
            fprintf(stderr, "rank %d: FAIL %s:%d: %s\n", rank, __FILE__, __LINE__,      \
                    loom_status_message(st_));                                         \
            loom_status_free(st_);                                                     \
            failures++;                                                                \
        }                                                                              \
    } while (0)

/* ---- a host communicator that refuses device pointers ---- */

typedef struct {
    loom_comm *inner;
    loom_device *dev;
} guard_impl;

static loom_status guard(loom_comm *c, const void *a, const void *b, const char *op) {
    guard_impl *g = c->impl;
    if ((a && loom_device_host_owns(g->dev, a)) || (b && loom_device_host_owns(g->dev, b)))
        return loom_error(LOOM_ERR_INVALID, "%s: a device pointer reached the host communicator", op);
    return NULL;
}
static loom_status g_all_reduce(loom_comm *c, const void *s, void *r, size_t n, loom_dtype dt, loom_redop op, void *st) {
    LOOM_TRY(guard(c, s, r, "all-reduce"));
    guard_impl *g = c->impl;
    return g->inner->vt->all_reduce(g->inner, s, r, n, dt, op, st);
}
static loom_status g_all_gatherv(loom_comm *c, const void *s, size_t sc, void *r, const size_t *counts,
                                 const size_t *displs, loom_dtype dt, void *st) {
    LOOM_TRY(guard(c, s, r, "all-gather-v"));
    guard_impl *g = c->impl;
    return g->inner->vt->all_gatherv(g->inner, s, sc, r, counts, displs, dt, st);
}
static loom_status g_broadcast(loom_comm *c, void *b, size_t n, loom_dtype dt, int root, void *st) {
    LOOM_TRY(guard(c, b, NULL, "broadcast"));
    guard_impl *g = c->impl;
    return g->inner->vt->broadcast(g->inner, b, n, dt, root, st);
}
static loom_status g_send(loom_comm *c, const void *b, size_t n, loom_dtype dt, int peer, int tag, void *st) {
    LOOM_TRY(guard(c, b, NULL, "send"));
    guard_impl *g = c->impl;
    return g->inner->vt->send(g->inner, b, n, dt, peer, tag, st);
}
static loom_status g_recv(loom_comm *c, void *b, size_t n, loom_dtype dt, int peer, int tag, void *st) {
    LOOM_TRY(guard(c, b, NULL, "recv"));
    guard_impl *g = c->impl;
    return g->inner->vt->recv(g->inner, b, n, dt, peer, tag, st);
}
static loom_status g_barrier(loom_comm *c) {
    guard_impl *g = c->impl;
    return g->inner->vt->barrier(g->inner);
}
static void g_free(loom_comm *c) {
    free(c->impl);
    free(c);
}
static const loom_comm_vtable guard_vt = {.name = "guard", .all_reduce = g_all_reduce, .all_gatherv = g_all_gatherv,
                                          .broadcast = g_broadcast, .send = g_send, .recv = g_recv,
                                          .barrier = g_barrier, .free = g_free};

static loom_comm *guard_create(loom_comm *inner, loom_device *dev) {
    loom_comm *c = calloc(1, sizeof *c);
    guard_impl *g = calloc(1, sizeof *g);
    g->inner = inner, g->dev = dev;
    c->vt = &guard_vt, c->rank = inner->rank, c->size = inner->size, c->impl = g;
    return c;
}

/* ---- the battery, on one backend ---- */

typedef struct {
    loom_comm *c;
    loom_device *dev; /* NULL: host buffers (the MPI backend) */
    const char *name;
} backend;

static void *buf_alloc(const backend *b, size_t bytes) {
    void *p = NULL;
    if (b->dev) OK(loom_device_alloc(b->dev, bytes, "test buffer", &p));
    else p = calloc(1, bytes);
    return p;
}
static void buf_free(const backend *b, void *p) {
    if (b->dev) b->dev->vt->free(b->dev, p);
    else free(p);
}
static void put(const backend *b, void *dst, const void *src, size_t bytes) {
    if (b->dev) OK(loom_device_upload(b->dev, dst, src, bytes));
    else memcpy(dst, src, bytes);
}
static void get(const backend *b, void *dst, const void *src, size_t bytes) {
    if (b->dev) OK(loom_device_download(b->dev, dst, src, bytes));
    else memcpy(dst, src, bytes);
}

static void all_reduce_cases(const backend *b) {
    enum { N = 1000 };
    float h[N], o[N];
    void *d = buf_alloc(b, sizeof h), *d2 = buf_alloc(b, sizeof h);
    for (int op = 0; op < 3; op++) {
        for (int i = 0; i < N; i++) h[i] = (float)((rank + 1) * (i % 37) - 5 * rank);
        put(b, d, h, sizeof h);
        const bool in_place = op != 1;
        OK(b->c->vt->all_reduce(b->c, d, in_place ? d : d2, N, LOOM_DT_F32, (loom_redop)op, NULL));
        get(b, o, in_place ? d : d2, sizeof o);
        for (int i = 0; i < N; i++) {
            float want = 0;
            for (int r = 0; r < world; r++) {
                const float v = (float)((r + 1) * (i % 37) - 5 * r);
                want = r == 0 ? v : op == LOOM_RED_SUM ? want + v : op == LOOM_RED_MAX ? (v > want ? v : want) : (v < want ? v : want);
            }
            if (o[i] != want) {
                CHECK(0, "%s all-reduce op %d: element %d is %g, expected %g", b->name, op, i, o[i], want);
                break;
            }
        }
    }
    int32_t hi[7], oi[7];
    double hd[3], od[3];
    for (int i = 0; i < 7; i++) hi[i] = rank * 1000 + i;
    for (int i = 0; i < 3; i++) hd[i] = 0.5 * rank + i;
    put(b, d, hi, sizeof hi);
    OK(b->c->vt->all_reduce(b->c, d, d, 7, LOOM_DT_I32, LOOM_RED_SUM, NULL));
    get(b, oi, d, sizeof oi);
    for (int i = 0; i < 7; i++) CHECK(oi[i] == 1000 * world * (world - 1) / 2 + world * i, "%s i32 all-reduce", b->name);
    put(b, d, hd, sizeof hd);
    OK(b->c->vt->all_reduce(b->c, d, d, 3, LOOM_DT_F64, LOOM_RED_SUM, NULL));
    get(b, od, d, sizeof od);
    for (int i = 0; i < 3; i++) CHECK(od[i] == 0.25 * world * (world - 1) + world * i, "%s f64 all-reduce", b->name);
    buf_free(b, d);
    buf_free(b, d2);
}

/* counts[r], displs[r] of rank r; returns the span */
static size_t layout(int kind, size_t *counts, size_t *displs) {
    size_t end = 0;
    for (int r = 0; r < world; r++) {
        switch (kind) {
        case 0: counts[r] = (size_t)(7 * r + 3), displs[r] = end + 5; break;      /* uneven, gaps */
        case 1: counts[r] = r == 1 ? 0 : (size_t)(11 + r), displs[r] = end; break; /* a zero count */
        default: counts[r] = 16, displs[r] = (size_t)r * 16; break;                /* even */
        }
        end = displs[r] + counts[r];
    }
    return end;
}

static void all_gatherv_cases(const backend *b) {
    for (int kind = 0; kind < 3; kind++)
        for (int in_place = 0; in_place < (kind == 2 ? 2 : 1); in_place++) {
            size_t counts[16] = {0}, displs[16] = {0};
            const size_t end = layout(kind, counts, displs), mine = counts[rank];
            float *h = malloc(sizeof(float) * (end + 1)), *s = malloc(sizeof(float) * (mine + 1));
            for (size_t i = 0; i < end; i++) h[i] = -1.0f; /* sentinel in the gaps */
            for (size_t i = 0; i < mine; i++) s[i] = (float)(100 * rank + (int)i);
            if (in_place)
                for (size_t i = 0; i < mine; i++) h[displs[rank] + i] = s[i];
            float *dr = buf_alloc(b, sizeof(float) * (end + 1)), *ds = buf_alloc(b, sizeof(float) * (mine + 1));
            put(b, dr, h, sizeof(float) * end);
            put(b, ds, s, sizeof(float) * (mine + 1));
            if (b->dev && !strcmp(b->name, "nccl")) loom_nccl_mpi_reset_stats();
            OK(b->c->vt->all_gatherv(b->c, in_place ? dr + displs[rank] : ds, mine, dr, counts, displs, LOOM_DT_F32,
                                     NULL));
            get(b, h, dr, sizeof(float) * end);
            for (int r = 0; r < world; r++)
                for (size_t i = 0; i < counts[r]; i++)
                    if (h[displs[r] + i] != (float)(100 * r + (int)i)) {
                        CHECK(0, "%s all-gather-v layout %d: rank %d's element %zu is %g", b->name, kind, r, i,
                              h[displs[r] + i]);
                        r = world;
                        break;
                    }
            if (kind == 0)
                for (int r = 0; r < world; r++)
                    for (size_t i = displs[r] - 5; i < displs[r]; i++)
                        CHECK(h[i] == -1.0f, "%s all-gather-v wrote into the gap before rank %d's chunk", b->name, r);
            if (b->dev && !strcmp(b->name, "nccl")) {
                loom_nccl_mpi_stats st = loom_nccl_mpi_get_stats();
                bool even = true; /* equal counts at rank · count (layout 2; any layout on one rank) */
                for (int r = 0; r < world; r++) even = even && counts[r] == counts[0] && displs[r] == (size_t)r * counts[0];
                if (even) {
                    CHECK(st.all_gather == 1 && st.send == 0 && st.recv == 0,
                          "nccl even all-gather-v: %d all-gathers, %d sends, %d receives (expected one all-gather)",
                          st.all_gather, st.send, st.recv);
                } else {
                    int sends = mine ? world - 1 : 0, recvs = 0;
                    for (int r = 0; r < world; r++) recvs += r != rank && counts[r] > 0;
                    CHECK(st.all_gather == 0 && st.send == sends && st.recv == recvs && st.groups == 1,
                          "nccl uneven all-gather-v layout %d: %d sends, %d receives in %d groups (expected %d, %d in 1)",
                          kind, st.send, st.recv, st.groups, sends, recvs);
                }
            }
            buf_free(b, dr);
            buf_free(b, ds);
            free(h);
            free(s);
        }
}

static void broadcast_and_ring(const backend *b) {
    int32_t h[33], o[33];
    void *d = buf_alloc(b, sizeof h);
    for (int root = 0; root < world; root++) {
        for (int i = 0; i < 33; i++) h[i] = rank == root ? 7 * root + i : -1;
        put(b, d, h, sizeof h);
        OK(b->c->vt->broadcast(b->c, d, 33, LOOM_DT_I32, root, NULL));
        get(b, o, d, sizeof o);
        for (int i = 0; i < 33; i++) CHECK(o[i] == 7 * root + i, "%s broadcast from %d: element %d is %d", b->name, root, i, o[i]);
    }
    if (world > 1) { /* ring: even ranks send first, odd ones receive first */
        void *ds = buf_alloc(b, sizeof h);
        for (int i = 0; i < 33; i++) h[i] = 1000 * rank + i;
        put(b, ds, h, sizeof h);
        const int to = (rank + 1) % world, from = (rank + world - 1) % world;
        const bool grouped = b->c->vt->group_begin != NULL && rank % 2 == 0;
        if (grouped) OK(b->c->vt->group_begin(b->c));
        if (rank % 2 == 0) {
            OK(b->c->vt->send(b->c, ds, 33, LOOM_DT_I32, to, 9, NULL));
            OK(b->c->vt->recv(b->c, d, 33, LOOM_DT_I32, from, 9, NULL));
        } else {
            OK(b->c->vt->recv(b->c, d, 33, LOOM_DT_I32, from, 9, NULL));
            OK(b->c->vt->send(b->c, ds, 33, LOOM_DT_I32, to, 9, NULL));
        }
        if (grouped) OK(b->c->vt->group_end(b->c));
        get(b, o, d, sizeof o);
        for (int i = 0; i < 33; i++) CHECK(o[i] == 1000 * from + i, "%s ring: element %d is %d", b->name, i, o[i]);
        buf_free(b, ds);
    }
    OK(b->c->vt->barrier(b->c));
    buf_free(b, d);
}

static void battery(const backend *b) {
    all_reduce_cases(b);
    all_gatherv_cases(b);
    broadcast_and_ring(b);
    if (rank == 0) printf("%-8s all-reduce, all-gather-v, broadcast, ring, barrier on %d ranks: %s\n", b->name, world,
                          failures ? "FAIL" : "ok");
}

int main(int argc, char **argv) {
    loom_status st = loom_mpi_init(&argc, &argv);
    if (st) {
        fprintf(stderr, "%s\n", loom_status_message(st));
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > 16) MPI_Abort(MPI_COMM_WORLD, 2);
    loom_comm *mpi = NULL, *g = NULL, *staged = NULL, *nccl = NULL;
    loom_device *dev = NULL;
    OK(loom_comm_mpi_create(MPI_COMM_WORLD, "world", &mpi));
    OK(loom_device_create_host(1, &dev));
    if (failures) MPI_Abort(MPI_COMM_WORLD, 1);

    battery(&(backend){mpi, NULL, "mpi"});

    g = guard_create(mpi, dev);
    OK(loom_comm_staged_create(g, dev, "test group", &staged));
    battery(&(backend){staged, dev, "staged"});

    loom_nccl_mpi_set_world(MPI_COMM_WORLD);
    setenv("LOOM_NCCL_POLL_MS", "10", 1);
    OK(loom_comm_nccl_create(mpi, dev, loom_nccl_mpi_api(), "test group", &nccl));
    if (nccl) {
        battery(&(backend){nccl, dev, "nccl"});
        /* the watchdog: an asynchronous error on the last rank aborts its communicator */
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == world - 1) {
            loom_nccl_mpi_reset_stats();
            loom_nccl_mpi_inject_error(loom_comm_nccl_handle(nccl), LOOM_NCCL_REMOTE_ERROR);
            loom_status e = NULL;
            for (int i = 0; i < 100 && !e; i++) { /* the watchdog polls every 10 ms here */
                usleep(10000);
                if (loom_nccl_mpi_get_stats().aborts) e = nccl->vt->all_reduce(nccl, NULL, NULL, 0, LOOM_DT_F32, LOOM_RED_SUM, NULL);
            }
            CHECK(e && strstr(loom_status_message(e), "aborted") && strstr(loom_status_message(e), "test group") &&
                      strstr(loom_status_message(e), "remote process"),
                  "after an asynchronous error: %s", e ? loom_status_message(e) : "no error");
            CHECK(loom_nccl_mpi_get_stats().aborts == 1, "the communicator was aborted %d times",
                  loom_nccl_mpi_get_stats().aborts);
            loom_status_free(e);
            printf("nccl     watchdog aborts on an asynchronous error: %s\n", failures ? "FAIL" : "ok");
        }
    }
    loom_comm_free(nccl);
    loom_comm_free(staged);
    loom_comm_free(g);
    loom_comm_free(mpi);
    loom_device_free(dev);
    int all = 0;
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("mpi_comm_backends on %d ranks: %s\n", world, all ? "FAIL" : "ok");
    loom_mpi_finalize();
    return all ? 1 : 0;
}
