/*
 * runtime/cpu/device_host.c — the CPU as a device (runtime/device.h): the
 * reference implementation of the device table. Buffers are malloc'd and
 * tracked (so copies can check their direction and tests can ask whether a
 * pointer is "device" memory); the stream is the calling thread; the
 * kernels are the CPU's (kernels.h, the active ISA level) on a thread pool,
 * called exactly as runtime/forward.c calls them, so a forward pass through
 * this device equals the CPU forward pass bit for bit.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/attention.h"
#include "runtime/cpu/cpu_kernels.h"
#include "runtime/device.h"
#include "runtime/ops.h"
#include "runtime/rowops.h"
#include "runtime/threadpool.h"

#define HOST_MAX_HEAD 512

typedef struct {
    void *p;
    size_t bytes;
} host_buf;

typedef struct {
    loom_pool *pool;
    pthread_mutex_t mu;
    host_buf *bufs; /* live device buffers */
    int n_bufs, cap_bufs;
    float *tmp;     /* accumulate scratch */
    size_t tmp_floats;
    float *att;     /* per thread: attention scratch */
    size_t att_floats;
} host_impl;

static host_impl *impl_of(loom_device *d) { return d->impl; }

/* ------------------------------------------------------------ memory */

static loom_status h_alloc(loom_device *d, size_t bytes, void **out) {
    host_impl *h = impl_of(d);
    *out = NULL;
    const size_t rounded = (bytes + 255) & ~(size_t)255;
    void *p = aligned_alloc(256, rounded ? rounded : 256);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "host device: out of memory for %zu bytes", bytes);
    memset(p, 0, rounded ? rounded : 256);
    pthread_mutex_lock(&h->mu);
    if (h->n_bufs == h->cap_bufs) {
        int cap = h->cap_bufs ? 2 * h->cap_bufs : 64;
        host_buf *nb = realloc(h->bufs, sizeof *nb * (size_t)cap);
        if (!nb) {
            pthread_mutex_unlock(&h->mu);
            free(p);
            return loom_error(LOOM_ERR_NOMEM, "host device: out of memory tracking buffers");
        }
        h->bufs = nb, h->cap_bufs = cap;
    }
    h->bufs[h->n_bufs++] = (host_buf){p, bytes ? bytes : 1};
    pthread_mutex_unlock(&h->mu);
    *out = p;
    return NULL;
}

static void h_free(loom_device *d, void *p) {
    if (!p) return;
    host_impl *h = impl_of(d);
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->n_bufs; i++)
        if (h->bufs[i].p == p) {
            h->bufs[i] = h->bufs[--h->n_bufs];
            break;
        }
    pthread_mutex_unlock(&h->mu);
    free(p);
}

bool loom_device_host_owns(const loom_device *d, const void *p) {
    if (!d || strcmp(d->vt->name, "host") != 0) return false;
    host_impl *h = d->impl;
    bool found = false;
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->n_bufs && !found; i++) {
        const char *b = h->bufs[i].p;
        found = (const char *)p >= b && (const char *)p < b + h->bufs[i].bytes;
    }
    pthread_mutex_unlock(&h->mu);
    return found;
}

static loom_status h_host_alloc(loom_device *d, size_t bytes, void **out) {
    (void)d;
    *out = calloc(1, bytes ? bytes : 1);
    return *out ? NULL : loom_error(LOOM_ERR_NOMEM, "host device: out of memory for %zu staging bytes", bytes);
}

static void h_host_free(loom_device *d, void *p) {
    (void)d;
    free(p);
}

/* Copies check their direction: what a real device would fault on (or
 * silently misread) is an error here, so the communicator tests catch a
 * host pointer handed where a device one belongs, and the reverse. */
