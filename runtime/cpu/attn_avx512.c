/* runtime/cpu/attn_avx512.c — one attention work unit, 16 floats per vector
 * (head_dim a multiple of 16; method in runtime/attention.h).
 *
 * A tile is 16 key positions of one block. Scores: for each dimension d, one
 * (masked) load of the transposed keys gives d for 16 positions, and every
 * query adds q[d] · that vector (embedded-broadcast FMAs): nq × T registers
 * of scores for T tiles at once (T > 1 when nq is small, so enough FMA
 * chains are in flight). Values: for each position, CB vectors of its row
 * times each query's probability, nq × CB accumulators (a cache without
 * value blocks, whose values are its keys: vacc_keys). The kernels are
 * instantiated per nq (1..16) and KV type (KIND: F32, F16, Q8_0, whose
 * int8 elements are converted and times their scale vector — 16 positions'
 * scales of 32 keys' dimensions, or one per 32 of a value row — once per
 * load, for all the unit's queries). */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/cpu/attn_walk.h"
#include "runtime/cpu/vmath.h"

#define TILE LOOM_ATTN_TILE
#define NQM LOOM_ATTN_NQ_MAX
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* Tiles per score pass and value chunks per pass, by query count: enough
 * independent FMA chains, at most ~25 of the 32 registers. */
#define T_OF(nq) ((nq) <= 3 ? 4 : (nq) <= 8 ? 2 : 1)
#define CB_OF(nq) ((nq) <= 5 ? 4 : (nq) <= 7 ? 3 : (nq) <= 11 ? 2 : 1)

void loom_avx512_f16_row(const float *src, uint16_t *dst, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

void loom_avx512_exp2(const float *x, float *y, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, loom_exp2_16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, loom_exp2_16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

/* c[k] lane j = r[j] lane k: a 16×16 transpose in registers (unpack,
 * shuffle within 128-bit lanes, then across lanes). */
INLINE void transpose16(__m512 r[16], __m512 c[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i + k], 128-bit lane L: element 4L + k of rows 4i .. 4i+3 */
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        const __m512 x0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), x1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
        const __m512 y0 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88),
                     y1 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
        c[k] = _mm512_shuffle_f32x4(x0, y0, 0x88);
        c[4 + k] = _mm512_shuffle_f32x4(x1, y1, 0x88);
        c[8 + k] = _mm512_shuffle_f32x4(x0, y0, 0xdd);
        c[12 + k] = _mm512_shuffle_f32x4(x1, y1, 0xdd);
    }
}

/* u->q[d·16 + j] = qp[j][d] · qscale; rows past nq are zero. */
static void load_queries(const loom_attn_unit *u, int hd) {
    const __m512 sc = _mm512_set1_ps(u->qscale);
    for (int d0 = 0; d0 < hd; d0 += 16) {
        __m512 r[16], c[16];
        for (int j = 0; j < 16; j++) r[j] = j < u->nq ? _mm512_mul_ps(_mm512_loadu_ps(u->qp[j] + d0), sc) : _mm512_setzero_ps();
        transpose16(r, c);
        for (int d = 0; d < 16; d++) _mm512_store_ps(u->q + (size_t)(d0 + d) * NQM, c[d]);
    }
}

enum { KF32, KF16, KQ8 }; /* element kinds */

typedef struct {
    const void *k;  /* transposed keys of the tile: element (d, t) at index d·bt + t */
    const void *v;  /* values of the tile: element (t, d) at index t·hd + d */
    const uint16_t *ksc, *vsc; /* Q8_0 scales of the tile: key (d/32, t) at ksc[(d/32)·bt + t], value (t, d/32) at
                                * vsc[t·hd/32 + d/32] */
    int base, nt;   /* position of slot 0; slots in the unit's range */
    __mmask16 load; /* slots inside the block (safe to load) */
} tile;

