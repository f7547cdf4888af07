/*
 * runtime/cuda/device_cuda.cu — one GPU as a loom device (runtime/device.h):
 * plain cudaMalloc'd buffers, one non-blocking compute stream that every
 * kernel entry uses, a cuBLAS handle bound to it, one event for stream
 * ordering, graphs captured from the compute stream. The kernel entries
 * live in mmvq.cu, gemm.cu, rowops.cu and attention.cu.
 *
 * Not verified on a GPU yet (see README: what has run on a GPU).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/cuda_internal.h"

static loom_status cuda_err(loom_device *d, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return NULL;
    (void)cudaGetLastError(); /* clear a non-sticky error */
    return loom_error(e == cudaErrorMemoryAllocation ? LOOM_ERR_NOMEM : LOOM_ERR_COMM, "%s: %s failed: %s", d->what,
                      what, cudaGetErrorString(e));
}

/* LOOM_CUDA_PROFILE=1: an event after every kernel entry outside graph
 * capture; the time between consecutive events (the kernel, plus any idle
 * gap before it when the host launches too slowly) is added to the entry's
 * total, printed to stderr when the device is destroyed. Diagnostic only. */
#define PROF_EVENTS 4096
#define PROF_NAMES 64
static struct {
    int on, n, n_names;
    cudaEvent_t ev[PROF_EVENTS];
    const char *at[PROF_EVENTS];
    const char *name[PROF_NAMES];
    double ms[PROF_NAMES];
    long calls[PROF_NAMES];
} prof;

static void prof_flush(cudaStream_t s) {
    cudaStreamSynchronize(s);
    for (int i = 1; i < prof.n; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, prof.ev[i - 1], prof.ev[i]) != cudaSuccess) continue;
        int j = 0;
        while (j < prof.n_names && strcmp(prof.name[j], prof.at[i])) j++;
        if (j == prof.n_names) {
            if (j == PROF_NAMES) continue;
            prof.name[prof.n_names++] = prof.at[i];
        }
        prof.ms[j] += ms, prof.calls[j]++;
    }
    if (prof.n > 0) { /* keep the last event as the next origin */
        cudaEvent_t last = prof.ev[prof.n - 1];
        prof.ev[prof.n - 1] = prof.ev[0], prof.ev[0] = last, prof.at[0] = prof.at[prof.n - 1];
        prof.n = 1;
    }
}

static void prof_mark(loom_cuda *c, const char *what) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;
    if (prof.n == PROF_EVENTS) prof_flush(c->stream);
    if (!prof.ev[prof.n] && cudaEventCreate(&prof.ev[prof.n]) != cudaSuccess) return;
    prof.at[prof.n] = what;
    cudaEventRecord(prof.ev[prof.n++], c->stream);
}

static void prof_report(loom_cuda *c) {
    if (!prof.on) return;
    prof_flush(c->stream);
    double total = 0;
    for (int j = 0; j < prof.n_names; j++) total += prof.ms[j];
    fprintf(stderr, "\n== LOOM_CUDA_PROFILE: time between kernel entries (idle gaps included), all phases ==\n");
    for (int j = 0; j < prof.n_names; j++)
        fprintf(stderr, "  %-24s %8ld calls %10.2f ms %5.1f %% %9.2f us/call\n", prof.name[j], prof.calls[j], prof.ms[j],
                total > 0 ? 100 * prof.ms[j] / total : 0.0, prof.calls[j] ? 1000 * prof.ms[j] / prof.calls[j] : 0.0);
    memset(prof.ms, 0, sizeof prof.ms), memset(prof.calls, 0, sizeof prof.calls);
}

void loom_cuda_note(loom_device *d, cudaError_t e, const char *what) {
    loom_cuda *c = loom_cuda_of(d);
    if (e != cudaSuccess && c->sticky == cudaSuccess) c->sticky = e, c->sticky_what = what;
    if (prof.on) prof_mark(c, what);
}

bool loom_cuda_scratch(loom_device *d, void **buf, size_t *have, size_t need, const char *what) {
    if (need <= *have) return true;
    loom_cuda *c = loom_cuda_of(d);
    if (*buf) {
        cudaStreamSynchronize(c->stream);
        cudaFree(*buf);
    }
    *buf = NULL, *have = 0;
    const size_t want = need + need / 4;
    cudaError_t e = cudaMalloc(buf, want);
    if (e != cudaSuccess) {
        *buf = NULL;
        loom_cuda_note(d, e, what);
        return false;
    }
    *have = want;
    return true;
}

/* ------------------------------------------------------------ memory */

