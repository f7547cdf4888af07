/* runtime/cpu/attn_avx2.c — one attention work unit, 8 floats per vector,
 * F16 through F16C (head_dim a multiple of 8; method in
 * runtime/attention.h).
 *
 * A tile is 16 key positions of one block (two vectors). Scores: queries in
 * groups of up to 6 (12 accumulators of the 16 registers), each dimension
 * one load of the transposed keys per half tile and one broadcast per query.
 * Values: queries in groups of up to 12, CB vectors of each position's row
 * at a time (a cache whose values are its keys: vacc_keys, the queries in
 * the lanes). A tile that would read past its block (block_tokens not a
 * multiple of 16) is first copied, zero-padded, into the work area. Q8_0
 * elements are converted and times their scales once per load (as in
 * attn_avx512.c). */
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

#define QG_MAX 6  /* queries per score pass */
#define QV_MAX 12 /* queries per value pass */
#define CB_OF(nq) ((nq) <= 2 ? 4 : (nq) <= 3 ? 3 : (nq) <= 6 ? 2 : 1)

enum { KF32, KF16, KQ8 }; /* element kinds */

/* 8 int8 at p as floats. */
INLINE __m256 i8x8(const void *p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p))); }

void loom_avx2_f16_row(const float *src, uint16_t *dst, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float tf[8] = {0};
        uint16_t th[8];
        memcpy(tf, src + i, (size_t)(n - i) * sizeof(float));
        _mm_storeu_si128((__m128i *)th, _mm256_cvtps_ph(_mm256_loadu_ps(tf), _MM_FROUND_TO_NEAREST_INT));
        memcpy(dst + i, th, (size_t)(n - i) * sizeof(uint16_t));
    }
}

void loom_avx2_exp2(const float *x, float *y, int n) {
    for (int i = 0; i < n; i += 8) {
        float t[8] = {0};
        const int m = n - i < 8 ? n - i : 8;
        memcpy(t, x + i, (size_t)m * sizeof(float));
        _mm256_storeu_ps(t, loom_exp2_8(_mm256_loadu_ps(t)));
        memcpy(y + i, t, (size_t)m * sizeof(float));
    }
}

INLINE float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Key row d (16 positions: two halves) as floats; Q8_0 times sc0, sc1. */
INLINE void key_row(const int KIND, const void *k, int ks, int d, __m256 sc0, __m256 sc1, __m256 *k0, __m256 *k1) {
    if (KIND == KQ8) {
        const int8_t *kd = (const int8_t *)k + (size_t)d * ks;
        *k0 = _mm256_mul_ps(i8x8(kd), sc0), *k1 = _mm256_mul_ps(i8x8(kd + 8), sc1);
    } else if (KIND == KF16) {
        const uint16_t *kd = (const uint16_t *)k + (size_t)d * ks;
        *k0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)kd));
        *k1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(kd + 8)));
    } else {
        const float *kd = (const float *)k + (size_t)d * ks;
        *k0 = _mm256_loadu_ps(kd), *k1 = _mm256_loadu_ps(kd + 8);
    }
}
/* The Q8_0 scales of key dimensions [32g, 32g + 32), both halves. */
INLINE void key_scales(const uint16_t *ksc, int ks, int g, __m256 *sc0, __m256 *sc1) {
    *sc0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ksc + (size_t)g * ks)));
    *sc1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ksc + (size_t)g * ks + 8)));
}

/* S[j·16 + t] = q_j · k_t for NQ queries (Q[d·NQM + j]); keys element
 * (d, t) at index d·ks + t (Q8_0 scales (d/32, t) at ksc[(d/32)·ks + t]). */
