/* runtime/attention.c — KV store, work units, threads and the
 * flash-decoding merge (contract and method in attention.h; the tile loops
 * are in runtime/cpu/attn_*.c). */
#include "runtime/attention.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/attn_split.h"
#include "runtime/kernels.h"
#include "runtime/quant.h"

#define NQM LOOM_ATTN_NQ_MAX
#define PART_SLOTS (2 * LOOM_ATTN_SEG_MAX_PARTS) /* partial results per thread of scratch */
_Static_assert(LOOM_ATTN_NQ_MAX == LOOM_ATTN_UNIT_NQ, "device units hold as many queries as CPU units");

/* ------------------------------------------------------------ store */

/* x[0..32) as Q8_0: the F16 scale absmax / 127 (zero for an all-zero
 * group) and int8 codes rounded to nearest under that F16 scale (llama.cpp
 * divides by the unrounded one: up to 0.56 of a step off, here 0.5). */
static uint16_t q8_group(const float *x, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const uint16_t h = loom_f32_to_f16(amax / 127.0f);
    const float d = loom_f16_to_f32(h), id = d > 0.0f && d < INFINITY ? 1.0f / d : 0.0f;
    for (int i = 0; i < 32; i++) {
        const long c = lrintf(x[i] * id);
        q[i] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
    }
    return h;
}

void loom_kv_write_head(void *kb, void *vb, int h, int slot, int block_tokens, int head_dim, loom_type type,
                        const float *k, const float *v) {
    const int hd = head_dim, bt = block_tokens;
    const loom_kv_config c = {.head_dim = hd, .block_tokens = bt, .type = type};
    const size_t head = loom_kv_head_bytes(&c);
    const size_t ko = loom_kv_k_offset(&c, 0, slot, 0), vo = loom_kv_v_offset(&c, 0, slot, 0);
    uint8_t *kh = (uint8_t *)kb + (size_t)h * head, *vh = vb ? (uint8_t *)vb + (size_t)h * head : NULL;
    if (type == LOOM_TYPE_F32) {
        float *kd = (float *)kh + ko;
        for (int d = 0; d < hd; d++) kd[(size_t)d * bt] = k[d];
        if (vh) memcpy((float *)vh + vo, v, (size_t)hd * sizeof(float));
        return;
    }
    if (type == LOOM_TYPE_Q8_0) { /* kv_cache.h: codes, then the scales of each 32 dimensions */
        int8_t q[32];
        uint8_t *ks = kh + (size_t)hd * bt, *vs = vh ? vh + (size_t)hd * bt : NULL;
        for (int g = 0; g < hd / 32; g++) {
            const uint16_t dk = q8_group(k + 32 * g, q);
            for (int d = 0; d < 32; d++) kh[ko + (size_t)(32 * g + d) * bt] = (uint8_t)q[d];
            memcpy(ks + 2 * ((size_t)g * bt + slot), &dk, 2);
            if (!vh) continue;
            const uint16_t dv = q8_group(v + 32 * g, (int8_t *)vh + vo + 32 * g);
            memcpy(vs + 2 * ((size_t)slot * (hd / 32) + g), &dv, 2);
        }
        return;
    }
    loom_f16_row_fn *to_f16 = loom_kernels_get()->f16_row;
    uint16_t tmp[64], *kd = (uint16_t *)kh + ko;
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int m = hd - d0 < 64 ? hd - d0 : 64;
        to_f16(k + d0, tmp, m);
        for (int d = 0; d < m; d++) kd[(size_t)(d0 + d) * bt] = tmp[d];
    }
    if (vh) to_f16(v, (uint16_t *)vh + vo, hd);
}

void loom_attention_store(const loom_attention_args *a) { loom_attention_store_heads(a, 0, a->n_kv); }

void loom_attention_store_heads(const loom_attention_args *a, int h0, int h1) {
    const loom_kv_config *kc = loom_kv_config_of(a->kv);
    const int hd = a->head_dim, bt = kc->block_tokens, kvdim = a->n_kv * hd;
    for (int i = 0; i < a->n; i++) {
        const int p = a->pos[i], slot = p % bt;
        const int32_t blk = loom_kv_table(a->kv, a->seq[i])[p / bt];
        void *kb = loom_kv_k_block(a->kv, a->layer, blk), *vb = loom_kv_v_block(a->kv, a->layer, blk);
        for (int h = h0; h < h1; h++)
            loom_kv_write_head(kb, vb, h, slot, bt, hd, kc->type, a->k + (size_t)i * kvdim + (size_t)h * hd,
                               a->v + (size_t)i * kvdim + (size_t)h * hd);
    }
}