/* Key row d (16 positions) of tile t as floats; sc: its Q8_0 scales. */
INLINE __m512 key_row(const int KIND, const tile *t, int d, int bt, __m512 sc) {
    if (KIND == KQ8)
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(t->load, (const int8_t *)t->k + (size_t)d * bt))), sc);
    return KIND == KF16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(t->load, (const uint16_t *)t->k + (size_t)d * bt))
                        : _mm512_maskz_loadu_ps(t->load, (const float *)t->k + (size_t)d * bt);
}
/* The Q8_0 scales of key dimensions [32g, 32g + 32) of tile t's positions. */
INLINE __m512 key_scales(const tile *t, int g, int bt) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(t->load, t->ksc + (size_t)g * bt));
}

/* S[(i·NQ + j)·16 + t] = q_j · k_t for T tiles i; Q[d·NQM + j]. */
INLINE void scores_k(const int NQ, const int T, const int KIND, const float *Q, int hd, int bt, const tile *tl,
                     float *S) {
    __m512 s[4][NQM], sc[4];
    UNROLL for (int i = 0; i < T; i++) {
        sc[i] = _mm512_setzero_ps();
        UNROLL for (int j = 0; j < NQ; j++) s[i][j] = _mm512_setzero_ps();
    }
    for (int d = 0; d < hd; d++) {
        __m512 kv[4];
        if (KIND == KQ8 && d % 32 == 0) UNROLL for (int i = 0; i < T; i++) sc[i] = key_scales(&tl[i], d / 32, bt);
        UNROLL for (int i = 0; i < T; i++) kv[i] = key_row(KIND, &tl[i], d, bt, sc[i]);
        const float *qd = Q + (size_t)d * NQM;
        UNROLL for (int j = 0; j < NQ; j++) {
            const __m512 q = _mm512_set1_ps(qd[j]);
            UNROLL for (int i = 0; i < T; i++) s[i][j] = _mm512_fmadd_ps(q, kv[i], s[i][j]);
        }
    }
    UNROLL for (int i = 0; i < T; i++) UNROLL for (int j = 0; j < NQ; j++)
        _mm512_store_ps(S + (size_t)(i * NQ + j) * TILE, s[i][j]);
}

/* acc[j][c0·16 .. (c0+CB)·16) += Σ_i Σ_{t < nv[i]} P[(i·NQ + j)·16 + t] · V_i[t][same]
 * over the ntl tiles of a chunk. */
INLINE void vacc_k(const int NQ, const int CB, const int KIND, const tile *tl, const int *nv, int ntl, int hd, int c0,
                   const float *P, float *acc) {
    __m512 a[NQM][4];
    UNROLL for (int j = 0; j < NQ; j++) UNROLL for (int c = 0; c < CB; c++)
        a[j][c] = _mm512_load_ps(acc + (size_t)j * hd + (size_t)(c0 + c) * 16);
    for (int i = 0; i < ntl; i++) {
        const float *Pi = P + (size_t)i * NQ * TILE;
        for (int t = 0; t < nv[i]; t++) {
            __m512 vv[4];
            UNROLL for (int c = 0; c < CB; c++) {
                const size_t o = (size_t)t * hd + (size_t)(c0 + c) * 16;
                if (KIND == KQ8)
                    vv[c] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)tl[i].v + o)))),
                                          _mm512_set1_ps(_cvtsh_ss(tl[i].vsc[(size_t)t * (hd / 32) + (size_t)(c0 + c) / 2])));
                else
                    vv[c] = KIND == KF16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)tl[i].v + o)))
                                         : _mm512_loadu_ps((const float *)tl[i].v + o);
            }
            UNROLL for (int j = 0; j < NQ; j++) {
                const __m512 p = _mm512_set1_ps(Pi[j * TILE + t]);
                UNROLL for (int c = 0; c < CB; c++) a[j][c] = _mm512_fmadd_ps(p, vv[c], a[j][c]);
            }
        }
    }
    UNROLL for (int j = 0; j < NQ; j++) UNROLL for (int c = 0; c < CB; c++)
        _mm512_store_ps(acc + (size_t)j * hd + (size_t)(c0 + c) * 16, a[j][c]);
}

typedef void (*scores_fn)(int kind, int many, const float *Q, int hd, int bt, const tile *tl, float *S);
typedef void (*vacc_fn)(int kind, const tile *tl, const int *nv, int ntl, int hd, const float *P, float *acc);