INLINE void scores_k(const int NQ, const int KIND, const float *Q, int hd, const void *k, int ks, const uint16_t *ksc,
                     float *S) {
    __m256 s0[QG_MAX], s1[QG_MAX], sc0 = _mm256_setzero_ps(), sc1 = _mm256_setzero_ps();
    UNROLL for (int j = 0; j < NQ; j++) s0[j] = _mm256_setzero_ps(), s1[j] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 k0, k1;
        if (KIND == KQ8 && d % 32 == 0) key_scales(ksc, ks, d / 32, &sc0, &sc1);
        key_row(KIND, k, ks, d, sc0, sc1, &k0, &k1);
        const float *qd = Q + (size_t)d * NQM;
        UNROLL for (int j = 0; j < NQ; j++) {
            const __m256 q = _mm256_broadcast_ss(qd + j);
            s0[j] = _mm256_fmadd_ps(q, k0, s0[j]);
            s1[j] = _mm256_fmadd_ps(q, k1, s1[j]);
        }
    }
    UNROLL for (int j = 0; j < NQ; j++) _mm256_store_ps(S + j * TILE, s0[j]), _mm256_store_ps(S + j * TILE + 8, s1[j]);
}

/* acc[j][c0·8 .. (c0+CB)·8) += Σ_i Σ_{t < nv[i]} P[i·ps + j·16 + t] · V_i[t][same]
 * for NQ queries (acc rows hd apart) over the ntl tiles of a chunk (Q8_0
 * scales (t, d/32) at vsc[i][t·hd/32 + d/32]). */
INLINE void vacc_k(const int NQ, const int CB, const int KIND, const void *const *v, const uint16_t *const *vsc,
                   const int *nv, int ntl, int hd, int c0, const float *P, int ps, float *acc) {
    __m256 a[QV_MAX][4];
    UNROLL for (int j = 0; j < NQ; j++) UNROLL for (int c = 0; c < CB; c++)
        a[j][c] = _mm256_load_ps(acc + (size_t)j * hd + (size_t)(c0 + c) * 8);
    for (int i = 0; i < ntl; i++) {
        const float *Pi = P + (size_t)i * ps;
        for (int t = 0; t < nv[i]; t++) {
            __m256 vv[4];
            UNROLL for (int c = 0; c < CB; c++) {
                const size_t o = (size_t)t * hd + (size_t)(c0 + c) * 8;
                if (KIND == KQ8)
                    vv[c] = _mm256_mul_ps(i8x8((const int8_t *)v[i] + o),
                                          _mm256_set1_ps(_cvtsh_ss(vsc[i][(size_t)t * (hd / 32) + (size_t)(c0 + c) / 4])));
                else
                    vv[c] = KIND == KF16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)v[i] + o)))
                                         : _mm256_loadu_ps((const float *)v[i] + o);
            }
            UNROLL for (int j = 0; j < NQ; j++) {
                const __m256 p = _mm256_broadcast_ss(Pi + j * TILE + t);
                UNROLL for (int c = 0; c < CB; c++) a[j][c] = _mm256_fmadd_ps(p, vv[c], a[j][c]);
            }
        }
    }
    UNROLL for (int j = 0; j < NQ; j++) UNROLL for (int c = 0; c < CB; c++)
        _mm256_store_ps(acc + (size_t)j * hd + (size_t)(c0 + c) * 8, a[j][c]);
}

typedef void (*scores_fn)(int kind, const float *Q, int hd, const void *k, int ks, const uint16_t *ksc, float *S);
typedef void (*vacc_fn)(int kind, const void *const *v, const uint16_t *const *vsc, const int *nv, int ntl, int hd,
                        const float *P, int ps, float *acc);

#define SCORES(NQ)                                                                                                 \
    static void scores_##NQ(int kind, const float *Q, int hd, const void *k, int ks, const uint16_t *ksc, float *S) { \
        if (kind == KF16) scores_k(NQ, KF16, Q, hd, k, ks, ksc, S);                                                \
        else if (kind == KQ8) scores_k(NQ, KQ8, Q, hd, k, ks, ksc, S);                                             \
        else scores_k(NQ, KF32, Q, hd, k, ks, ksc, S);                                                             \
    }
#define VACC_KIND(NQ, KIND)                                                                                        \
    if (kind == KIND) {                                                                                            \
        for (; c + CB_OF(NQ) <= nch; c += CB_OF(NQ)) vacc_k(NQ, CB_OF(NQ), KIND, v, vsc, nv, ntl, hd, c, P, ps, acc); \
        for (; c < nch; c++) vacc_k(NQ, 1, KIND, v, vsc, nv, ntl, hd, c, P, ps, acc);                              \
        return;                                                                                                    \
    }
