/* tests/test_comm_nccl.c — the NCCL backend's semantic layer
 * (parallel/comm_nccl.c) in one process: a recording NCCL (every call
 * logged, nothing sent) and a recording device (stream waits and copies
 * logged) show, for a rank of a pretend group of 3:
 *   - the communication stream waits for the caller's stream before each
 *     call and the caller's stream waits for it after;
 *   - an uneven all-gather-v is one NCCL group: the rank's own chunk copied
 *     on the device into its displacement (not when already in place), then
 *     for each peer in ring order a send of the rank's chunk and a receive
 *     straight into the peer's displacement — nothing for zero counts — and
 *     the stream orderings once around the whole group;
 *   - equal counts at rank · count are one NCCL all-gather;
 *   - a count that disagrees with the rank's send count, and an NCCL error,
 *     are errors naming the group, the operation, the peer and NCCL's words;
 *   - the watchdog aborts the communicator on an asynchronous error: the
 *     next call fails naming it, ncclCommAbort ran once, ncclCommDestroy
 *     never; a healthy communicator is destroyed once on free. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel/comm_nccl.h"
#include "runtime/device.h"

typedef struct {
    char what[16];
    const void *a;
    void *b;
    size_t n;
    int peer;
} op;

static op ops[64];
static int n_ops, fail_next, async_err, aborts, destroys;
static void *comm_stream; /* the backend's stream, learned from its first NCCL call */

static void rec(const char *what, const void *a, void *b, size_t n, int peer) {
    cr_assert(n_ops < 64);
    op *o = &ops[n_ops++];
    snprintf(o->what, sizeof o->what, "%s", what);
    o->a = a, o->b = b, o->n = n, o->peer = peer;
}

static int r_result(void) {
    const int r = fail_next;
    fail_next = 0;
    return r;
}
static int r_all_reduce(const void *s, void *r, size_t n, int dt, int op_, loom_nccl_comm c, void *st) {
    (void)dt, (void)op_, (void)c;
    comm_stream = st;
    rec("allreduce", s, r, n, -1);
    return r_result();
}
static int r_broadcast(const void *s, void *r, size_t n, int dt, int root, loom_nccl_comm c, void *st) {
    (void)dt, (void)c, (void)st;
    rec("bcast", s, r, n, root);
    return r_result();
}
static int r_all_gather(const void *s, void *r, size_t n, int dt, loom_nccl_comm c, void *st) {
    (void)dt, (void)c, (void)st;
    rec("allgather", s, r, n, -1);
    return r_result();
}
static int r_send(const void *b, size_t n, int dt, int peer, loom_nccl_comm c, void *st) {
    (void)dt, (void)c, (void)st;
    rec("send", b, NULL, n, peer);
    return r_result();
}
static int r_recv(void *b, size_t n, int dt, int peer, loom_nccl_comm c, void *st) {
    (void)dt, (void)c, (void)st;
    rec("recv", NULL, b, n, peer);
    return r_result();
}
static int r_group_start(void) {
    rec("group{", NULL, NULL, 0, -1);
    return 0;
}
static int r_group_end(void) {
    rec("}group", NULL, NULL, 0, -1);
    return 0;
}
static int r_async(loom_nccl_comm c, int *e) {
    (void)c;
    *e = async_err;
    return 0;
}
static int r_abort(loom_nccl_comm c) {
    (void)c;
    aborts++;
    return 0;
}
static int r_destroy(loom_nccl_comm c) {
    (void)c;
    destroys++;
    return 0;
}
static const char *r_string(int r) { return r == 6 ? "remote process exited" : "invalid usage"; }

static const loom_nccl_api rec_api = {.name = "recording", .comm_destroy = r_destroy, .comm_abort = r_abort,
                                      .comm_get_async_error = r_async, .get_error_string = r_string,
                                      .all_reduce = r_all_reduce, .broadcast = r_broadcast, .all_gather = r_all_gather,
                                      .send = r_send, .recv = r_recv, .group_start = r_group_start,
                                      .group_end = r_group_end};