/* Per query count NQ: scores of T_OF(NQ) tiles (many) or of one, and the
 * value accumulation of a chunk over all of head_dim. */
#define SCORES_KIND(NQ, KIND)                                                                                      \
    if (kind == KIND) {                                                                                            \
        if (many) scores_k(NQ, T_OF(NQ), KIND, Q, hd, bt, tl, S);                                                  \
        else scores_k(NQ, 1, KIND, Q, hd, bt, tl, S);                                                              \
        return;                                                                                                    \
    }
#define VACC_KIND(NQ, KIND)                                                                                        \
    if (kind == KIND) {                                                                                            \
        for (; c + CB_OF(NQ) <= nch; c += CB_OF(NQ)) vacc_k(NQ, CB_OF(NQ), KIND, tl, nv, ntl, hd, c, P, acc);      \
        for (; c < nch; c++) vacc_k(NQ, 1, KIND, tl, nv, ntl, hd, c, P, acc);                                      \
        return;                                                                                                    \
    }
#define KERNELS(NQ)                                                                                                \
    static void scores_##NQ(int kind, int many, const float *Q, int hd, int bt, const tile *tl, float *S) {       \
        SCORES_KIND(NQ, KF16)                                                                                      \
        SCORES_KIND(NQ, KQ8)                                                                                       \
        SCORES_KIND(NQ, KF32)                                                                                      \
    }                                                                                                              \
    static void vacc_##NQ(int kind, const tile *tl, const int *nv, int ntl, int hd, const float *P, float *acc) {  \
        const int nch = hd / 16;                                                                                   \
        int c = 0;                                                                                                 \
        VACC_KIND(NQ, KF16)                                                                                        \
        VACC_KIND(NQ, KQ8)                                                                                         \
        VACC_KIND(NQ, KF32)                                                                                        \
    }
KERNELS(1)
KERNELS(2)
KERNELS(3)
KERNELS(4)
KERNELS(5)
KERNELS(6)
KERNELS(7)
KERNELS(8)
KERNELS(9)
KERNELS(10)
KERNELS(11)
KERNELS(12)
KERNELS(13)
KERNELS(14)
KERNELS(15)
KERNELS(16)

static const scores_fn scores_tab[NQM + 1] = {NULL,      scores_1,  scores_2,  scores_3,  scores_4,  scores_5,
                                              scores_6,  scores_7,  scores_8,  scores_9,  scores_10, scores_11,
                                              scores_12, scores_13, scores_14, scores_15, scores_16};
static const vacc_fn vacc_tab[NQM + 1] = {NULL,    vacc_1,  vacc_2,  vacc_3,  vacc_4,  vacc_5,  vacc_6,
                                          vacc_7,  vacc_8,  vacc_9,  vacc_10, vacc_11, vacc_12, vacc_13,
                                          vacc_14, vacc_15, vacc_16};

/* cap·tanh(s/cap) = cap·(1 - 2/(e^(2s/cap) + 1)), e^ by the softmax's 2^x */
static inline __attribute__((always_inline)) __m512 softcap16(__m512 s, float cap) {
    const __m512 one = _mm512_set1_ps(1.0f), lim = _mm512_set1_ps(126.0f);
    const __m512 x = _mm512_mul_ps(s, _mm512_set1_ps(2.0f * 1.4426950408889634f / cap));
    const __m512 e = loom_exp2_16(_mm512_max_ps(_mm512_min_ps(x, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim)));
    const __m512 t = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    return _mm512_mul_ps(_mm512_set1_ps(cap), t);
}

typedef struct {
    const loom_attn_unit *u;
    int hd, bt, kind, nq;
    int min_lim;         /* the smallest lim: positions up to it are seen by every query */
    int max_lo;          /* the largest lo: positions from it on are seen by every query */
    float m[NQM];
    float *lsum, *S, *P; /* (nq, 16) running sums per lane; (CHUNK, nq, 16) scores; probabilities */
    /* a cache whose values are its keys (v NULL; vacc_keys): */
    float *accT;         /* (hd, 16) the outputs, lane j query j's */
    float *PT, *KB;      /* (CHUNK, 16, 16) probabilities, lane j query j's; (CHUNK, DG, 16) F16/Q8_0 keys as floats */
    float alpha[NQM];    /* this chunk's rescale per query, 1 if none */
} state;