#define VACC(NQ)                                                                                                   \
    static void vacc_##NQ(int kind, const void *const *v, const uint16_t *const *vsc, const int *nv, int ntl, int hd, \
                          const float *P, int ps, float *acc) {                                                    \
        const int nch = hd / 8;                                                                                    \
        int c = 0;                                                                                                 \
        VACC_KIND(NQ, KF16)                                                                                        \
        VACC_KIND(NQ, KQ8)                                                                                         \
        VACC_KIND(NQ, KF32)                                                                                        \
    }
SCORES(1)
SCORES(2)
SCORES(3)
SCORES(4)
SCORES(5)
SCORES(6)
VACC(1)
VACC(2)
VACC(3)
VACC(4)
VACC(5)
VACC(6)
VACC(7)
VACC(8)
VACC(9)
VACC(10)
VACC(11)
VACC(12)

static const scores_fn scores_tab[QG_MAX + 1] = {NULL, scores_1, scores_2, scores_3, scores_4, scores_5, scores_6};
static const vacc_fn vacc_tab[QV_MAX + 1] = {NULL,   vacc_1, vacc_2, vacc_3,  vacc_4,  vacc_5, vacc_6,
                                             vacc_7, vacc_8, vacc_9, vacc_10, vacc_11, vacc_12};

/* c[k] lane j = r[j] lane k: an 8×8 transpose in registers. */
INLINE void transpose8(__m256 r[8], __m256 c[8]) {
    __m256 t[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i + k], 128-bit lane L: element 4L + k of rows 4i .. 4i+3 */
    for (int i = 0; i < 2; i++) {
        r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        c[k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x20);
        c[4 + k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x31);
    }
}

/* u->q[d·16 + j] = qp[j][d] · qscale; rows past nq are zero. */
static void load_queries(const loom_attn_unit *u, int hd) {
    const __m256 sc = _mm256_set1_ps(u->qscale);
    for (int j0 = 0; j0 < u->nq; j0 += 8)
        for (int d0 = 0; d0 < hd; d0 += 8) {
            __m256 r[8], c[8];
            for (int j = 0; j < 8; j++)
                r[j] = j0 + j < u->nq ? _mm256_mul_ps(_mm256_loadu_ps(u->qp[j0 + j] + d0), sc) : _mm256_setzero_ps();
            transpose8(r, c);
            for (int d = 0; d < 8; d++) _mm256_store_ps(u->q + (size_t)(d0 + d) * NQM + j0, c[d]);
        }
}

typedef struct {
    const void *k;  /* transposed keys of the tile: element (d, t) at index d·ks + t */
    const void *v;  /* values of the tile: element (t, d) at index t·hd + d */
    const uint16_t *ksc, *vsc; /* Q8_0 scales: key (d/32, t) at ksc[(d/32)·ks + t], value (t, d/32) at vsc[t·hd/32 + d/32] */
    int ks;         /* key row stride: block_tokens, or 16 when packed */
    int base, nt;   /* position of slot 0; slots in the unit's range */
} tile;

/* cap·tanh(s/cap) = cap·(1 - 2/(e^(2s/cap) + 1)), e^ by the softmax's 2^x */
INLINE __m256 softcap8(__m256 s, float cap) {
    const __m256 one = _mm256_set1_ps(1.0f), lim = _mm256_set1_ps(126.0f);
    const __m256 x = _mm256_mul_ps(s, _mm256_set1_ps(2.0f * 1.4426950408889634f / cap));
    const __m256 e = loom_exp2_8(_mm256_max_ps(_mm256_min_ps(x, lim), _mm256_sub_ps(_mm256_setzero_ps(), lim)));
    const __m256 t = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    return _mm256_mul_ps(_mm256_set1_ps(cap), t);
}