static loom_status h_copy(loom_device *d, void *dst, const void *src, size_t bytes, loom_copy_dir dir, void *stream) {
    (void)stream;
    const bool dd = loom_device_host_owns(d, dst), ds = loom_device_host_owns(d, src);
    const bool ok = dir == LOOM_COPY_H2D ? dd && !ds : dir == LOOM_COPY_D2H ? ds && !dd : dd && ds;
    if (!ok)
        return loom_error(LOOM_ERR_INVALID, "host device: %s copy of %zu bytes from %s to %s memory",
                          dir == LOOM_COPY_H2D ? "host-to-device" : dir == LOOM_COPY_D2H ? "device-to-host"
                                                                                         : "device-to-device",
                          bytes, ds ? "device" : "host", dd ? "device" : "host");
    memmove(dst, src, bytes);
    return NULL;
}

static loom_status h_fill0(loom_device *d, void *dst, size_t bytes, void *stream) {
    (void)d, (void)stream;
    memset(dst, 0, bytes);
    return NULL;
}

static void *h_compute_stream(loom_device *d) {
    (void)d;
    return NULL;
}

static loom_status h_stream_create(loom_device *d, void **out) {
    (void)d;
    *out = malloc(1); /* a token: the host has one timeline */
    return *out ? NULL : loom_error(LOOM_ERR_NOMEM, "host device: out of memory for a stream");
}

static void h_stream_free(loom_device *d, void *s) {
    (void)d;
    free(s);
}

static loom_status h_stream_wait(loom_device *d, void *waiter, void *signaller) {
    (void)d, (void)waiter, (void)signaller;
    return NULL;
}

static loom_status h_sync(loom_device *d, void *stream) {
    (void)d, (void)stream;
    return NULL;
}

static int64_t h_free_bytes(loom_device *d) {
    (void)d;
    return -1;
}

/* ------------------------------------------------------------ kernels */

static float *tmp_floats(host_impl *h, size_t n) {
    if (n > h->tmp_floats) {
        float *t = realloc(h->tmp, n * sizeof(float));
        if (!t) return NULL;
        h->tmp = t, h->tmp_floats = n;
    }
    return h->tmp;
}

typedef struct {
    loom_type wt;
    const uint8_t *w, *xq;
    size_t ws, xs;
    int64_t k, nr, n, ldy;
    float *y;
} mm_task;

static void mm_worker(void *ctx, int ith, int nth) {
    const mm_task *t = ctx;
    int64_t r0, r1;
    loom_split_range(t->nr, LOOM_MATMUL_ROW_ALIGN, ith, nth, &r0, &r1);
    if (r0 < r1) loom_matmul(t->wt, t->w, t->ws, t->k, r0, r1, t->xq, t->xs, t->n, t->y + r0, t->ldy);
}

static void host_matmul(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr,
                        const float *x, const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy,
                        int accumulate) {
    (void)x; /* quant_rows is unlimited: xq is always given */
    host_impl *h = impl_of(d);
    mm_task t = {wt, w, xq, ws, xs, k, nr, n, ldy, y};
    float *tmp = NULL;
    if (accumulate) {
        tmp = tmp_floats(h, (size_t)n * (size_t)nr);
        if (!tmp) return; /* cannot happen after the first call of a workspace's size; y untouched */
        t.y = tmp, t.ldy = nr;
    }
    loom_pool_run(h->pool, mm_worker, &t);
    if (accumulate)
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < nr; i++) y[r * ldy + i] += tmp[r * nr + i];
}

