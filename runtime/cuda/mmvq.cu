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
 * The 32-element families (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) take mmvb instead:
 * a lane per whole block (no shuffles per block, the block float once per
 * column), all n <= 32 columns in one pass (weights read once);
 * LOOM_CUDA_MMVQ_LEGACY=1 sends them to mmvq as before (for A/B timing).
 *
 * Not verified on a GPU yet.
 */
#include "runtime/cuda/cuda_internal.h"

#include <stdlib.h>

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

/* 32-element families, n <= 32 in one pass: a lane per weight block
 * (its four slices' integers summed in the lane: the block's integer, the
 * CPU's), U blocks a lane in flight per iteration. A row is split over P
 * warps (1, 2 or 4: long rows, so that no warp walks more than ~64 blocks;
 * P depends on the row length only), each warp a contiguous range of
 * blocks; the parts' sums are added in shared memory in part order. The
 * block's weight words are loaded once and serve all N columns (the loads
 * do not depend on t: the compiler keeps them; PTX: 9 u16 loads a Q4_0
 * block at every N); the block float is evaluated once per (block, column),
 * no shuffles until the warp's final sums. A column's arithmetic does not
 * depend on N or on the other columns (columns t >= n redo column n - 1 and
 * are dropped), so a sequence's result is the same at every batch size;
 * fixed orders throughout: deterministic. V: the activation quants of a
 * block are read as two 16-byte vectors (xq and xs 16-byte aligned; not at
 * N = 32: ptxas spilled there, all 32 columns' vectors hoisted). */
template <int N> struct mmvb_unroll { enum { U = N <= 8 ? 2 : 1 }; };

