/*
 * parallel/transfer.c — stage-to-stage messages and the TP broadcast of a
 * Step (contract in transfer.h).
 */
#include "parallel/transfer.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"

enum { TAG_STEP_SIZE = 11, TAG_STEP = 12, TAG_HIDDEN = 13, TAG_RESULT_SIZE = 14, TAG_RESULT = 15, TAG_SCORE = 17,
       TAG_REPORT = 19 };

#define MESSAGE_MAX ((int64_t)1 << 30) /* bytes of a Step or StepResult at most */
#define TP_MAX 1024                    /* TP ranks of a stage at most (stack arrays below) */

typedef struct {
    uint8_t *bytes; /* packed Step */
    size_t cap;
    int64_t size;
    float *hidden;  /* (batch_rows, slice) this rank's slice of the stage output */
    loom_comm_req *req[3];
} send_slot;

struct loom_transfer {
    loom_topology topo;
    int dim;
    int *dim_off;        /* (tp_size + 1) hidden-state columns of each TP rank */
    float *hidden_in;    /* (batch_rows, dim) assembled input of this stage */
    float *gather;       /* (batch_rows, dim) all-gather scratch */
    send_slot *slots;    /* (n_stages) ring of in-flight sends */
    int n_slots, next;
    loom_comm_req **report_req; /* coordinator: (world) receives of the ranks' figures */
    uint8_t *recv_bytes; /* last received Step or StepResult */
    size_t recv_cap;
    double tp_s, pp_s;
};

static loom_status grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return NULL;
    size_t c = need < 4096 ? 4096 : need * 2;
    uint8_t *b = realloc(*buf, c);
    if (!b) return loom_error(LOOM_ERR_NOMEM, "out of memory for a %zu-byte message", need);
    *buf = b;
    *cap = c;
    return NULL;
}

loom_status loom_transfer_create(const loom_topology *t, int dim, int batch_rows, loom_transfer **out) {
    *out = NULL;
    if (t->tp_size < 1 || t->tp_size > TP_MAX)
        return loom_error(LOOM_ERR_INVALID, "TP size %d is outside 1..%d", t->tp_size, TP_MAX);
    loom_transfer *x = calloc(1, sizeof *x);
    if (!x) return loom_error(LOOM_ERR_NOMEM, "out of memory for stage transfers");
    x->topo = *t;
    x->dim = dim;
    size_t R = (size_t)batch_rows, tp = (size_t)t->tp_size;
    x->dim_off = malloc((tp + 1) * sizeof *x->dim_off);
    x->hidden_in = malloc(R * (size_t)dim * sizeof(float));
    x->gather = malloc(R * (size_t)dim * sizeof(float));
    x->n_slots = t->n_stages;
    x->slots = calloc((size_t)x->n_slots, sizeof *x->slots);
    bool ok = x->dim_off && x->hidden_in && x->gather && x->slots;
    for (int i = 0; ok && i < x->n_slots; i++) {
        x->slots[i].hidden = malloc(R * (size_t)dim * sizeof(float));
        ok = x->slots[i].hidden != NULL;
    }
    if (!ok) {
        loom_transfer_free(x);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for transfers of %d rows", batch_rows);
    }
    for (size_t r = 0; r <= tp; r++) x->dim_off[r] = (int)((size_t)dim * r / tp);
    *out = x;
    return NULL;
}

loom_status loom_transfer_flush(loom_transfer *x) {
    loom_status st = NULL;
    for (int i = 0; i < x->n_slots; i++)
        for (int k = 0; k < 3; k++) {
            loom_status ws = loom_comm_wait(x->topo.world, x->slots[i].req[k]);
            x->slots[i].req[k] = NULL;
            if (ws && !st) st = ws;
            else loom_status_free(ws);
        }
    return st;
}

void loom_transfer_free(loom_transfer *x) {
    if (!x) return;
    if (x->slots) {
        loom_status_free(loom_transfer_flush(x));
        for (int i = 0; i < x->n_slots; i++) {
            free(x->slots[i].bytes);
            free(x->slots[i].hidden);
        }
    }
    free(x->slots);
    if (x->report_req) loom_status_free(loom_transfer_report_wait(x));
    free(x->report_req);
    free(x->dim_off);
    free(x->hidden_in);
    free(x->gather);
    free(x->recv_bytes);
    free(x);
}