#define HOST_MATMUL(p, T, s, f)                                                                                    \
    static void host_mm_##s(loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,   \
                            const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy, int acc) {           \
        host_matmul(LOOM_TYPE_##T, d, w, ws, k, nr, x, xq, xs, n, y, ldy, acc);                                    \
    }
LOOM_MATMUL_TYPES(HOST_MATMUL, _)

typedef struct {
    const float *x, *w, *up;
    float *out;
    float eps;
    int n, k;
    loom_type wt;
    uint8_t *xq;
    int mode; /* 0 quantize, 1 rmsnorm, 2 swiglu */
} row_task;

static void row_worker(void *ctx, int ith, int nth) {
    const row_task *t = ctx;
    int64_t r0, r1;
    loom_split_range(t->n, 1, ith, nth, &r0, &r1);
    const size_t rb = t->xq ? loom_act_row_bytes(t->wt, t->k) : 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *in = t->x + (size_t)r * t->k;
        float *row = t->out + (size_t)r * t->k;
        if (t->mode == 1) loom_row_rmsnorm(row, in, t->w, t->k, t->eps);
        else if (t->mode == 2) loom_row_swiglu(row, t->up + (size_t)r * t->k, t->k);
        if (t->xq) loom_act_quantize(t->wt, t->mode ? row : in, t->xq + (size_t)r * rb, t->k);
    }
}

static void run_rows(host_impl *h, row_task *t) {
    if (t->n >= 2 && loom_pool_size(h->pool) > 1) loom_pool_run(h->pool, row_worker, t);
    else row_worker(t, 0, 1);
}

static void h_quantize(loom_device *d, loom_type wt, const float *x, int n, int k, uint8_t *xq) {
    row_task t = {.x = x, .out = (float *)x, .n = n, .k = k, .wt = wt, .xq = xq, .mode = 0};
    run_rows(impl_of(d), &t);
}

static void h_rmsnorm(loom_device *d, const float *x, const float *w, float eps, int n, int k, float *out,
                      loom_type wt, uint8_t *xq) {
    row_task t = {.x = x, .w = w, .out = out, .eps = eps, .n = n, .k = k, .wt = wt, .xq = xq, .mode = 1};
    run_rows(impl_of(d), &t);
}

static void h_swiglu(loom_device *d, float *gate, const float *up, int n, int k, loom_type wt, uint8_t *xq) {
    row_task t = {.x = gate, .up = up, .out = gate, .n = n, .k = k, .wt = wt, .xq = xq, .mode = 2};
    run_rows(impl_of(d), &t);
}

static void h_add(loom_device *d, float *x, const float *y, size_t count) {
    (void)d;
    for (size_t i = 0; i < count; i++) x[i] += y[i];
}

static void h_embed(loom_device *d, loom_type t, const uint8_t *table, size_t stride, int64_t row0, int64_t nrows,
                    const int32_t *tok, int n, int dim, float *x) {
    (void)d;
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * dim;
        if (tok[i] >= row0 && tok[i] < row0 + nrows) loom_dequant_row(t, table + (size_t)(tok[i] - row0) * stride, xi, dim);
        else memset(xi, 0, sizeof(float) * (size_t)dim);
    }
}

static void h_gather(loom_device *d, const float *src, const int32_t *rows, int n, int dim, float *dst) {
    (void)d;
    for (int i = 0; i < n; i++) memmove(dst + (size_t)i * dim, src + (size_t)rows[i] * dim, sizeof(float) * (size_t)dim);
}

static void h_argmax(loom_device *d, const float *x, int n, int64_t cols, int64_t ld, int32_t *idx, float *val) {
    (void)d;
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * ld;
        int64_t best = 0;
        for (int64_t c = 1; c < cols; c++)
            if (r[c] > r[best] || (r[best] != r[best] && r[c] == r[c])) best = c;
        idx[i] = (int32_t)best;
        val[i] = r[best];
    }
}