enum { DG = 8 }; /* dimensions per pass of vacc_keys: its FMA chains (a divisor of 32: one Q8_0 scale each) */
_Static_assert(DG <= 16 && NQM == 16, "KB: (CHUNK, DG, 16) floats of the work area's last (CHUNK, 16, TILE)");

/* The value step of a cache whose values are its keys (v NULL). Its keys
 * are transposed (dimension-major), so the queries go in the lanes:
 * accT[d] lane j += Σ_t P_j[t] · K[d][t], one FMA of the tile's
 * probabilities transposed (PT[t]: lane j query j's) by the broadcast key
 * element per (d, t): as many FMAs as the row-major step makes for 16
 * queries, no transposition of the keys (which cost 1.45x: shuffles, and
 * a tile of rows past L1), and the same products summed in the same
 * order, so the outputs equal those of stored values bit for bit. F16 keys
 * are converted into floats to broadcast, DG rows at a time: ~10 % slower
 * than stored values while the cache sits in L2, faster from DRAM (half
 * the bytes). */
static void vacc_keys(const state *st, const tile *tl, const int *nv, int ntl, int rescale) {
    const int hd = st->hd, nq = st->nq, bt = st->bt;
    const __m512 al = _mm512_loadu_ps(st->alpha); /* rescale: accT's lanes times their query's alpha */
    for (int i = 0; i < ntl; i++) {
        if (!nv[i]) continue;
        __m512 r[16], c[16];
        for (int j = 0; j < 16; j++) r[j] = j < nq ? _mm512_load_ps(st->P + (size_t)(i * nq + j) * TILE) : _mm512_setzero_ps();
        transpose16(r, c);
        for (int t = 0; t < 16; t++) _mm512_store_ps(st->PT + (size_t)(i * 16 + t) * 16, c[t]);
    }
    for (int d0 = 0; d0 < hd; d0 += DG) {
        __m512 a[DG];
        UNROLL for (int d = 0; d < DG; d++) a[d] = _mm512_load_ps(st->accT + (size_t)(d0 + d) * 16);
        if (rescale) UNROLL for (int d = 0; d < DG; d++) a[d] = _mm512_mul_ps(a[d], al);
        const int conv = st->kind != KF32;
        for (int i = 0; conv && i < ntl; i++) /* F16 or Q8_0 keys as floats (a store in the score step instead: no faster) */
            if (nv[i]) {
                const __m512 sc = st->kind == KQ8 ? key_scales(&tl[i], d0 / 32, bt) : _mm512_setzero_ps(); /* DG | 32 */
                UNROLL for (int d = 0; d < DG; d++) _mm512_store_ps(st->KB + (size_t)(i * DG + d) * 16,
                                                                    st->kind == KQ8 ? key_row(KQ8, &tl[i], d0 + d, bt, sc)
                                                                                    : key_row(KF16, &tl[i], d0 + d, bt, sc));
            }
        for (int i = 0; i < ntl; i++) { /* key (d, t) at k[d·ks + t] */
            const float *k = conv ? st->KB + (size_t)i * DG * 16 : (const float *)tl[i].k + (size_t)d0 * bt;
            const size_t ks = conv ? 16 : (size_t)bt;
            for (int t = 0; t < nv[i]; t++) {
                const __m512 p = _mm512_load_ps(st->PT + (size_t)(i * 16 + t) * 16);
                UNROLL for (int d = 0; d < DG; d++) a[d] = _mm512_fmadd_ps(p, _mm512_set1_ps(k[d * ks + t]), a[d]);
            }
        }
        UNROLL for (int d = 0; d < DG; d++) _mm512_store_ps(st->accT + (size_t)(d0 + d) * 16, a[d]);
    }
}

