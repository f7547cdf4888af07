/*
 * runtime/device.h — a compute device that owns its memory and its stream:
 * the backend interface behind which the forward pass runs on a GPU.
 *
 * The CPU kernels (runtime/kernels.h) are functions over host memory called
 * from the caller's threads. A device is an opaque handle with an interface
 * table (ggml-backend's shape): buffers live in the device's memory and are
 * reached only through it; every kernel entry is queued, in call order, on
 * the device's one compute stream and returns at once; `sync` waits and
 * reports what failed. The kernel entries are the CPU table's, batch-wide:
 * matmul per weight type, the attention of a batch over the paged KV cache,
 * RMSNorm and SwiGLU (fused with the activation quantization the matmuls
 * read), the RoPE + KV write (the CPU table's f16 row, fused), plus the
 * element-wise pieces a forward pass needs between them (embedding rows,
 * residual add, argmax).
 *
 * Implementations:
 *   "host"  runtime/cpu/device_host.c — the CPU as a device: buffers are
 *           malloc'd, the stream is the calling thread, the kernels are the
 *           CPU's (kernels.h through a thread pool). The reference for the
 *           device forward pass (runtime/device_forward.h): on it, the
 *           device forward equals the CPU forward bit for bit, which
 *           tests/test_device_forward.c checks; and the device the
 *           communicator backends are tested with, without a GPU.
 *   "cuda"  runtime/cuda/ — one GPU: plain cudaMalloc, one compute stream,
 *           a cuBLAS handle on it, CUDA graphs. Built when nvcc is found
 *           (CMake option LOOM_CUDA); elsewhere loom_device_create_cuda()
 *           returns an error saying so.
 *
 * Ownership. The device owns its compute stream, its library handles
 * (cuBLAS), its internal scratch and its captured graphs. Buffers from
 * alloc/host_alloc and streams from stream_create belong to the caller, who
 * returns them (free/host_free/stream_free) before loom_device_free. A
 * communicator backend (parallel/comm_nccl.h, comm_staged.h) borrows the
 * device, makes its own stream with stream_create and orders it against
 * the compute stream with stream_wait.
 *
 * Errors. Entries returning a status fail only on resources (memory, a
 * stream) or a device fault, with a message naming the device. Kernel
 * entries return nothing: shapes are the caller's contract (as in
 * kernels.h) and a launch failure is reported by the next sync.
 */
#ifndef LOOM_DEVICE_H
#define LOOM_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/attn_split.h"
#include "runtime/status.h"
#include "runtime/types.h"

/* Where a rank computes: AUTO (CUDA when a GPU is visible, else CPU), CPU
 * (runtime/forward.h on the CPU kernels), CUDA (a GPU through this
 * interface), HOST (the CPU through this interface: the GPU's code path on
 * the CPU, for tests; slower than CPU). */
typedef enum { LOOM_DEVICE_AUTO = 0, LOOM_DEVICE_CPU, LOOM_DEVICE_CUDA, LOOM_DEVICE_HOST } loom_device_kind;

/* The weight types the CUDA device multiplies (runtime/cuda/mmvq.cu:
 * loom_cuda_has_matmul; MXFP4, Q2_K, Q3_K and IQ4_NL, so IQ4_XS, are CPU
 * only so far) */
#define LOOM_CUDA_MATMUL_TYPES                                                                         \
    (1ull << LOOM_TYPE_F32 | 1ull << LOOM_TYPE_F16 | 1ull << LOOM_TYPE_BF16 | 1ull << LOOM_TYPE_Q4_0 |   \
     1ull << LOOM_TYPE_Q4_1 | 1ull << LOOM_TYPE_Q5_0 | 1ull << LOOM_TYPE_Q5_1 | 1ull << LOOM_TYPE_Q8_0 |  \
     1ull << LOOM_TYPE_Q4_K | 1ull << LOOM_TYPE_Q5_K | 1ull << LOOM_TYPE_Q6_K)

/* "auto", "cpu", "cuda", "host"; NULL for an unknown kind. */
const char *loom_device_kind_name(loom_device_kind k);
/* Parses "auto", "cpu", "cuda" or "host"; an error naming the accepted words. */
loom_status loom_device_kind_parse(const char *s, loom_device_kind *out) LOOM_MUST_USE;

/* Whether this build has the CUDA backend. */
bool loom_cuda_built(void);
/* GPUs this process sees (CUDA_VISIBLE_DEVICES applies); 0 without the
 * CUDA backend, a driver or a GPU. Never fails; *why (optional) says why
 * the count is 0. */
int loom_cuda_device_count(const char **why);

typedef struct {
    char name[96];      /* "NVIDIA H200" */
    char uuid[48];      /* "GPU-5c6e..." — the same GPU has the same UUID in every process */
    char pci[32];       /* "0000:1b:00.0" */
    int cc_major, cc_minor, sm_count;
    int64_t total_bytes, free_bytes;
} loom_gpu_info;
loom_status loom_cuda_device_info(int ordinal, loom_gpu_info *out) LOOM_MUST_USE;