/* the KV store of runtime/attention.c, per row from the plan's slots */
static void h_rope_store(loom_device *d, const loom_dev_rope_args *a) {
    (void)d;
    const int hd = a->head_dim, bt = a->block_tokens, qdim = a->n_q * hd, kvdim = a->n_kv * hd;
    float vtmp[HOST_MAX_HEAD];
    for (int i = 0; i < a->n; i++) {
        float *qi = a->q + (size_t)i * qdim, *ki = a->k + (size_t)i * kvdim;
        const float *vi = a->v + (size_t)i * kvdim;
        if (a->bq) {
            for (int j = 0; j < qdim; j++) qi[j] += a->bq[j];
            for (int j = 0; j < kvdim; j++) ki[j] += a->bk[j];
        }
        const float *cs = a->cs + (size_t)i * a->rope_dim;
        for (int h = 0; h < a->n_q; h++) loom_rope_head(qi + (size_t)h * hd, cs, a->rope_dim, a->neox);
        for (int h = 0; h < a->n_kv; h++) loom_rope_head(ki + (size_t)h * hd, cs, a->rope_dim, a->neox);
        const int blk = a->slot[i] / bt, t = a->slot[i] % bt;
        uint8_t *kb = a->kc + (size_t)blk * a->block_bytes, *vb = a->vc + (size_t)blk * a->block_bytes;
        for (int h = 0; h < a->n_kv; h++) {
            const float *ks = ki + (size_t)h * hd, *vs = vi + (size_t)h * hd;
            if (a->bv) {
                for (int j = 0; j < hd; j++) vtmp[j] = vs[j] + a->bv[(size_t)h * hd + j];
                vs = vtmp;
            }
            loom_kv_write_head(kb, vb, h, t, bt, hd, a->f16 ? LOOM_TYPE_F16 : LOOM_TYPE_F32, ks, vs);
        }
    }
}

/* per-thread attention scratch: q, acc (64-byte aligned), lim/m/l, work,
 * and two partial slots */
static size_t att_slice_floats(void) {
    const size_t hd = HOST_MAX_HEAD, nq = LOOM_ATTN_UNIT_NQ;
    return 16 + hd * nq + nq * hd + 3 * nq + LOOM_ATTN_WORK_FLOATS(hd) + 2 * LOOM_ATTN_PART_FLOATS(hd) + 64;
}

typedef struct {
    loom_device *d;
    const loom_dev_attn_args *a;
    loom_attn_unit_fn *kernel;
} att_task;

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static void att_unit(const att_task *t, const loom_attn_dunit *un, float *base) {
    const loom_dev_attn_args *a = t->a;
    const int hd = a->head_dim, nq = un->nq, NQ = LOOM_ATTN_UNIT_NQ;
    float *q = align64(base), *acc = q + (size_t)hd * NQ, *small = acc + (size_t)NQ * hd;
    float *work = align64(small + 3 * NQ), *s0 = work + LOOM_ATTN_WORK_FLOATS(HOST_MAX_HEAD);
    float *s1 = s0 + LOOM_ATTN_PART_FLOATS(hd);
    const float *qp[LOOM_ATTN_UNIT_NQ];
    float *op[LOOM_ATTN_UNIT_NQ];
    for (int j = 0; j < nq; j++) qp[j] = a->q + un->q_off[j], op[j] = a->out + un->q_off[j];
    loom_attn_unit u = {.k = a->kc, .v = a->vc, .block_bytes = a->block_bytes, .block_tokens = a->block_tokens,
                        .head_dim = hd, .f16 = a->f16, .kvh = un->kvh, .table = a->tables + un->table, .nq = nq,
                        .p_begin = 0, .p_end = un->len, .p_pf = un->len, .qp = qp, .qscale = a->qscale,
                        .out = op, .lim = un->lim, .q = q, .m = small + NQ, .l = small + 2 * NQ, .acc = acc,
                        .work = work};
    const int P = loom_attn_n_segs(un->len, a->block_tokens, a->seg_blocks);
    if (P == 1) { /* one segment: the kernel writes the output */
        t->kernel(&u);
        return;
    }
    for (int s = 0; s < P; s++) {
        float *slot = s == 0 ? s0 : s1;
        loom_attn_seg_range(s, un->len, a->block_tokens, a->seg_blocks, &u.p_begin, &u.p_end);
        u.out = NULL, u.m = slot, u.l = slot + NQ, u.acc = slot + 2 * NQ;
        t->kernel(&u);
        if (s > 0)
            for (int j = 0; j < nq; j++)
                loom_attn_merge1(&s0[j], &s0[NQ + j], s0 + 2 * NQ + (size_t)j * hd, s1[j], s1[NQ + j],
                                 s1 + 2 * NQ + (size_t)j * hd, hd);
    }
    for (int j = 0; j < nq; j++) loom_attn_finish(s0 + 2 * NQ + (size_t)j * hd, s0[NQ + j], op[j], hd);
}