static loom_status c_alloc(loom_device *d, size_t bytes, void **out) {
    *out = NULL;
    loom_status st = cuda_err(d, cudaMalloc(out, bytes ? bytes : 1), "cudaMalloc");
    if (!st) st = cuda_err(d, cudaMemset(*out, 0, bytes ? bytes : 1), "cudaMemset");
    if (st && *out) {
        cudaFree(*out);
        *out = NULL;
    }
    if (st) return loom_error_wrap(st, "allocating %zu bytes", bytes);
    return NULL;
}

static void c_free(loom_device *d, void *p) {
    (void)d;
    if (p) cudaFree(p);
}

static loom_status c_host_alloc(loom_device *d, size_t bytes, void **out) {
    *out = NULL;
    LOOM_TRY(cuda_err(d, cudaMallocHost(out, bytes ? bytes : 1), "cudaMallocHost"));
    memset(*out, 0, bytes ? bytes : 1);
    return NULL;
}

static void c_host_free(loom_device *d, void *p) {
    (void)d;
    if (p) cudaFreeHost(p);
}

static int64_t c_free_bytes(loom_device *d) {
    size_t f = 0, t = 0;
    cudaSetDevice(loom_cuda_of(d)->ordinal);
    return cudaMemGetInfo(&f, &t) == cudaSuccess ? (int64_t)f : -1;
}

static cudaStream_t stream_of(loom_device *d, void *s) { return s ? (cudaStream_t)s : loom_cuda_of(d)->stream; }

static loom_status c_copy(loom_device *d, void *dst, const void *src, size_t bytes, loom_copy_dir dir, void *stream) {
    const cudaMemcpyKind k = dir == LOOM_COPY_H2D ? cudaMemcpyHostToDevice
                             : dir == LOOM_COPY_D2H ? cudaMemcpyDeviceToHost
                                                    : cudaMemcpyDeviceToDevice;
    return cuda_err(d, cudaMemcpyAsync(dst, src, bytes, k, stream_of(d, stream)), "cudaMemcpyAsync");
}

static loom_status c_fill0(loom_device *d, void *dst, size_t bytes, void *stream) {
    return cuda_err(d, cudaMemsetAsync(dst, 0, bytes, stream_of(d, stream)), "cudaMemsetAsync");
}

/* ------------------------------------------------------------ streams */

static void *c_compute_stream(loom_device *d) { return loom_cuda_of(d)->stream; }

