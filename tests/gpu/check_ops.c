/*
 * tests/gpu/check_ops.c — the device's kernel entries against the host
 * device's (the CPU kernels) on the same random inputs: activation
 * quantization byte-equal; RMSNorm and SwiGLU (with the fused quantization),
 * residual add, embedding rows, gather and argmax; matmul per weight type at
 * batches 1, 2, 8, 9 (the quantized small-batch kernels; on CUDA 9 is two
 * passes of up to 8 rows) and 64 (cuBLAS on the CUDA device), over an uneven row range, with and without accumulate.
 * RoPE + KV write and attention are checked through the forward pass
 * (device_check.c: hidden states after layer 0's attention, prefill and
 * decode, one and several segments).
 *
 * Tolerances (the error is max |device - host| / max |host| over the
 * output): quantization, add, gather, argmax: exact; embedding: 1e-6 (the
 * same dequantizer, fused multiply-adds allowed); RMSNorm, SwiGLU: 1e-5;
 * matmul at batch <= quant_rows: 1e-4 (the CPU's block integers and
 * floats, added in another order); above: 3e-2 (bf16 weights and
 * activations against the CPU's int8 activations).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/types.h"
#include "tests/gpu/check_util.h"
#include "tests/gpu/synth_model.h"

typedef struct {
    loom_device *d[2]; /* reference (host), device under test */
} pair;

static void free2(pair *p, void **b) {
    for (int i = 0; i < 2; i++)
        if (b[i]) p->d[i]->vt->free(p->d[i], b[i]);
}

/* the same host bytes on both devices */
static int dup2(pair *p, const void *h, size_t bytes, const char *what, void **out) {
    out[0] = out[1] = NULL;
    for (int i = 0; i < 2; i++)
        if (!(out[i] = ck_dup(p->d[i], h, bytes, what))) {
            free2(p, out);
            return 0;
        }
    return 1;
}

static int fetch2(pair *p, void *const *db, void *h0, void *h1, size_t bytes, const char *what) {
    return ck_fetch(p->d[0], h0, db[0], bytes, what) && ck_fetch(p->d[1], h1, db[1], bytes, what);
}

static const loom_type act_types[] = {LOOM_TYPE_Q4_0, LOOM_TYPE_Q4_1, LOOM_TYPE_Q5_0, LOOM_TYPE_Q5_1,
                                      LOOM_TYPE_Q8_0, LOOM_TYPE_Q4_K, LOOM_TYPE_Q5_K, LOOM_TYPE_Q6_K};

static void check_quantize(pair *p) {
    const int n = 7, k = 2048;
    float *x = malloc(sizeof(float) * n * k);
    ck_randn(x, (size_t)n * k, 1.0, 42);
    for (int j = 0; j < k; j++) x[2 * k + j] = 0.0f;             /* a zero row */
    for (int j = 0; j < k; j++) x[3 * k + j] *= 1e-30f;          /* a tiny one */
    for (int j = 0; j < k; j += 3) x[4 * k + j] = (float)(j % 7) - 3; /* exact halves and ties */
    void *dx[2];
    if (!dup2(p, x, sizeof(float) * n * k, "quantize input", dx)) goto out;
    for (size_t t = 0; t < sizeof act_types / sizeof act_types[0]; t++) {
        const loom_type wt = act_types[t];
        char name[64];
        snprintf(name, sizeof name, "actq %s", loom_type_info((uint32_t)wt)->name);
        const size_t rb = loom_act_row_bytes(wt, k), bytes = rb * n;
        void *dq[2];
        if (!dup2(p, NULL, bytes, name, dq)) continue;
        for (int i = 0; i < 2; i++) p->d[i]->vt->quantize(p->d[i], wt, dx[i], n, k, dq[i]);
        uint8_t *a = malloc(bytes), *b = malloc(bytes);
        if (fetch2(p, dq, a, b, bytes, name)) {
            size_t diff = 0;
            for (size_t i = 0; i < bytes; i++) diff += a[i] != b[i];
            ck_record(name, diff == 0, "%zu of %zu bytes differ (byte-equal required)", diff, bytes);
        }
        free(a);
        free(b);
        free2(p, dq);
    }
    free2(p, dx);
out:
    free(x);
}

