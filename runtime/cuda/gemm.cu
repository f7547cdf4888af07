/*
 * runtime/cuda/gemm.cu — matrix times many activation rows (n > LOOM_CUDA_QUANT_ROWS = 32: prefill)
 * through cuBLAS: the activations are converted to bf16 once, the weight
 * rows are dequantized (quant.h's block functions, the CPU's values) to bf16
 * in chunks of at most CHUNK_ELEMS elements, and each chunk is one
 * cublasGemmEx (bf16 inputs, fp32 accumulation and output) writing straight
 * into y's columns. bf16 rounds each weight and activation to 8 significant
 * bits (relative 2^-9), about what the CPU's 8-bit activations lose; an
 * int8 tensor-core GEMM on the quantized activations may replace this.
 *
 * Not verified on a GPU yet.
 */
#include <cuda_bf16.h>

#include "runtime/cuda/cuda_internal.h"

extern "C" {
#include "runtime/quant.h"
}

#define CHUNK_ELEMS (32ll << 20) /* bf16 weight elements per chunk: 64 MiB of scratch */

__global__ void to_bf16(const float *__restrict__ x, __nv_bfloat16 *__restrict__ y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

/* one thread per weight block: rows [0, rows) of a (rows, k) matrix of type t */
__global__ void dequant_bf16(int t, const uint8_t *__restrict__ w, size_t ws, int k, int rows, int bs, int tb,
                             __nv_bfloat16 *__restrict__ out) {
    const int nb = k / bs;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * nb) return;
    const long long r = i / nb, b = i % nb;
    float v[256];
    const int got = loom_dequant_block((loom_type)t, w + (size_t)r * ws + (size_t)b * tb, v);
    __nv_bfloat16 *o = out + r * k + b * bs;
    for (int j = 0; j < got; j++) o[j] = __float2bfloat16_rn(v[j]);
}

void loom_cuda_gemm(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,
                    int64_t n, float *y, int64_t ldy, int accumulate) {
    loom_cuda *c = loom_cuda_of(d);
    const loom_type_traits *tr = loom_type_info((uint32_t)wt);
    if (!tr || !x) {
        loom_cuda_note(d, cudaErrorInvalidValue, "gemm without float activations");
        return;
    }
    int64_t chunk = CHUNK_ELEMS / k;
    if (chunk < 1) chunk = 1;
    if (chunk > nr) chunk = nr;
    if (!loom_cuda_scratch(d, &c->abuf, &c->abuf_bytes, (size_t)(n * k) * 2, "gemm activations") ||
        !loom_cuda_scratch(d, &c->wbuf, &c->wbuf_bytes, (size_t)(chunk * k) * 2, "gemm weights"))
        return;
    __nv_bfloat16 *xa = (__nv_bfloat16 *)c->abuf, *wb = (__nv_bfloat16 *)c->wbuf;
    to_bf16<<<(unsigned)((n * k + 255) / 256 < 65535 ? (n * k + 255) / 256 : 65535), 256, 0, c->stream>>>(x, xa, n * k);
    LOOM_CUDA_LAUNCHED(d, "to_bf16");
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < nr; r0 += chunk) {
        const int64_t rows = nr - r0 < chunk ? nr - r0 : chunk, blocks = rows * (k / tr->block_size);
        dequant_bf16<<<(unsigned)((blocks + 127) / 128), 128, 0, c->stream>>>(
            (int)wt, w + (size_t)r0 * ws, ws, (int)k, (int)rows, (int)tr->block_size, (int)tr->type_size, wb);
        LOOM_CUDA_LAUNCHED(d, "dequant_bf16");
        /* column-major: C (rows x n, ldc = ldy) = W^T-view (k x rows)^T · X (k x n) */
        const cublasStatus_t s = loom_cublas.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)k, &one, wb,
                                              CUDA_R_16BF, (int)k, xa, CUDA_R_16BF, (int)k, accumulate ? &one : &zero,
                                              y + r0, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) {
            loom_cuda_note(d, cudaErrorLaunchFailure, "cublasGemmEx");
            return;
        }
    }
}