/* One online-softmax step over a chunk of ntl tiles: scores, the new
 * running max per query (rescaling what was summed under the old one),
 * probabilities, then the values. */
static void run_chunk(state *st, const tile *tl, int ntl) {
    const loom_attn_unit *u = st->u;
    const int nq = st->nq, hd = st->hd, T = T_OF(nq);
    for (int i = 0; i < ntl; i += T) {
        if (i + T <= ntl) scores_tab[nq](st->kind, 1, u->q, hd, st->bt, tl + i, st->S + (size_t)i * nq * TILE);
        else
            for (int k = i; k < ntl; k++) scores_tab[nq](st->kind, 0, u->q, hd, st->bt, tl + k, st->S + (size_t)k * nq * TILE);
    }
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    int nv[LOOM_ATTN_CHUNK] = {0}; /* slots any query sees, per tile */
    int rescale = 0;               /* accT's lanes to rescale (st->alpha) */
    /* every query sees all 16 slots of every tile (all but the causal edge) */
    int open = tl[ntl - 1].base + TILE - 1 <= st->min_lim && tl[0].base >= st->max_lo;
    for (int i = 0; i < ntl; i++) open &= tl[i].nt == TILE;
    if (open)
        for (int i = 0; i < ntl; i++) nv[i] = TILE;
    for (int j = 0; j < nq; j++) {
        __m512 s[LOOM_ATTN_CHUNK], mx = ninf;
        for (int i = 0; i < ntl; i++) {
            s[i] = _mm512_load_ps(st->S + (size_t)(i * nq + j) * TILE);
            if (u->softcap > 0) s[i] = softcap16(s[i], u->softcap);
            if (!open) { /* slots [c0, c) are seen */
                int c = u->lim[j] - tl[i].base + 1;
                c = c < 0 ? 0 : c > tl[i].nt ? tl[i].nt : c;
                int c0 = u->lo ? u->lo[j] - tl[i].base : 0;
                c0 = c0 < 0 ? 0 : c0 > c ? c : c0;
                nv[i] = c > nv[i] ? c : nv[i];
                const unsigned seen = (c >= 16 ? 0xffffu : (1u << c) - 1u) & ~((1u << c0) - 1u);
                s[i] = _mm512_mask_blend_ps((__mmask16)seen, ninf, s[i]);
            }
            mx = _mm512_max_ps(mx, s[i]);
        }
        const float mt = _mm512_reduce_max_ps(mx);
        float *lj = st->lsum + (size_t)j * TILE;
        if (mt > st->m[j]) {
            if (st->m[j] != -INFINITY) { /* rescale what was summed under the old max */
                const __m512 alpha = _mm512_set1_ps(_mm512_cvtss_f32(loom_exp2_16(_mm512_set1_ps(st->m[j] - mt))));
                float *acc = u->acc + (size_t)j * hd;
                if (u->v)
                    for (int d = 0; d < hd; d += 16) _mm512_store_ps(acc + d, _mm512_mul_ps(_mm512_load_ps(acc + d), alpha));
                else
                    st->alpha[j] = _mm512_cvtss_f32(alpha), rescale = 1; /* lane j of accT, below */
                _mm512_store_ps(lj, _mm512_mul_ps(_mm512_load_ps(lj), alpha));
            }
            st->m[j] = mt;
        }
        __m512 l = _mm512_load_ps(lj);
        const __m512 mj = _mm512_set1_ps(st->m[j]);
        for (int i = 0; i < ntl; i++) {
            const __m512 p = st->m[j] == -INFINITY ? _mm512_setzero_ps() : loom_exp2_16(_mm512_sub_ps(s[i], mj));
            l = _mm512_add_ps(l, p);
            _mm512_store_ps(st->P + (size_t)(i * nq + j) * TILE, p);
        }
        _mm512_store_ps(lj, l);
    }
    int any = 0;
    for (int i = 0; i < ntl; i++) any |= nv[i];
    if (!any) return; /* (nor a rescale: a max grows only where a slot is seen) */
    if (u->v) {
        vacc_tab[nq](st->kind, tl, nv, ntl, hd, st->P, u->acc);
        return;
    }
    vacc_keys(st, tl, nv, ntl, rescale); /* rescaling accT first (alpha 1: unchanged, exactly) */
    for (int j = 0; rescale && j < nq; j++) st->alpha[j] = 1.0f;
}

