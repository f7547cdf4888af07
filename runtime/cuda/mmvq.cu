/*
 * runtime/cuda/mmvq.cu — matrix times a few activation rows (n <= 8, decode)
 * over any row range, llama.cpp's mmvq scheme: one warp per weight row,
 * four rows per block; the lanes walk the row's blocks, each lane one slice
 * of a block (runtime/qdot.h: 4 slices of a 32-element block, 16 of a
 * 256-element one), dp4a on the quantized activations. The lanes of a block
 * add their slice integers (a shuffle tree), so each block's integer is the
 * CPU's; one lane turns it into the block's float with the CPU's expression
 * (qdot.h), then the warp adds the row's block floats (a fixed tree: the
 * only difference from the CPU is that order). Every weight word a lane
 * loads serves all n activation rows. Float weights (F32, F16, BF16) take a
 * plain warp-per-row dot product of float activations.
 *
 * Not verified on a GPU yet.
 */
#include "runtime/cuda/cuda_internal.h"

extern "C" {
#include "runtime/qdot.h"
}

#define ROWS_PER_BLOCK 4
#define NMAX LOOM_CUDA_QUANT_ROWS

template <int T> struct qtraits;
template <> struct qtraits<LOOM_TYPE_Q4_0> { enum { K = 0, BS = 32, TB = 18 }; };
template <> struct qtraits<LOOM_TYPE_Q4_1> { enum { K = 0, BS = 32, TB = 20 }; };
template <> struct qtraits<LOOM_TYPE_Q5_0> { enum { K = 0, BS = 32, TB = 22 }; };
template <> struct qtraits<LOOM_TYPE_Q5_1> { enum { K = 0, BS = 32, TB = 24 }; };
template <> struct qtraits<LOOM_TYPE_Q8_0> { enum { K = 0, BS = 32, TB = 34 }; };
template <> struct qtraits<LOOM_TYPE_Q4_K> { enum { K = 1, BS = 256, TB = 144 }; };
template <> struct qtraits<LOOM_TYPE_Q5_K> { enum { K = 1, BS = 256, TB = 176 }; };
template <> struct qtraits<LOOM_TYPE_Q6_K> { enum { K = 1, BS = 256, TB = 210 }; };

/* y[t*ldy + row] (+)= row · x_t for the warp's row, t < n */
template <int T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK) mmvq(const uint8_t *__restrict__ w, size_t ws, int k, int nr,
                                                            const uint8_t *__restrict__ xq, size_t xs, int n,
                                                            float *__restrict__ y, long long ldy, int accumulate) {
    typedef qtraits<T> Q;
    constexpr int SL = Q::K ? LOOM_QDOT_SLICESK : LOOM_QDOT_SLICES32; /* lanes per block */
    constexpr int PER = 32 / SL;                                      /* blocks per warp step */
    const int lane = threadIdx.x & 31, row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= nr) return; /* the whole warp */
    const int nb = k / Q::BS, sub = lane / SL, slice = lane % SL;
    const uint8_t *wr = w + (size_t)row * ws;
    float acc[NMAX];
