/*
 * runtime/cuda/attention.cu — RoPE with the write into the paged KV cache,
 * and attention over that cache (device.h's rope_store and attention).
 *
 * rope_store: one block per row, one thread per head (query heads, then KV
 * heads): bias, the CPU's rotation (ops.h's loom_rope_head), and for KV
 * heads the store into kv_cache.h's block layout — keys transposed per head
 * (element j of position t at (h·hd + j)·bt + t, so a warp reading 32
 * consecutive positions of one element is one coalesced load), values
 * row-major per position ((h·bt + t)·hd + j); F16 through quant.h's
 * conversion, the CPU's bits for the same float.
 *
 * attention: a warp per query of a unit (attn_split.h's dunit: up to 16
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

extern "C" {
#include "runtime/attn_split.h"
#include "runtime/ops.h"
#include "runtime/quant.h"
}

#define ATT_WARPS 4
#define ATT_PER_LANE (LOOM_CUDA_MAX_HEAD / 32)

/* ---- RoPE + KV store ---- */

__global__ void k_rope_store(loom_dev_rope_args a) {
    const int i = blockIdx.x, hd = a.head_dim, bt = a.block_tokens;
    const int qdim = a.n_q * hd, kvdim = a.n_kv * hd;
    const float *cs = a.cs + (size_t)i * a.rope_dim;
    for (int h = threadIdx.x; h < a.n_q + a.n_kv; h += blockDim.x) {
        if (h < a.n_q) {
            float *x = a.q + (size_t)i * qdim + (size_t)h * hd;
            if (a.bq)
                for (int j = 0; j < hd; j++) x[j] = __fadd_rn(x[j], a.bq[(size_t)h * hd + j]);
            loom_rope_head(x, cs, a.rope_dim, a.neox);
            continue;
        }
        const int kh = h - a.n_q;
        float *x = a.k + (size_t)i * kvdim + (size_t)kh * hd;
        const float *v = a.v + (size_t)i * kvdim + (size_t)kh * hd;
        if (a.bk)
            for (int j = 0; j < hd; j++) x[j] = __fadd_rn(x[j], a.bk[(size_t)kh * hd + j]);
        loom_rope_head(x, cs, a.rope_dim, a.neox);
        const int blk = a.slot[i] / bt, t = a.slot[i] % bt;
        uint8_t *kb = a.kc + (size_t)blk * a.block_bytes, *vb = a.vc + (size_t)blk * a.block_bytes;
        const size_t ko = ((size_t)kh * hd) * bt + (size_t)t, vo = ((size_t)kh * bt + (size_t)t) * hd;
        for (int j = 0; j < hd; j++) {
            const float vv = a.bv ? __fadd_rn(v[j], a.bv[(size_t)kh * hd + j]) : v[j];
            if (a.f16) {
                ((uint16_t *)kb)[ko + (size_t)j * bt] = loom_f32_to_f16(x[j]);
                ((uint16_t *)vb)[vo + j] = loom_f32_to_f16(vv);
            } else {
                ((float *)kb)[ko + (size_t)j * bt] = x[j];
                ((float *)vb)[vo + j] = vv;
            }
        }
    }
}

void loom_cuda_rope_store(loom_device *d, const loom_dev_rope_args *a) {
    if (a->n < 1) return;
    k_rope_store<<<a->n, 64, 0, loom_cuda_of(d)->stream>>>(*a);
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
__global__ void __launch_bounds__(32 * ATT_WARPS) k_att_merge(loom_dev_attn_args a) {
    const loom_attn_dunit &u = a.units[blockIdx.x];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = a.head_dim;
    const int P = loom_attn_n_segs(u.len, a.block_tokens, a.seg_blocks);
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

void loom_cuda_attention(loom_device *d, const loom_dev_attn_args *a) {
    if (a->n_units < 1) return;
    const cudaStream_t s = loom_cuda_of(d)->stream;
    if (a->head_dim > LOOM_CUDA_MAX_HEAD) {
        loom_cuda_note(d, cudaErrorInvalidValue, "attention: head_dim over LOOM_CUDA_MAX_HEAD");
        return;
    }
    if (a->part && a->max_segs > 1 && a->n_units <= a->part_units) {
        k_att_part<<<dim3((unsigned)a->n_units, (unsigned)a->max_segs), 32 * ATT_WARPS, 0, s>>>(*a);
        LOOM_CUDA_LAUNCHED(d, "attention (segments)");
        k_att_merge<<<(unsigned)a->n_units, 32 * ATT_WARPS, 0, s>>>(*a);
        LOOM_CUDA_LAUNCHED(d, "attention (merge)");
        return;
    }
    k_att_whole<<<(unsigned)a->n_units, 32 * ATT_WARPS, 0, s>>>(*a);
    LOOM_CUDA_LAUNCHED(d, "attention");
}