typedef struct {
    const loom_attn_unit *u;
    int hd, kind, nq;
    int min_lim;         /* the smallest lim: positions up to it are seen by every query */
    int max_lo;          /* the largest lo: positions from it on are seen by every query */
    float m[NQM];
    float *lsum, *S, *P; /* (nq, 16) running sums per lane; (CHUNK, nq, 16) scores; probabilities */
    /* a cache whose values are its keys (v NULL; vacc_keys): */
    float *accT;         /* (2, hd, 8) the outputs, lane j of group g query 8g + j's */
    float *PT, *KB;      /* (CHUNK, 16, 2, 8) probabilities, lanes as accT's; (CHUNK, DG, 16) F16/Q8_0 keys as floats */
    float alpha[NQM];    /* this chunk's rescale per query, 1 if none */
} state;

enum { DG = 8 }; /* dimensions per pass of vacc_keys: its FMA chains (a divisor of 32: one Q8_0 scale each) */
_Static_assert(DG <= 16 && NQM == 16, "KB: (CHUNK, DG, 16) floats of the work area's last (CHUNK, 16, TILE)");

/* accT[g][d0 + dr + d] += Σ_i Σ_t PT[i][t][g] · key (d0 + dr + d, t) for
 * d < D and NG lane groups (each key element broadcast once for both);
 * rescale: times alpha first. */
INLINE void kacc_k(const int NG, const int D, const state *st, const tile *tl, const int *nv, int ntl, int d0, int dr,
                   int rescale) {
    const int hd = st->hd;
    __m256 a[2][DG];
    UNROLL for (int g = 0; g < NG; g++) {
        const __m256 al = _mm256_loadu_ps(st->alpha + 8 * g);
        UNROLL for (int d = 0; d < D; d++) {
            a[g][d] = _mm256_load_ps(st->accT + ((size_t)g * hd + d0 + dr + d) * 8);
            if (rescale) a[g][d] = _mm256_mul_ps(a[g][d], al);
        }
    }
    for (int i = 0; i < ntl; i++) { /* key (d, t) at k[d·ks + t] */
        const int conv = st->kind != KF32;
        const float *k = conv ? st->KB + (size_t)(i * DG + dr) * 16 : (const float *)tl[i].k + (size_t)(d0 + dr) * tl[i].ks;
        const size_t ks = conv ? 16 : (size_t)tl[i].ks;
        for (int t = 0; t < nv[i]; t++) {
            __m256 p[2];
            UNROLL for (int g = 0; g < NG; g++) p[g] = _mm256_load_ps(st->PT + ((size_t)(i * 16 + t) * 2 + g) * 8);
            UNROLL for (int d = 0; d < D; d++) {
                const __m256 kv = _mm256_broadcast_ss(k + d * ks + t);
                UNROLL for (int g = 0; g < NG; g++) a[g][d] = _mm256_fmadd_ps(p[g], kv, a[g][d]);
            }
        }
    }
    UNROLL for (int g = 0; g < NG; g++) UNROLL for (int d = 0; d < D; d++)
        _mm256_store_ps(st->accT + ((size_t)g * hd + d0 + dr + d) * 8, a[g][d]);
}

/* The value step of a cache whose values are its keys (v NULL), as
 * attn_avx512.c's: the queries in the lanes (groups of 8), accT[g][d] +=
 * Σ_t PT[t][g] · K[d][t], one FMA per (d, t) by the broadcast key element;
 * bit for bit the sums of stored values. rescale: accT's lanes times their
 * query's alpha first. */
