/*
 * runtime/cuda/attention.cu — RoPE with the write into the paged KV cache,
 * and attention over that cache (device.h's rope_store and attention).
 *
 * rope_store: one block per row; biases an element a thread, then the CPU's
 * rotation (ops.h's loom_rope_head's expression) a pair a thread over the
 * query heads, then KV heads, then for KV heads the store into kv_cache.h's block layout — keys transposed per head
 * (element j of position t at (h·hd + j)·bt + t, so a warp reading 32
 * consecutive positions of one element is one coalesced load), values
 * row-major per position ((h·bt + t)·hd + j); F16 through quant.h's
 * conversion, the CPU's bits for the same float.
 *
 * attention (the legacy kernels, LOOM_CUDA_ATT_LEGACY=1; the default is
 * the block-per-segment kernels described further down): a warp per query of a unit (attn_split.h's dunit: up to 16
 * queries of one sequence and KV head), four warps per block. A segment
 * [p0, p1) is walked in tiles of 32 positions: lane l scores position
 * tile + l (a dot product over head_dim with the scaled query in shared
 * memory), the warp takes the tile's maximum, rescales its running sum and
 * accumulator (lanes own head_dim/32 output elements each) and adds the
 * tile's values. Segments are cut and merged with attn_split.h's functions:
 * for few units (decode, n_units <= part_units) every (unit, segment) is a
 * block of its own writing a partial, then a merge kernel folds them in
 * order; otherwise one block per unit walks its segments one after the
 * other and folds as it goes. Both orders give the same floats. The scores
 * are float sums in a different order from the CPU's, so outputs match the
 * CPU's to float rounding (checked by tests/gpu/device_check.c).
 */
#include "runtime/cuda/cuda_internal.h"

#include <cuda_fp16.h>
#include <stdlib.h>

extern "C" {
#include "runtime/attn_split.h"
#include "runtime/ops.h"
#include "runtime/quant.h"
}

#define ATT_WARPS 4
#define ROPE_THREADS 256
#define ATT_PER_LANE (LOOM_CUDA_MAX_HEAD / 32)

/* ---- RoPE + KV store ---- */

/* the rotation of one pair of a head (ops.h's loom_rope_head, pair i) */
static __device__ __forceinline__ void rope_pair(float *x, const float *cs, int i, int half, int neox) {
    const int pa = neox ? i : 2 * i, pb = neox ? i + half : 2 * i + 1;
    const float c = cs[2 * i], s = cs[2 * i + 1];
    const float x0 = x[pa], x1 = x[pb];
    x[pa] = x0 * c - x1 * s;
    x[pb] = x0 * s + x1 * c;
}

/* blockIdx.x = row: the biases (an element a thread), the rotations (a pair
 * a thread), the KV stores (an element a thread), with block barriers
 * between (the row's q/k are global memory written by this block) */
__global__ void __launch_bounds__(ROPE_THREADS) k_rope_store(loom_dev_rope_args a) {
    const int i = blockIdx.x, hd = a.head_dim, bt = a.block_tokens, half = a.rope_dim / 2;
    const int qdim = a.n_q * hd, kvdim = a.n_kv * hd;
    const float *cs = a.cs + (size_t)i * a.rope_dim;
    float *q = a.q + (size_t)i * qdim, *k = a.k + (size_t)i * kvdim;
    const float *v = a.v + (size_t)i * kvdim;
    if (a.bq || a.bk) {
        for (int e = threadIdx.x; e < qdim + kvdim; e += blockDim.x) {
            if (e < qdim) {
                if (a.bq) q[e] = __fadd_rn(q[e], a.bq[e]);
            } else if (a.bk) {
                k[e - qdim] = __fadd_rn(k[e - qdim], a.bk[e - qdim]);
            }
        }
        __syncthreads();
    }
    for (int e = threadIdx.x; e < (a.n_q + a.n_kv) * half; e += blockDim.x) {
        const int h = e / half, p = e - h * half;
        rope_pair(h < a.n_q ? q + (size_t)h * hd : k + (size_t)(h - a.n_q) * hd, cs, p, half, a.neox);
    }
    __syncthreads();
    const int blk = a.slot[i] / bt, t = a.slot[i] % bt;
    uint8_t *kb = a.kc + (size_t)blk * a.block_bytes, *vb = a.vc + (size_t)blk * a.block_bytes;
    for (int e = threadIdx.x; e < kvdim; e += blockDim.x) {
        const int kh = e / hd, j = e - kh * hd;
        const size_t ko = ((size_t)kh * hd + j) * bt + (size_t)t, vo = ((size_t)kh * bt + (size_t)t) * hd + j;
        const float vv = a.bv ? __fadd_rn(v[e], a.bv[e]) : v[e];
        if (a.f16) {
            ((uint16_t *)kb)[ko] = loom_f32_to_f16(k[e]);
            ((uint16_t *)vb)[vo] = loom_f32_to_f16(vv);
        } else {
            ((float *)kb)[ko] = k[e];
            ((float *)vb)[vo] = vv;
        }
    }
}

