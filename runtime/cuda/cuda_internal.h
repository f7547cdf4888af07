/*
 * runtime/cuda/cuda_internal.h — what the CUDA backend's files share: the
 * device's private state, error recording, warp reductions, and the kernel
 * entries each file defines for the table in device_cuda.cu.
 *
 * Every kernel entry launches on the device's compute stream and records
 * the first launch error; loom_device's sync reports it (device.h: kernel
 * entries cannot fail synchronously). Kernels are deterministic: no
 * atomics, fixed reduction trees, so a step run twice gives the same bits.
 */
#ifndef LOOM_CUDA_INTERNAL_H
#define LOOM_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "runtime/device.h"
#include "runtime/dynlib.h"
#include "runtime/kernels.h"
}

struct loom_cuda {
    int ordinal;
    cudaStream_t stream;     /* the compute stream */
    cublasHandle_t blas;
    cudaEvent_t ev;          /* stream_wait's: recorded on the signaller, waited on by the waiter */
    int sm_count;
    cudaError_t sticky;      /* first launch failure, reported by sync */
    const char *sticky_what; /* the kernel that failed */
    /* GEMM scratch (grown on demand): bf16 weight rows and bf16 activations */
    void *wbuf;
    size_t wbuf_bytes;
    void *abuf;
    size_t abuf_bytes;
    void *blas_ws; /* cuBLAS workspace, set once (graph capture must not allocate) */
};

static inline loom_cuda *loom_cuda_of(loom_device *d) { return (loom_cuda *)d->impl; }

/* cuBLAS is opened at run time (dlopen of libcublas.so.<major>) when the
 * first GPU device is created, not linked: a CPU-only run of a CUDA build
 * then maps none of its ~600 MB of libraries (libcublasLt alone added ~60
 * MB to every rank's resident memory). NULL members until loaded. */
struct loom_cublas_api {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetWorkspace_v2) set_workspace;
    /* the C symbol (C++ also sees an overload taking a cudaDataType compute type) */
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
};
extern loom_cublas_api loom_cublas;
/* Loads loom_cublas once (thread-safe); an error names the library tried. */
loom_status loom_cublas_load(void);

/* Records the first failure (of a launch, or of anything a kernel entry did). */
void loom_cuda_note(loom_device *d, cudaError_t e, const char *what);
#define LOOM_CUDA_LAUNCHED(d, what) loom_cuda_note((d), cudaGetLastError(), (what))

/* Grows a scratch buffer (synchronises the device when it must grow);
 * false (and a recorded failure) when it cannot. */
bool loom_cuda_scratch(loom_device *d, void **buf, size_t *have, size_t need, const char *what);

/* ---- warp reductions (full warp, fixed trees) ---- */

static __device__ __forceinline__ float loom_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ int loom_warp_isum(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- the kernel entries (device.h's signatures), by file ---- */

/* mmvq.cu: batches of n <= LOOM_CUDA_QUANT_ROWS per weight type; larger
 * ones go to gemm.cu */
#define LOOM_CUDA_QUANT_ROWS 32 /* mmvq in passes of 8 rows up to here (decode of many sequences) */
void loom_cuda_matmul(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,
                      const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy, int accumulate);
bool loom_cuda_has_matmul(loom_type wt); /* whether this build has wt's small-batch kernel */

/* gemm.cu: dequantize row chunks to bf16, cuBLAS bf16 x bf16 -> f32 */
void loom_cuda_gemm(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,
                    int64_t n, float *y, int64_t ldy, int accumulate);

/* rowops.cu */
loom_dev_quantize_fn loom_cuda_quantize;
loom_dev_rmsnorm_fn loom_cuda_rmsnorm;
loom_dev_swiglu_fn loom_cuda_swiglu;
loom_dev_add_fn loom_cuda_add;
loom_dev_embed_fn loom_cuda_embed;
loom_dev_gather_fn loom_cuda_gather;
loom_dev_argmax_fn loom_cuda_argmax;

/* attention.cu */
#define LOOM_CUDA_MAX_HEAD 256
loom_dev_rope_store_fn loom_cuda_rope_store;
loom_dev_attention_fn loom_cuda_attention;

#endif