static void vacc_keys(const state *st, const tile *tl, const int *nv, int ntl, int rescale) {
    const int hd = st->hd, nq = st->nq, ng = (nq + 7) / 8;
    for (int i = 0; i < ntl; i++) {
        if (!nv[i]) continue;
        for (int g = 0; g < ng; g++)
            for (int h = 0; h < 16; h += 8) {
                __m256 r[8], c[8];
                for (int j = 0; j < 8; j++)
                    r[j] = 8 * g + j < nq ? _mm256_load_ps(st->P + (size_t)(i * nq + 8 * g + j) * TILE + h) : _mm256_setzero_ps();
                transpose8(r, c);
                for (int t = 0; t < 8; t++) _mm256_store_ps(st->PT + ((size_t)(i * 16 + h + t) * 2 + g) * 8, c[t]);
            }
    }
    for (int d0 = 0; d0 < hd; d0 += DG) {
        for (int i = 0; st->kind != KF32 && i < ntl; i++) /* F16 or Q8_0 keys as floats */
            if (nv[i]) {
                __m256 sc0 = _mm256_setzero_ps(), sc1 = _mm256_setzero_ps(), k0, k1;
                if (st->kind == KQ8) key_scales(tl[i].ksc, tl[i].ks, d0 / 32, &sc0, &sc1); /* DG | 32 */
                UNROLL for (int d = 0; d < DG; d++) {
                    if (st->kind == KQ8) key_row(KQ8, tl[i].k, tl[i].ks, d0 + d, sc0, sc1, &k0, &k1);
                    else key_row(KF16, tl[i].k, tl[i].ks, d0 + d, sc0, sc1, &k0, &k1);
                    float *kf = st->KB + (size_t)(i * DG + d) * 16;
                    _mm256_store_ps(kf, k0), _mm256_store_ps(kf + 8, k1);
                }
            }
        if (ng == 1) kacc_k(1, DG, st, tl, nv, ntl, d0, 0, rescale);
        else /* both lane groups from each broadcast key element */
            for (int dr = 0; dr < DG; dr += DG / 2) kacc_k(2, DG / 2, st, tl, nv, ntl, d0, dr, rescale);
    }
}