/* a host device whose stream waits and copies are logged */
static loom_device_iface dev_vt;
static loom_status d_wait(loom_device *d, void *waiter, void *signaller) {
    (void)d;
    /* "wait>comm": the communication stream waits; "wait>caller": the caller's does */
    rec(waiter && waiter != d->vt->compute_stream(d) && signaller == NULL ? "wait>comm" : "wait>caller", waiter,
        signaller, 0, -1);
    return NULL;
}
static loom_status (*host_copy)(loom_device *, void *, const void *, size_t, loom_copy_dir, void *);
static loom_status d_copy(loom_device *d, void *dst, const void *src, size_t bytes, loom_copy_dir dir, void *stream) {
    if (dir == LOOM_COPY_D2D) rec("copy", src, dst, bytes, -1);
    return host_copy(d, dst, src, bytes, dir, stream);
}

static loom_device *dev;
static loom_comm *c;
static float *buf;

static void setup(void) {
    n_ops = fail_next = async_err = aborts = destroys = 0;
    cr_assert(!loom_device_create_host(1, &dev));
    dev_vt = *dev->vt;
    host_copy = dev_vt.copy;
    dev_vt.stream_wait = d_wait, dev_vt.copy = d_copy;
    dev->vt = &dev_vt;
    setenv("LOOM_NCCL_POLL_MS", "5", 1);
    loom_status st = loom_comm_nccl_wrap(&rec_api, (loom_nccl_comm)(uintptr_t)0x1234, 1, 3, dev, "TP group of stage 0", &c);
    cr_assert(!st, "%s", loom_status_message(st));
    void *p;
    cr_assert(!loom_device_alloc(dev, 4096, "test", &p));
    buf = p;
    n_ops = 0;
}

static void teardown(void) {
    dev->vt->free(dev, buf);
    loom_comm_free(c);
    loom_device_free(dev);
}

static void expect(int i, const char *what, const void *a, const void *b, size_t n, int peer) {
    cr_assert(i < n_ops, "op %d (%s) missing: only %d ops", i, what, n_ops);
    cr_assert_str_eq(ops[i].what, what, "op %d is %s, expected %s", i, ops[i].what, what);
    if (a) cr_assert_eq(ops[i].a, a, "op %d (%s): wrong source", i, what);
    if (b) cr_assert_eq(ops[i].b, b, "op %d (%s): wrong destination", i, what);
    cr_assert_eq(ops[i].n, n, "op %d (%s): count %zu, expected %zu", i, what, ops[i].n, n);
    cr_assert_eq(ops[i].peer, peer, "op %d (%s): peer %d, expected %d", i, what, ops[i].peer, peer);
}

TestSuite(comm_nccl, .init = setup, .fini = teardown);

Test(comm_nccl, all_reduce_ordered_with_the_callers_stream) {
    cr_assert(!loom_comm_all_reduce(c, buf, 10, LOOM_DT_F32, LOOM_RED_SUM));
    cr_assert_eq(n_ops, 3);
    cr_assert_str_eq(ops[0].what, "wait>comm");
    expect(1, "allreduce", buf, buf, 10, -1);
    cr_assert_str_eq(ops[2].what, "wait>caller");
    cr_assert_eq(ops[0].a, comm_stream, "the communication stream waits, then runs the call");
    cr_assert_eq(ops[2].b, comm_stream, "the caller's stream waits for the communication stream");
}