static loom_status c_stream_create(loom_device *d, void **out) {
    cudaStream_t s;
    LOOM_TRY(cuda_err(d, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
    *out = s;
    return NULL;
}

static void c_stream_free(loom_device *d, void *s) {
    (void)d;
    if (s) cudaStreamDestroy((cudaStream_t)s);
}

/* One event serves every ordering: cudaStreamWaitEvent takes the event's
 * state when it is called, so re-recording it later changes nothing. */
static loom_status c_stream_wait(loom_device *d, void *waiter, void *signaller) {
    loom_cuda *c = loom_cuda_of(d);
    const cudaStream_t w = stream_of(d, waiter), s = stream_of(d, signaller);
    if (w == s) return NULL;
    LOOM_TRY(cuda_err(d, cudaEventRecord(c->ev, s), "cudaEventRecord"));
    return cuda_err(d, cudaStreamWaitEvent(w, c->ev, 0), "cudaStreamWaitEvent");
}

static loom_status c_sync(loom_device *d, void *stream) {
    loom_cuda *c = loom_cuda_of(d);
    LOOM_TRY(cuda_err(d, cudaStreamSynchronize(stream_of(d, stream)), "cudaStreamSynchronize"));
    if (c->sticky != cudaSuccess) {
        const cudaError_t e = c->sticky;
        c->sticky = cudaSuccess;
        return loom_error(LOOM_ERR_COMM, "%s: kernel %s failed: %s", d->what, c->sticky_what, cudaGetErrorString(e));
    }
    return NULL;
}

/* ------------------------------------------------------------ graphs */

static loom_status c_graph_begin(loom_device *d) {
    return cuda_err(d, cudaStreamBeginCapture(loom_cuda_of(d)->stream, cudaStreamCaptureModeThreadLocal),
                    "cudaStreamBeginCapture");
}

static loom_status c_graph_end(loom_device *d, void **out) {
    *out = NULL;
    cudaGraph_t g = NULL;
    LOOM_TRY(cuda_err(d, cudaStreamEndCapture(loom_cuda_of(d)->stream, &g), "cudaStreamEndCapture"));
    cudaGraphExec_t x = NULL;
    loom_status st = cuda_err(d, cudaGraphInstantiate(&x, g, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(g);
    if (!st) *out = x;
    return st;
}

static loom_status c_graph_launch(loom_device *d, void *g) {
    return cuda_err(d, cudaGraphLaunch((cudaGraphExec_t)g, loom_cuda_of(d)->stream), "cudaGraphLaunch");
}

static void c_graph_free(loom_device *d, void *g) {
    (void)d;
    if (g) cudaGraphExecDestroy((cudaGraphExec_t)g);
}

/* ------------------------------------------------------------ cuBLAS, opened at run time */

loom_cublas_api loom_cublas;

static loom_status cublas_loaded;
static void cublas_load_once(void) {
    static char lib[32];
    snprintf(lib, sizeof lib, "libcublas.so.%d", CUBLAS_VER_MAJOR);
    const loom_dynsym syms[] = {
        {"cublasCreate_v2", &loom_cublas.create, false},
        {"cublasDestroy_v2", &loom_cublas.destroy, false},
        {"cublasSetStream_v2", &loom_cublas.set_stream, false},
        {"cublasSetWorkspace_v2", &loom_cublas.set_workspace, false},
        {"cublasGemmEx", &loom_cublas.gemm_ex, false},
    };
    cublas_loaded = loom_dynlib_open(lib, syms, sizeof syms / sizeof syms[0]);
    if (cublas_loaded)
        cublas_loaded = loom_error_wrap(cublas_loaded, "--device cuda needs the CUDA toolkit's cuBLAS");
}

loom_status loom_cublas_load(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, cublas_load_once);
    return cublas_loaded ? loom_error(LOOM_ERR_UNSUPPORTED, "%s", loom_status_message(cublas_loaded)) : NULL;
}

/* ------------------------------------------------------------ the table */

static void c_destroy(loom_device *d) {
    loom_cuda *c = loom_cuda_of(d);
    cudaSetDevice(c->ordinal);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->stream) prof_report(c);
    if (c->blas) loom_cublas.destroy(c->blas);
    if (c->ev) cudaEventDestroy(c->ev);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->wbuf) cudaFree(c->wbuf);
    if (c->abuf) cudaFree(c->abuf);
    if (c->blas_ws) cudaFree(c->blas_ws);
    free(c);
    free(d);
}

#define MM(T)                                                                                                         \
    static void mm_##T(loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,           \
                       const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy, int acc) {                   \
        if (n <= LOOM_CUDA_QUANT_ROWS) loom_cuda_matmul(LOOM_TYPE_##T, d, w, ws, k, nr, x, xq, xs, n, y, ldy, acc);  \
        else loom_cuda_gemm(LOOM_TYPE_##T, d, w, ws, k, nr, x, n, y, ldy, acc);                                     \
    }
MM(F32)
MM(F16)
MM(BF16)
MM(Q4_0)
MM(Q4_1)
MM(Q5_0)
MM(Q5_1)
MM(Q8_0)
MM(Q4_K)
MM(Q5_K)
MM(Q6_K)

static loom_device_iface iface;

static void iface_init(void) {
    loom_device_iface *t = &iface;
    t->name = "cuda";
    t->quant_rows = LOOM_CUDA_QUANT_ROWS;
    t->destroy = c_destroy;
    t->alloc = c_alloc;
    t->free = c_free;
    t->host_alloc = c_host_alloc;
    t->host_free = c_host_free;
    t->free_bytes = c_free_bytes;
    t->copy = c_copy;
    t->fill0 = c_fill0;
    t->compute_stream = c_compute_stream;
    t->stream_create = c_stream_create;
    t->stream_free = c_stream_free;
    t->stream_wait = c_stream_wait;
    t->sync = c_sync;
#define SET(T) t->matmul[LOOM_TYPE_##T] = loom_cuda_has_matmul(LOOM_TYPE_##T) ? mm_##T : NULL
    SET(F32);
    SET(F16);
    SET(BF16);
    SET(Q4_0);
    SET(Q4_1);
    SET(Q5_0);
    SET(Q5_1);
    SET(Q8_0);
    SET(Q4_K);
    SET(Q5_K);
    SET(Q6_K);
#undef SET
    t->quantize = loom_cuda_quantize;
    t->rmsnorm = loom_cuda_rmsnorm;
    t->swiglu = loom_cuda_swiglu;
    t->rope_store = loom_cuda_rope_store;
    t->attention = loom_cuda_attention;
    t->attn_max_head_dim = LOOM_CUDA_MAX_HEAD;
    t->embed = loom_cuda_embed;
    t->gather = loom_cuda_gather;
    t->add = loom_cuda_add;
    t->argmax = loom_cuda_argmax;
    t->graph_begin = c_graph_begin;
    t->graph_end = c_graph_end;
    t->graph_launch = c_graph_launch;
    t->graph_free = c_graph_free;
}

/* ------------------------------------------------------------ entry points (C, for runtime/device.c) */

extern "C" int loom_cuda_impl_count(const char **why) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        (void)cudaGetLastError();
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA GPU is visible";
    return n;
}

extern "C" loom_status loom_cuda_impl_info(int ordinal, loom_gpu_info *out) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, ordinal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return loom_error(LOOM_ERR_INVALID, "GPU %d: %s", ordinal, cudaGetErrorString(e));
    }
    snprintf(out->name, sizeof out->name, "%.95s", p.name);
    char *u = out->uuid;
    int o = snprintf(u, sizeof out->uuid, "GPU-");
    for (int i = 0; i < 16 && o < (int)sizeof out->uuid - 3; i++) {
        o += snprintf(u + o, sizeof out->uuid - (size_t)o, "%02x", (unsigned char)p.uuid.bytes[i]);
        if ((i == 3 || i == 5 || i == 7 || i == 9) && o < (int)sizeof out->uuid - 1) u[o++] = '-', u[o] = '\0';
    }
    snprintf(out->pci, sizeof out->pci, "%04x:%02x:%02x.0", p.pciDomainID, p.pciBusID, p.pciDeviceID);
    out->cc_major = p.major, out->cc_minor = p.minor, out->sm_count = p.multiProcessorCount;
    out->total_bytes = (int64_t)p.totalGlobalMem;
    size_t f = 0, t = 0;
    int prev = 0;
    cudaGetDevice(&prev);
    if (cudaSetDevice(ordinal) == cudaSuccess && cudaMemGetInfo(&f, &t) == cudaSuccess) out->free_bytes = (int64_t)f;
    cudaSetDevice(prev);
    (void)cudaGetLastError();
    return NULL;
}