/* AUTO -> CUDA when this build has it and a GPU is visible, else CPU. */
loom_device_kind loom_device_resolve(loom_device_kind k);

typedef struct loom_device loom_device;
typedef struct loom_device_iface loom_device_iface;

struct loom_device {
    const loom_device_iface *vt;
    loom_device_kind kind;
    int ordinal;     /* GPU index (CUDA), -1 for the host */
    char what[64];   /* "GPU 0 (NVIDIA H200)", "host" — names the device in errors */
    void *impl;
};

/* The CPU as a device, running its kernels on n_threads threads. */
loom_status loom_device_create_host(int n_threads, loom_device **out) LOOM_MUST_USE;
/* GPU `ordinal` (of those visible); an error when this build has no CUDA,
 * no driver, or no such GPU. */
loom_status loom_device_create_cuda(int ordinal, loom_device **out) LOOM_MUST_USE;
/* Synchronises, then frees what the device owns. NULL is a no-op. */
void loom_device_free(loom_device *d);

/* Host device, for tests: whether p points into one of its live buffers
 * (what a staging backend must never hand to MPI). */
bool loom_device_host_owns(const loom_device *d, const void *p);

typedef enum { LOOM_COPY_H2D, LOOM_COPY_D2H, LOOM_COPY_D2D } loom_copy_dir;

/* ------------------------------------------------------------ kernel entries
 * Device pointers everywhere except where marked; queued on the compute
 * stream. */

/* y[t*ldy + i] = dot(W row i, x_t)  (accumulate: +=)  for i < nr, t < n.
 * w: the first row of the range, rows w_stride bytes apart, k columns;
 * x: (n, k) float rows; xq: the same rows quantized for the weight type
 * (kernels.h's layouts, xq_stride bytes apart) — required when
 * n <= d->vt->quant_rows, may be NULL otherwise (the device then uses x).
 * nr >= 1, n >= 1. */
typedef void loom_dev_matmul_fn(loom_device *d, const uint8_t *w, size_t w_stride, int64_t k, int64_t nr,
                                const float *x, const uint8_t *xq, size_t xq_stride, int64_t n, float *y, int64_t ldy,
                                int accumulate);

/* out (n, k) = x / rms(x) · w per row (out may be x); when xq is not NULL
 * also the rows quantized for weight type wt into xq (loom_act_row_bytes
 * apart): the CPU's bytes for the same floats (runtime/actq.h). */
typedef void loom_dev_rmsnorm_fn(loom_device *d, const float *x, const float *w, float eps, int n, int k, float *out,
                                 loom_type wt, uint8_t *xq);

/* gate (n, k) = silu(gate) · up; when xq is not NULL also quantized for wt. */
typedef void loom_dev_swiglu_fn(loom_device *d, float *gate, const float *up, int n, int k, loom_type wt, uint8_t *xq);

/* xq = the n rows of x (n, k) quantized for weight type wt. */
typedef void loom_dev_quantize_fn(loom_device *d, loom_type wt, const float *x, int n, int k, uint8_t *xq);

/* x[i] += y[i] for i < count. */
typedef void loom_dev_add_fn(loom_device *d, float *x, const float *y, size_t count);

/* x (n, dim) row i = row (tok[i] - row0) of the table (type t, rows stride
 * bytes apart) when tok[i] in [row0, row0 + nrows), else zeros. */
typedef void loom_dev_embed_fn(loom_device *d, loom_type t, const uint8_t *table, size_t stride, int64_t row0,
                               int64_t nrows, const int32_t *tok, int n, int dim, float *x);

/* dst (n, dim) row i = src row rows[i] (a gather of rows). */
typedef void loom_dev_gather_fn(loom_device *d, const float *src, const int32_t *rows, int n, int dim, float *dst);

/* RoPE with the write into the paged KV cache, for one layer and a batch:
 * per row i, bias (optional) added to q, k, v; q and k rotated in place
 * by the angles cs[i] (loom_rope_angles' layout); k and v stored, in the
 * cache's element type, at cache position slot[i] = block · block_tokens +
 * (position mod block_tokens) (kv_cache.h's block layout). */
typedef struct {
    int n, n_q, n_kv, head_dim, rope_dim, neox;
    float *q;                  /* (n, n_q·head_dim) */
    float *k;                  /* (n, n_kv·head_dim) */
    const float *v;            /* (n, n_kv·head_dim) */
    const float *bq, *bk, *bv; /* (n_q·head_dim), (n_kv·head_dim) ×2, or NULL */
    const float *cs;           /* (n, rope_dim) */
    const int32_t *slot;       /* (n) */
    uint8_t *kc, *vc;          /* this layer's key / value block 0 */
    size_t block_bytes;        /* from one block to the next */
    int block_tokens, f16;
} loom_dev_rope_args;
typedef void loom_dev_rope_store_fn(loom_device *d, const loom_dev_rope_args *a);