template <int T, int N, bool V>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK) mmvb(const uint8_t *__restrict__ w, size_t ws, int k, int nr,
                                                            int parts, const uint8_t *__restrict__ xq, size_t xs,
                                                            int n, float *__restrict__ y, long long ldy,
                                                            int accumulate) {
    typedef qtraits<T> Q;
    constexpr int U = mmvb_unroll<N>::U;
    __shared__ float red[ROWS_PER_BLOCK][N];
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, part = wi % parts;
    const int row0 = blockIdx.x * (ROWS_PER_BLOCK / parts) + wi / parts;
    const bool live = row0 < nr;
    const int row = live ? row0 : nr - 1; /* no early exit: the block synchronises below */
    const int nb = k / 32, chunk = (nb + parts - 1) / parts;
    const int bstart = part * chunk, bend = min(nb, bstart + chunk);
    const uint8_t *wr = w + (size_t)row * ws;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = 0.0f;
    for (int b0 = bstart; b0 < bend; b0 += 32 * U) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int bu = b0 + 32 * u + lane;
            const bool ok = bu < bend;
            const int b = ok ? bu : bstart;
            const uint8_t *wb = wr + (size_t)b * Q::TB;
            const uint16_t *wh = (const uint16_t *)wb; /* 2-byte aligned */
            const float dw = loom_f16_to_f32(wh[0]);
            const float m = (T == LOOM_TYPE_Q4_1 || T == LOOM_TYPE_Q5_1) ? loom_f16_to_f32(wh[1]) : 0.0f;
#pragma unroll
            for (int t = 0; t < N; t++) {
                const uint8_t *xr = xq + (size_t)(t < n ? t : n - 1) * xs;
                const int8_t *a = (const int8_t *)xr + (size_t)b * 32;
                int av[8];
                if (V) {
                    const int4 q0 = ((const int4 *)a)[0], q1 = ((const int4 *)a)[1];
                    av[0] = q0.x, av[1] = q0.y, av[2] = q0.z, av[3] = q0.w;
                    av[4] = q1.x, av[5] = q1.y, av[6] = q1.z, av[7] = q1.w;
                }
                const int8_t *ap = V ? (const int8_t *)av : a;
                int vi = 0;
#pragma unroll
                for (int i = 0; i < LOOM_QDOT_SLICES32; i++) vi += loom_qdot_slice((loom_type)T, wb, ap, i);
                const float d = ((const float *)(xr + k))[b], s = ((const float *)(xr + k + 4 * nb))[b];
                const float f = loom_qdot_f32_32(dw, m, d, s, vi);
                acc[t] = ok ? acc[t] + f : acc[t];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = loom_warp_sum(acc[t]);
    if (parts > 1) {
        if (lane == 0) {
#pragma unroll
            for (int t = 0; t < N; t++) red[wi][t] = acc[t];
        }
        __syncthreads();
        if (part != 0) return;
#pragma unroll
        for (int t = 0; t < N; t++) {
            float v = red[wi][t];
            for (int p = 1; p < parts; p++) v += red[wi + p][t];
            acc[t] = v;
        }
    }
    if (!live || lane != 0) return;
#pragma unroll
    for (int t = 0; t < N; t++) {
        if (t >= n) break;
        float *o = y + (long long)t * ldy + row;
        *o = accumulate ? *o + acc[t] : acc[t];
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
    if (!LOOM_CUDA_SUBSET) return (unsigned)wt < 64 && (LOOM_CUDA_MATMUL_TYPES >> wt & 1); /* device.h */
    return wt == LOOM_TYPE_Q4_0 || wt == LOOM_TYPE_Q8_0 || wt == LOOM_TYPE_Q4_K || wt == LOOM_TYPE_Q6_K ||
           wt == LOOM_TYPE_F16;
}

static bool qtraits_block32(loom_type t) {
    return t == LOOM_TYPE_Q4_0 || t == LOOM_TYPE_Q4_1 || t == LOOM_TYPE_Q5_0 || t == LOOM_TYPE_Q5_1 ||
           t == LOOM_TYPE_Q8_0;
}

template <int T>
static void mmvq_launch(dim3 grid, dim3 block, cudaStream_t s, const uint8_t *w, size_t ws, int k, int nr,
                        const uint8_t *xq, size_t xs, int n, float *y, long long ldy, int accumulate) {
    if (n == 1) mmvq<T, 1><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else if (n == 2) mmvq<T, 2><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else if (n <= 4) mmvq<T, 4><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else mmvq<T, 8><<<grid, block, 0, s>>>(w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
}

/* 32-element families: n <= MMVB_NMAX columns in one launch */
#define MMVB_NMAX 32
template <int T, bool V>
static void mmvb_launch_v(cudaStream_t s, const uint8_t *w, size_t ws, int k, int nr, const uint8_t *xq, size_t xs,
                          int n, float *y, long long ldy, int accumulate) {
    const int nb = k / 32, parts = nb <= 64 ? 1 : nb <= 128 ? 2 : 4; /* the row length only */
    const int rpb = ROWS_PER_BLOCK / parts;
    const dim3 grid((unsigned)((nr + rpb - 1) / rpb)), block(32 * ROWS_PER_BLOCK);
#define MMVB_GO(NN) mmvb<T, NN, V><<<grid, block, 0, s>>>(w, ws, k, nr, parts, xq, xs, n, y, ldy, accumulate)
    if (n == 1) MMVB_GO(1);
    else if (n == 2) MMVB_GO(2);
    else if (n <= 4) MMVB_GO(4);
    else if (n <= 8) MMVB_GO(8);
    else if (n <= 16) MMVB_GO(16);
    else mmvb<T, 32, false><<<grid, block, 0, s>>>(w, ws, k, nr, parts, xq, xs, n, y, ldy, accumulate);
#undef MMVB_GO
}

template <int T>
static void mmvb_launch(dim3, dim3, cudaStream_t s, const uint8_t *w, size_t ws, int k, int nr, const uint8_t *xq,
                        size_t xs, int n, float *y, long long ldy, int accumulate) {
    if ((uintptr_t)xq % 16 == 0 && xs % 16 == 0) mmvb_launch_v<T, true>(s, w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
    else mmvb_launch_v<T, false>(s, w, ws, k, nr, xq, xs, n, y, ldy, accumulate);
}

/* n <= LOOM_CUDA_QUANT_ROWS rows: 32-element families in passes of
 * MMVB_NMAX (one pass), K-quants and floats in passes of NMAX (a pass re-reads the
 * weights, from L2 when they fit) */
void loom_cuda_matmul(loom_type wt, loom_device *d, const uint8_t *w, size_t ws, int64_t k, int64_t nr, const float *x,
                      const uint8_t *xq, size_t xs, int64_t n, float *y, int64_t ldy, int accumulate) {
    const cudaStream_t s = loom_cuda_of(d)->stream;
    const dim3 grid((unsigned)((nr + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK)), block(32 * ROWS_PER_BLOCK);
    const int ik = (int)k, inr = (int)nr;
    if (nr < 1 || n < 1) return; /* nothing to compute (an empty grid is a launch error) */
    static int legacy = -1; /* LOOM_CUDA_MMVQ_LEGACY=1: 32-element families on mmvq too (A/B) */
    if (legacy < 0) legacy = getenv("LOOM_CUDA_MMVQ_LEGACY") && atoi(getenv("LOOM_CUDA_MMVQ_LEGACY")) > 0;
    /* mmvb in passes of at most 8 columns: on the H200 (1.1B Q4_0) one pass of 32 took 104 us a call against
     * 4 passes of 8 at about 16 us each; 8 columns keep the weight words and 8 accumulators in registers */
    const int64_t pass = qtraits_block32(wt) && !legacy ? (MMVB_NMAX < 8 ? MMVB_NMAX : 8) : NMAX;
    for (int64_t t0 = 0; t0 < n; t0 += pass) {
        const int in = (int)(n - t0 < pass ? n - t0 : pass);
        const uint8_t *xqp = xq ? xq + (size_t)t0 * xs : NULL;
        const float *xp = x ? x + (size_t)t0 * (size_t)k : NULL;
        float *yp = y + t0 * ldy;
        switch (wt) {
#define QCASE(T)                                                                                                      \
    case T: mmvq_launch<T>(grid, block, s, w, ws, ik, inr, xqp, xs, in, yp, ldy, accumulate); break;
#define BCASE(T)                                                                                                      \
    case T:                                                                                                           \
        if (legacy) mmvq_launch<T>(grid, block, s, w, ws, ik, inr, xqp, xs, in, yp, ldy, accumulate);                \
        else mmvb_launch<T>(grid, block, s, w, ws, ik, inr, xqp, xs, in, yp, ldy, accumulate);                       \
        break;
#define FCASE(T)                                                                                                      \
    case T: mmvf<T><<<grid, block, 0, s>>>(w, ws, ik, inr, xp, in, yp, ldy, accumulate); break;
            BCASE(LOOM_TYPE_Q4_0)
            BCASE(LOOM_TYPE_Q8_0)
            QCASE(LOOM_TYPE_Q4_K)
            QCASE(LOOM_TYPE_Q6_K)
            FCASE(LOOM_TYPE_F16)
#if !LOOM_CUDA_SUBSET
            BCASE(LOOM_TYPE_Q4_1)
            BCASE(LOOM_TYPE_Q5_0)
            BCASE(LOOM_TYPE_Q5_1)
            QCASE(LOOM_TYPE_Q5_K)
            FCASE(LOOM_TYPE_F32)
            FCASE(LOOM_TYPE_BF16)
#endif
        default: loom_cuda_note(d, cudaErrorInvalidValue, "matmul of an unsupported weight type"); return;
        }
        LOOM_CUDA_LAUNCHED(d, n == 1 ? "mmvq n=1" : "mmvq n>1");
    }
}
