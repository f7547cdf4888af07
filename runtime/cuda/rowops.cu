/*
 * runtime/cuda/rowops.cu — row kernels: activation quantization (alone, or
 * fused after RMSNorm and after SwiGLU, in the same launch), residual add,
 * embedding rows, row gather, argmax. One block per row.
 *
 * Quantization is runtime/actq.h's per-element math with warp reductions:
 * a "q8 32-block" is one warp (a lane per element), a Q8_K block one warp
 * (8 elements per lane; bsums of 16 are lane pairs). amax and the integer
 * sums do not depend on the reduction order, so the bytes are the CPU's for
 * the same input floats. The RMSNorm's sum of squares is a float tree (the
 * CPU's scalar level sums in double, its SIMD levels in float lanes), so the
 * normed floats differ from any CPU level by rounding, as those levels do
 * from each other.
 *
 * Not verified on a GPU yet.
 */
#include "runtime/cuda/cuda_internal.h"

extern "C" {
#include "runtime/actq.h"
#include "runtime/ops.h"
}

#define ROW_THREADS 256
/* RMSNorm, SwiGLU, quantization: a decode step has one row per sequence,
 * so a row's block is all the parallelism there is: 1024 threads (a
 * 2048-wide row is 2 elements a thread, its 64 quantization blocks 2 per warp) */
#define NORM_THREADS 1024

/* ---- quantization of one row of k already in (global) memory ---- */

/* 0: float rows (nothing to do), 1: q8 32-blocks, 2: Q8_K */
static int act_kind(loom_type t) {
    switch (t) {
    case LOOM_TYPE_Q4_0:
    case LOOM_TYPE_Q4_1:
    case LOOM_TYPE_Q5_0:
    case LOOM_TYPE_Q5_1:
    case LOOM_TYPE_Q8_0: return 1;
    case LOOM_TYPE_Q4_K:
    case LOOM_TYPE_Q5_K:
    case LOOM_TYPE_Q6_K: return 2;
    default: return 0;
    }
}

static __device__ float warp_absmax(float m) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = loom_actq_absmax(m, __shfl_xor_sync(0xffffffffu, m, o));
    return m;
}

/* the block's warps quantize row x (k) into dst (one activation row) */
static __device__ void quantize_row(int kind, const float *x, int k, uint8_t *dst) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (kind == 1) {
        const int nb = k / 32;
        float *dd = (float *)(dst + k), *ss = (float *)(dst + k + 4 * nb);
        for (int b = warp; b < nb; b += nw) {
            const float v = x[32 * b + lane];
            float inv;
            const float d = loom_actq_scale(warp_absmax(loom_actq_absmax(0.0f, v)), &inv);
            const int q = loom_actq_round(v, inv);
            ((int8_t *)dst)[32 * b + lane] = (int8_t)q;
            const int sum = loom_warp_isum(q);
            if (lane == 0) dd[b] = d, ss[b] = __fmul_rn(d, (float)sum);
        }
    } else if (kind == 2) {
        for (int b = warp; b < k / 256; b += nw) {
            loom_block_q8_K *o = (loom_block_q8_K *)(dst + (size_t)b * sizeof(loom_block_q8_K));
            const float *xb = x + 256 * b + 8 * lane;
            float m = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) m = loom_actq_absmax(m, xb[j]);
            float inv;
            const float d = loom_actq_scale(warp_absmax(m), &inv);
            int sum = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const int q = loom_actq_round(xb[j], inv);
                o->qs[8 * lane + j] = (int8_t)q;
                sum += q;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* elements 16g .. 16g+15: lanes 2g, 2g+1 */
            if ((lane & 1) == 0) o->bsums[lane >> 1] = (int16_t)sum;
            if (lane == 0) o->d = d;
        }
    }
}

__global__ void __launch_bounds__(NORM_THREADS) k_quantize(int kind, const float *__restrict__ x, int k, uint8_t *__restrict__ xq, size_t rb) {
    quantize_row(kind, x + (size_t)blockIdx.x * k, k, xq + (size_t)blockIdx.x * rb);
}

static size_t row_bytes(loom_type wt, int k) { return loom_act_row_bytes(wt, k); }

void loom_cuda_quantize(loom_device *d, loom_type wt, const float *x, int n, int k, uint8_t *xq) {
    const int kind = act_kind(wt);
    if (!kind || n < 1) return; /* float rows are read as they are */
    k_quantize<<<n, NORM_THREADS, 0, loom_cuda_of(d)->stream>>>(kind, x, k, xq, row_bytes(wt, k));
    LOOM_CUDA_LAUNCHED(d, "quantize");
}

/* ---- RMSNorm (+ quantization) ---- */

static __device__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = loom_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return loom_warp_sum(t);
}