/* RMSNorm + quantization (Q8_0 and Q4_K layouts), SwiGLU + quantization, add, gather, argmax */
static void check_rowops(pair *p) {
    const int n = 5, k = 1536;
    const size_t nk = (size_t)n * k;
    float *x = malloc(sizeof(float) * nk), *w = malloc(sizeof(float) * k), *u = malloc(sizeof(float) * nk);
    float *a = malloc(sizeof(float) * nk), *b = malloc(sizeof(float) * nk);
    ck_randn(x, nk, 2.0, 1), ck_randn(w, (size_t)k, 1.0, 2), ck_randn(u, nk, 1.0, 3);
    void *dx[2] = {0}, *dw[2] = {0}, *du[2] = {0}, *dq[2] = {0}, *di[2] = {0}, *dv[2] = {0}, *dg[2] = {0};
    const size_t qa = loom_act_row_bytes(LOOM_TYPE_Q4_K, k), qc = loom_act_row_bytes(LOOM_TYPE_Q8_0, k);
    const size_t qb = (qa > qc ? qa : qc) * n;
    if (!dup2(p, x, nk * 4, "rowops x", dx) || !dup2(p, w, (size_t)k * 4, "rowops w", dw) ||
        !dup2(p, u, nk * 4, "rowops up", du) || !dup2(p, NULL, qb, "rowops xq", dq))
        goto out;
    const loom_type qt[2] = {LOOM_TYPE_Q8_0, LOOM_TYPE_Q4_K};
    for (int v = 0; v < 2; v++) {
        char name[64];
        snprintf(name, sizeof name, "rmsnorm+actq %s", loom_type_info((uint32_t)qt[v])->name);
        for (int i = 0; i < 2; i++) {
            ck_upload(p->d[i], dx[i], x, nk * 4);
            p->d[i]->vt->rmsnorm(p->d[i], dx[i], dw[i], 1e-5f, n, k, dx[i], qt[v], dq[i]); /* in place */
        }
        if (!fetch2(p, dx, a, b, nk * 4, name)) goto out;
        double rm, e = ck_maxdiff(b, a, nk, &rm);
        ck_record(name, e <= 1e-5 * rm, "max diff %.3g (%.3g of max |host|; tolerance 1e-5)", e, e / rm);
    }
    for (int v = 0; v < 2; v++) {
        char name[64];
        snprintf(name, sizeof name, "swiglu+actq %s", loom_type_info((uint32_t)qt[v])->name);
        for (int i = 0; i < 2; i++) {
            ck_upload(p->d[i], dx[i], x, nk * 4);
            p->d[i]->vt->swiglu(p->d[i], dx[i], du[i], n, k, qt[v], dq[i]);
        }
        if (!fetch2(p, dx, a, b, nk * 4, name)) goto out;
        double rm, e = ck_maxdiff(b, a, nk, &rm);
        ck_record(name, e <= 1e-5 * rm, "max diff %.3g (%.3g of max |host|; tolerance 1e-5)", e, e / rm);
    }
    /* add: bit-equal */
    for (int i = 0; i < 2; i++) {
        ck_upload(p->d[i], dx[i], x, nk * 4);
        p->d[i]->vt->add(p->d[i], dx[i], du[i], nk);
    }
    if (fetch2(p, dx, a, b, nk * 4, "add")) ck_record("add", !memcmp(a, b, nk * 4), "bit-equal required");
    /* gather rows 4, 0, 4: bit-equal */
    const int32_t rows[3] = {4, 0, 4};
    if (dup2(p, rows, sizeof rows, "gather rows", di) && dup2(p, NULL, (size_t)3 * k * 4, "gather out", dg)) {
        for (int i = 0; i < 2; i++) p->d[i]->vt->gather(p->d[i], dx[i], di[i], 3, k, dg[i]);
        if (fetch2(p, dg, a, b, (size_t)3 * k * 4, "gather"))
            ck_record("gather", !memcmp(a, b, (size_t)3 * k * 4), "bit-equal required");
    }
    /* argmax over rows with ties and a NaN */
    for (int i = 0; i < 2; i++) {
        float *r = x + (size_t)i * k;
        r[100] = r[900] = 50.0f; /* tie: the first wins */
        r[7] = NAN;
    }
    void *dxa[2] = {0};
    if (dup2(p, x, nk * 4, "argmax x", dxa) && dup2(p, NULL, 64, "argmax val", dv)) {
        void *dix[2] = {0};
        if (dup2(p, NULL, 64, "argmax idx", dix)) {
            for (int i = 0; i < 2; i++) p->d[i]->vt->argmax(p->d[i], dxa[i], n, k - 16, k, dix[i], dv[i]);
            int32_t ia[8], ib[8];
            if (fetch2(p, dix, ia, ib, sizeof(int32_t) * n, "argmax"))
                ck_record("argmax", !memcmp(ia, ib, sizeof(int32_t) * n) && ia[0] == 100,
                          "indices equal (row 0: host %d, device %d; expected 100)", ia[0], ib[0]);
            free2(p, dix);
        }
    }
    free2(p, dxa);
out:
    free2(p, dx), free2(p, dw), free2(p, du), free2(p, dq), free2(p, di), free2(p, dv), free2(p, dg);
    free(x), free(w), free(u), free(a), free(b);
}