void loom_transfer_times(const loom_transfer *x, double *tp_s, double *pp_s) {
    *tp_s = x->tp_s;
    *pp_s = x->pp_s;
}

/* A size, then that many bytes, from `peer` into x->recv_bytes. */
static loom_status recv_message(loom_transfer *x, int peer, int tag_size, int tag, uint8_t **bytes, int64_t *size) {
    double t0 = loom_now_s();
    loom_comm *c = x->topo.world;
    loom_status st = loom_comm_recv(c, size, 1, LOOM_DT_I64, peer, tag_size);
    if (!st && (*size < 0 || *size > MESSAGE_MAX))
        st = loom_error(LOOM_ERR_COMM, "rank %d announced a message of %lld bytes", peer, (long long)*size);
    if (!st) st = grow(&x->recv_bytes, &x->recv_cap, (size_t)*size + 1);
    if (!st) st = loom_comm_recv(c, x->recv_bytes, (size_t)*size, LOOM_DT_U8, peer, tag);
    x->pp_s += loom_now_s() - t0;
    *bytes = x->recv_bytes;
    return st;
}

loom_status loom_transfer_step_broadcast(loom_transfer *x, uint8_t **bytes, int64_t *size) {
    loom_comm *tp = x->topo.tp_group;
    if (!tp || tp->size == 1) return NULL;
    double t0 = loom_now_s();
    loom_status st = loom_comm_broadcast(tp, size, 1, LOOM_DT_I64, 0);
    if (!st && tp->rank != 0) {
        if (*size < 0 || *size > MESSAGE_MAX)
            st = loom_error(LOOM_ERR_COMM, "TP rank 0 announced a step of %lld bytes", (long long)*size);
        if (!st) st = grow(&x->recv_bytes, &x->recv_cap, (size_t)*size + 1);
        *bytes = x->recv_bytes;
    }
    if (!st) st = loom_comm_broadcast(tp, *bytes, (size_t)*size, LOOM_DT_U8, 0);
    x->tp_s += loom_now_s() - t0;
    return st;
}

loom_status loom_transfer_step_recv(loom_transfer *x, uint8_t **bytes, int64_t *size) {
    return recv_message(x, x->topo.prev, TAG_STEP_SIZE, TAG_STEP, bytes, size);
}

loom_status loom_transfer_forward(loom_transfer *x, const uint8_t *bytes, int64_t size, const float *hidden, int n) {
    double t0 = loom_now_s();
    send_slot *s = &x->slots[x->next];
    x->next = (x->next + 1) % x->n_slots;
    for (int k = 0; k < 3; k++) { /* the slot's previous sends must be done */
        loom_status st = loom_comm_wait(x->topo.world, s->req[k]);
        s->req[k] = NULL;
        if (st) return st;
    }
    LOOM_TRY(grow(&s->bytes, &s->cap, (size_t)size + 1));
    memcpy(s->bytes, bytes, (size_t)size);
    s->size = size;
    int c0 = x->dim_off[x->topo.tp_rank], w = x->dim_off[x->topo.tp_rank + 1] - c0;
    for (int r = 0; r < n; r++)
        memcpy(s->hidden + (size_t)r * w, hidden + (size_t)r * x->dim + c0, (size_t)w * sizeof(float));
    loom_comm *c = x->topo.world;
    int next = x->topo.next;
    LOOM_TRY(loom_comm_isend(c, &s->size, 1, LOOM_DT_I64, next, TAG_STEP_SIZE, &s->req[0]));
    LOOM_TRY(loom_comm_isend(c, s->bytes, (size_t)size, LOOM_DT_U8, next, TAG_STEP, &s->req[1]));
    if (n > 0) LOOM_TRY(loom_comm_isend(c, s->hidden, (size_t)n * w, LOOM_DT_F32, next, TAG_HIDDEN, &s->req[2]));
    x->pp_s += loom_now_s() - t0;
    return NULL;
}