/* Attention of a batch over the paged cache, units planned by
 * runtime/attn_plan.h: every unit's queries (scaled by qscale, base 2)
 * attend to positions [0, len) of its sequence and KV head, each query up
 * to its lim; the key range is cut into segments (attn_split.h) computed
 * and merged in order; out rows written at the units' q_off. The device
 * chooses whether a unit's segments run apart and merge afterwards (few
 * units: decode) or one after the other (many: prefill); the segments and
 * the merge order are the same either way. */
typedef struct {
    const uint8_t *kc, *vc;        /* this layer's key / value block 0 */
    size_t block_bytes;
    int block_tokens, head_dim, f16;
    const float *q;                /* query rows, read at the units' q_off */
    float *out;                    /* output rows, written at the units' q_off */
    const loom_attn_dunit *units;  /* (n_units) */
    int n_units;
    const int32_t *tables;         /* block ids; a unit's sequence table at tables + unit.table */
    int seg_blocks, max_segs;      /* segments: attn_split.h; max_segs of any unit */
    float qscale;                  /* log2(e)/√head_dim */
    float *part;                   /* (part_units · max_segs · LOOM_ATTN_PART_FLOATS(head_dim)) scratch */
    int part_units;                /* units whose segments may run apart (0: never) */
} loom_dev_attn_args;
typedef void loom_dev_attention_fn(loom_device *d, const loom_dev_attn_args *a);

/* idx[i], val[i] = the first maximum of row i of x (n rows of cols, ld
 * floats apart): ties to the lowest column, NaN never wins. */
typedef void loom_dev_argmax_fn(loom_device *d, const float *x, int n, int64_t cols, int64_t ld, int32_t *idx,
                                float *val);

/* ------------------------------------------------------------ the table */

struct loom_device_iface {
    const char *name;      /* "host", "cuda" */
    int quant_rows;        /* matmuls of up to this many rows read quantized activations */
    void (*destroy)(loom_device *d); /* loom_device_free */

    /* memory: device buffers (aligned to 256 bytes), and pinned host
     * memory for staging copies; zero-filled */
    loom_status (*alloc)(loom_device *d, size_t bytes, void **out);
    void (*free)(loom_device *d, void *p);
    loom_status (*host_alloc)(loom_device *d, size_t bytes, void **out);
    void (*host_free)(loom_device *d, void *p);
    /* bytes free on the device right now (for plans and reports); optional */
    int64_t (*free_bytes)(loom_device *d);

    /* copies and fills queued on `stream` (NULL: the compute stream); host
     * memory must stay valid until that stream is synchronised */
    loom_status (*copy)(loom_device *d, void *dst, const void *src, size_t bytes, loom_copy_dir dir, void *stream);
    loom_status (*fill0)(loom_device *d, void *dst, size_t bytes, void *stream);

    /* streams: the compute stream (NULL on the host), more for
     * communicators; waiter waits for what signaller has queued so far */
    void *(*compute_stream)(loom_device *d);
    loom_status (*stream_create)(loom_device *d, void **out);
    void (*stream_free)(loom_device *d, void *s);
    loom_status (*stream_wait)(loom_device *d, void *waiter, void *signaller);
    loom_status (*sync)(loom_device *d, void *stream); /* waits; reports any asynchronous failure */

    /* kernels */
    loom_dev_matmul_fn *matmul[LOOM_TYPE_COUNT]; /* per weight type; NULL where unsupported */
    loom_dev_quantize_fn *quantize;
    loom_dev_rmsnorm_fn *rmsnorm;
    loom_dev_swiglu_fn *swiglu;
    loom_dev_rope_store_fn *rope_store;
    loom_dev_attention_fn *attention;
    int attn_max_head_dim;   /* attention handles head_dim <= this (a multiple of 4 on CUDA) */
    loom_dev_embed_fn *embed;
    loom_dev_gather_fn *gather;
    loom_dev_add_fn *add;
    loom_dev_argmax_fn *argmax;

    /* graphs (optional, NULL: no graphs): capture what is queued between
     * begin and end on the compute stream; launch replays it with the
     * buffers' contents at launch time */
    loom_status (*graph_begin)(loom_device *d);
    loom_status (*graph_end)(loom_device *d, void **graph);
    loom_status (*graph_launch)(loom_device *d, void *graph);
    void (*graph_free)(loom_device *d, void *graph);
};

/* Convenience: d->vt->alloc with a status naming what the buffer is for. */
loom_status loom_device_alloc(loom_device *d, size_t bytes, const char *what, void **out) LOOM_MUST_USE;
loom_status loom_device_upload(loom_device *d, void *dst, const void *src, size_t bytes) LOOM_MUST_USE;
loom_status loom_device_download(loom_device *d, void *dst, const void *src, size_t bytes) LOOM_MUST_USE;
loom_status loom_device_sync(loom_device *d) LOOM_MUST_USE;

#endif
