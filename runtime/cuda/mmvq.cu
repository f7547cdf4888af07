/*
 * runtime/cuda/mmvq.cu — matrix times a few activation rows (n <= 32, decode;
 * in passes of 8 rows, each pass re-reading the weights, from L2 when they
 * fit) over any row range, llama.cpp's mmvq scheme: one warp per weight row,
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
#define NMAX 8 /* activation rows per pass (mmvf: per launch; mmvq: its widest instantiation) */

template <int T> struct qtraits;
template <> struct qtraits<LOOM_TYPE_Q4_0> { enum { K = 0, BS = 32, TB = 18 }; };
template <> struct qtraits<LOOM_TYPE_Q4_1> { enum { K = 0, BS = 32, TB = 20 }; };
template <> struct qtraits<LOOM_TYPE_Q5_0> { enum { K = 0, BS = 32, TB = 22 }; };
template <> struct qtraits<LOOM_TYPE_Q5_1> { enum { K = 0, BS = 32, TB = 24 }; };
template <> struct qtraits<LOOM_TYPE_Q8_0> { enum { K = 0, BS = 32, TB = 34 }; };
template <> struct qtraits<LOOM_TYPE_Q4_K> { enum { K = 1, BS = 256, TB = 144 }; };
template <> struct qtraits<LOOM_TYPE_Q5_K> { enum { K = 1, BS = 256, TB = 176 }; };
template <> struct qtraits<LOOM_TYPE_Q6_K> { enum { K = 1, BS = 256, TB = 210 }; };

/* warp steps whose loads are in flight together: 8 for 32-element blocks
 * at 1-2 columns (a 2048-wide Q4_0 row in one go), else 4 (registers; a
 * K-quant row of 2048 is 4 steps) */
template <int T, int N> struct mmvq_unroll { enum { U = (qtraits<T>::K || N > 2) ? 4 : 8 }; };

/* y[t*ldy + row] (+)= row · x_t for the warp's row, t < n <= N. The row is
 * walked U warp steps at a time in two phases: first every step's slice
 * integers (all their weight and activation loads, no shuffles in between,
 * so the loads of the U steps are in flight together: a warp's row is only
 * ~1-4 KB, latency bounds a step, not bandwidth), then per step the
 * shuffle sums and the block floats. Columns t >= n compute on column
 * n - 1 and are dropped, lanes past the row's end compute on block 0 and
 * are dropped; every lane of a block evaluates the block's float, slice 0
 * adds it — straight-line code. */
template <int T, int N>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK) mmvq(const uint8_t *__restrict__ w, size_t ws, int k, int nr,
                                                            const uint8_t *__restrict__ xq, size_t xs, int n,
                                                            float *__restrict__ y, long long ldy, int accumulate) {
    typedef qtraits<T> Q;
    constexpr int SL = Q::K ? LOOM_QDOT_SLICESK : LOOM_QDOT_SLICES32; /* lanes per block */
    constexpr int PER = 32 / SL;                                      /* blocks per warp step */
    constexpr int U = mmvq_unroll<T, N>::U;
    const int lane = threadIdx.x & 31, row = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= nr) return; /* the whole warp */
    const int nb = k / Q::BS, sub = lane / SL, slice = lane % SL;
    const uint8_t *wr = w + (size_t)row * ws;
    const uint8_t *xt[N];
#pragma unroll
    for (int t = 0; t < N; t++) xt[t] = xq + (size_t)(t < n ? t : n - 1) * xs;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += U * PER) {
        int v[U][N];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int bu = b0 + u * PER + sub, b = bu < nb ? bu : 0;
            const uint8_t *wb = wr + (size_t)b * Q::TB;
#pragma unroll
            for (int t = 0; t < N; t++) {
                const int8_t *a = Q::K ? (const int8_t *)(xt[t] + (size_t)b * sizeof(loom_block_q8_K) + 4)
                                       : (const int8_t *)xt[t] + (size_t)b * 32;
                v[u][t] = loom_qdot_slice((loom_type)T, wb, a, slice);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int bu = b0 + u * PER + sub, b = bu < nb ? bu : 0;
            const bool add = bu < nb && slice == 0;
            const uint8_t *wb = wr + (size_t)b * Q::TB;
#pragma unroll
            for (int t = 0; t < N; t++) {
                int vi = v[u][t];
#pragma unroll
                for (int o = SL / 2; o > 0; o >>= 1) vi += __shfl_xor_sync(0xffffffffu, vi, o);
                float f;
                if (Q::K) {
                    const uint8_t *ab = xt[t] + (size_t)b * sizeof(loom_block_q8_K);
                    const float ad = *(const float *)ab;
                    if (T == LOOM_TYPE_Q6_K) f = loom_qdot_f32_q6K(wb, ad, vi);
                    else f = loom_qdot_f32_k45(wb, ad, vi, loom_qdot_kmins(wb, (const int16_t *)(ab + 260)));
                } else {
                    float dw, m;
                    loom_qdot_scale32((loom_type)T, wb, &dw, &m);
                    const float d = ((const float *)(xt[t] + k))[b], s = ((const float *)(xt[t] + k + 4 * nb))[b];
                    f = loom_qdot_f32_32(dw, m, d, s, vi);
                }
                acc[t] = add && t < n ? acc[t] + f : acc[t];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < N; t++) {
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

template <int T>
static void mmvq_launch(dim3 grid, dim3 block, cudaStream_t s, const uint8_t *w, size_t ws, int k, int nr,
                        const uint8_t *xq, size_t xs, int n, float *y, long long ldy, int accumulate) {
    if (n == 1) mmvq<T, 1><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else if (n == 2) mmvq<T, 2><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else if (n <= 4) mmvq<T, 4><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else mmvq<T, 8><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
}

/* n <= LOOM_CUDA_QUANT_ROWS rows in passes of NMAX (a pass re-reads the
 * weights, from L2 when they fit) */
void loom_cuda_matmul(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,
                      const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy, int accumulate) {
    const cudaStream_t s = loom_cuda_of(d)->stream;
    const dim3 grid((unsigned)((nr + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK)), block(32 * ROWS_PER_BLOCK);
    const int ik = (int)k, inr = (int)nr;
    for (int64_t t0 = 0; t0 < n; t0 += NMAX) {
        const int in = (int)(n - t0 < NMAX ? n - t0 : NMAX);
        const uint8_t *xqp = xq ? xq + (size_t)t0 * xs : NULL;
        const float *xp = x ? x + (size_t)t0 * (size_t)k : NULL;
        float *yp = y + t0 * ldy;
        switch (wt) {
#define QCASE(T)                                                                                                      \
    case T: mmvq_launch<T>(grid, block, s, w, ws, ik, inr, xqp, xs, in, yp, ldy, accumulate); break;
#define FCASE(T)                                                                                                      \
    case T: mmvf<T><<<grid, block, 0, s>>>(w, ws, ik, inr, xp, in, yp, ldy, accumulate); break;
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
}