/* ------------------------------------------------------------ plan */

typedef struct {
    int32_t seq, pos, row;
    int32_t lim; /* the last position the row sees: pos, or its sequence's last (bidirectional) */
} row_ref;

typedef struct {
    int32_t r0, nr;  /* rows[r0 .. r0+nr) of one sequence, ascending positions */
    int32_t kvh;     /* KV head */
    int32_t h0, nh;  /* its query heads hq[h0 .. h0+nh) (plan_units) */
    int32_t len;     /* key positions [0, len): the last row's position + 1 */
    int32_t job0;    /* spread: the job of its first segment */
} att_unit;

/* Offsets (in floats) of one thread's slice of scratch; every region starts
 * 64-byte aligned once the slice base is. */
typedef struct {
    size_t rows, heads, units, q, acc, small, work, slots, slot_floats, total;
} att_layout;

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; }

static att_layout layout_of(int n_q, int n_kv, int hd, int max_rows) {
    att_layout L;
    /* units <= rows × Σ_k ceil(G_k / NQM) <= rows × (n_kv + ceil(n_q / NQM)) (plan_units) */
    size_t units = (size_t)(max_rows > 0 ? max_rows : 1) * ((size_t)n_kv + ((size_t)n_q + NQM - 1) / NQM), o = 0;
    L.rows = o, o += up16((size_t)max_rows * sizeof(row_ref) / sizeof(float));
    L.heads = o, o += up16((size_t)n_q + (size_t)n_kv + 1);
    L.units = o, o += up16(units * sizeof(att_unit) / sizeof(float));
    L.q = o, o += up16((size_t)hd * NQM);
    L.acc = o, o += up16((size_t)NQM * hd);
    L.small = o, o += up16(4 * (size_t)NQM); /* lim, m, l, lo */
    L.work = o, o += up16(LOOM_ATTN_WORK_FLOATS(hd));
    L.slot_floats = up16((size_t)NQM * hd + 2 * (size_t)NQM);
    L.slots = o, o += PART_SLOTS * L.slot_floats;
    L.total = o + 16; /* slack to align the slice base */
    return L;
}

size_t loom_attention_scratch_floats(const loom_kv_config *kc, int n_q, int n_kv, int head_dim, int max_rows) {
    (void)kc;
    return layout_of(n_q, n_kv, head_dim, max_rows).total;
}

static float *slice_of(float *scratch, const att_layout *L, int ith) {
    uintptr_t p = (uintptr_t)(scratch + (size_t)ith * L->total);
    return (float *)((p + 63) & ~(uintptr_t)63);
}

/* Shell sort (Ciura's gaps): in place, no allocation (qsort may allocate);
 * items of at most 32 bytes; cmp totally orders the items here, so the
 * result is deterministic. */
static void sort_items(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
    static const size_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
    unsigned char tmp[32], *b = base;
    for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
        const size_t gap = gaps[g];
        for (size_t i = gap; i < n; i++) {
            memcpy(tmp, b + i * size, size);
            size_t j = i;
            for (; j >= gap && cmp(b + (j - gap) * size, tmp) > 0; j -= gap) memcpy(b + j * size, b + (j - gap) * size, size);
            memcpy(b + j * size, tmp, size);
        }
    }
}