void loom_avx512_attn_unit(const loom_attn_unit *u) {
    state st = {.u = u, .hd = u->head_dim, .bt = u->block_tokens, .kind = u->q8 ? KQ8 : u->f16 ? KF16 : KF32, .nq = u->nq};
    const int hd = st.hd, bt = st.bt, nq = st.nq;
    const size_t es = u->q8 ? 1 : u->f16 ? 2 : 4, nel = (size_t)hd * bt; /* Q8_0: the scales follow nel codes */
    st.lsum = u->work, st.S = st.lsum + NQM * TILE, st.P = st.S + LOOM_ATTN_CHUNK * NQM * TILE;
    st.accT = st.P + LOOM_ATTN_CHUNK * NQM * TILE, st.PT = st.S, st.KB = st.accT + 2 * (size_t)hd * TILE;
    load_queries(u, hd);
    st.min_lim = u->lim[0];
    for (int j = 1; j < nq; j++) st.min_lim = u->lim[j] < st.min_lim ? u->lim[j] : st.min_lim;
    st.max_lo = 0;
    for (int j = 0; u->lo && j < nq; j++) st.max_lo = u->lo[j] > st.max_lo ? u->lo[j] : st.max_lo;
    for (int j = 0; j < nq; j++) st.m[j] = -INFINITY, _mm512_store_ps(st.lsum + (size_t)j * TILE, _mm512_setzero_ps());
    memset(u->v ? u->acc : st.accT, 0, (size_t)(u->v ? nq : 16) * hd * sizeof(float));
    for (int j = 0; j < NQM; j++) st.alpha[j] = 1.0f;
    tile tl[LOOM_ATTN_CHUNK];
    int ntl = 0;
    const int pf_blocks = loom_attn_pf_blocks(bt); /* a chunk ahead */
    for (int p0 = u->p_begin; p0 < u->p_end; p0 += bt) {
        const uint8_t *kb, *vb;
        loom_attn_block(u, p0, pf_blocks, &kb, &vb);
        for (int t0 = 0; t0 < bt && p0 + t0 < u->p_end; t0 += TILE) {
            int room;
            const int nt = loom_attn_tile_len(u, p0, t0, &room);
            tl[ntl++] = (tile){kb + (size_t)t0 * es, vb ? vb + (size_t)t0 * hd * es : NULL,
                               (const uint16_t *)(kb + nel) + t0, vb ? (const uint16_t *)(vb + nel) + (size_t)t0 * (hd / 32) : NULL,
                               p0 + t0, nt, (__mmask16)(room >= 16 ? 0xffffu : (1u << room) - 1u)};
            if (ntl == LOOM_ATTN_CHUNK) run_chunk(&st, tl, ntl), ntl = 0;
        }
    }
    if (ntl) run_chunk(&st, tl, ntl);
    for (int d0 = 0; !u->v && d0 < hd; d0 += 16) { /* accT into acc's rows */
        __m512 r[16], c[16];
        for (int d = 0; d < 16; d++) r[d] = _mm512_load_ps(st.accT + (size_t)(d0 + d) * 16);
        transpose16(r, c);
        for (int j = 0; j < nq; j++) _mm512_store_ps(u->acc + (size_t)j * hd + d0, c[j]);
    }
    for (int j = 0; j < nq; j++) {
        const float l = _mm512_reduce_add_ps(_mm512_load_ps(st.lsum + (size_t)j * TILE));
        u->m[j] = st.m[j], u->l[j] = l;
        if (u->out) {
            const __m512 inv = _mm512_set1_ps(1.0f / l);
            const float *acc = u->acc + (size_t)j * hd;
            for (int d = 0; d < hd; d += 16) _mm512_storeu_ps(u->out[j] + d, _mm512_mul_ps(_mm512_load_ps(acc + d), inv));
        }
    }
}