extern "C" loom_status loom_cuda_impl_create(int ordinal, loom_device **out) {
    *out = NULL;
    const char *why = NULL;
    const int n = loom_cuda_impl_count(&why);
    if (ordinal < 0 || ordinal >= n)
        return loom_error(LOOM_ERR_INVALID, "--device cuda: GPU %d is not visible (%d visible%s%s)", ordinal, n,
                          why ? ": " : "", why ? why : "");
    static int once;
    if (!once) iface_init(), once = 1;
    loom_device *d = (loom_device *)calloc(1, sizeof *d);
    loom_cuda *c = (loom_cuda *)calloc(1, sizeof *c);
    if (!d || !c) {
        free(d);
        free(c);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating GPU %d", ordinal);
    }
    d->vt = &iface, d->kind = LOOM_DEVICE_CUDA, d->ordinal = ordinal, d->impl = c;
    c->ordinal = ordinal;
    loom_gpu_info gi;
    loom_status st = loom_cuda_impl_info(ordinal, &gi);
    if (!st) snprintf(d->what, sizeof d->what, "GPU %d (%.40s)", ordinal, gi.name), c->sm_count = gi.sm_count;
    if (!st) st = cuda_err(d, cudaSetDevice(ordinal), "cudaSetDevice");
    if (!st) st = cuda_err(d, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    if (!st && getenv("LOOM_CUDA_PROFILE") && atoi(getenv("LOOM_CUDA_PROFILE")) > 0) prof.on = 1;
    if (!st) st = cuda_err(d, cudaEventCreateWithFlags(&c->ev, cudaEventDisableTiming), "cudaEventCreate");
    if (!st) st = loom_cublas_load();
    if (!st && loom_cublas.create(&c->blas) != CUBLAS_STATUS_SUCCESS)
        st = loom_error(LOOM_ERR_COMM, "%s: cublasCreate failed", d->what);
    if (!st && loom_cublas.set_stream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS)
        st = loom_error(LOOM_ERR_COMM, "%s: cublasSetStream failed", d->what);
    const size_t ws = (size_t)32 << 20; /* Hopper's recommended cuBLAS workspace */
    if (!st) st = cuda_err(d, cudaMalloc(&c->blas_ws, ws), "cudaMalloc (cuBLAS workspace)");
    if (!st && loom_cublas.set_workspace(c->blas, c->blas_ws, ws) != CUBLAS_STATUS_SUCCESS)
        st = loom_error(LOOM_ERR_COMM, "%s: cublasSetWorkspace failed", d->what);
    if (st) {
        c_destroy(d);
        return st;
    }
    *out = d;
    return NULL;
}