#pragma unroll
    for (int t = 0; t < NMAX; t++) acc[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += PER) {
        const bool valid = b0 + sub < nb;
        const int b = valid ? b0 + sub : 0; /* lanes past the row's end add 0, but take part in the shuffles */
        const uint8_t *wb = wr + (size_t)b * Q::TB;
#pragma unroll
        for (int t = 0; t < NMAX; t++) {
            if (t >= n) break;
            const uint8_t *xt = xq + (size_t)t * xs;
            const int8_t *a = Q::K ? (const int8_t *)(xt + (size_t)b * sizeof(loom_block_q8_K) + 4)
                                   : (const int8_t *)xt + (size_t)b * 32;
            int v = valid ? loom_qdot_slice((loom_type)T, wb, a, slice) : 0;
#pragma unroll
            for (int o = SL / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (valid && slice == 0) {
                float f;
                if (Q::K) {
                    const uint8_t *ab = xt + (size_t)b * sizeof(loom_block_q8_K);
                    const float ad = *(const float *)ab;
                    if (T == LOOM_TYPE_Q6_K) f = loom_qdot_f32_q6K(wb, ad, v);
                    else f = loom_qdot_f32_k45(wb, ad, v, loom_qdot_kmins(wb, (const int16_t *)(ab + 260)));
                } else {
                    float dw, m;
                    loom_qdot_scale32((loom_type)T, wb, &dw, &m);
                    const float d = ((const float *)(xt + k))[b], s = ((const float *)(xt + k + 4 * nb))[b];
                    f = loom_qdot_f32_32(dw, m, d, s, v);
                }
                acc[t] += f;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NMAX; t++) {
        if (t >= n) break;
        const float s = loom_warp_sum(acc[t]);
        if (lane == 0) {
            float *o = y + (long long)t * ldy + row;
            *o = accumulate ? *o + s : s;
        }
    }
}

/* float weights: element j of the row times x_t[j] */
template <int T> __device__ __forceinline__ float wf(const uint8_t *w, int j) {
    if (T == LOOM_TYPE_F32) return ((const float *)w)[j];
    if (T == LOOM_TYPE_F16) return loom_f16_to_f32(((const uint16_t *)w)[j]);
    return loom_bf16_to_f32(((const uint16_t *)w)[j]);
}

template <int T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK) mmvf(const uint8_t *__restrict__ w, size_t ws, int k, int nr,
                                                            const float *__restrict__ x, int n, float *__restrict__ y,
                                                            long long ldy, int accumulate) {
    const int lane = threadIdx.x & 31, row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= nr) return;
    const uint8_t *wr = w + (size_t)row * ws;
    float acc[NMAX];
#pragma unroll
    for (int t = 0; t < NMAX; t++) acc[t] = 0.0f;
    for (int j = lane; j < k; j += 32) {
        const float a = wf<T>(wr, j);
#pragma unroll
        for (int t = 0; t < NMAX; t++) {
            if (t >= n) break;
            acc[t] = fmaf(a, x[(size_t)t * k + j], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NMAX; t++) {
        if (t >= n) break;
        const float s = loom_warp_sum(acc[t]);
        if (lane == 0) {
            float *o = y + (long long)t * ldy + row;
            *o = accumulate ? *o + s : s;
        }
    }
}

/* LOOM_CUDA_ALL_TYPES builds every type; without it (the default
 * compile-check build, to keep nvcc's time down on small CI machines) only a
 * representative set: Q4_0, Q8_0, Q4_K, Q6_K and F16. */
#ifdef LOOM_CUDA_ALL_TYPES
#define LOOM_CUDA_SUBSET 0
#else
#define LOOM_CUDA_SUBSET 1
#endif

bool loom_cuda_has_matmul(loom_type wt) {
    if (!LOOM_CUDA_SUBSET) return loom_type_can_matmul(wt);
    return wt == LOOM_TYPE_Q4_0 || wt == LOOM_TYPE_Q8_0 || wt == LOOM_TYPE_Q4_K || wt == LOOM_TYPE_Q6_K ||
           wt == LOOM_TYPE_F16;
}

void loom_cuda_matmul(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,
                      const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy, int accumulate) {
    const cudaStream_t s = loom_cuda_of(d)->stream;
    const dim3 grid((unsigned)((nr + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK)), block(32 * ROWS_PER_BLOCK);
    const int ik = (int)k, inr = (int)nr, in = (int)n;
    switch (wt) {
#define QCASE(T)                                                                                                      \
    case T: mmvq<T><<<grid, block, 0, s>>>(w, ws, ik, inr, xq, xs, in, y, ldy, accumulate); break;
#define FCASE(T)                                                                                                      \
    case T: mmvf<T><<<grid, block, 0, s>>>(w, ws, ik, inr, x, in, y, ldy, accumulate); break;
        QCASE(LOOM_TYPE_Q4_0)
        QCASE(LOOM_TYPE_Q8_0)
        QCASE(LOOM_TYPE_Q4_K)
        QCASE(LOOM_TYPE_Q6_K)
        FCASE(LOOM_TYPE_F16)
#if !LOOM_CUDA_SUBSET
        QCASE(LOOM_TYPE_Q4_1)
        QCASE(LOOM_TYPE_Q5_0)
        QCASE(LOOM_TYPE_Q5_1)
        QCASE(LOOM_TYPE_Q5_K)
        FCASE(LOOM_TYPE_F32)
        FCASE(LOOM_TYPE_BF16)
#endif
    default: loom_cuda_note(d, cudaErrorInvalidValue, "matmul of an unsupported weight type"); return;
    }
    LOOM_CUDA_LAUNCHED(d, n == 1 ? "mmvq n=1" : "mmvq n>1");
}