static void att_worker(void *ctx, int ith, int nth) {
    const att_task *t = ctx;
    host_impl *h = impl_of(t->d);
    float *base = h->att + (size_t)ith * att_slice_floats();
    for (int i = ith; i < t->a->n_units; i += nth) att_unit(t, &t->a->units[i], base);
}

/* Units round-robin over the threads; each unit's segments one after the
 * other, merged in order (the CPU's choice: every unit's result is the
 * same whichever way its segments are scheduled). */
static void h_attention(loom_device *d, const loom_dev_attn_args *a) {
    const loom_kernels *K = loom_kernels_get();
    while (a->head_dim % K->attn_head_multiple) K = K->lower; /* scalar takes every head size */
    att_task t = {d, a, K->attn_unit};
    loom_pool_run(impl_of(d)->pool, att_worker, &t);
}

static void h_destroy(loom_device *d) {
    host_impl *h = impl_of(d);
    loom_pool_free(h->pool);
    for (int i = 0; i < h->n_bufs; i++) free(h->bufs[i].p);
    free(h->bufs);
    free(h->tmp);
    free(h->att);
    pthread_mutex_destroy(&h->mu);
    free(h);
    free(d);
}

#define HOST_MM_ENTRY(p, T, s, f) [LOOM_TYPE_##T] = host_mm_##s,

static const loom_device_iface host_iface = {
    .name = "host",
    .quant_rows = 1 << 30,
    .destroy = h_destroy,
    .alloc = h_alloc,
    .free = h_free,
    .host_alloc = h_host_alloc,
    .host_free = h_host_free,
    .free_bytes = h_free_bytes,
    .copy = h_copy,
    .fill0 = h_fill0,
    .compute_stream = h_compute_stream,
    .stream_create = h_stream_create,
    .stream_free = h_stream_free,
    .stream_wait = h_stream_wait,
    .sync = h_sync,
    .matmul = {LOOM_MATMUL_TYPES(HOST_MM_ENTRY, _)},
    .quantize = h_quantize,
    .rmsnorm = h_rmsnorm,
    .swiglu = h_swiglu,
    .rope_store = h_rope_store,
    .attention = h_attention,
    .attn_max_head_dim = HOST_MAX_HEAD,
    .embed = h_embed,
    .gather = h_gather,
    .add = h_add,
    .argmax = h_argmax,
};

loom_status loom_device_create_host(int n_threads, loom_device **out) {
    *out = NULL;
    loom_device *d = calloc(1, sizeof *d);
    host_impl *h = calloc(1, sizeof *h);
    if (!d || !h) {
        free(d);
        free(h);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating the host device");
    }
    pthread_mutex_init(&h->mu, NULL);
    d->vt = &host_iface, d->kind = LOOM_DEVICE_HOST, d->ordinal = -1, d->impl = h;
    snprintf(d->what, sizeof d->what, "host");
    loom_status st = loom_pool_create(n_threads < 1 ? 1 : n_threads, &h->pool);
    if (!st) {
        h->att_floats = att_slice_floats() * (size_t)loom_pool_size(h->pool);
        h->att = malloc(h->att_floats * sizeof(float));
        if (!h->att) st = loom_error(LOOM_ERR_NOMEM, "out of memory for the host device's attention scratch");
    }
    if (st) {
        h_destroy(d);
        return st;
    }
    *out = d;
    return NULL;
}