Test(comm_nccl, uneven_all_gatherv_is_one_group_of_pairs) {
    /* rank 1 of 3: counts 3, 5, 0 at displacements 0, 10, 20 (gaps) */
    const size_t counts[3] = {3, 5, 0}, displs[3] = {0, 10, 20};
    float *send = buf + 512;
    cr_assert(!loom_comm_all_gatherv(c, send, 5, buf, counts, displs, LOOM_DT_F32));
    int i = 0;
    expect(i++, "group{", NULL, NULL, 0, -1);
    cr_assert_str_eq(ops[i++].what, "wait>comm");
    expect(i++, "copy", send, buf + 10, 5 * sizeof(float), -1);
    /* k = 1: to rank 2, from rank 0; k = 2: to rank 0, from rank 2 (count 0: no receive) */
    expect(i++, "send", send, NULL, 5, 2);
    expect(i++, "recv", NULL, buf + 0, 3, 0);
    expect(i++, "send", send, NULL, 5, 0);
    expect(i++, "}group", NULL, NULL, 0, -1);
    cr_assert_str_eq(ops[i++].what, "wait>caller");
    cr_assert_eq(n_ops, i, "%d ops, expected %d", n_ops, i);
}

Test(comm_nccl, in_place_and_zero_own_count) {
    const size_t counts[3] = {4, 4, 2}, displs[3] = {0, 4, 8};
    cr_assert(!loom_comm_all_gatherv(c, buf + 4, 4, buf, counts, displs, LOOM_DT_F32)); /* in place: no copy */
    for (int i = 0; i < n_ops; i++) cr_assert_str_neq(ops[i].what, "copy");
    n_ops = 0;
    const size_t c0[3] = {4, 0, 2}, d0[3] = {0, 4, 4};
    cr_assert(!loom_comm_all_gatherv(c, buf + 100, 0, buf, c0, d0, LOOM_DT_F32));
    int sends = 0, recvs = 0;
    for (int i = 0; i < n_ops; i++) sends += !strcmp(ops[i].what, "send"), recvs += !strcmp(ops[i].what, "recv");
    cr_assert_eq(sends, 0, "a rank with nothing to send sends nothing");
    cr_assert_eq(recvs, 2);
}

Test(comm_nccl, equal_counts_are_one_all_gather) {
    const size_t counts[3] = {6, 6, 6}, displs[3] = {0, 6, 12};
    cr_assert(!loom_comm_all_gatherv(c, buf + 6, 6, buf, counts, displs, LOOM_DT_F32));
    cr_assert_eq(n_ops, 3);
    expect(1, "allgather", buf + 6, buf, 6, -1);
}

Test(comm_nccl, errors_name_the_group_the_call_and_the_peer) {
    const size_t counts[3] = {3, 5, 0}, displs[3] = {0, 10, 20};
    loom_status st = loom_comm_all_gatherv(c, buf, 4, buf + 100, counts, displs, LOOM_DT_F32);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_INVALID);
    cr_assert(strstr(loom_status_message(st), "sends 4 elements but counts say 5"), "%s", loom_status_message(st));
    loom_status_free(st);
    fail_next = 5;
    st = loom_comm_send(c, buf, 8, LOOM_DT_F32, 2, 0);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_COMM);
    cr_assert(strstr(loom_status_message(st), "NCCL send with rank 2 of the TP group of stage 0 failed: invalid usage"),
              "%s", loom_status_message(st));
    loom_status_free(st);
}

Test(comm_nccl, watchdog_aborts_on_an_async_error) {
    async_err = 6; /* ncclRemoteError */
    loom_status st = NULL;
    for (int i = 0; i < 400 && !st; i++) {
        usleep(5000);
        if (aborts) st = loom_comm_all_reduce(c, buf, 1, LOOM_DT_F32, LOOM_RED_SUM);
    }
    cr_assert(st, "no error 2 s after an asynchronous NCCL error");
    cr_assert(strstr(loom_status_message(st), "aborted (asynchronous error: remote process exited)"), "%s",
              loom_status_message(st));
    cr_assert(strstr(loom_status_message(st), "TP group of stage 0"), "%s", loom_status_message(st));
    loom_status_free(st);
    cr_assert_eq(aborts, 1);
    loom_comm_free(c);
    c = NULL;
    cr_assert_eq(destroys, 0, "an aborted communicator must not be destroyed");
}

Test(comm_nccl, a_healthy_communicator_is_destroyed_once) {
    loom_comm_free(c);
    c = NULL;
    cr_assert_eq(destroys, 1);
    cr_assert_eq(aborts, 0);
}