/* One online-softmax step over a chunk of ntl tiles (see attn_avx512.c). */
static void run_chunk(state *st, const tile *tl, int ntl) {
    const loom_attn_unit *u = st->u;
    const int nq = st->nq, hd = st->hd, ngs = (nq + QG_MAX - 1) / QG_MAX, ngv = (nq + QV_MAX - 1) / QV_MAX;
    for (int i = 0; i < ntl; i++)
        for (int g = 0; g < ngs; g++) {
            const int j0 = nq * g / ngs, j1 = nq * (g + 1) / ngs;
            scores_tab[j1 - j0](st->kind, u->q + j0, hd, tl[i].k, tl[i].ks, tl[i].ksc, st->S + (size_t)(i * nq + j0) * TILE);
        }
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256i iota0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), iota1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
    int nv[LOOM_ATTN_CHUNK] = {0}; /* slots any query sees, per tile */
    int rescale = 0;               /* accT's lanes to rescale (st->alpha) */
    /* every query sees all 16 slots of every tile (all but the causal edge) */
    int open = tl[ntl - 1].base + TILE - 1 <= st->min_lim && tl[0].base >= st->max_lo;
    for (int i = 0; i < ntl; i++) open &= tl[i].nt == TILE;
    if (open)
        for (int i = 0; i < ntl; i++) nv[i] = TILE;
    for (int j = 0; j < nq; j++) {
        __m256 s[2 * LOOM_ATTN_CHUNK], mx = ninf;
        for (int i = 0; i < ntl; i++) {
            const float *Si = st->S + (size_t)(i * nq + j) * TILE;
            s[2 * i] = _mm256_load_ps(Si), s[2 * i + 1] = _mm256_load_ps(Si + 8);
            if (u->softcap > 0) s[2 * i] = softcap8(s[2 * i], u->softcap), s[2 * i + 1] = softcap8(s[2 * i + 1], u->softcap);
            if (!open) { /* slots [c0, c) are seen */
                int c = u->lim[j] - tl[i].base + 1;
                c = c < 0 ? 0 : c > tl[i].nt ? tl[i].nt : c;
                int c0 = u->lo ? u->lo[j] - tl[i].base : 0;
                c0 = c0 < 0 ? 0 : c0 > c ? c : c0;
                nv[i] = c > nv[i] ? c : nv[i];
                const __m256i cv = _mm256_set1_epi32(c), c0v = _mm256_set1_epi32(c0 - 1);
                const __m256i in0 = _mm256_and_si256(_mm256_cmpgt_epi32(cv, iota0), _mm256_cmpgt_epi32(iota0, c0v));
                const __m256i in1 = _mm256_and_si256(_mm256_cmpgt_epi32(cv, iota1), _mm256_cmpgt_epi32(iota1, c0v));
                s[2 * i] = _mm256_blendv_ps(ninf, s[2 * i], _mm256_castsi256_ps(in0));
                s[2 * i + 1] = _mm256_blendv_ps(ninf, s[2 * i + 1], _mm256_castsi256_ps(in1));
            }
            mx = _mm256_max_ps(mx, _mm256_max_ps(s[2 * i], s[2 * i + 1]));
        }
        const float mt = hmax8(mx);
        float *lj = st->lsum + (size_t)j * TILE;
        if (mt > st->m[j]) {
            if (st->m[j] != -INFINITY) { /* rescale what was summed under the old max */
                const __m256 alpha = _mm256_set1_ps(_mm256_cvtss_f32(loom_exp2_8(_mm256_set1_ps(st->m[j] - mt))));
                float *acc = u->acc + (size_t)j * hd;
                if (u->v)
                    for (int d = 0; d < hd; d += 8) _mm256_store_ps(acc + d, _mm256_mul_ps(_mm256_load_ps(acc + d), alpha));
                else
                    st->alpha[j] = _mm256_cvtss_f32(alpha), rescale = 1; /* lane j of accT, in vacc_keys */
                _mm256_store_ps(lj, _mm256_mul_ps(_mm256_load_ps(lj), alpha));
                _mm256_store_ps(lj + 8, _mm256_mul_ps(_mm256_load_ps(lj + 8), alpha));
            }
            st->m[j] = mt;
        }
        __m256 l0 = _mm256_load_ps(lj), l1 = _mm256_load_ps(lj + 8);
        const __m256 mj = _mm256_set1_ps(st->m[j]);
        for (int i = 0; i < ntl; i++) {
            __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();
            if (st->m[j] != -INFINITY) p0 = loom_exp2_8(_mm256_sub_ps(s[2 * i], mj)), p1 = loom_exp2_8(_mm256_sub_ps(s[2 * i + 1], mj));
            l0 = _mm256_add_ps(l0, p0), l1 = _mm256_add_ps(l1, p1);
            float *Pi = st->P + (size_t)(i * nq + j) * TILE;
            _mm256_store_ps(Pi, p0), _mm256_store_ps(Pi + 8, p1);
        }
        _mm256_store_ps(lj, l0), _mm256_store_ps(lj + 8, l1);
    }
    int any = 0;
    for (int i = 0; i < ntl; i++) any |= nv[i];
    if (!any) return; /* (nor a rescale: a max grows only where a slot is seen) */
    if (!u->v) {
        vacc_keys(st, tl, nv, ntl, rescale); /* rescaling accT first (alpha 1: unchanged, exactly) */
        for (int j = 0; rescale && j < nq; j++) st->alpha[j] = 1.0f;
        return;
    }
    const void *v[LOOM_ATTN_CHUNK];
    const uint16_t *vsc[LOOM_ATTN_CHUNK];
    for (int i = 0; i < ntl; i++) v[i] = tl[i].v, vsc[i] = tl[i].vsc;
    for (int g = 0; g < ngv; g++) {
        const int j0 = nq * g / ngv, j1 = nq * (g + 1) / ngv;
        vacc_tab[j1 - j0](st->kind, v, vsc, nv, ntl, hd, st->P + (size_t)j0 * TILE, nq * TILE, u->acc + (size_t)j0 * hd);
    }
}

/* n elements of es bytes from src, then zeros to 16 elements. */
static void pad_row(uint8_t *dst, const uint8_t *src, int n, size_t es) {
    memcpy(dst, src, (size_t)n * es);
    memset(dst + (size_t)n * es, 0, (size_t)(TILE - n) * es);
}