static void check_embed(pair *p) {
    const loom_type ts[] = {LOOM_TYPE_Q4_0, LOOM_TYPE_Q4_K, LOOM_TYPE_Q6_K, LOOM_TYPE_F16, LOOM_TYPE_Q8_0};
    const int dim = 512, rows = 40, n = 4;
    const int32_t tok[4] = {3, 39, 100 /* outside: zeros */, 10};
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        const size_t stride = loom_type_row_bytes(ts[t], dim), bytes = stride * rows;
        uint8_t *tab = malloc(bytes);
        gpu_synth_fill(ts[t], 77 + t, 1.0, tab, bytes);
        char name[64];
        snprintf(name, sizeof name, "embed %s", loom_type_info((uint32_t)ts[t])->name);
        void *dt[2] = {0}, *dk[2] = {0}, *dx[2] = {0};
        float *a = malloc(sizeof(float) * n * dim), *b = malloc(sizeof(float) * n * dim);
        if (dup2(p, tab, bytes, name, dt) && dup2(p, tok, sizeof tok, name, dk) &&
            dup2(p, NULL, sizeof(float) * n * dim, name, dx)) {
            for (int i = 0; i < 2; i++) p->d[i]->vt->embed(p->d[i], ts[t], dt[i], stride, 0, rows, dk[i], n, dim, dx[i]);
            if (fetch2(p, dx, a, b, sizeof(float) * n * dim, name)) {
                double rm, e = ck_maxdiff(b, a, (size_t)n * dim, &rm);
                ck_record(name, e <= 1e-6 * rm, "max diff %.3g (%.3g of max |host|; tolerance 1e-6)", e, e / rm);
            }
        }
        free2(p, dt), free2(p, dk), free2(p, dx);
        free(tab), free(a), free(b);
    }
}