__global__ void __launch_bounds__(NORM_THREADS) k_rmsnorm(const float *__restrict__ x, const float *__restrict__ w, float eps, int k, float *out,
                          int kind, uint8_t *xq, size_t rb) {
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * k;
    float *o = out + (size_t)blockIdx.x * k;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = block_sum(ss, red);
    const float scale = 1.0f / sqrtf(ss / (float)k + eps);
    __syncthreads(); /* out may be x: every thread has read its x before anyone writes */
    for (int i = threadIdx.x; i < k; i += blockDim.x) o[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
    if (!kind) return;
    __syncthreads(); /* the normed row is in memory for every warp */
    quantize_row(kind, o, k, xq + (size_t)blockIdx.x * rb);
}

void loom_cuda_rmsnorm(loom_device *d, const float *x, const float *w, float eps, int n, int k, float *out,
                       loom_type wt, uint8_t *xq) {
    if (n < 1) return;
    const int kind = xq ? act_kind(wt) : 0;
    k_rmsnorm<<<n, NORM_THREADS, 0, loom_cuda_of(d)->stream>>>(x, w, eps, k, out, kind, xq, kind ? row_bytes(wt, k) : 0);
    LOOM_CUDA_LAUNCHED(d, "rmsnorm");
}

/* ---- SwiGLU (+ quantization) ---- */

__global__ void __launch_bounds__(NORM_THREADS) k_swiglu(float *gate, const float *__restrict__ up, int k, int kind, uint8_t *xq, size_t rb) {
    float *g = gate + (size_t)blockIdx.x * k;
    const float *u = up + (size_t)blockIdx.x * k;
    for (int i = threadIdx.x; i < k; i += blockDim.x) g[i] = __fmul_rn(loom_silu(g[i]), u[i]);
    if (!kind) return;
    __syncthreads();
    quantize_row(kind, g, k, xq + (size_t)blockIdx.x * rb);
}

void loom_cuda_swiglu(loom_device *d, float *gate, const float *up, int n, int k, loom_type wt, uint8_t *xq) {
    if (n < 1) return;
    const int kind = xq ? act_kind(wt) : 0;
    k_swiglu<<<n, NORM_THREADS, 0, loom_cuda_of(d)->stream>>>(gate, up, k, kind, xq, kind ? row_bytes(wt, k) : 0);
    LOOM_CUDA_LAUNCHED(d, "swiglu");
}

/* ---- residual add, embedding, gather ---- */

__global__ void k_add(float *x, const float *__restrict__ y, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], y[i]);
}

void loom_cuda_add(loom_device *d, float *x, const float *y, size_t count) {
    if (!count) return;
    const long long blocks = ((long long)count + 255) / 256;
    k_add<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, loom_cuda_of(d)->stream>>>(x, y, (long long)count);
    LOOM_CUDA_LAUNCHED(d, "add");
}

/* row i: the table row of token i (quant.h's block dequantizers write the
 * CPU's floats straight into x), or zeros outside this rank's slice */
__global__ void k_embed(int t, const uint8_t *__restrict__ table, size_t stride, long long row0, long long nrows,
                        const int32_t *__restrict__ tok, int dim, int bs, int tb, float *x) {
    float *xi = x + (size_t)blockIdx.x * dim;
    const long long r = (long long)tok[blockIdx.x] - row0;
    if (r < 0 || r >= nrows) {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) xi[i] = 0.0f;
        return;
    }
    const uint8_t *src = table + (size_t)r * stride;
    for (int b = threadIdx.x; b < dim / bs; b += blockDim.x) loom_dequant_block((loom_type)t, src + (size_t)b * tb, xi + b * bs);
}

void loom_cuda_embed(loom_device *d, loom_type t, const uint8_t *table, size_t stride, int64_t row0, int64_t nrows,
                     const int32_t *tok, int n, int dim, float *x) {
    const loom_type_traits *tr = loom_type_info((uint32_t)t);
    if (n < 1 || !tr) return;
    k_embed<<<n, ROW_THREADS, 0, loom_cuda_of(d)->stream>>>((int)t, table, stride, row0, nrows, tok, dim,
                                                            (int)tr->block_size, (int)tr->type_size, x);
    LOOM_CUDA_LAUNCHED(d, "embed");
}

__global__ void k_gather(const float *__restrict__ src, const int32_t *__restrict__ rows, int dim, float *dst) {
    const float *s = src + (size_t)rows[blockIdx.x] * dim;
    float *o = dst + (size_t)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = s[i];
}

void loom_cuda_gather(loom_device *d, const float *src, const int32_t *rows, int n, int dim, float *dst) {
    if (n < 1) return;
    k_gather<<<n, ROW_THREADS, 0, loom_cuda_of(d)->stream>>>(src, rows, dim, dst);
    LOOM_CUDA_LAUNCHED(d, "gather");
}

/* ---- argmax: first maximum, NaN never wins ---- */

static __device__ __forceinline__ bool better(float v, long long i, float bv, long long bi) {
    if (v != v) return false;
    if (bv != bv) return true;
    return v > bv || (v == bv && i < bi);
}

__global__ void k_argmax(const float *__restrict__ x, long long cols, long long ld, int32_t *idx, float *val) {
    __shared__ float sv[ROW_THREADS];
    __shared__ long long si[ROW_THREADS];
    const float *r = x + (size_t)blockIdx.x * ld;
    float bv = __int_as_float(0x7fc00000); /* NaN: anything beats it */
    long long bi = cols;
    for (long long c = threadIdx.x; c < cols; c += blockDim.x)
        if (better(r[c], c, bv, bi)) bv = r[c], bi = c;
    sv[threadIdx.x] = bv, si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && better(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x]))
            sv[threadIdx.x] = sv[threadIdx.x + s], si[threadIdx.x] = si[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) idx[blockIdx.x] = si[0] < cols ? (int32_t)si[0] : 0, val[blockIdx.x] = sv[0];
}

void loom_cuda_argmax(loom_device *d, const float *x, int n, int64_t cols, int64_t ld, int32_t *idx, float *val) {
    if (n < 1) return;
    k_argmax<<<n, ROW_THREADS, 0, loom_cuda_of(d)->stream>>>(x, cols, ld, idx, val);
    LOOM_CUDA_LAUNCHED(d, "argmax");
}