loom_status loom_transfer_hidden_recv(loom_transfer *x, int n, float **hidden) {
    *hidden = x->hidden_in;
    double t0 = loom_now_s();
    int tp = x->topo.tp_size, dim = x->dim, me = x->topo.tp_rank;
    int w = x->dim_off[me + 1] - x->dim_off[me];
    float *mine = tp == 1 ? x->hidden_in : x->gather + (size_t)n * x->dim_off[me];
    LOOM_TRY(loom_comm_recv(x->topo.world, mine, (size_t)n * w, LOOM_DT_F32, x->topo.prev, TAG_HIDDEN));
    x->pp_s += loom_now_s() - t0;
    if (tp == 1) return NULL;
    t0 = loom_now_s();
    size_t counts[TP_MAX], displs[TP_MAX];
    for (int r = 0; r < tp; r++) {
        counts[r] = (size_t)n * (x->dim_off[r + 1] - x->dim_off[r]);
        displs[r] = (size_t)n * x->dim_off[r];
    }
    LOOM_TRY(loom_comm_all_gatherv(x->topo.tp_group, mine, counts[me], x->gather, counts, displs, LOOM_DT_F32));
    for (int r = 0; r < tp; r++) { /* rank-major blocks → row-major rows */
        int c0 = x->dim_off[r], cw = x->dim_off[r + 1] - c0;
        const float *blk = x->gather + displs[r];
        for (int i = 0; i < n; i++)
            memcpy(x->hidden_in + (size_t)i * dim + c0, blk + (size_t)i * cw, (size_t)cw * sizeof(float));
    }
    x->tp_s += loom_now_s() - t0;
    return NULL;
}

loom_status loom_transfer_result_send(loom_transfer *x, const uint8_t *bytes, int64_t size) {
    double t0 = loom_now_s();
    loom_status st = loom_comm_send(x->topo.world, &size, 1, LOOM_DT_I64, 0, TAG_RESULT_SIZE);
    if (!st) st = loom_comm_send(x->topo.world, bytes, (size_t)size, LOOM_DT_U8, 0, TAG_RESULT);
    x->pp_s += loom_now_s() - t0;
    return st;
}

loom_status loom_transfer_result_recv(loom_transfer *x, uint8_t **bytes, int64_t *size) {
    return recv_message(x, x->topo.last_leader, TAG_RESULT_SIZE, TAG_RESULT, bytes, size);
}

loom_status loom_transfer_floats_send(loom_transfer *x, const float *v, size_t n) {
    double t0 = loom_now_s();
    loom_status st = loom_comm_send(x->topo.world, v, n, LOOM_DT_F32, 0, TAG_SCORE);
    x->pp_s += loom_now_s() - t0;
    return st;
}

loom_status loom_transfer_floats_recv(loom_transfer *x, float *v, size_t n) {
    double t0 = loom_now_s();
    loom_status st = loom_comm_recv(x->topo.world, v, n, LOOM_DT_F32, x->topo.last_leader, TAG_SCORE);
    x->pp_s += loom_now_s() - t0;
    return st;
}

loom_status loom_transfer_report_send(loom_transfer *x, const double *v, size_t n) {
    return loom_comm_send(x->topo.world, v, n, LOOM_DT_F64, 0, TAG_REPORT);
}

loom_status loom_transfer_report_post(loom_transfer *x, double *v, size_t n) {
    int w = x->topo.world_size;
    if (!x->report_req) {
        x->report_req = calloc((size_t)w, sizeof *x->report_req);
        if (!x->report_req) return loom_error(LOOM_ERR_NOMEM, "out of memory for rank reports");
    }
    LOOM_TRY(loom_transfer_report_wait(x));
    for (int r = 1; r < w; r++)
        LOOM_TRY(loom_comm_irecv(x->topo.world, v + (size_t)r * n, n, LOOM_DT_F64, r, TAG_REPORT, &x->report_req[r]));
    return NULL;
}

loom_status loom_transfer_report_wait(loom_transfer *x) {
    loom_status st = NULL;
    for (int r = 1; x->report_req && r < x->topo.world_size; r++) {
        loom_status ws = loom_comm_wait(x->topo.world, x->report_req[r]);
        x->report_req[r] = NULL;
        if (ws && !st) st = ws;
        else loom_status_free(ws);
    }
    return st;
}
