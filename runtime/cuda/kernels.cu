/*
 * runtime/cuda/kernels.cu — the element-wise math of runtime/ops.h and the
 * block dequantizers of runtime/quant.h, compiled as CUDA. The same inline
 * functions the CPU tests check run here, so the GPU computes exactly what
 * the CPU reference does. Built only as a compile check (LOOM_CUDA) until
 * the NCCL backend and GPU kernels land; no test needs a GPU.
 */
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "runtime/ops.h"
#include "runtime/quant.h"
}

/* y[r, :] = dequantized row r of a (rows, k) matrix of `type`; one thread per block. */
__global__ void loom_cuda_dequant_rows(int type, const uint8_t *w, size_t stride, int64_t rows, int64_t k, float *y) {
    int64_t bs = (type == LOOM_TYPE_Q4_K || type == LOOM_TYPE_Q5_K || type == LOOM_TYPE_Q6_K) ? 256 : 32;
    int64_t ts = type == LOOM_TYPE_Q4_0 ? 18 : type == LOOM_TYPE_Q4_1 ? 20 : type == LOOM_TYPE_Q5_0 ? 22
               : type == LOOM_TYPE_Q5_1 ? 24 : type == LOOM_TYPE_Q8_0 ? 34 : type == LOOM_TYPE_Q4_K ? 144
               : type == LOOM_TYPE_Q5_K ? 176 : 210;
    int64_t nb = k / bs, i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * nb) return;
    int64_t r = i / nb, b = i % nb;
    loom_dequant_block((loom_type)type, w + r * stride + b * ts, y + r * k + b * bs);
}

/* One thread per row: RMSNorm, then RoPE on each head. */
__global__ void loom_cuda_norm_rope(float *x, const float *weight, int rows, int dim, float eps, const int *pos,
                                    int head_dim, int rope_dim, float base, int neox) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float *xr = x + (size_t)r * dim;
    loom_rmsnorm_row(xr, xr, weight, dim, eps);
    float cs[256];
    if (rope_dim > 256) return;
    loom_rope_angles(cs, pos[r], rope_dim, base, 1.0f, 0);
    for (int h = 0; h + head_dim <= dim; h += head_dim) loom_rope_head(xr + h, cs, rope_dim, neox);
}

/* One thread per row: softmax and SwiGLU. */
__global__ void loom_cuda_softmax_swiglu(float *s, int rows, int n, float *gate, const float *up, int ffn) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    loom_softmax_row(s + (size_t)r * n, n);
    loom_swiglu_row(gate + (size_t)r * ffn, up + (size_t)r * ffn, ffn);
}