void loom_cuda_rope_store(loom_device *d, const loom_dev_rope_args *a) {
    if (a->n < 1) return;
    k_rope_store<<<a->n, ROPE_THREADS, 0, loom_cuda_of(d)->stream>>>(*a);
    LOOM_CUDA_LAUNCHED(d, "rope_store");
}

/* ---- attention ---- */

static __device__ __forceinline__ float kv_at(const uint8_t *p, size_t i, int f16) {
    return f16 ? loom_f16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* One query's online softmax over positions [p0, min(p1, lim + 1)):
 * *m, *l and acc (lane's elements d = lane + 32·e) from scratch. */
static __device__ void att_segment(const loom_dev_attn_args &a, const loom_attn_dunit &u, const float *qs, int lim,
                                   int p0, int p1, float *m, float *l, float *acc) {
    const int lane = threadIdx.x & 31, hd = a.head_dim, bt = a.block_tokens;
    const int pend = p1 < lim + 1 ? p1 : lim + 1;
    const int32_t *table = a.tables + u.table;
    float M = -INFINITY, L = 0.0f;
#pragma unroll
    for (int e = 0; e < ATT_PER_LANE; e++) acc[e] = 0.0f;
    for (int tile = p0; tile < pend; tile += 32) {
        const int p = tile + lane;
        const bool valid = p < pend;
        float s = -INFINITY;
        size_t voff = 0;
        if (valid) {
            const int blk = table[p / bt], t = p % bt;
            const uint8_t *kb = a.kc + (size_t)blk * a.block_bytes;
            const size_t ko = ((size_t)u.kvh * hd) * bt + (size_t)t;
            float dot = 0.0f;
            for (int j = 0; j < hd; j++) dot = fmaf(qs[j], kv_at(kb, ko + (size_t)j * bt, a.f16), dot);
            s = dot;
            voff = (size_t)blk * a.block_bytes / (a.f16 ? 2 : 4) + ((size_t)u.kvh * bt + (size_t)t) * hd;
        }
        const float mnew = fmaxf(M, warp_max(s)); /* finite: lane 0 is valid */
        const float alpha = exp2f(M - mnew);      /* 0 on the first tile */
        const float pl = valid ? exp2f(s - mnew) : 0.0f;
        L = __fadd_rn(__fmul_rn(L, alpha), loom_warp_sum(pl));
#pragma unroll
        for (int e = 0; e < ATT_PER_LANE; e++) acc[e] = __fmul_rn(acc[e], alpha);
        const int cnt = pend - tile < 32 ? pend - tile : 32;
        for (int tt = 0; tt < cnt; tt++) {
            const float pt = __shfl_sync(0xffffffffu, pl, tt);
            const unsigned long long vo = __shfl_sync(0xffffffffu, (unsigned long long)voff, tt);
#pragma unroll
            for (int e = 0; e < ATT_PER_LANE; e++) {
                const int dd = lane + 32 * e;
                if (dd < hd) acc[e] = fmaf(pt, kv_at(a.vc, (size_t)vo + dd, a.f16), acc[e]);
            }
        }
        M = mnew;
    }
    *m = M, *l = L;
}

/* (M, L, ACC) <- merge with (mb, lb, accb), attn_split.h's rule */
static __device__ void att_merge(float *M, float *L, float *acc, float mb, float lb, const float *accb) {
    float m = 0.0f, wa = 0.0f, wb = 0.0f;
    const int how = loom_attn_merge_weights(*M, mb, &m, &wa, &wb);
    if (how == 0) return;
    if (how == 1) {
        *M = mb, *L = lb;
#pragma unroll
        for (int e = 0; e < ATT_PER_LANE; e++) acc[e] = accb[e];
        return;
    }
    *M = m;
    *L = loom_attn_mix(wa, *L, wb, lb);
#pragma unroll
    for (int e = 0; e < ATT_PER_LANE; e++) acc[e] = loom_attn_mix(wa, acc[e], wb, accb[e]);
}

static __device__ void att_finish(const loom_dev_attn_args &a, const loom_attn_dunit &u, int j, float L,
                                  const float *acc) {
    const int lane = threadIdx.x & 31;
    const float inv = __frcp_rn(L);
    float *o = a.out + u.q_off[j];
#pragma unroll
    for (int e = 0; e < ATT_PER_LANE; e++) {
        const int dd = lane + 32 * e;
        if (dd < a.head_dim) o[dd] = __fmul_rn(acc[e], inv);
    }
}

/* the warp's query row, scaled, into its shared slice */
static __device__ void load_q(const loom_dev_attn_args &a, const loom_attn_dunit &u, int j, float *qs) {
    const float *q = a.q + u.q_off[j];
    for (int dd = threadIdx.x & 31; dd < a.head_dim; dd += 32) qs[dd] = __fmul_rn(q[dd], a.qscale);
    __syncwarp();
}

/* blockIdx.x = unit: its segments in order, folded as they come */
__global__ void __launch_bounds__(32 * ATT_WARPS) k_att_whole(loom_dev_attn_args a) {
    __shared__ float qsh[ATT_WARPS][LOOM_CUDA_MAX_HEAD];
    const loom_attn_dunit &u = a.units[blockIdx.x];
    const int warp = threadIdx.x >> 5, P = loom_attn_n_segs(u.len, a.block_tokens, a.seg_blocks);
    for (int j = warp; j < u.nq; j += ATT_WARPS) {
        load_q(a, u, j, qsh[warp]);
        float M = -INFINITY, L = 0.0f, acc[ATT_PER_LANE], m, l, accb[ATT_PER_LANE];
#pragma unroll
        for (int e = 0; e < ATT_PER_LANE; e++) acc[e] = 0.0f;
        for (int s = 0; s < P; s++) {
            int p0, p1;
            loom_attn_seg_range(s, u.len, a.block_tokens, a.seg_blocks, &p0, &p1);
            att_segment(a, u, qsh[warp], u.lim[j], p0, p1, &m, &l, accb);
            att_merge(&M, &L, acc, m, l, accb);
        }
        att_finish(a, u, j, L, acc);
        __syncwarp();
    }
}

/* blockIdx.x = unit, blockIdx.y = segment: the segment's partial */
__global__ void __launch_bounds__(32 * ATT_WARPS) k_att_part(loom_dev_attn_args a) {
    __shared__ float qsh[ATT_WARPS][LOOM_CUDA_MAX_HEAD];
    const loom_attn_dunit &u = a.units[blockIdx.x];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, s = blockIdx.y, hd = a.head_dim;
    if (s >= loom_attn_n_segs(u.len, a.block_tokens, a.seg_blocks)) return;
    float *part = a.part + ((size_t)blockIdx.x * a.max_segs + s) * LOOM_ATTN_PART_FLOATS(hd);
    int p0, p1;
    loom_attn_seg_range(s, u.len, a.block_tokens, a.seg_blocks, &p0, &p1);
    for (int j = warp; j < u.nq; j += ATT_WARPS) {
        load_q(a, u, j, qsh[warp]);
        float m, l, acc[ATT_PER_LANE];
        att_segment(a, u, qsh[warp], u.lim[j], p0, p1, &m, &l, acc);
        if (lane == 0) part[j] = m, part[LOOM_ATTN_UNIT_NQ + j] = l;
        float *pa = part + 2 * LOOM_ATTN_UNIT_NQ + (size_t)j * hd;
#pragma unroll
        for (int e = 0; e < ATT_PER_LANE; e++)
            if (lane + 32 * e < hd) pa[lane + 32 * e] = acc[e];
        __syncwarp();
    }
}

/* blockIdx.x = unit: fold its partials in segment order */
__global__ void __launch_bounds__(32 * ATT_WARPS) k_att_merge(loom_dev_attn_args a, int skip1) {
    const loom_attn_dunit &u = a.units[blockIdx.x];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = a.head_dim;
    const int P = loom_attn_n_segs(u.len, a.block_tokens, a.seg_blocks);
    if (P == 1 && skip1) return; /* k_att_part2 wrote it */
    for (int j = warp; j < u.nq; j += ATT_WARPS) {
        float M = -INFINITY, L = 0.0f, acc[ATT_PER_LANE], accb[ATT_PER_LANE];
#pragma unroll
        for (int e = 0; e < ATT_PER_LANE; e++) acc[e] = 0.0f;
        for (int s = 0; s < P; s++) {
            const float *part = a.part + ((size_t)blockIdx.x * a.max_segs + s) * LOOM_ATTN_PART_FLOATS(hd);
            const float *pa = part + 2 * LOOM_ATTN_UNIT_NQ + (size_t)j * hd;
#pragma unroll
            for (int e = 0; e < ATT_PER_LANE; e++) accb[e] = lane + 32 * e < hd ? pa[lane + 32 * e] : 0.0f;
            att_merge(&M, &L, acc, part[j], part[LOOM_ATTN_UNIT_NQ + j], accb);
        }
        att_finish(a, u, j, L, acc);
    }
}

/* the warp-per-query kernels (LOOM_CUDA_ATT_LEGACY=1) */
static void attention_legacy(loom_device *d, const loom_dev_attn_args *a, cudaStream_t s) {
    if (a->part && a->max_segs > 1 && a->n_units <= a->part_units) {
        k_att_part<<<dim3((unsigned)a->n_units, (unsigned)a->max_segs), 32 * ATT_WARPS, 0, s>>>(*a);
        LOOM_CUDA_LAUNCHED(d, "attention (segments)");
        k_att_merge<<<(unsigned)a->n_units, 32 * ATT_WARPS, 0, s>>>(*a, 0);
        LOOM_CUDA_LAUNCHED(d, "attention (merge)");
        return;
    }
    k_att_whole<<<(unsigned)a->n_units, 32 * ATT_WARPS, 0, s>>>(*a);
    LOOM_CUDA_LAUNCHED(d, "attention");
}

/* ---- attention, block per (unit, segment): the legacy kernels above are
 * kept behind LOOM_CUDA_ATT_LEGACY=1 (for comparison on a GPU) ----
 *
 * One block of ATT_T threads computes one segment of one unit for all its
 * queries, in chunks of ATT_T positions:
 *  A. scores: thread t takes position c0 + t, loads its key column 32
 *     elements at a time (16 in k_att_whole2; independent loads, registers)
 *     and dots it with every query of the unit (scaled, zero-padded to a
 *     multiple of 32, in shared memory:
 *     the GQA group shares each key load); scores to shared;
 *  B. a warp per query: the chunk's maximum over the positions the query
 *     sees, the online-softmax rescale alpha = 2^(m_old - m_new), the
 *     probabilities 2^(s - m_new) back to shared, l = l·alpha + sum;
 *  C. values: thread (g, d) (g < G = ATT_T / head_dim groups of positions,
 *     d an element of the head) accumulates acc[j] += p[j][t]·V[t][d] over
 *     its positions t ≡ g (mod G), 16 value loads in flight (8 in
 *     k_att_whole2, whose running result takes registers), for every
 *     query j (each value load shared by the group's queries).
 * At the segment's end the G groups' sums are added in group order. The
 * segment's (m, l, acc) is then either the partial (merged by k_att_merge
 * with attn_split.h's rule) or, in k_att_whole2, merged at once into the
 * unit's running result; a unit of a single segment writes its output
 * directly. Scores and sums are float sums in another order than the
 * CPU's, so the output matches the CPU's to float rounding. */

#define ATT_T 256
#define ATT_NQ LOOM_ATTN_UNIT_NQ

struct att_smem {
    float4 q[ATT_NQ][LOOM_CUDA_MAX_HEAD / 4]; /* scaled queries, zero from head_dim to a multiple of 32 */
    float sc[ATT_NQ][ATT_T];                  /* scores, then probabilities; at a segment's end the group sums */
    size_t voff[ATT_T];                       /* value element offset of each chunk position (head element 0) */
    float m[ATT_NQ], l[ATT_NQ], alpha[ATT_NQ];
};

static __device__ __forceinline__ float kv_ld(const uint16_t *p) { return __half2float(__ushort_as_half(__ldg(p))); }
static __device__ __forceinline__ float kv_ld(const float *p) { return __ldg(p); }

static __device__ void att_load_q2(const loom_dev_attn_args &a, const loom_attn_dunit &u, att_smem &s) {
    const int hd = a.head_dim, hd32 = (hd + 31) & ~31; /* <= LOOM_CUDA_MAX_HEAD, a multiple of 32 */
    float *qf = (float *)s.q;
    for (int i = threadIdx.x; i < u.nq * hd32; i += ATT_T) {
        const int j = i / hd32, dd = i - j * hd32;
        qf[j * LOOM_CUDA_MAX_HEAD + dd] = dd < hd ? __fmul_rn(a.q[u.q_off[j] + dd], a.qscale) : 0.0f;
    }
}

/* The block's segment [p0, p1) of unit u (scaled queries in s.q): s.m, s.l
 * the segment's max and sum per query; acc[j] of thread (0, d) the sum of
 * p·V for element d (threads of other groups: their own group's part). */
template <typename E, int KW, int VW>
static __device__ void att_seg_block(const loom_dev_attn_args &a, const loom_attn_dunit &u, att_smem &s, int p0,
                                     int p1, float *acc) {
    const int tid = threadIdx.x, hd = a.head_dim, bt = a.block_tokens, nq = u.nq;
    const int G = ATT_T / hd, g = tid / hd, dd = tid - g * hd;
    const int warp = tid >> 5, lane = tid & 31;
    const size_t bstride = a.block_bytes / sizeof(E);
    const E *kc = (const E *)a.kc, *vc = (const E *)a.vc;
    const int32_t *table = a.tables + u.table;
    __syncthreads(); /* queries loaded; a previous segment's readers of s are done */
    if (tid < ATT_NQ) s.m[tid] = -INFINITY, s.l[tid] = 0.0f;
#pragma unroll
    for (int j = 0; j < ATT_NQ; j++) acc[j] = 0.0f;
    for (int c0 = p0; c0 < p1; c0 += ATT_T) {
        const int cnt = p1 - c0 < ATT_T ? p1 - c0 : ATT_T;
        /* A: scores */
        if (tid < cnt) {
            const int p = c0 + tid, blk = table[p / bt], t = p % bt;
            const E *kb = kc + (size_t)blk * bstride + (size_t)u.kvh * hd * bt + t;
            s.voff[tid] = (size_t)blk * bstride + ((size_t)u.kvh * bt + t) * hd;
            float dot[ATT_NQ];
#pragma unroll
            for (int j = 0; j < ATT_NQ; j++) dot[j] = 0.0f;
            for (int d0 = 0; d0 < hd; d0 += KW) {
                float kv[KW];
#pragma unroll
                for (int e = 0; e < KW; e++) kv[e] = d0 + e < hd ? kv_ld(kb + (size_t)(d0 + e) * bt) : 0.0f;
#pragma unroll
                for (int j = 0; j < ATT_NQ; j++) {
                    if (j < nq) {
#pragma unroll
                        for (int e4 = 0; e4 < KW / 4; e4++) {
                            const float4 q4 = s.q[j][(d0 >> 2) + e4];
                            dot[j] = fmaf(q4.x, kv[4 * e4], dot[j]);
                            dot[j] = fmaf(q4.y, kv[4 * e4 + 1], dot[j]);
                            dot[j] = fmaf(q4.z, kv[4 * e4 + 2], dot[j]);
                            dot[j] = fmaf(q4.w, kv[4 * e4 + 3], dot[j]);
                        }
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < ATT_NQ; j++)
                if (j < nq) s.sc[j][tid] = dot[j];
        }
        __syncthreads();
        /* B: a warp per query */
        for (int j = warp; j < nq; j += ATT_T / 32) {
            const int lim = u.lim[j];
            float cm = -INFINITY;
#pragma unroll
            for (int i = 0; i < ATT_T / 32; i++) {
                const int t = lane + 32 * i;
                if (t < cnt && c0 + t <= lim) cm = fmaxf(cm, s.sc[j][t]);
            }
            cm = warp_max(cm);
            const float M = s.m[j];
            float alpha = 1.0f, mnew = M, sum = 0.0f;
            if (cm != -INFINITY) {
                mnew = fmaxf(M, cm);
                alpha = exp2f(M - mnew); /* 0 when M is -inf */
            }
#pragma unroll
            for (int i = 0; i < ATT_T / 32; i++) {
                const int t = lane + 32 * i;
                if (t < cnt) {
                    const float pv = c0 + t <= lim ? exp2f(s.sc[j][t] - mnew) : 0.0f;
                    s.sc[j][t] = pv;
                    sum = __fadd_rn(sum, pv);
                }
            }
            sum = loom_warp_sum(sum);
            __syncwarp(); /* every lane has read s.m[j] */
            if (lane == 0) {
                s.m[j] = mnew, s.alpha[j] = alpha;
                s.l[j] = __fadd_rn(__fmul_rn(s.l[j], alpha), sum);
            }
        }
        __syncthreads();
        /* C: values */
        if (g < G) {
#pragma unroll
            for (int j = 0; j < ATT_NQ; j++)
                if (j < nq) acc[j] = __fmul_rn(acc[j], s.alpha[j]);
            for (int t = g; t < cnt; t += VW * G) { /* VW value loads in flight, the last pass predicated */
                float v[VW];
#pragma unroll
                for (int kk = 0; kk < VW; kk++) {
                    const int tk = t + kk * G;
                    v[kk] = tk < cnt ? kv_ld(vc + s.voff[tk] + dd) : 0.0f;
                }
#pragma unroll
                for (int j = 0; j < ATT_NQ; j++) {
                    if (j < nq) {
#pragma unroll
                        for (int kk = 0; kk < VW; kk++)
                            if (t + kk * G < cnt) acc[j] = fmaf(s.sc[j][t + kk * G], v[kk], acc[j]);
                    }
                }
            }
        }
        __syncthreads(); /* before the next chunk writes s.sc / s.voff */
    }
    if (G > 1) { /* the groups' sums, in group order, into group 0 */
        float *red = &s.sc[0][0]; /* (G - 1, ATT_NQ, hd) <= ATT_NQ · ATT_T floats */
        if (g > 0 && g < G) {
#pragma unroll
            for (int j = 0; j < ATT_NQ; j++)
                if (j < nq) red[((size_t)(g - 1) * ATT_NQ + j) * hd + dd] = acc[j];
        }
        __syncthreads();
        if (g == 0)
            for (int gg = 1; gg < G; gg++) {
#pragma unroll
                for (int j = 0; j < ATT_NQ; j++)
                    if (j < nq) acc[j] = __fadd_rn(acc[j], red[((size_t)(gg - 1) * ATT_NQ + j) * hd + dd]);
            }
    }
}

/* thread (0, d): unit u's outputs out[j][d] = acc[j] · (1/l[j]) */
static __device__ __forceinline__ void att_out2(const loom_dev_attn_args &a, const loom_attn_dunit &u,
                                                const float *acc, const float *l) {
    const int dd = threadIdx.x;
    if (dd >= a.head_dim) return;
#pragma unroll
    for (int j = 0; j < ATT_NQ; j++)
        if (j < u.nq) a.out[u.q_off[j] + dd] = __fmul_rn(acc[j], __frcp_rn(l[j]));
}

/* blockIdx.x = unit, blockIdx.y = segment: the segment's partial (the
 * output itself when the unit has one segment) */
template <typename E>
__global__ void __launch_bounds__(ATT_T) k_att_part2(loom_dev_attn_args a) {
    __shared__ att_smem s;
    const loom_attn_dunit &u = a.units[blockIdx.x];
    const int seg = blockIdx.y, hd = a.head_dim, P = loom_attn_n_segs(u.len, a.block_tokens, a.seg_blocks);
    if (seg >= P) return;
    int p0, p1;
    loom_attn_seg_range(seg, u.len, a.block_tokens, a.seg_blocks, &p0, &p1);
    att_load_q2(a, u, s);
    float acc[ATT_NQ];
    att_seg_block<E, 32, 16>(a, u, s, p0, p1, acc);
    __syncthreads(); /* s.l, s.m of the last chunk */
    if (P == 1) {
        att_out2(a, u, acc, s.l);
        return;
    }
    float *part = a.part + ((size_t)blockIdx.x * a.max_segs + seg) * LOOM_ATTN_PART_FLOATS(hd);
    if ((int)threadIdx.x < u.nq) part[threadIdx.x] = s.m[threadIdx.x], part[LOOM_ATTN_UNIT_NQ + threadIdx.x] = s.l[threadIdx.x];
    if ((int)threadIdx.x < hd) {
        float *pa = part + 2 * LOOM_ATTN_UNIT_NQ + threadIdx.x;
#pragma unroll
        for (int j = 0; j < ATT_NQ; j++)
            if (j < u.nq) pa[(size_t)j * hd] = acc[j];
    }
}

/* blockIdx.x = unit: its segments in order, each merged into the running
 * result as it comes (attn_split.h's rule, per element by thread (0, d)) */
template <typename E>
__global__ void __launch_bounds__(ATT_T) k_att_whole2(loom_dev_attn_args a) {
    __shared__ att_smem s;
    const loom_attn_dunit &u = a.units[blockIdx.x];
    const int P = loom_attn_n_segs(u.len, a.block_tokens, a.seg_blocks);
    att_load_q2(a, u, s);
    float acc[ATT_NQ], racc[ATT_NQ], rm[ATT_NQ], rl[ATT_NQ];
#pragma unroll
    for (int j = 0; j < ATT_NQ; j++) racc[j] = 0.0f, rm[j] = -INFINITY, rl[j] = 0.0f;
    for (int seg = 0; seg < P; seg++) {
        int p0, p1;
        loom_attn_seg_range(seg, u.len, a.block_tokens, a.seg_blocks, &p0, &p1);
        att_seg_block<E, 16, 8>(a, u, s, p0, p1, acc); /* narrower: the running result takes registers */
        __syncthreads(); /* s.l, s.m of the last chunk */
#pragma unroll
        for (int j = 0; j < ATT_NQ; j++) {
            if (j < u.nq) {
                float m = 0.0f, wa = 0.0f, wb = 0.0f;
                const float mb = s.m[j], lb = s.l[j];
                const int how = loom_attn_merge_weights(rm[j], mb, &m, &wa, &wb);
                if (how == 1) rm[j] = mb, rl[j] = lb, racc[j] = acc[j];
                if (how == 2) {
                    rm[j] = m;
                    rl[j] = loom_attn_mix(wa, rl[j], wb, lb);
                    racc[j] = loom_attn_mix(wa, racc[j], wb, acc[j]);
                }
            }
        }
    }
    att_out2(a, u, racc, rl);
}

static int att_legacy = -1; /* LOOM_CUDA_ATT_LEGACY=1: the warp-per-query kernels */

void loom_cuda_attention(loom_device *d, const loom_dev_attn_args *a) {
    if (a->n_units < 1) return;
    const cudaStream_t s = loom_cuda_of(d)->stream;
    if (a->head_dim > LOOM_CUDA_MAX_HEAD) {
        loom_cuda_note(d, cudaErrorInvalidValue, "attention: head_dim over LOOM_CUDA_MAX_HEAD");
        return;
    }
    if (att_legacy < 0) att_legacy = getenv("LOOM_CUDA_ATT_LEGACY") && atoi(getenv("LOOM_CUDA_ATT_LEGACY")) > 0;
    if (att_legacy) {
        attention_legacy(d, a, s);
        return;
    }
    const bool split = a->part && a->max_segs > 1 && a->n_units <= a->part_units;
    if (split) {
        const dim3 grid((unsigned)a->n_units, (unsigned)a->max_segs);
        if (a->f16) k_att_part2<uint16_t><<<grid, ATT_T, 0, s>>>(*a);
        else k_att_part2<float><<<grid, ATT_T, 0, s>>>(*a);
        LOOM_CUDA_LAUNCHED(d, "attention (segments)");
        k_att_merge<<<(unsigned)a->n_units, 32 * ATT_WARPS, 0, s>>>(*a, 1);
        LOOM_CUDA_LAUNCHED(d, "attention (merge)");
        return;
    }
    if (a->f16) k_att_whole2<uint16_t><<<(unsigned)a->n_units, ATT_T, 0, s>>>(*a);
    else k_att_whole2<float><<<(unsigned)a->n_units, ATT_T, 0, s>>>(*a);
    LOOM_CUDA_LAUNCHED(d, "attention");
}