void loom_avx2_attn_unit(const loom_attn_unit *u) {
    state st = {.u = u, .hd = u->head_dim, .kind = u->q8 ? KQ8 : u->f16 ? KF16 : KF32, .nq = u->nq};
    const int hd = st.hd, bt = u->block_tokens, nq = st.nq;
    const size_t es = u->q8 ? 1 : u->f16 ? 2 : 4, nel = (size_t)hd * bt; /* Q8_0: the scales follow nel codes */
    st.lsum = u->work, st.S = st.lsum + NQM * TILE, st.P = st.S + LOOM_ATTN_CHUNK * NQM * TILE;
    uint8_t *pack = (uint8_t *)(st.P + LOOM_ATTN_CHUNK * NQM * TILE); /* (hd, 16) keys of a partial tile */
    st.accT = st.P + LOOM_ATTN_CHUNK * NQM * TILE + (size_t)hd * TILE, st.PT = st.S;
    st.KB = st.accT + (size_t)hd * TILE;
    load_queries(u, hd);
    st.min_lim = u->lim[0];
    for (int j = 1; j < nq; j++) st.min_lim = u->lim[j] < st.min_lim ? u->lim[j] : st.min_lim;
    st.max_lo = 0;
    for (int j = 0; u->lo && j < nq; j++) st.max_lo = u->lo[j] > st.max_lo ? u->lo[j] : st.max_lo;
    for (int j = 0; j < nq; j++) {
        st.m[j] = -INFINITY;
        _mm256_store_ps(st.lsum + j * TILE, _mm256_setzero_ps());
        _mm256_store_ps(st.lsum + j * TILE + 8, _mm256_setzero_ps());
    }
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
            tile t = {kb + (size_t)t0 * es, vb ? vb + (size_t)t0 * hd * es : NULL, (const uint16_t *)(kb + nel) + t0,
                      vb ? (const uint16_t *)(vb + nel) + (size_t)t0 * (hd / 32) : NULL, bt, p0 + t0, nt};
            if (room < TILE) { /* the block's last slots, zero-padded to 16 (one such tile per chunk at most) */
                for (int d = 0; d < hd; d++) pad_row(pack + (size_t)d * TILE * es, (const uint8_t *)t.k + (size_t)d * bt * es, room, es);
                uint16_t *psc = (uint16_t *)(pack + (size_t)hd * TILE * es); /* Q8_0: then the scales' rows */
                for (int g = 0; st.kind == KQ8 && g < hd / 32; g++)
                    pad_row((uint8_t *)(psc + (size_t)g * TILE), (const uint8_t *)(t.ksc + (size_t)g * bt), room, 2);
                t.k = pack, t.ks = TILE, t.ksc = psc;
            }
            tl[ntl++] = t;
            /* a packed tile ends its chunk: the pack buffer holds one */
            if (ntl == LOOM_ATTN_CHUNK || room < TILE) run_chunk(&st, tl, ntl), ntl = 0;
        }
    }
    if (ntl) run_chunk(&st, tl, ntl);
    for (int g = 0; !u->v && g < (nq + 7) / 8; g++) /* accT into acc's rows */
        for (int d0 = 0; d0 < hd; d0 += 8) {
            __m256 r[8], c[8];
            for (int d = 0; d < 8; d++) r[d] = _mm256_load_ps(st.accT + ((size_t)g * hd + d0 + d) * 8);
            transpose8(r, c);
            for (int j = 0; j < 8 && 8 * g + j < nq; j++) _mm256_store_ps(u->acc + (size_t)(8 * g + j) * hd + d0, c[j]);
        }
    for (int j = 0; j < nq; j++) {
        const float l = hsum8(_mm256_add_ps(_mm256_load_ps(st.lsum + j * TILE), _mm256_load_ps(st.lsum + j * TILE + 8)));
        u->m[j] = st.m[j], u->l[j] = l;
        if (u->out) {
            const __m256 inv = _mm256_set1_ps(1.0f / l);
            const float *acc = u->acc + (size_t)j * hd;
            for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(u->out[j] + d, _mm256_mul_ps(_mm256_load_ps(acc + d), inv));
        }
    }
}