static int cmp_rows(const void *x, const void *y) {
    const row_ref *a = x, *b = y;
    if (a->seq != b->seq) return a->seq < b->seq ? -1 : 1;
    if (a->pos != b->pos) return a->pos < b->pos ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

static int64_t unit_cost(const att_unit *u) { return (int64_t)u->len * u->nr * u->nh; }

_Static_assert(sizeof(row_ref) <= 32 && sizeof(att_unit) <= 32, "sort_items moves items of at most 32 bytes");

static int cmp_units(const void *x, const void *y) {
    const att_unit *a = x, *b = y;
    int64_t ca = unit_cost(a), cb = unit_cost(b);
    if (ca != cb) return ca > cb ? -1 : 1;
    if (a->r0 != b->r0) return a->r0 < b->r0 ? -1 : 1;
    if (a->kvh != b->kvh) return a->kvh < b->kvh ? -1 : 1;
    return (a->h0 > b->h0) - (a->h0 < b->h0);
}

/* Groups rows by sequence (ascending positions) and query heads by KV head
 * (heads: n_kv + 1 offsets, then hq: the query heads of KV head k are
 * hq[off[k] .. off[k+1])), then cuts (sequence, KV head) into units of at
 * most NQM queries, most expensive first. Returns the number of units. */
static int plan_units(const loom_attention_args *a, row_ref *rows, int32_t *heads, att_unit *units) {
    for (int i = 0; i < a->n; i++) rows[i] = (row_ref){a->seq[i], a->pos[i], i, a->pos[i]};
    sort_items(rows, (size_t)a->n, sizeof *rows, cmp_rows);
    if (a->bidirectional) /* every row of a sequence sees up to its last row */
        for (int r1 = a->n; r1 > 0;) {
            int r0 = r1 - 1;
            while (r0 > 0 && rows[r0 - 1].seq == rows[r1 - 1].seq) r0--;
            for (int r = r0; r < r1; r++) rows[r].lim = rows[r1 - 1].pos;
            r1 = r0;
        }
    /* heads[0 .. n_kv] offsets, then query heads grouped by KV head */
    int32_t *off = heads, *hq = heads + a->n_kv + 1;
    for (int k = 0; k <= a->n_kv; k++) off[k] = 0;
    for (int h = 0; h < a->n_q; h++) off[a->q_to_kv[h] + 1]++;
    for (int k = 0; k < a->n_kv; k++) off[k + 1] += off[k];
    for (int k = 0, i = 0; k < a->n_kv; k++)
        for (int h = 0; h < a->n_q; h++)
            if (a->q_to_kv[h] == k) hq[i++] = h;
    int n_units = 0;
    for (int r0 = 0, r1; r0 < a->n; r0 = r1) {
        for (r1 = r0 + 1; r1 < a->n && rows[r1].seq == rows[r0].seq;) r1++;
        int nr = r1 - r0;
        for (int k = 0; k < a->n_kv; k++) {
            int g = off[k + 1] - off[k], ng = (g + NQM - 1) / NQM;
            for (int gi = 0; gi < ng; gi++) {
                int h0 = off[k] + g * gi / ng, nh = off[k] + g * (gi + 1) / ng - h0;
                int per = NQM / nh, nc = (nr + per - 1) / per;
                for (int c = 0; c < nc; c++) {
                    int c0 = r0 + nr * c / nc, c1 = r0 + nr * (c + 1) / nc;
                    units[n_units++] = (att_unit){c0, c1 - c0, k, h0, nh, rows[c1 - 1].lim + 1, 0};
                }
            }
        }
    }
    sort_items(units, (size_t)n_units, sizeof *units, cmp_units);
    return n_units;
}

/* Blocks per segment: the key range of every query is cut at multiples of
 * this (attn_split.h, shared with the device kernels); depends only on the
 * cache's configuration. */
static int seg_blocks_of(const loom_kv_config *kc) { return loom_attn_seg_blocks(kc->block_tokens, kc->max_ctx); }

/* ------------------------------------------------------------ compute */

typedef struct {
    const loom_attention_args *a;
    float *scratch;
    att_layout L;
    const row_ref *rows;
    const int32_t *heads; /* hq of plan_units */
    const att_unit *units;
    int n_units, n_jobs, seg_blocks;
    int spread;           /* 1: a job per segment, merged afterwards; 0: a job per unit */
    loom_attn_unit proto; /* the fields every unit shares: cache pointers, shapes, qscale */
    loom_attn_unit_fn *kernel;
    _Atomic int next;
} att_task;

static int segs_of(const att_task *t, const att_unit *un, int bt) {
    return loom_attn_n_segs(un->len, bt, t->seg_blocks);
}

/* Partial result slot i of thread slice `slice`: m (NQM), l (NQM), acc (NQM, hd). */
static float *slot_at(const att_task *t, int slice, int i) {
    return slice_of(t->scratch, &t->L, slice) + t->L.slots + (size_t)i * t->L.slot_floats;
}
static float *job_slot(const att_task *t, int job) { return slot_at(t, job / PART_SLOTS, job % PART_SLOTS); }

/* Folds the partial result b (a later segment) into a, query by query:
 * the flash-decoding merge (attn_split.h), always in segment order, so a
 * query's result is the same whoever computed the segments. */
static void merge_into(float *a, const float *b, int nq, int hd) {
    for (int j = 0; j < nq; j++)
        loom_attn_merge1(&a[j], &a[NQM + j], a + 2 * NQM + (size_t)j * hd, b[j], b[NQM + j],
                         b + 2 * NQM + (size_t)j * hd, hd);
}

/* The unit's query rows: qp, out, lim (and lo with a window) for its nq queries. */
static int unit_queries(const att_task *t, const att_unit *un, const float **qp, float **op, int32_t *lim,
                        int32_t *lo) {
    const loom_attention_args *a = t->a;
    const int hd = a->head_dim, qdim = a->n_q * hd, nq = un->nr * un->nh;
    for (int j = 0; j < nq; j++) {
        const row_ref *rr = &t->rows[un->r0 + j / un->nh];
        const size_t off = (size_t)rr->row * qdim + (size_t)t->heads[un->h0 + j % un->nh] * hd;
        qp[j] = a->q + off, op[j] = a->out + off;
        if (lim) lim[j] = rr->lim;
        if (lo) lo[j] = a->window > 0 && rr->pos - a->window + 1 > 0 ? rr->pos - a->window + 1 : 0;
    }
    return nq;
}

/* out[j] = acc[j] · (1/l[j]) of a merged partial result, as the kernels
 * write it; with sinks, query j's sink joins l first (as one more score,
 * base 2, whose value is zero: the running max moves to it if it is larger,
 * as ggml's soft_max and flash attention fold it in). s is scratch. */
static void write_out(const att_task *t, const att_unit *un, float *s, float *const *op, int nq, int hd) {
    const float *sinks = t->a->sinks;
    for (int j = 0; j < nq; j++) {
        float *acc = s + 2 * NQM + (size_t)j * hd, l = s[NQM + j];
        if (sinks) {
            const float m = s[j], z = (float)(sinks[t->heads[un->h0 + j % un->nh]] * 1.4426950408889634);
            if (z > m) {
                const float r = exp2f(m - z);
                for (int d = 0; d < hd; d++) acc[d] *= r;
                l = l * r + 1.0f;
            } else
                l += exp2f(z - m);
        }
        loom_attn_finish(acc, l, op[j], hd);
    }
}

static void att_worker(void *ctx, int ith, int nth) {
    att_task *t = ctx;
    const loom_attention_args *a = t->a;
    const int bt = loom_kv_config_of(a->kv)->block_tokens, hd = a->head_dim;
    float *base = slice_of(t->scratch, &t->L, ith);
    float *qs = base + t->L.q, *acc = base + t->L.acc, *m = base + t->L.small + NQM, *l = m + NQM;
    int32_t *lim = (int32_t *)(base + t->L.small), *lo = t->a->window > 0 ? lim + 3 * NQM : NULL;
    int local = 0;
    for (;;) {
        int job = nth == 1 ? local++ : atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        if (job >= t->n_jobs) break;
        const att_unit *un;
        int seg = 0;
        if (t->spread) { /* the unit whose segments hold this job */
            int lo = 0, hi = t->n_units - 1;
            while (lo < hi) {
                const int mid = (lo + hi + 1) / 2;
                if (t->units[mid].job0 <= job) lo = mid;
                else hi = mid - 1;
            }
            un = &t->units[lo], seg = job - un->job0;
        } else {
            un = &t->units[job];
        }
        const float *qp[NQM];
        float *op[NQM];
        const int nq = unit_queries(t, un, qp, op, lim, lo), P = segs_of(t, un, bt);
        loom_attn_unit u = t->proto;
        u.kvh = un->kvh, u.table = loom_kv_table(a->kv, t->rows[un->r0].seq), u.nq = nq;
        u.p_begin = 0, u.p_end = un->len, u.p_pf = un->len;
        u.qp = qp, u.out = op, u.lim = lim, u.lo = lo, u.q = qs, u.m = m, u.l = l, u.acc = acc, u.work = base + t->L.work;
        if (P == 1 && !a->sinks) { /* one segment: the kernel writes the output (sinks: write_out does) */
            t->kernel(&u);
            continue;
        }
        int lo_min = 0; /* sliding windows: segments before every query's window are skipped */
        for (int j = 0; lo && j < nq; j++) lo_min = j == 0 || lo[j] < lo_min ? lo[j] : lo_min;
        const int s0 = t->spread ? seg : 0, s1 = t->spread ? seg + 1 : P;
        for (int sg = s0; sg < s1; sg++) {
            float *s = t->spread ? job_slot(t, job) : slot_at(t, ith, sg == 0 ? 0 : 1);
            loom_attn_seg_range(sg, un->len, bt, t->seg_blocks, &u.p_begin, &u.p_end);
            u.out = NULL, u.m = s, u.l = s + NQM, u.acc = s + 2 * NQM;
            if (u.p_end <= lo_min) { /* no query sees this segment: an empty partial result (merges skip it) */
                for (int j = 0; j < nq; j++) s[j] = -INFINITY, s[NQM + j] = 0.0f;
                continue;
            }
            t->kernel(&u);
            if (!t->spread && sg > 0) merge_into(slot_at(t, ith, 0), s, nq, hd);
        }
        if (!t->spread) write_out(t, un, slot_at(t, ith, 0), op, nq, hd);
    }
}

/* Spread: every unit's segments, merged in order, then the outputs. */
static void merge_spread(const att_task *t) {
    const int bt = loom_kv_config_of(t->a->kv)->block_tokens, hd = t->a->head_dim;
    for (int ui = 0; ui < t->n_units; ui++) {
        const att_unit *un = &t->units[ui];
        const int P = segs_of(t, un, bt);
        if (P == 1 && !t->a->sinks) continue;
        const float *qp[NQM];
        float *op[NQM];
        const int nq = unit_queries(t, un, qp, op, NULL, NULL);
        float *first = job_slot(t, un->job0);
        for (int p = 1; p < P; p++) merge_into(first, job_slot(t, un->job0 + p), nq, hd);
        write_out(t, un, first, op, nq, hd);
    }
}

void loom_attention_compute(const loom_attention_args *a, loom_pool *pool, float *scratch) {
    if (a->n < 1) return;
    const loom_kv_config *kc = loom_kv_config_of(a->kv);
    const int nth = loom_pool_size(pool), hd = a->head_dim;
    att_task t = {.a = a, .scratch = scratch, .L = layout_of(a->n_q, a->n_kv, hd, a->n)};
    float *s0 = slice_of(scratch, &t.L, 0);
    row_ref *rows = (row_ref *)(s0 + t.L.rows);
    int32_t *heads = (int32_t *)(s0 + t.L.heads);
    att_unit *units = (att_unit *)(s0 + t.L.units);
    t.n_units = plan_units(a, rows, heads, units);
    t.rows = rows, t.heads = heads + a->n_kv + 1, t.units = units;
    t.seg_blocks = seg_blocks_of(kc);
    /* few units for the threads (decode of few sequences): a job per
     * segment, so long contexts spread over the threads (flash-decoding);
     * otherwise a job per unit. Either way the same segments are merged in
     * the same order: the choice changes the speed, never a result. */
    t.spread = nth > 1 && t.n_units < 2 * nth;
    t.n_jobs = t.n_units;
    if (t.spread) {
        int jobs = 0;
        for (int i = 0; i < t.n_units; i++) units[i].job0 = jobs, jobs += segs_of(&t, &units[i], kc->block_tokens);
        t.n_jobs = jobs; /* <= (2 nth - 1) SEG_MAX_PARTS < nth PART_SLOTS */
    }
    const uint8_t *k0 = loom_kv_k_block(a->kv, a->layer, 0), *v0 = loom_kv_v_block(a->kv, a->layer, 0);
    t.proto = (loom_attn_unit){.k = k0,
                               .v = v0,
                               /* blocks of a layer are equally spaced (kv_cache.c) */
                               .block_bytes = (size_t)((const uint8_t *)loom_kv_k_block(a->kv, a->layer, 1) - k0),
                               .block_tokens = kc->block_tokens,
                               .head_dim = hd,
                               .f16 = kc->type == LOOM_TYPE_F16,
                               .q8 = kc->type == LOOM_TYPE_Q8_0,
                               /* scores in base 2: log2(e)·scale, scale 1/√d unless given */
                               .qscale = (float)(1.4426950408889634 * (a->scale > 0 ? a->scale : 1 / sqrt((double)hd))),
                               .softcap = a->softcap > 0 ? (float)(a->softcap * 1.4426950408889634) : 0.0f};
    const loom_kernels *K = loom_kernels_get();
    while (hd % K->attn_head_multiple) K = K->lower; /* scalar takes every head size */
    t.kernel = K->attn_unit;
    atomic_init(&t.next, 0);
    loom_pool_run(pool, att_worker, &t);
    if (t.spread) merge_spread(&t);
}