/* y (n, ldy) over rows [r0, r0 + nr) of a (rows, k) matrix of type t */
static void check_matmul_type(pair *p, loom_type t) {
    const int rows = 347, r0 = 13, nr = 301, k = 1024;
    const int ns[] = {1, 2, 8, 9, 64};
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    const size_t stride = loom_type_row_bytes(t, k), wbytes = stride * rows;
    uint8_t *w = malloc(wbytes);
    gpu_synth_fill(t, 1000 + (uint64_t)t, 1 / sqrt((double)k), w, wbytes);
    const int nmax = 64, ldy = nr + 5;
    float *x = malloc(sizeof(float) * nmax * k), *y0 = malloc(sizeof(float) * nmax * ldy);
    float *a = malloc(sizeof(float) * nmax * ldy), *b = malloc(sizeof(float) * nmax * ldy);
    ck_randn(x, (size_t)nmax * k, 1.0, 5 + (uint64_t)t);
    ck_randn(y0, (size_t)nmax * ldy, 1.0, 9);
    const size_t rb = loom_act_row_bytes(t, k);
    void *dw[2] = {0}, *dx[2] = {0}, *dq[2] = {0}, *dy[2] = {0};
    char name[64];
    snprintf(name, sizeof name, "matmul %s", tr->name);
    if (!p->d[1]->vt->matmul[t]) {
        ck_record(name, 0, "the device has no %s matmul", tr->name);
        goto out;
    }
    if (!dup2(p, w, wbytes, name, dw) || !dup2(p, x, sizeof(float) * nmax * k, name, dx) ||
        !dup2(p, NULL, rb * nmax, name, dq) || !dup2(p, NULL, sizeof(float) * nmax * ldy, name, dy))
        goto out;
    /* the host's quantized rows for both (quantization is checked byte-equal above) */
    p->d[0]->vt->quantize(p->d[0], t, dx[0], nmax, k, dq[0]);
    {
        uint8_t *q = malloc(rb * nmax);
        int ok = ck_fetch(p->d[0], q, dq[0], rb * nmax, name);
        if (ok) {
            loom_status st = loom_device_upload(p->d[1], dq[1], q, rb * nmax);
            if (st) ok = ck_status(name, st);
        }
        free(q);
        if (!ok) goto out;
    }
    for (size_t v = 0; v < sizeof ns / sizeof ns[0]; v++) {
        for (int acc = 0; acc < 2; acc++) {
            const int n = ns[v];
            if (acc && n != 2 && n != 64) continue;
            char nm[96];
            snprintf(nm, sizeof nm, "matmul %s n=%d%s", tr->name, n, acc ? " +=" : "");
            for (int i = 0; i < 2; i++) {
                ck_upload(p->d[i], dy[i], y0, sizeof(float) * nmax * ldy);
                p->d[i]->vt->matmul[t](p->d[i], (const uint8_t *)dw[i] + (size_t)r0 * stride, stride, k, nr, dx[i],
                                       dq[i], rb, n, dy[i], ldy, acc);
            }
            if (!fetch2(p, dy, a, b, sizeof(float) * (size_t)n * ldy, nm)) goto out;
            /* outside [0, nr) of each row: untouched */
            int outside = 0;
            for (int r = 0; r < n; r++)
                for (int c = nr; c < ldy; c++) outside += memcmp(&b[(size_t)r * ldy + c], &y0[(size_t)r * ldy + c], 4) != 0;
            double e = 0, rm = 0;
            for (int r = 0; r < n; r++) {
                double m;
                const double d = ck_maxdiff(b + (size_t)r * ldy, a + (size_t)r * ldy, (size_t)nr, &m);
                e = d > e || d != d ? d : e;
                rm = m > rm ? m : rm;
            }
            const double tol = n <= p->d[1]->vt->quant_rows ? 1e-4 : 3e-2;
            ck_record(nm, e <= tol * rm && !outside, "max diff %.3g (%.3g of max |host| %.3g; tolerance %g)%s", e,
                      e / rm, rm, tol, outside ? "; wrote outside its rows" : "");
        }
    }
out:
    free2(p, dw), free2(p, dx), free2(p, dq), free2(p, dy);
    free(w), free(x), free(y0), free(a), free(b);
}

void ck_ops(loom_device *ref, loom_device *dut) {
    pair p = {{ref, dut}};
    printf("\n== kernel entries: %s against %s ==\n", dut->what, ref->what);
    check_quantize(&p);
    check_rowops(&p);
    check_embed(&p);
    for (int t = 0; t < LOOM_TYPE_COUNT; t++) {
        if (!loom_type_can_matmul((loom_type)t)) continue;
        if (!dut->vt->matmul[t] &&
            (t == LOOM_TYPE_MXFP4 || t == LOOM_TYPE_Q2_K || t == LOOM_TYPE_Q3_K || t == LOOM_TYPE_IQ4_NL)) {
            printf("SKIP  matmul %-36s the CPU's only so far (no device kernel; models with it run on the CPU)\n",
                   loom_type_name((uint32_t)t));
            continue;
        }
        check_matmul_type(&p, (loom_type)t);
    }
}
