#include "runtime/forward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/attention.h"
#include "runtime/clock.h"
#include "runtime/kernels.h"
#include "runtime/lora.h"
#include "runtime/ops.h"
#include "runtime/quant.h"
#include "runtime/rowops.h"
#include "runtime/threadpool.h"

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#define MM_MAX_JOBS 3
/* From this many rows the queries' and keys' rotation and the KV store are
 * spread over the pool by heads (qk_worker). Zen 4, SmolLM2, two threads,
 * LOOM_CPU_PROFILE: a 128-row step 2.53 -> 1.66 ms (vCPUs on one L3) and
 * 3.43 -> 2.77 ms (on two); one row keeps them on the calling thread, where
 * a run of its own cost 0.035 -> 0.038 and 0.056 -> 0.090 ms a step. */
#define QK_POOL_ROWS 2

/* Prefill's activation rows (from ACT_STREAM_ROWS rows, the profile's
 * prefill steps) are streamed out (copy_stream) while the pool's threads
 * hand a cache line back and forth slower than ACT_STREAM_NS: their caches
 * are not one L3. Re-measured at most every ACT_PROBE_S seconds. */
#define ACT_STREAM_ROWS 17
#define ACT_STREAM_NS 200
#define ACT_PROBE_S 0.05

/* ------------------------------------------------------------ profile */

/* LOOM_CPU_PROFILE=1: the wall time of each part of a step, summed per kind
 * of step (one row: decode of one sequence; 2-16 rows; more: prefill) and
 * printed to stderr when the forward pass is freed (the first step of each
 * kind left out); for the matmul runs also the share of their threads' time
 * spent waiting for the others. The CPU's counterpart of LOOM_CUDA_PROFILE;
 * ~10 clock reads per layer. */
enum { P_PREP, P_QKV, P_ROPE, P_ATTN, P_WO, P_ROUTE, P_UP, P_DOWN, P_HEAD, P_N };
static const char *const prof_part[P_N] = {"norm / activation + quantize", "q | k | v", "rope + KV store", "attention",
                                           "attention output (wo)", "experts' router + choice", "gate | up", "down",
                                           "lm head"};
enum { PB_ONE, PB_FEW, PB_MANY, PB_N };
static const char *const prof_bucket[PB_N] = {"1 row", "2-16 rows", "more than 16 rows (prefill)"};

typedef struct {
    double part[PB_N][P_N];   /* seconds of wall time */
    double busy[PB_N][P_N];   /* thread-seconds inside matmul kernels */
    double step[PB_N];        /* seconds from a step's prepare to the end of its last piece */
    int64_t steps[PB_N];
    int64_t streamed[PB_N];   /* steps whose activation rows were streamed (copy_stream) */
    bool cur_streamed;
    bool seen[PB_N];          /* the first step of each kind is left out: it pages in weights and KV blocks */
    double cur[P_N], cur_busy[P_N]; /* the open step's */
    double step_t0, last_end;
    int bucket;               /* of the open step, -1 if none */
    double *thread_busy;      /* (n_threads x 8): each thread's kernel time in the current run, a line each */
} fwd_prof;

struct loom_forward {
    const loom_weights *w;
    loom_kv_cache *kv;
    loom_pool *pool;
    int max_rows;
    int qdim, kvdim;        /* n_q·head_dim, n_kv·head_dim held */
    float *x;               /* (max_rows, dim) residual stream */
    float *xn;              /* (max_rows, dim) normed input of a piece */
    float *q;               /* (max_rows, qdim) */
    float *k, *v;           /* (max_rows, kvdim) */
    float *att;             /* (max_rows, qdim) attention output before wo */
    float *gate, *up;       /* (max_rows, n_ffn) */
    float *moe_logits;      /* (max_rows, n_experts) router output */
    float *moe_y;           /* (max_rows, dim) an expert's output */
    int *moe_sel;           /* (max_rows * n_experts_used) each row's experts, with their weights in moe_selw */
    float *moe_selw;
    int *moe_rows;          /* (max_rows * n_experts_used) the rows by expert, with their weights in moe_w */
    float *moe_w;
    int *moe_count, *moe_fill; /* (n_experts + 1) where each expert's rows begin in moe_rows */
    uint8_t *moe_qg, *moe_qu;  /* (max_rows) the normed rows quantized once for the experts' gate and up */
    float *moe_p;              /* (n_experts) a row's probabilities (moe_route's scratch) */
    /* multi-head latent attention (mla_attention) */
    float *mla_qa;             /* (max_rows, q_lora) attn_q_a's output */
    uint8_t *mla_xk, *mla_xv;  /* a head's rows quantized for attn_k_b / attn_v_b, head after head */
    float *scratch;         /* (max_rows, dim) */
    float *rope;            /* (max_rows, rope_dim) cos/sin per row */
    float *rope_swa;        /* (max_rows, rope_dim) the same on sliding-window layers, or NULL (= rope) */
    const float *rope_fac;  /* (rope_dim/2) frequency factors (rope_freqs or LongRoPE's), or NULL */
    float *yarn_fac, *yarn_fac_swa; /* (rope_dim/2) YaRN's per-pair factors (rope_fac folded in), the second for
                                     * sliding-window layers that rotate differently (rope_swa), or NULL */
    float *scores;          /* (n_threads, loom_attention_scratch_floats) attention scratch */
    uint8_t *act[MM_MAX_JOBS]; /* quantized activations, act_bytes each */
    size_t act_bytes;
    loom_span *spans;       /* (MM_MAX_JOBS, n_threads) a matmul run's rows (mm_task) */
    size_t steal_min;       /* matmul threads take each other's rows when theirs are done, in pieces of at least
                               this many bytes (mm_worker); 0: they do not (LOOM_MM_STEAL) */
    uint8_t *stage;         /* (n_threads, stage_bytes) one quantized row per thread, for copy_stream */
    size_t stage_bytes;
    int stream_mode;        /* LOOM_STREAM_ACT: 0 never, 1 always, -1 (default) where the threads span L3s */
    bool stream;            /* this step's prefill rows are streamed */
    bool stream_wide;       /* the last probe found the threads on different L3s */
    double probe_next;      /* when the pool's hand-off may be measured again */
    const loom_batch *prepared; /* batch whose rows were validated and whose angles are in rope */
    fwd_prof *prof;         /* LOOM_CPU_PROFILE, or NULL */
    /* LoRA adapters (runtime/lora.h): each KV slot's scale of each adapter,
     * (n_slots, LOOM_LORA_MAX), NULL until a sequence has one; the current
     * matmuls() call's entries (max_rows x MM_MAX_JOBS x LOOM_LORA_MAX) and
     * their t (room for every row through MM_MAX_JOBS matrices of the most
     * adapters' ranks on one matrix) */
    float *lora_scale;
    struct lora_entry *lora_ent;
    struct lora_group *lora_grp; /* (MM_MAX_JOBS x LOOM_LORA_MAX) */
    int n_lora_ent, n_lora_grp;
    float *lora_t;
    bool lora_dup;               /* few rows: each matmul thread computes t itself (lora_prepare) */
    const float *lora_x;         /* ... from these prepared rows (n, lora_cols) */
    int64_t lora_cols;
    float *lora_tt;              /* (n_threads, lora_tt_size) the threads' own t */
    size_t lora_tt_size;
};

static int prof_bucket_of(int n) { return n == 1 ? PB_ONE : n <= 16 ? PB_FEW : PB_MANY; }

static void prof_add(loom_forward *f, int part, double t0) {
    fwd_prof *p = f->prof;
    if (!p) return;
    const double t = loom_now_s();
    p->cur[part] += t - t0;
    p->last_end = t;
}

static void prof_close_step(fwd_prof *p) {
    const int b = p->bucket;
    if (b < 0) return;
    if (p->seen[b]) {
        p->step[b] += p->last_end - p->step_t0;
        p->steps[b]++;
        p->streamed[b] += p->cur_streamed;
        for (int i = 0; i < P_N; i++) p->part[b][i] += p->cur[i], p->busy[b][i] += p->cur_busy[i];
    }
    p->seen[b] = true;
    memset(p->cur, 0, sizeof p->cur);
    memset(p->cur_busy, 0, sizeof p->cur_busy);
    p->bucket = -1;
}

static void prof_print(const loom_forward *f, fwd_prof *p) {
    const int nth = loom_pool_size(f->pool);
    for (int b = 0; b < PB_N; b++) {
        if (!p->steps[b]) continue;
        const double per = 1e3 / (double)p->steps[b], step = p->step[b] * per;
        double parts = 0;
        fprintf(stderr, "\n== LOOM_CPU_PROFILE: layers %d-%d, %d thread%s; steps of %s: %lld, %.3f ms each ==\n",
                f->w->shard.layer_begin, f->w->shard.layer_end - 1, nth, nth == 1 ? "" : "s", prof_bucket[b],
                (long long)p->steps[b], step);
        fprintf(stderr, "  %-30s %9s %7s %s\n", "part", "ms/step", "share", nth > 1 ? "  threads waiting" : "");
        for (int i = 0; i < P_N; i++) {
            const double ms = p->part[b][i] * per;
            parts += ms;
            if (p->part[b][i] == 0) continue;
            fprintf(stderr, "  %-30s %9.3f %6.1f %%", prof_part[i], ms, step > 0 ? 100 * ms / step : 0);
            if (nth > 1 && p->busy[b][i] > 0)
                fprintf(stderr, "  %5.1f %%", 100 * (1 - p->busy[b][i] / (p->part[b][i] * nth)));
            fputc('\n', stderr);
        }
        fprintf(stderr, "  %-30s %9.3f %6.1f %%\n", "elsewhere (residual, comm, ...)", step - parts,
                step > 0 ? 100 * (step - parts) / step : 0);
        if (p->streamed[b])
            fprintf(stderr, "  activation rows streamed (threads on different L3s) in %lld of the %lld steps\n",
                    (long long)p->streamed[b], (long long)p->steps[b]);
    }
}

/* ------------------------------------------------------------ matmuls */

typedef struct {
    const loom_mat *m;
    const void *xq;
    size_t xq_stride;
    float *y;    /* (n, ldy) */
    int64_t ldy;
} mm_job;

typedef struct {
    mm_job jobs[MM_MAX_JOBS];
    int n_jobs;
    int n;
    double *thread_busy; /* fwd_prof's, or NULL */
    const loom_forward *lora; /* its LoRA entries to add (lora_prepare), or NULL */
    loom_span *spans;    /* (n_jobs, threads) each thread's rows of each job, in LOOM_MATMUL_ROW_ALIGN units, or NULL:
                            each takes its loom_split_range share (mm_worker) */
    int64_t min_units[MM_MAX_JOBS]; /* the least units a piece of each job takes */
} mm_task;

static const float *lora_own_t(const loom_forward *f, int ith);
static void lora_up_rows(const loom_forward *f, int j, float *y, int64_t ldy, int64_t o0, int64_t o1, const float *tb);

/* Rows [r0, r1) of job j (r1 past its rows: to its end), with their LoRA terms from tb. */
static void mm_rows(const mm_task *t, int j, int64_t r0, int64_t r1, const float *tb) {
    const mm_job *jb = &t->jobs[j];
    if (r1 > jb->m->rows) r1 = jb->m->rows;
    if (r0 >= r1) return;
    (jb->m->r8 ? loom_matmul_r8 : loom_matmul)(jb->m->type, jb->m->data, jb->m->stride, jb->m->cols, r0, r1, jb->xq,
                                               jb->xq_stride, t->n, jb->y + r0, jb->ldy);
    if (t->lora) lora_up_rows(t->lora, j, jb->y, jb->ldy, r0, r1, tb);
}

/* Work stealing (loom_span): each thread first takes its loom_split_range
 * share of every job but the last 1/MM_TAIL of each, in one piece, so its
 * walk over the weights is as long as without stealing; then the tails in
 * pieces of at least MM_STEAL_MIN_BYTES of weights, and then, from the back,
 * the pieces other threads have not reached (last job first, where their
 * owners are least likely to be). A row's result does not depend on the
 * thread or the piece (the kernels' lanes are the same for every tile and
 * range: kernels.h), so neither do the bits.
 *
 * Why: with the rows split evenly, the two threads of a decode step
 * finished 30 µs apart on average in a matmul of ~480 µs (Xeon, family 6
 * model 207, KVM guest, Llama-3.2-1B Q4_K_M, two threads): the second
 * thread waited 5-10 % of every matmul's time (LOOM_CPU_PROFILE's
 * "threads waiting"), and with stealing 0-3 %. The time gained is smaller
 * than the waiting was (while one thread waits the other reads faster):
 * steps alternating with and without stealing in one run, two threads,
 * decode step time: Llama-3.2-1B Q4_K_M -1.8 %, SmolLM2 -2.9 %, TinyLlama
 * Q6_K -1.0 %, Q4_K_M +0.2 %; 128-token prefill steps -1 to -4 %.
 * LOOM_MM_STEAL=0 turns it off, LOOM_MM_STEAL=BYTES sets the pieces' least
 * size (tests take 1: every piece one unit). */
#define MM_TAIL 8
#define MM_STEAL_MIN_BYTES (64 * 1024)

static void mm_worker(void *ctx, int ith, int nth) {
    const mm_task *t = ctx;
    const double t0 = t->thread_busy ? loom_now_s() : 0;
    const float *tb = t->lora ? lora_own_t(t->lora, ith) : NULL;
    const int64_t a = LOOM_MATMUL_ROW_ALIGN;
    for (int j = 0; j < t->n_jobs; j++) {
        if (!t->spans) {
            int64_t r0, r1;
            loom_split_range(t->jobs[j].m->rows, a, ith, nth, &r0, &r1);
            mm_rows(t, j, r0, r1, tb);
            continue;
        }
        loom_span *sp = &t->spans[j * nth + ith];
        int64_t u0, u1, left = loom_span_left(sp);
        if (loom_span_take(sp, true, left - left / MM_TAIL, &u0, &u1)) mm_rows(t, j, u0 * a, u1 * a, tb);
        while (loom_span_take(sp, true, t->min_units[j], &u0, &u1)) mm_rows(t, j, u0 * a, u1 * a, tb);
    }
    for (int j = t->n_jobs - 1; t->spans && j >= 0; j--)
        for (int o = 1; o < nth; o++) {
            loom_span *sp = &t->spans[j * nth + (ith + o) % nth];
            int64_t u0, u1;
            while (loom_span_take(sp, false, t->min_units[j], &u0, &u1)) mm_rows(t, j, u0 * a, u1 * a, tb);
        }
    if (t->thread_busy) t->thread_busy[8 * ith] = loom_now_s() - t0;
}

/* One row of the model's norm (RMSNorm, or LayerNorm with its bias). */
static void norm_row(const loom_model_config *c, const loom_norm *nm, float *out, const float *x, int n) {
    if (c->norm == LOOM_NORM_LAYER) loom_row_layernorm(out, x, nm->w, nm->b, n, c->norm_eps);
    else loom_row_rmsnorm(out, x, nm->w, n, c->norm_eps);
}

/* What a matmul group does to its input rows before quantizing them: the
 * model's norm of the residual stream, or the MLP's activation (of gate
 * times up, or of up plus its bias), or nothing. */
typedef struct {
    loom_forward *f;
    int n;
    const float *src;       /* (n, k) input rows */
    float *dst;             /* (n, k) where the prepared rows go (may be src) */
    const loom_norm *norm;  /* normalise the rows, or NULL */
    bool act;               /* apply the model's activation: dst = act(src + bias) · up */
    const float *bias;      /* (k) or NULL */
    const float *up;        /* (n, k) or NULL (plain MLP) */
    int n_quant;            /* activation formats to fill */
    const loom_mat *qm[MM_MAX_JOBS];
    uint8_t *qdst[MM_MAX_JOBS];
    bool stream;            /* quantize into each thread's stage and stream the rows out (copy_stream) */
} prep_task;

/* dst[0, bytes) = src, the whole cache lines by non-temporal stores: the
 * line goes to memory and leaves every cache, so a store that would first
 * have to take the line back from a reader in another L3 (its copy from
 * the last matmul) does not wait for that. The caller fences (sfence)
 * before another thread may read dst.
 *
 * Why (Zen 4 VM, SmolLM2, two threads, 128-token prompt, LOOM_CPU_PROFILE):
 * a prefill step's row preparation (norms, SwiGLU, quantization) took
 * 3.7 ms with the vCPUs on one L3 and 9.6 ms on two, and quantizing into
 * a private buffer instead (timing only) gave the two-L3 case one L3's
 * figure: the stores into rows the other L3 read in the last matmul are
 * the cost; PREFETCHW two rows ahead did not help. Streamed, two-L3 steps
 * 69-70 -> 62-65 ms (prefill 1810-1870 -> 1950-2000 tokens/s); on one L3
 * streaming costs ~2 % (the matmul reads the rows from memory), so it runs
 * where the threads' hand-off says the L3s differ. Decode's one row: the
 * same private-buffer test gained nothing, so it is left alone. On a Xeon
 * (family 6 model 167, one L3 over a mesh) the round trip read 113-154 ns,
 * so auto does not stream there, and streaming would cost: SmolLM2, two
 * threads, 128-token prompt, 2360-2562 tokens/s off, 2356-2414 on. */
static void copy_stream(uint8_t *dst, const uint8_t *src, size_t bytes) {
#if defined(__x86_64__)
    const uintptr_t a = (uintptr_t)dst, e = a + bytes, a64 = (a + 63) & ~(uintptr_t)63, e64 = e & ~(uintptr_t)63;
    if (a64 < e64) {
        memcpy(dst, src, a64 - a);
        for (uintptr_t o = a64; o < e64; o += 16)
            _mm_stream_si128((__m128i *)o, _mm_loadu_si128((const __m128i *)(src + (o - a))));
        memcpy((uint8_t *)e64, src + (e64 - a), e - e64);
        return;
    }
#endif
    memcpy(dst, src, bytes);
}

static void stream_fence(void) {
#if defined(__x86_64__)
    _mm_sfence();
#endif
}

/* gate[i] = x·sigmoid(1.702·x)·(clamp(up[i], ±7) + 1), x = min(gate[i], 7):
 * gpt-oss's activation, in ggml_swiglu_oai's operations */
static void swiglu_oai_row(float *gate, const float *up, int k) {
    const float alpha = 1.702f, limit = 7.0f;
    for (int i = 0; i < k; i++) {
        const float x = gate[i] < limit ? gate[i] : limit;
        const float y = up[i] < -limit ? -limit : up[i] > limit ? limit : up[i];
        gate[i] = x / (1.0f + expf(alpha * (-x))) * (y + 1.0f);
    }
}

/* stage: this thread's (f->stage_bytes), used when t->stream */
static void prep_rows(const prep_task *t, int r0, int r1, uint8_t *stage) {
    const loom_model_config *c = &t->f->w->cfg;
    int k = (int)t->qm[0]->cols;
    for (int r = r0; r < r1; r++) {
        const float *in = t->src + (size_t)r * k;
        float *row = t->dst + (size_t)r * k;
        const float *q = row; /* the row that is quantized */
        if (t->norm) {
            norm_row(c, t->norm, row, in, k);
        } else if (t->act) {
            const float *up = t->up ? t->up + (size_t)r * k : NULL;
            if (t->bias)
                for (int i = 0; i < k; i++) row[i] = in[i] + t->bias[i];
            else if (row != in)
                memcpy(row, in, (size_t)k * sizeof *row);
            if (c->act == LOOM_ACT_GELU) loom_row_gelu(row, up, k);
            else if (c->act == LOOM_ACT_SWIGLU_OAI) swiglu_oai_row(row, up, k);
            else loom_row_swiglu(row, up, k); /* SiLU-gated (a plain SiLU MLP does not occur) */
        } else {
            q = in; /* as it is */
        }
        for (int j = 0; j < t->n_quant; j++) {
            const loom_mat *m = t->qm[j];
            const size_t rb = loom_act_row_bytes(m->type, k);
            if (t->stream) {
                loom_act_quantize(m->type, q, stage, k);
                copy_stream(t->qdst[j] + (size_t)r * rb, stage, rb);
            } else
                loom_act_quantize(m->type, q, t->qdst[j] + (size_t)r * rb, k);
        }
    }
}

static void prep_worker(void *ctx, int ith, int nth) {
    const prep_task *t = ctx;
    int64_t r0, r1;
    loom_split_range(t->n, 1, ith, nth, &r0, &r1);
    prep_rows(t, (int)r0, (int)r1, t->stream ? t->f->stage + (size_t)ith * t->f->stage_bytes : NULL);
    if (t->stream) stream_fence(); /* before the pool's release: the next run reads these rows */
}

/* The rows' preparation and quantization (prep_task), over the pool when there are several. */
static void prep_run(loom_forward *f, prep_task *p) {
    const double t0 = f->prof ? loom_now_s() : 0;
    if (p->n >= 2 && loom_pool_size(f->pool) > 1) {
        p->stream = f->stream && p->n >= ACT_STREAM_ROWS;
        loom_pool_run(f->pool, prep_worker, p);
    } else
        prep_rows(p, 0, p->n, NULL);
    if (f->prof) prof_add(f, P_PREP, t0);
}

/* The matmuls of t over the pool, their time counted as `part`. */
static void mm_run(loom_forward *f, mm_task *t, int part) {
    const double t0 = f->prof ? loom_now_s() : 0;
    const int nth = loom_pool_size(f->pool);
    if (nth > 1 && f->steal_min) {
        t->spans = f->spans;
        for (int j = 0; j < t->n_jobs; j++) {
            const int64_t units = (t->jobs[j].m->rows + LOOM_MATMUL_ROW_ALIGN - 1) / LOOM_MATMUL_ROW_ALIGN;
            const size_t unit_bytes = (size_t)LOOM_MATMUL_ROW_ALIGN * t->jobs[j].m->stride;
            t->min_units[j] = (int64_t)((f->steal_min + unit_bytes - 1) / unit_bytes);
            for (int i = 0; i < nth; i++) {
                int64_t u0, u1;
                loom_split_range(units, 1, i, nth, &u0, &u1);
                loom_span_init(&t->spans[j * nth + i], u0, u1);
            }
        }
    }
    loom_pool_run(f->pool, mm_worker, t);
    if (f->prof) {
        prof_add(f, part, t0);
        for (int i = 0; i < loom_pool_size(f->pool); i++) f->prof->cur_busy[part] += t->thread_busy[8 * i];
    }
}

/* LoRA: y[i] += s · B·(A·x[i]) for each adapter on a matrix (its lora
 * list) whose scale s for row i's sequence is nonzero (times alpha / r).
 * The matrices of a matmuls() call share their input rows, so after the
 * rows are prepared every (row, matrix, adapter) entry's t = s·A·x is
 * computed in one run over the pool, its dot products split evenly over
 * the threads (decode's one row too); then each matmul thread adds B·t to
 * the output rows it computed (mm_worker), no further run. The entries of
 * one (matrix, adapter) are a group, walked so that a row of A (lora_down)
 * and LORA_UP_TILE columns of B (lora_up) are read once from memory for
 * all of the group's rows: prefill's rows reuse them from L1. With at most
 * LORA_DUP_ROWS rows (decode) the pool run for t costs more than t (120 of
 * them a token for SmolLM2), so each matmul thread computes t itself before
 * its rows. */
#define LORA_UP_TILE 64
#define LORA_DUP_ROWS 4
typedef struct lora_entry {
    int row;
    float s;
} lora_entry;

typedef struct lora_group {
    const loom_lora_mat *e;
    int job;
    int first, n; /* its entries in f->lora_ent */
    size_t t;     /* its rows' t, r floats each, in f->lora_t */
    size_t unit;  /* its first unit's index among the call's: a unit is a row's t[k], t[k + 1] (k even) */
} lora_group;

#define LORA_K 2 /* A's rows a lora_down call takes */
static int lora_units(const lora_group *G) { return (G->e->r + LORA_K - 1) / LORA_K * G->n; }

typedef struct {
    const loom_forward *f;
    size_t units;
} lora_down_task;

/* t[k], t[k + 1] (k even; t[k] alone at the end of an odd rank) of group G's rows i0 .. i0 + n - 1
 * (n <= LOOM_LORA_DOWN_ROWS), into tb (the group's t offsets from tb). */
static void lora_down_rows(const loom_forward *f, const lora_group *G, int k, int i0, int n, float *tb) {
    const float *x[LOOM_LORA_DOWN_ROWS];
    float *tt[LOOM_LORA_DOWN_ROWS], s[LOOM_LORA_DOWN_ROWS];
    for (int i = 0; i < n; i++) {
        const lora_entry *le = &f->lora_ent[G->first + i0 + i];
        x[i] = f->lora_x + (size_t)le->row * f->lora_cols;
        tt[i] = tb + G->t + (size_t)(i0 + i) * G->e->r + k;
        s[i] = le->s;
    }
    loom_kernels_get()->lora_down(G->e->a + (size_t)k * f->lora_cols, G->e->r - k < LORA_K ? G->e->r - k : LORA_K,
                                  f->lora_cols, x, tt, s, n);
}

/* A group's units are k-major (unit u: k = LORA_K · (u / n), its row u % n),
 * so LORA_K rows of A serve up to LOOM_LORA_DOWN_ROWS rows at once. */
static void lora_down_worker(void *ctx, int ith, int nth) {
    const lora_down_task *t = ctx;
    const loom_forward *f = t->f;
    int64_t u0, u1;
    loom_split_range((int64_t)t->units, 1, ith, nth, &u0, &u1);
    for (int g = 0; g < f->n_lora_grp && u0 < u1; g++) {
        const lora_group *G = &f->lora_grp[g];
        const int64_t size = lora_units(G), lo = u0 - (int64_t)G->unit;
        if (lo >= size) continue;
        const int64_t hi = u1 - (int64_t)G->unit < size ? u1 - (int64_t)G->unit : size;
        for (int64_t u = lo; u < hi;) {
            const int k = LORA_K * (int)(u / G->n), i0 = (int)(u % G->n);
            int n = G->n - i0;
            if (n > LOOM_LORA_DOWN_ROWS) n = LOOM_LORA_DOWN_ROWS;
            if (n > hi - u) n = (int)(hi - u);
            lora_down_rows(f, G, k, i0, n, f->lora_t);
            u += n;
        }
        u0 = (int64_t)G->unit + hi;
    }
}

/* Lists the groups and entries of this call's rows and computes their t;
 * false when there are none. */
static bool lora_prepare(loom_forward *f, const prep_task *p, int n_jobs, const loom_mat *const *m) {
    f->n_lora_ent = f->n_lora_grp = 0;
    size_t ts = 0, units = 0;
    for (int j = 0; j < n_jobs; j++)
        for (const loom_lora_mat *e = m[j]->lora; e; e = e->next) {
            lora_group *G = &f->lora_grp[f->n_lora_grp];
            *G = (lora_group){e, j, f->n_lora_ent, 0, ts, units};
            for (int i = 0; i < p->n; i++) {
                const float s = f->lora_scale[(size_t)f->prepared->seq[i] * LOOM_LORA_MAX + e->adapter] * e->scale;
                if (s != 0) f->lora_ent[f->n_lora_ent++] = (lora_entry){i, s};
            }
            G->n = f->n_lora_ent - G->first;
            ts += (size_t)G->n * (size_t)e->r;
            units += (size_t)lora_units(G);
            f->n_lora_grp += G->n > 0;
        }
    if (!f->n_lora_grp) return false;
    f->lora_x = p->norm || p->act ? p->dst : p->src, f->lora_cols = m[0]->cols;
    f->lora_dup = p->n <= LORA_DUP_ROWS && loom_pool_size(f->pool) > 1;
    if (f->lora_dup) return true; /* each matmul thread computes its own (mm_worker) */
    lora_down_task t = {f, units};
    if (loom_pool_size(f->pool) > 1 && units > 1) loom_pool_run(f->pool, lora_down_worker, &t);
    else lora_down_worker(&t, 0, 1);
    return true;
}

/* All of group G's t, into tb. */
static void lora_down_group(const loom_forward *f, const lora_group *G, float *tb) {
    for (int k = 0; k < G->e->r; k += LORA_K)
        for (int i0 = 0; i0 < G->n; i0 += LOOM_LORA_DOWN_ROWS)
            lora_down_rows(f, G, k, i0, G->n - i0 < LOOM_LORA_DOWN_ROWS ? G->n - i0 : LOOM_LORA_DOWN_ROWS, tb);
}

/* The t a matmul thread adds B·t from: the call's (lora_prepare), or with
 * few rows (lora_dup) thread ith's own, every group's computed here once
 * per run, so any of the call's rows it takes (mm_worker) has its t. */
static const float *lora_own_t(const loom_forward *f, int ith) {
    if (!f->lora_dup) return f->lora_t;
    float *own = f->lora_tt + (size_t)ith * f->lora_tt_size;
    for (int g = 0; g < f->n_lora_grp; g++) lora_down_group(f, &f->lora_grp[g], own);
    return own;
}

/* y's columns [o0, o1) of job j: the groups' B·t (t from tb), a tile of
 * B's columns at a time for all of a group's rows. */
static void lora_up_rows(const loom_forward *f, int j, float *y, int64_t ldy, int64_t o0, int64_t o1, const float *tb) {
    loom_lora_up_fn *up = loom_kernels_get()->lora_up;
    for (int g = 0; g < f->n_lora_grp; g++) {
        const lora_group *G = &f->lora_grp[g];
        if (G->job != j) continue;
        for (int64_t c0 = o0; c0 < o1; c0 += LORA_UP_TILE) {
            const int64_t c1 = o1 - c0 > LORA_UP_TILE ? c0 + LORA_UP_TILE : o1;
            for (int i = 0; i < G->n; i++)
                up(y + (size_t)f->lora_ent[G->first + i].row * ldy, tb + G->t + (size_t)i * G->e->r, G->e->bt,
                   G->e->r, G->e->rows, c0, c1);
        }
    }
}

loom_status loom_forward_set_lora(loom_forward *f, int slot, const float *scale, int n) {
    const int slots = loom_kv_config_of(f->kv)->max_seqs;
    if (slot < 0 || slot >= slots || n < 0 || n > LOOM_LORA_MAX)
        return loom_error(LOOM_ERR_INVALID, "LoRA scales for slot %d of %d: %d adapters (at most %d)", slot, slots, n,
                          LOOM_LORA_MAX);
    bool any = false;
    for (int i = 0; i < n; i++) any |= scale[i] != 0;
    if (!f->lora_scale && !any) return NULL; /* no sequence has had an adapter: every scale is 0 */
    if (!f->lora_scale) { /* t's room: every row through the matrices of a call with the most adapters' ranks */
        const loom_model_config *c = &f->w->cfg;
        loom_mat **ms = malloc(sizeof *ms * (size_t)loom_layer_max_mats(c));
        size_t most = 0;
        for (int l = 0; ms && l < f->w->shard.layer_end - f->w->shard.layer_begin; l++) {
            const int nm = loom_layer_mats(c, &f->w->layers[l], ms);
            for (int i = 0; i < nm; i++) {
                size_t r = 0;
                for (const loom_lora_mat *e = ms[i]->lora; e; e = e->next) r += (size_t)e->r;
                most = r > most ? r : most;
            }
        }
        free(ms);
        f->lora_scale = calloc((size_t)slots * LOOM_LORA_MAX, sizeof(float));
        f->lora_ent = malloc((size_t)f->max_rows * MM_MAX_JOBS * LOOM_LORA_MAX * sizeof *f->lora_ent);
        f->lora_grp = malloc(MM_MAX_JOBS * LOOM_LORA_MAX * sizeof *f->lora_grp);
        f->lora_t = malloc(((size_t)f->max_rows * MM_MAX_JOBS * most + 1) * sizeof(float));
        f->lora_tt_size = (size_t)LORA_DUP_ROWS * MM_MAX_JOBS * most + 1;
        f->lora_tt = malloc((size_t)loom_pool_size(f->pool) * f->lora_tt_size * sizeof(float));
        if (!ms || !f->lora_scale || !f->lora_ent || !f->lora_grp || !f->lora_t || !f->lora_tt) {
            free(f->lora_scale), free(f->lora_ent), free(f->lora_grp), free(f->lora_t), free(f->lora_tt);
            f->lora_scale = NULL, f->lora_ent = NULL, f->lora_grp = NULL, f->lora_t = NULL, f->lora_tt = NULL;
            return loom_error(LOOM_ERR_NOMEM, "out of memory for LoRA adapters' rows (%zu floats)",
                              (size_t)f->max_rows * MM_MAX_JOBS * most);
        }
    }
    float *d = f->lora_scale + (size_t)slot * LOOM_LORA_MAX;
    memset(d, 0, LOOM_LORA_MAX * sizeof *d);
    if (n) memcpy(d, scale, (size_t)n * sizeof *d);
    return NULL;
}

/* y_j (n, rows_j) = m_j · prep(x) for up to three matrices sharing the input
 * rows x (n, k): the rows are prepared (normed, or activated: prep_task)
 * into `dst`, quantized once per activation format, then multiplied. Rows
 * are spread over the pool for both phases when there are several. */
static void matmuls(loom_forward *f, prep_task p, int n_jobs, const loom_mat *const *m, float *const *y, int part) {
    const int n = p.n;
    mm_task t = {.n_jobs = n_jobs, .n = n, .thread_busy = f->prof ? f->prof->thread_busy : NULL};
    p.f = f;
    for (int j = 0; j < n_jobs; j++) {
        int slot = j;
        for (int i = 0; i < j && slot == j; i++)
            if (m[i]->type == m[j]->type && m[i]->cols == m[j]->cols) slot = i; /* same activations: quantize once */
        if (slot == j) {
            p.qm[p.n_quant] = m[j];
            p.qdst[p.n_quant++] = f->act[j];
        }
        t.jobs[j] = (mm_job){m[j], f->act[slot], loom_act_row_bytes(m[j]->type, m[j]->cols), y[j], m[j]->rows};
    }
    prep_run(f, &p);
    bool lora = false;
    for (int j = 0; j < n_jobs && f->lora_scale; j++) lora |= m[j]->lora != NULL;
    if (lora) {
        const double t0 = f->prof ? loom_now_s() : 0;
        t.lora = lora_prepare(f, &p, n_jobs, m) ? f : NULL;
        if (f->prof) prof_add(f, part, t0);
    }
    mm_run(f, &t, part);
}

/* ------------------------------------------------------------ lifecycle */

static size_t act_need(const loom_mat *m, int rows) {
    return m->data ? (size_t)rows * loom_act_row_bytes(m->type, m->cols) : 0;
}

/* YaRN as llama.cpp's ggml does it (ggml_rope_yarn_corr_dims, rope_yarn,
 * ext_factor 1): pair i's angle is pos·θ_i·(s·(1 − r_i) + r_i), s the
 * frequency scale and r_i the ramp from 1 (pairs below the dimension that
 * turns beta_fast times over ctx_orig) down to 0 (above the one that turns
 * beta_slow times), θ_i = base^(−2i/d) / factor_i. As factors of
 * loom_rope_angles: out[i] = factor_i / (s·(1 − r_i) + r_i). */
static void yarn_factors(const loom_model_config *c, float base, float scale, const float *ff, float *out) {
    const int nd = c->rope_dim;
    const double two_pi = 6.283185307179586;
#define CORR(nrot) (nd * log((double)c->ctx_orig / ((nrot) * two_pi)) / (2 * log((double)base)))
    double lo = floor(CORR(c->yarn_beta_fast)), hi = ceil(CORR(c->yarn_beta_slow));
#undef CORR
    lo = lo > 0 ? lo : 0, hi = hi < nd - 1 ? hi : nd - 1;
    for (int i = 0; i < nd / 2; i++) {
        double y = (i - lo) / (hi - lo > 0.001 ? hi - lo : 0.001);
        const double ramp = 1 - (y < 0 ? 0 : y > 1 ? 1 : y);
        out[i] = (float)((ff ? ff[i] : 1.0) / (scale * (1 - ramp) + ramp));
    }
}

/* Whether sliding-window layers rotate differently from the others. */
static bool swa_rope_differs(const loom_model_config *c) {
    return c->swa_window > 0 && c->rope_dim > 0 &&
           (c->rope_base_swa != c->rope_base || c->rope_scale_swa != c->rope_freq_scale);
}

loom_status loom_forward_create(const loom_weights *w, loom_kv_cache *kv, loom_pool *pool, int max_rows,
                                loom_forward **out) {
    *out = NULL;
    if (max_rows < 1) return loom_error(LOOM_ERR_INVALID, "batch size %d must be positive", max_rows);
    const loom_model_config *c = &w->cfg;
    const loom_kv_config *kc = loom_kv_config_of(kv);
    int nl = w->shard.layer_end - w->shard.layer_begin;
    if (kc->n_layers != nl || kc->n_kv_heads != w->n_kv || kc->head_dim != c->head_dim)
        return loom_error(LOOM_ERR_INVALID, "KV cache (%d layers, %d KV heads, head %d) does not match the weights "
                          "(%d layers, %d KV heads, head %d)", kc->n_layers, kc->n_kv_heads, kc->head_dim, nl,
                          w->n_kv, c->head_dim);
    loom_forward *f = calloc(1, sizeof *f);
    if (!f) return loom_error(LOOM_ERR_NOMEM, "out of memory creating the forward workspace");
    f->w = w;
    f->kv = kv;
    f->pool = pool;
    f->max_rows = max_rows;
    f->qdim = w->n_q * c->head_dim;
    f->kvdim = w->n_kv * c->head_dim;
    /* LongRoPE: the long factors when the context exceeds the original one (llama.cpp's rule) */
    f->rope_fac = w->rope_factors ? w->rope_factors
                : w->rope_long   ? (kc->max_ctx > c->ctx_orig ? w->rope_long : w->rope_short)
                                 : NULL;
    size_t R = (size_t)max_rows, rd = c->rope_dim > 0 ? (size_t)c->rope_dim : 1;
    f->x = malloc(R * c->dim * sizeof(float));
    f->xn = malloc(R * c->dim * sizeof(float));
    f->q = malloc(R * f->qdim * sizeof(float));
    f->k = malloc(R * f->kvdim * sizeof(float));
    f->v = malloc(R * f->kvdim * sizeof(float));
    f->att = malloc(R * f->qdim * sizeof(float));
    int64_t ffn_w = w->n_ffn; /* the widest MLP held: a shared expert's columns may outnumber an expert's */
    for (int l = 0; l < nl; l++)
        if (w->layers[l].w_up.rows > ffn_w) ffn_w = w->layers[l].w_up.rows;
    f->gate = malloc(R * ffn_w * sizeof(float));
    f->up = malloc(R * ffn_w * sizeof(float));
    f->scratch = malloc(R * c->dim * sizeof(float));
    if (c->n_experts) {
        f->moe_logits = malloc(R * c->n_experts * sizeof(float));
        f->moe_y = malloc(R * c->dim * sizeof(float));
        f->moe_sel = malloc(R * c->n_experts_used * sizeof(int));
        f->moe_selw = malloc(R * c->n_experts_used * sizeof(float));
        f->moe_rows = malloc(R * c->n_experts_used * sizeof(int));
        f->moe_w = malloc(R * c->n_experts_used * sizeof(float));
        f->moe_count = malloc(((size_t)c->n_experts + 1) * sizeof(int));
        f->moe_fill = malloc(((size_t)c->n_experts + 1) * sizeof(int));
        f->moe_p = malloc((size_t)c->n_experts * sizeof(float));
        size_t qb = 1; /* every expert's gate (up) has the tensor's type */
        for (int l = 0; l < nl; l++)
            for (int e = 0; w->layers[l].x_up && e < c->n_experts; e++) {
                const size_t g = act_need(&w->layers[l].x_gate[e], max_rows), u = act_need(&w->layers[l].x_up[e], max_rows);
                qb = g > qb ? g : qb, qb = u > qb ? u : qb;
            }
        f->moe_qg = malloc(qb);
        f->moe_qu = malloc(qb);
    }
    bool mla_ok = true;
    if (c->mla) { /* the heads' rows quantized for attn_k_b / attn_v_b: the widest of the layers' types */
        size_t xk = 1, xv = 1;
        for (int l = 0; l < nl; l++) {
            const size_t k = act_need(&w->layers[l].wk_b, max_rows), v = act_need(&w->layers[l].wv_b, max_rows);
            xk = k > xk ? k : xk, xv = v > xv ? v : xv;
        }
        f->mla_qa = malloc(R * (size_t)(c->q_lora > 0 ? c->q_lora : 1) * sizeof(float));
        f->mla_xk = malloc(xk * (size_t)w->n_q);
        f->mla_xv = malloc(xv * (size_t)w->n_q);
        mla_ok = f->mla_qa && f->mla_xk && f->mla_xv;
    }
    f->rope = malloc(R * rd * sizeof(float));
    if (swa_rope_differs(c)) f->rope_swa = malloc(R * rd * sizeof(float));
    bool yarn_ok = true;
    if (c->rope_yarn && c->rope_dim > 0) {
        f->yarn_fac = malloc(rd * sizeof(float));
        if (f->rope_swa) f->yarn_fac_swa = malloc(rd * sizeof(float));
        yarn_ok = f->yarn_fac && (f->yarn_fac_swa || !f->rope_swa);
        if (f->yarn_fac) yarn_factors(c, c->rope_base, c->rope_freq_scale, f->rope_fac, f->yarn_fac);
        if (f->yarn_fac_swa) yarn_factors(c, c->rope_base_swa, c->rope_scale_swa, f->rope_fac, f->yarn_fac_swa);
    }
    f->scores = malloc((size_t)loom_pool_size(pool) * loom_attention_scratch_floats(kc, w->n_q, w->n_kv, c->head_dim,
                                                                                     max_rows) * sizeof(float));
    size_t ab = act_need(&w->lm_head, max_rows);
    loom_mat **ms = malloc((size_t)loom_layer_max_mats(c) * sizeof *ms);
    const bool ms_ok = ms != NULL;
    for (int l = 0; ms && l < nl; l++) {
        const int nm = loom_layer_mats(c, &w->layers[l], ms);
        for (int i = 0; i < nm; i++) {
            size_t b = act_need(ms[i], max_rows);
            if (b > ab) ab = b;
        }
    }
    free(ms);
    f->act_bytes = ab;
    f->stage_bytes = ((ab / (size_t)max_rows) + 63) & ~(size_t)63; /* the widest activation row */
    f->stage = aligned_alloc(64, (size_t)loom_pool_size(pool) * (f->stage_bytes ? f->stage_bytes : 64));
    f->spans = aligned_alloc(64, (size_t)loom_pool_size(pool) * MM_MAX_JOBS * sizeof *f->spans);
    const char *steal = getenv("LOOM_MM_STEAL");
    char *steal_end = NULL;
    f->steal_min = steal && *steal ? strtoull(steal, &steal_end, 10) : MM_STEAL_MIN_BYTES;
    if (steal && *steal && (*steal_end || *steal == '-')) {
        loom_forward_free(f);
        return loom_error(LOOM_ERR_INVALID, "LOOM_MM_STEAL=%s: expected 0 (threads keep their rows) or a piece size in bytes",
                          steal);
    }
    const char *sm = getenv("LOOM_STREAM_ACT");
    if (!sm || !*sm || !strcmp(sm, "auto")) f->stream_mode = -1;
    else if (!strcmp(sm, "0") || !strcmp(sm, "1")) f->stream_mode = sm[0] - '0';
    else {
        loom_forward_free(f);
        return loom_error(LOOM_ERR_INVALID, "LOOM_STREAM_ACT=%s: expected 0 (never), 1 (always) or auto", sm);
    }
    const char *prof = getenv("LOOM_CPU_PROFILE");
    if (prof && atoi(prof) > 0) {
        f->prof = calloc(1, sizeof *f->prof);
        if (f->prof) {
            f->prof->bucket = -1;
            f->prof->thread_busy = calloc((size_t)loom_pool_size(pool) * 8, sizeof(double));
            if (!f->prof->thread_busy) free(f->prof), f->prof = NULL;
        }
    }
    bool ok = ms_ok && yarn_ok && mla_ok && f->stage && f->spans && f->x && f->xn && f->q && f->k && f->v && f->att && f->gate && f->up && f->scratch &&
              f->rope && f->scores && (f->rope_swa || !swa_rope_differs(c)) &&
              (!c->n_experts || (f->moe_logits && f->moe_y && f->moe_sel && f->moe_selw && f->moe_rows && f->moe_w &&
                                   f->moe_count && f->moe_fill && f->moe_qg && f->moe_qu && f->moe_p));
    for (int j = 0; j < MM_MAX_JOBS; j++) {
        f->act[j] = malloc(ab ? ab : 1);
        ok = ok && f->act[j];
    }
    if (!ok) {
        loom_forward_free(f);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating the forward workspace for %d rows", max_rows);
    }
    *out = f;
    return NULL;
}

void loom_forward_free(loom_forward *f) {
    if (!f) return;
    free(f->lora_scale);
    free(f->lora_ent);
    free(f->lora_grp);
    free(f->lora_t);
    free(f->lora_tt);
    if (f->prof) {
        prof_close_step(f->prof);
        prof_print(f, f->prof);
        free(f->prof->thread_busy);
        free(f->prof);
    }
    free(f->x);
    free(f->xn);
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->att);
    free(f->gate);
    free(f->up);
    free(f->scratch);
    free(f->moe_logits);
    free(f->moe_qg);
    free(f->moe_qu);
    free(f->moe_p);
    free(f->mla_qa);
    free(f->mla_xk);
    free(f->mla_xv);
    free(f->moe_y);
    free(f->moe_sel);
    free(f->moe_selw);
    free(f->moe_rows);
    free(f->moe_w);
    free(f->moe_count);
    free(f->moe_fill);
    free(f->rope);
    free(f->yarn_fac);
    free(f->yarn_fac_swa);
    free(f->rope_swa);
    free(f->scores);
    for (int j = 0; j < MM_MAX_JOBS; j++) free(f->act[j]);
    free(f->stage);
    free(f->spans);
    free(f);
}

int loom_forward_max_rows(const loom_forward *f) { return f->max_rows; }
float *loom_forward_hidden(loom_forward *f) { return f->x; }
float *loom_forward_scratch(loom_forward *f) { return f->scratch; }

/* ------------------------------------------------------------ pieces */

/* Rotary angles of one position (sliding-window layers' with swa), times
 * the attention factor (LongRoPE's, YaRN's magnitude). */
static void rope_row(const loom_forward *f, float *cs, int pos, bool swa) {
    const loom_model_config *c = &f->w->cfg;
    const float base = swa ? c->rope_base_swa : c->rope_base;
    if (f->yarn_fac) loom_rope_angles(cs, pos, c->rope_dim, base, 1.0f, swa ? f->yarn_fac_swa : f->yarn_fac);
    else loom_rope_angles(cs, pos, c->rope_dim, base, swa ? c->rope_scale_swa : c->rope_freq_scale, f->rope_fac);
    if (c->rope_attn_factor > 0 && c->rope_attn_factor != 1.0f)
        for (int i = 0; i < c->rope_dim; i++) cs[i] *= c->rope_attn_factor;
}

loom_status loom_forward_prepare(loom_forward *f, const loom_batch *b) {
    const loom_model_config *c = &f->w->cfg;
    const loom_kv_config *kc = loom_kv_config_of(f->kv);
    if (b->n < 1 || b->n > f->max_rows)
        return loom_error(LOOM_ERR_INVALID, "batch of %d rows (the workspace holds 1..%d)", b->n, f->max_rows);
    for (int i = 0; i < b->n; i++) {
        int s = b->seq[i], p = b->pos[i];
        if (s < 0 || s >= kc->max_seqs)
            return loom_error(LOOM_ERR_INVALID, "batch row %d: KV slot %d out of range (0..%d)", i, s, kc->max_seqs - 1);
        if (p < 0 || p >= loom_kv_capacity(f->kv, s))
            return loom_error(LOOM_ERR_INVALID, "batch row %d: position %d of slot %d has no KV block reserved", i, p, s);
        if (c->pos == LOOM_POS_LEARNED && p >= c->ctx_train)
            return loom_error(LOOM_ERR_CONTEXT, "batch row %d: position %d is past the %d learned positions of %s", i,
                              p, c->ctx_train, c->arch_name);
        if (c->rope_dim > 0) {
            rope_row(f, f->rope + (size_t)i * c->rope_dim, p, false);
            if (f->rope_swa) rope_row(f, f->rope_swa + (size_t)i * c->rope_dim, p, true);
        }
    }
    f->prepared = b;
    f->stream = false;
    if (b->n >= ACT_STREAM_ROWS && loom_pool_size(f->pool) > 1 && f->stream_mode) { /* copy_stream */
        if (f->stream_mode > 0) f->stream = true;
        else {
            const double now = loom_now_s();
            if (now >= f->probe_next) {
                f->stream_wide = loom_pool_handoff_ns(f->pool, 32) > ACT_STREAM_NS;
                /* at most 1 % of the time: a pool with more threads than free cores waits for time slices */
                f->probe_next = now + fmax(ACT_PROBE_S, 100 * (loom_now_s() - now));
            }
            f->stream = f->stream_wide;
        }
    }
    if (f->prof) {
        prof_close_step(f->prof);
        f->prof->bucket = prof_bucket_of(b->n);
        f->prof->cur_streamed = f->stream;
        f->prof->step_t0 = f->prof->last_end = loom_now_s();
    }
    return NULL;
}

loom_status loom_forward_embed(loom_forward *f, const loom_batch *b) {
    const loom_weights *w = f->w;
    int dim = w->cfg.dim;
    if (b->embd) {
        memcpy(f->x, b->embd, (size_t)b->n * dim * sizeof(float));
        return NULL;
    }
    if (!w->shard.embed) return loom_error(LOOM_ERR_INVALID, "this rank holds no token embedding");
    for (int i = 0; i < b->n; i++) {
        int32_t t = b->token[i];
        if (t < 0 || t >= w->cfg.vocab)
            return loom_error(LOOM_ERR_INVALID, "batch row %d: token id %d is outside the vocabulary (0..%d)", i, t,
                              w->cfg.vocab - 1);
        float *xi = f->x + (size_t)i * dim;
        if (t >= w->shard.vocab_begin && t < w->shard.vocab_end) {
            const int64_t row = t - w->shard.vocab_begin;
            if (w->embed.r8) loom_r8_dequant_row(w->embed.type, w->embed.data, row, dim, xi); /* a tied head's copy */
            else loom_dequant_row(w->embed.type, (const uint8_t *)w->embed.data + (size_t)row * w->embed.stride, xi, dim);
        } else
            memset(xi, 0, (size_t)dim * sizeof(float));
    }
    return NULL;
}

void loom_forward_embed_finish(loom_forward *f, const loom_batch *b) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    int dim = c->dim;
    if (b->embd) return;
    bool scale = c->embd_scale > 0 && c->embd_scale != 1.0f;
    if (!scale && !w->pos_embd.data && !w->type_row && !w->embd_norm.w) return;
    float *tmp = f->xn;
    for (int i = 0; i < b->n; i++) {
        float *xi = f->x + (size_t)i * dim;
        if (scale)
            for (int d = 0; d < dim; d++) xi[d] *= c->embd_scale;
        if (w->pos_embd.data) {
            loom_dequant_row(w->pos_embd.type, (const uint8_t *)w->pos_embd.data + (size_t)b->pos[i] * w->pos_embd.stride,
                             tmp, dim);
            for (int d = 0; d < dim; d++) xi[d] += tmp[d];
        }
        if (w->type_row)
            for (int d = 0; d < dim; d++) xi[d] += w->type_row[d];
        if (w->embd_norm.w) norm_row(c, &w->embd_norm, xi, xi, dim);
    }
}

/* Biases, QK-norm and rotation of the queries and keys, and the store of
 * keys and values into the cache, by heads: units [u0, u1) of the query
 * heads (0 .. n_q) then the KV heads (n_q .. n_q + n_kv), every row. */
typedef struct {
    loom_forward *f;
    const loom_layer *L;
    int layer;
    const loom_attention_args *a;
} qk_task;

static void qk_heads(const qk_task *t, int u0, int u1) {
    loom_forward *f = t->f;
    const loom_layer *L = t->L;
    const loom_model_config *c = &f->w->cfg;
    const int hd = c->head_dim, nq = f->w->n_q, n = t->a->n;
    const float *rope = f->rope_swa && loom_layer_is_swa(c, t->layer) ? f->rope_swa : f->rope;
    const bool rotates = loom_layer_rotates(c, t->layer);
    for (int u = u0; u < u1; u++) {
        const bool kv = u >= nq;
        const int h = kv ? u - nq : u;
        for (int i = 0; i < n; i++) {
            float *x = kv ? f->k + (size_t)i * f->kvdim + (size_t)h * hd : f->q + (size_t)i * f->qdim + (size_t)h * hd;
            if (L->bq) {
                const float *b = (kv ? L->bk : L->bq) + (size_t)h * hd;
                for (int j = 0; j < hd; j++) x[j] += b[j];
                if (kv) {
                    float *v = f->v + (size_t)i * f->kvdim + (size_t)h * hd;
                    for (int j = 0; j < hd; j++) v[j] += L->bv[(size_t)h * hd + j];
                }
            }
            if (L->q_norm) loom_row_rmsnorm(x, x, kv ? L->k_norm : L->q_norm, hd, c->norm_eps);
            if (rotates) loom_rope_head(x, rope + (size_t)i * c->rope_dim, c->rope_dim, c->rope_neox);
            if (!kv && c->attn_temp_scale > 0) { /* temperature tuning, as llama.cpp computes its factor */
                const float p = (float)t->a->pos[i];
                const float s = (float)(log(floor(p / (float)c->ctx_orig) + 1.0) * c->attn_temp_scale + 1.0);
                for (int j = 0; j < hd; j++) x[j] *= s;
            }
        }
        if (kv) loom_attention_store_heads(t->a, h, h + 1);
    }
}

static void qk_worker(void *ctx, int ith, int nth) {
    const qk_task *t = ctx;
    int64_t u0, u1;
    loom_split_range(t->f->w->n_q + t->f->w->n_kv, 1, ith, nth, &u0, &u1);
    qk_heads(t, (int)u0, (int)u1);
}

/* partial[:n] += bias on the one rank that holds the first slice of the split (the sum adds it once). */
static void add_bias_once(float *partial, const float *bias, bool mine, int n, int dim) {
    if (!bias || !mine) return;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < dim; d++) partial[(size_t)i * dim + d] += bias[d];
}

/* Per-head matmuls of MLA: y_h = m's rows [h·R, (h+1)·R) (head h's matrix,
 * R = rows_per_head) times head h's n activation rows (xq + h·n·xb, xb bytes
 * apart), into y + h·y_head with rows ldy apart; the heads' rows split over
 * the pool as one matrix's. */
typedef struct {
    const loom_mat *m;
    int64_t rows_per_head;
    const uint8_t *xq;
    size_t xb;
    int n;
    float *y;
    int64_t y_head, ldy;
} head_mm_task;

static void head_mm_worker(void *ctx, int ith, int nth) {
    const head_mm_task *t = ctx;
    const int64_t R = t->rows_per_head;
    int64_t r0, r1;
    loom_split_range(t->m->rows, LOOM_MATMUL_ROW_ALIGN, ith, nth, &r0, &r1);
    while (r0 < r1) {
        const int64_t h = r0 / R, e = (h + 1) * R < r1 ? (h + 1) * R : r1;
        (t->m->r8 ? loom_matmul_r8 : loom_matmul)(t->m->type, t->m->data, t->m->stride, t->m->cols, r0, e,
                                                  t->xq + (size_t)h * t->n * t->xb, t->xb, t->n,
                                                  t->y + h * t->y_head + (r0 - h * R), t->ldy);
        r0 = e;
    }
}

/* Multi-head latent attention (model.h), as llama.cpp's deepseek2 with the
 * absorbed weights: the latent and the rotated key part from attn_kv_a_mqa
 * are the one KV head (stored as key and value alike), a head's query is its
 * nope part through attn_k_b and its rotated part, the scores scaled by
 * attn_scale, and the latent part of a head's output goes through attn_v_b
 * into attn_output. Buffers: f->att first holds the heads' queries as
 * attn_q gives them, f->q the attention's queries, later attn_v_b's output.
 * The engine's cache for it has no value blocks (kv_cache.h's v_is_k): the
 * latent is held once. */
static loom_status mla_attention(loom_forward *f, int ll, const loom_batch *b, float *partial) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    const loom_layer *L = &w->layers[ll];
    const int n = b->n, nq = w->n_q, hd = c->head_dim, R = c->kv_lora, K = c->mla_k_dim, rd = c->rope_dim;
    const int nope = K - rd, V = c->mla_v_dim;
    prep_task in = {.n = n, .src = f->x, .dst = f->xn, .norm = &L->attn_norm};
    if (L->wq_a.data) { /* q = attn_q_b · norm(attn_q_a · x) */
        const loom_mat *m[2] = {&L->wq_a, &L->wk};
        float *y[2] = {f->mla_qa, f->k};
        matmuls(f, in, 2, m, y, P_QKV);
        const loom_norm qn = {L->q_a_norm, NULL};
        const loom_mat *mq[1] = {&L->wq};
        float *yq[1] = {f->att};
        matmuls(f, (prep_task){.n = n, .src = f->mla_qa, .dst = f->mla_qa, .norm = &qn}, 1, mq, yq, P_QKV);
    } else {
        const loom_mat *m[2] = {&L->wq, &L->wk};
        float *y[2] = {f->att, f->k};
        matmuls(f, in, 2, m, y, P_QKV);
    }
    double t0 = f->prof ? loom_now_s() : 0;
    const size_t xkb = loom_act_row_bytes(L->wk_b.type, nope), xvb = loom_act_row_bytes(L->wv_b.type, R);
    const bool kv_v_is_k = loom_kv_config_of(f->kv)->v_is_k;
    for (int i = 0; i < n; i++) {
        const float *cs = f->rope + (size_t)i * rd;
        float *kv = f->k + (size_t)i * hd;
        loom_row_rmsnorm(kv, kv, L->kv_a_norm, R, c->norm_eps);
        loom_rope_head(kv + R, cs, rd, c->rope_neox);
        if (!kv_v_is_k) /* the value: the latent (and the key part, unused); a v_is_k cache reads it from the key */
            memcpy(f->v + (size_t)i * hd, kv, (size_t)hd * sizeof(float));
        for (int h = 0; h < nq; h++) {
            float *q = f->att + ((size_t)i * nq + h) * K, *qo = f->q + ((size_t)i * nq + h) * hd;
            loom_rope_head(q + nope, cs, rd, c->rope_neox);
            memcpy(qo + R, q + nope, (size_t)rd * sizeof(float));
            loom_act_quantize(L->wk_b.type, q, f->mla_xk + ((size_t)h * n + i) * xkb, nope);
        }
    }
    head_mm_task tk = {&L->wk_b, R, f->mla_xk, xkb, n, f->q, hd, (int64_t)nq * hd};
    loom_pool_run(f->pool, head_mm_worker, &tk); /* each head's query latent: attn_k_b · q_nope */
    if (f->prof) {
        prof_add(f, P_ROPE, t0);
        t0 = loom_now_s();
    }
    loom_attention_args a = {f->kv, ll, n, b->pos, b->seq, nq, w->n_kv, hd, w->q_to_kv, f->q, f->k, f->v, f->att,
                             .scale = c->attn_scale};
    loom_attention_store_heads(&a, 0, w->n_kv);
    loom_attention_compute(&a, f->pool, f->scores);
    for (int i = 0; i < n; i++)
        for (int h = 0; h < nq; h++)
            loom_act_quantize(L->wv_b.type, f->att + ((size_t)i * nq + h) * hd, f->mla_xv + ((size_t)h * n + i) * xvb, R);
    head_mm_task tv = {&L->wv_b, V, f->mla_xv, xvb, n, f->q, V, (int64_t)nq * V};
    loom_pool_run(f->pool, head_mm_worker, &tv); /* each head's value: attn_v_b · its output's latent */
    if (f->prof) prof_add(f, P_ATTN, t0);
    const loom_mat *mo[1] = {&L->wo};
    float *yo[1] = {partial};
    matmuls(f, (prep_task){.n = n, .src = f->q, .dst = f->q}, 1, mo, yo, P_WO);
    return NULL;
}

loom_status loom_forward_attention(loom_forward *f, int layer, const loom_batch *b, float *partial) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    if (layer < w->shard.layer_begin || layer >= w->shard.layer_end)
        return loom_error(LOOM_ERR_INVALID, "layer %d is not held here (layers %d..%d)", layer, w->shard.layer_begin,
                          w->shard.layer_end - 1);
    if (f->prepared != b) return loom_error(LOOM_ERR_INVALID, "attention on a batch that was not prepared");
    int ll = layer - w->shard.layer_begin, n = b->n, hd = c->head_dim;
    const loom_layer *L = &w->layers[ll];
    if (c->mla) return mla_attention(f, ll, b, partial);

    const loom_mat *m[3] = {&L->wq, &L->wk, &L->wv};
    float *y[3] = {f->q, f->k, f->v};
    matmuls(f, (prep_task){.n = n, .src = f->x, .dst = L->attn_norm.w ? f->xn : f->x,
                           .norm = L->attn_norm.w ? &L->attn_norm : NULL}, 3, m, y, P_QKV);
    double t0 = f->prof ? loom_now_s() : 0;
    loom_attention_args a = {f->kv, ll, n, b->pos, b->seq, w->n_q, w->n_kv, hd, w->q_to_kv, f->q, f->k, f->v, f->att,
                             .scale = c->attn_scale, .softcap = c->attn_softcap,
                             .window = loom_layer_is_swa(c, layer) ? c->swa_window : 0,
                             .bidirectional = c->bidirectional, .sinks = L->sinks};
    qk_task qt = {f, L, layer, &a};
    if (n >= QK_POOL_ROWS) loom_pool_run(f->pool, qk_worker, &qt);
    else qk_heads(&qt, 0, w->n_q + w->n_kv);
    if (f->prof) {
        prof_add(f, P_ROPE, t0);
        t0 = loom_now_s();
    }
    loom_attention_compute(&a, f->pool, f->scores);
    if (f->prof) prof_add(f, P_ATTN, t0);

    const loom_mat *mo[1] = {&L->wo};
    float *yo[1] = {partial};
    matmuls(f, (prep_task){.n = n, .src = f->att, .dst = f->att}, 1, mo, yo, P_WO);
    add_bias_once(partial, L->bo, w->shard.q_begin == 0, n, c->dim);
    return NULL;
}

/* The index of the largest of v[0..n) not marked in taken (the lower index first among equals). */
static int best_untaken(const float *v, int n, const uint64_t *taken) {
    int best = -1;
    for (int e = 0; e < n; e++)
        if (!((taken[e / 64] >> (e % 64)) & 1) && (best < 0 || v[e] > v[best])) best = e;
    return best;
}

/* Row i's experts and weights from its router logits lg (n_experts), as
 * llama.cpp's build_moe_ffn: probabilities p, the softmax of the logits
 * or (expert_sigmoid) their sigmoids; the n_experts_used of highest p
 * (plus probs_b where given; with expert groups, among the n_group_used
 * groups whose two best sum highest), weighted by their p, renormalised to
 * sum 1 (at least F16's smallest normal, as llama.cpp clamps the sum) where
 * the model says so, or by the softmax of their logits alone
 * (expert_weight_softmax); then times expert_weights_scale. p's scratch:
 * n_experts floats. */
static void moe_route(const loom_model_config *c, const float *lg, const float *probs_b, float *p, int *sel, float *wt) {
    const int ne = c->n_experts, k = c->n_experts_used;
    float mx = lg[0];
    for (int e = 1; e < ne; e++) mx = lg[e] > mx ? lg[e] : mx;
    /* the selection's scores: a monotone function of p is enough, so the softmax's logits stand for it */
    const float *score = lg;
    if (c->expert_sigmoid || probs_b) {
        double sum = 0;
        if (!c->expert_sigmoid)
            for (int e = 0; e < ne; e++) sum += exp((double)lg[e] - mx);
        for (int e = 0; e < ne; e++)
            p[e] = (float)(c->expert_sigmoid ? 1 / (1 + exp(-(double)lg[e])) : exp((double)lg[e] - mx) / sum) +
                   (probs_b ? probs_b[e] : 0.0f);
        score = p;
    }
    uint64_t taken[(LOOM_MAX_EXPERTS + 63) / 64] = {0};
    if (c->n_expert_groups > 1) { /* the groups outside the best n_group_used are taken already */
        const int ng = c->n_expert_groups, per = ne / ng;
        float gs[LOOM_MAX_EXPERTS];
        for (int gi = 0; gi < ng; gi++) {
            uint64_t none[(LOOM_MAX_EXPERTS + 63) / 64] = {0};
            const float *v = score + (size_t)gi * per;
            const int a = best_untaken(v, per, none);
            none[a / 64] |= 1ull << (a % 64);
            const int b = per > 1 ? best_untaken(v, per, none) : -1;
            gs[gi] = v[a] + (b >= 0 ? v[b] : 0.0f);
        }
        uint64_t gtaken[(LOOM_MAX_EXPERTS + 63) / 64] = {0}, keep[(LOOM_MAX_EXPERTS + 63) / 64] = {0};
        for (int j = 0; j < c->n_group_used; j++) {
            const int gi = best_untaken(gs, ng, gtaken);
            gtaken[gi / 64] |= 1ull << (gi % 64);
            for (int e = gi * per; e < (gi + 1) * per; e++) keep[e / 64] |= 1ull << (e % 64);
        }
        for (int e = 0; e < ne; e++)
            if (!((keep[e / 64] >> (e % 64)) & 1)) taken[e / 64] |= 1ull << (e % 64);
    }
    for (int j = 0; j < k; j++) {
        const int best = best_untaken(score, ne, taken);
        taken[best / 64] |= 1ull << (best % 64);
        sel[j] = best;
    }
    float wsum = 0;
    if (c->expert_sigmoid) {
        for (int j = 0; j < k; j++) {
            wt[j] = (float)(1 / (1 + exp(-(double)lg[sel[j]])));
            wsum += wt[j];
        }
    } else {
        double sum = 0; /* the softmax's denominator: over every expert, or the chosen (whose max is mx too) */
        if (c->expert_weight_softmax)
            for (int j = 0; j < k; j++) sum += exp((double)lg[sel[j]] - mx);
        else
            for (int e = 0; e < ne; e++) sum += exp((double)lg[e] - mx);
        for (int j = 0; j < k; j++) {
            wt[j] = (float)(exp((double)lg[sel[j]] - mx) / sum);
            wsum += wt[j];
        }
    }
    if (c->expert_norm) {
        if (wsum < 6.103515625e-5f) wsum = 6.103515625e-5f;
        for (int j = 0; j < k; j++) wt[j] /= wsum;
    }
    if (c->expert_weights_scale > 0 && c->expert_weights_scale != 1.0f)
        for (int j = 0; j < k; j++) wt[j] *= c->expert_weights_scale;
}

/* partial (n, dim) = a mixture of experts over this rank's columns of
 * each, or its whole experts (loom_shard.split_experts): the router on the
 * normed rows, each row's experts (moe_route), then every expert held here
 * that some row chose over those rows, gathered, its output added to
 * theirs times their weight. */
static void moe_mlp(loom_forward *f, const loom_layer *L, int n, float *partial) {
    const loom_model_config *c = &f->w->cfg;
    const int ne = c->n_experts, k = c->n_experts_used, dim = c->dim;
    const loom_mat *mr[1] = {&L->router};
    float *yr[1] = {f->moe_logits};
    const bool normed = L->ffn_norm.w != NULL; /* (none: post-LN, nomic-bert-moe; the experts read xn as it is) */
    if (!normed) memcpy(f->xn, f->x, (size_t)n * dim * sizeof *f->xn);
    matmuls(f, (prep_task){.n = n, .src = normed ? f->x : f->xn, .dst = f->xn, .norm = normed ? &L->ffn_norm : NULL}, 1,
            mr, yr, P_ROUTE);
    double t0 = f->prof ? loom_now_s() : 0;
    int *cnt = f->moe_count, *fill = f->moe_fill, *sel = f->moe_sel, *rows = f->moe_rows;
    float *wt = f->moe_selw, *rw = f->moe_w;
    memset(cnt, 0, ((size_t)ne + 1) * sizeof *cnt);
    for (int i = 0; i < n; i++) {
        if (L->router_b)
            for (int e = 0; e < ne; e++) f->moe_logits[(size_t)i * ne + e] += L->router_b[e];
        moe_route(c, f->moe_logits + (size_t)i * ne, L->probs_b, f->moe_p, sel + (size_t)i * k, wt + (size_t)i * k);
        for (int j = 0; j < k; j++) cnt[sel[(size_t)i * k + j] + 1]++;
    }
    for (int e = 0; e < ne; e++) cnt[e + 1] += cnt[e]; /* cnt[e]: where expert e's rows begin */
    memcpy(fill, cnt, (size_t)ne * sizeof *fill);
    for (int i = 0; i < n; i++) /* the (row, weight) pairs by expert, in row order */
        for (int j = 0; j < k; j++) {
            const int at = fill[sel[(size_t)i * k + j]]++;
            rows[at] = i;
            rw[at] = wt[(size_t)i * k + j];
        }
    if (f->prof) prof_add(f, P_ROUTE, t0);
    memset(partial, 0, (size_t)n * dim * sizeof *partial);
    /* the normed rows quantized once for the experts' gate and up (one
     * format when their types agree; up alone for ungated experts,
     * ffn_plain), each expert's gathered from there */
    int held = 0;
    while (held < ne && !L->x_up[held].data) held++;
    const bool gated = held < ne && L->x_gate[held].data;
    const loom_mat *u0 = held < ne ? &L->x_up[held] : NULL, *g0 = gated ? &L->x_gate[held] : u0;
    const bool one = g0 && g0->type == u0->type && g0->cols == u0->cols;
    const size_t gb = g0 ? loom_act_row_bytes(g0->type, g0->cols) : 0, ub = g0 ? loom_act_row_bytes(u0->type, u0->cols) : 0;
    if (g0) {
        prep_task p = {.f = f, .n = n, .src = f->xn, .dst = f->xn, .n_quant = one ? 1 : 2,
                       .qm = {g0, u0}, .qdst = {f->moe_qg, f->moe_qu}};
        prep_run(f, &p);
    }
    for (int e = 0; e < ne; e++) {
        const int m = cnt[e + 1] - cnt[e];
        if (!m || !L->x_up[e].data) continue; /* no row's, or another rank's (the sum over TP adds it) */
        const int *r = rows + cnt[e];
        const float *rwt = rw + cnt[e];
        for (int i = 0; i < m; i++) {
            memcpy(f->act[0] + (size_t)i * gb, f->moe_qg + (size_t)r[i] * gb, gb);
            if (!one) memcpy(f->act[1] + (size_t)i * ub, f->moe_qu + (size_t)r[i] * ub, ub);
        }
        mm_task t = {.n_jobs = gated ? 2 : 1, .n = m, .thread_busy = f->prof ? f->prof->thread_busy : NULL};
        t.jobs[gated] = (mm_job){&L->x_up[e], f->act[one ? 0 : 1], ub, f->up, L->x_up[e].rows};
        if (gated) t.jobs[0] = (mm_job){&L->x_gate[e], f->act[0], gb, f->gate, L->x_gate[e].rows};
        mm_run(f, &t, P_UP);
        const int64_t nf = L->x_up[e].rows;
        if (L->xb_gate) /* the expert's biases of these columns (gpt-oss) */
            for (int i = 0; i < m; i++)
                for (int64_t j = 0; j < nf; j++) {
                    f->gate[(size_t)i * nf + j] += L->xb_gate[e][j];
                    f->up[(size_t)i * nf + j] += L->xb_up[e][j];
                }
        const loom_mat *md[1] = {&L->x_down[e]};
        float *yd[1] = {f->moe_y};
        const prep_task act = gated ? (prep_task){.n = m, .src = f->gate, .dst = f->gate, .act = true, .up = f->up}
                                    : (prep_task){.n = m, .src = f->up, .dst = f->up, .act = true};
        matmuls(f, act, 1, md, yd, P_DOWN);
        /* its down bias once over the ranks: where its column 0 is (every rank when split by experts) */
        const float *bd = L->xb_down && f->w->shard.ffn_begin == 0 ? L->xb_down[e] : NULL;
        for (int i = 0; i < m; i++) {
            float *o = partial + (size_t)r[i] * dim;
            const float *y = f->moe_y + (size_t)i * dim, a = rwt[i];
            if (bd) for (int d = 0; d < dim; d++) o[d] += a * (y[d] + bd[d]);
            else for (int d = 0; d < dim; d++) o[d] += a * y[d];
        }
    }
    if (L->w_up.data) { /* the shared expert's columns here, every row (times sigmoid(shared_gate · row): qwen2moe) */
        const loom_mat *m2[2] = {&L->w_gate, &L->w_up};
        float *y2[2] = {f->gate, f->up};
        matmuls(f, (prep_task){.n = n, .src = f->xn, .dst = f->xn}, 2, m2, y2, P_UP);
        const loom_mat *md[1] = {&L->w_down};
        float *yd[1] = {f->moe_y};
        matmuls(f, (prep_task){.n = n, .src = f->gate, .dst = f->gate, .act = true, .up = f->up}, 1, md, yd, P_DOWN);
        for (int i = 0; i < n; i++) {
            const float *x = f->xn + (size_t)i * dim, *y = f->moe_y + (size_t)i * dim;
            double z = 0;
            if (L->shared_gate)
                for (int d = 0; d < dim; d++) z += (double)L->shared_gate[d] * x[d];
            const float a = L->shared_gate ? (float)(1 / (1 + exp(-z))) : 1.0f;
            float *o = partial + (size_t)i * dim;
            for (int d = 0; d < dim; d++) o[d] += a * y[d];
        }
    }
}

void loom_forward_mlp(loom_forward *f, int layer, int n, float *partial) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    const loom_layer *L = &w->layers[layer - w->shard.layer_begin];
    if (L->router.data) {
        moe_mlp(f, L, n, partial);
        return;
    }
    if (!L->w_up.data) { /* a leading dense layer of which this rank holds no column */
        memset(partial, 0, (size_t)n * c->dim * sizeof *partial);
        return;
    }
    prep_task in = {.n = n, .src = f->x, .dst = L->ffn_norm.w ? f->xn : f->x, .norm = L->ffn_norm.w ? &L->ffn_norm : NULL};
    const loom_mat *md[1] = {&L->w_down};
    float *yd[1] = {partial};
    if (L->w_gate.data) { /* act(gate) · up */
        const loom_mat *m[2] = {&L->w_gate, &L->w_up};
        float *y[2] = {f->gate, f->up};
        matmuls(f, in, 2, m, y, P_UP);
        matmuls(f, (prep_task){.n = n, .src = f->gate, .dst = f->gate, .act = true, .up = f->up}, 1, md, yd, P_DOWN);
    } else { /* act(up + b) */
        const loom_mat *m[1] = {&L->w_up};
        float *y[1] = {f->up};
        matmuls(f, in, 1, m, y, P_UP);
        matmuls(f, (prep_task){.n = n, .src = f->up, .dst = f->up, .act = true, .bias = L->b_up}, 1, md, yd, P_DOWN);
    }
    int64_t d0 = w->shard.ffn_begin, d1; /* the bias on the rank with the first column (a mixture's dense layer's) */
    if (loom_layer_dense(c, layer)) loom_shard_dense(c, &w->shard, &d0, &d1);
    add_bias_once(partial, L->b_down, d0 == 0, n, c->dim);
}

void loom_forward_add(loom_forward *f, int n, const float *partial) {
    size_t total = (size_t)n * f->w->cfg.dim;
    for (size_t i = 0; i < total; i++) f->x[i] += partial[i];
}

typedef struct {
    loom_forward *f;
    const loom_norm *post, *res;
    int n;
    float *sum;
} residual_task;

static void residual_rows(const residual_task *t, int r0, int r1) {
    const loom_model_config *c = &t->f->w->cfg;
    const int dim = c->dim;
    for (int i = r0; i < r1; i++) {
        float *xi = t->f->x + (size_t)i * dim, *si = t->sum + (size_t)i * dim;
        if (t->post->w) norm_row(c, t->post, si, si, dim);
        if (c->residual_scale > 0)
            for (int d = 0; d < dim; d++) xi[d] += si[d] * c->residual_scale;
        else
            for (int d = 0; d < dim; d++) xi[d] += si[d];
        if (t->res->w) norm_row(c, t->res, xi, xi, dim);
    }
}

static void residual_worker(void *ctx, int ith, int nth) {
    const residual_task *t = ctx;
    int64_t r0, r1;
    loom_split_range(t->n, 1, ith, nth, &r0, &r1);
    residual_rows(t, (int)r0, (int)r1);
}

void loom_forward_residual(loom_forward *f, int layer, loom_block block, int n, float *sum) {
    const loom_layer *L = &f->w->layers[layer - f->w->shard.layer_begin];
    residual_task t = {f, block == LOOM_BLOCK_ATTN ? &L->attn_post : &L->ffn_post,
                       block == LOOM_BLOCK_ATTN ? &L->attn_res : &L->ffn_res, n, sum};
    /* rows over the pool when there are several (one row: a run would cost more than the adds) */
    if (n >= 2 && loom_pool_size(f->pool) > 1) loom_pool_run(f->pool, residual_worker, &t);
    else residual_rows(&t, 0, n);
}

/* A reranker's classification head on one row h (dim): tanh(cls h + b)
 * where the file has cls, then cls.output (+ bias) into out (n_cls_out),
 * softmaxed for a qwen3 (its labels' probabilities), as llama.cpp's rank
 * pooling computes it. t: (dim) scratch. */
static void rank_head(const loom_weights *w, const float *h, float *t, float *out) {
    const loom_model_config *c = &w->cfg;
    const int dim = c->dim;
    if (w->cls_w) {
        for (int r = 0; r < dim; r++) {
            double s = w->cls_b ? w->cls_b[r] : 0;
            for (int k = 0; k < dim; k++) s += (double)w->cls_w[(size_t)r * dim + k] * h[k];
            t[r] = tanhf((float)s);
        }
        h = t;
    }
    for (int r = 0; r < c->n_cls_out; r++) {
        double s = w->cls_out_b ? w->cls_out_b[r] : 0;
        for (int k = 0; k < dim; k++) s += (double)w->cls_out_w[(size_t)r * dim + k] * h[k];
        out[r] = (float)s;
    }
    if (c->arch == LOOM_ARCH_QWEN3) loom_softmax_row(out, c->n_cls_out);
}

int loom_forward_logits(loom_forward *f, const loom_batch *b, float *logits) {
    const loom_weights *w = f->w;
    const loom_model_config *c = &w->cfg;
    int dim = c->dim, n_out = 0;
    if (c->encoder) { /* the hidden states themselves (a decoder's after its output norm), or a reranker's scores */
        const bool rank = c->pooling == LOOM_POOL_RANK;
        const int width = rank ? c->n_cls_out : dim;
        float *scratch = rank ? malloc(2 * (size_t)dim * sizeof *scratch) : NULL; /* (out of memory: no scores) */
        for (int i = 0; i < b->n && (!rank || scratch); i++) {
            if (!b->logits[i]) continue;
            float *h = rank ? scratch : logits + (size_t)n_out * width;
            if (c->out_norm_hidden) norm_row(c, &w->out_norm, h, f->x + (size_t)i * dim, dim);
            else memcpy(h, f->x + (size_t)i * dim, (size_t)dim * sizeof(float));
            if (rank) rank_head(w, h, scratch + dim, logits + (size_t)n_out * width);
            n_out++;
        }
        free(scratch);
        return n_out;
    }
    for (int i = 0; i < b->n; i++) /* gather the rows that want logits */
        if (b->logits[i]) memcpy(f->xn + (size_t)n_out++ * dim, f->x + (size_t)i * dim, (size_t)dim * sizeof(float));
    if (n_out) {
        const loom_mat *m[1] = {&w->lm_head};
        float *y[1] = {logits};
        matmuls(f, (prep_task){.n = n_out, .src = f->xn, .dst = f->xn, .norm = &w->out_norm}, 1, m, y, P_HEAD);
        if (c->final_softcap > 0) loom_softcap_row(logits, (int)(n_out * w->n_vocab), c->final_softcap);
        if (c->logit_scale > 0 && c->logit_scale != 1.0f) { /* times 1/scale, as llama.cpp's ggml_scale */
            const float r = 1.0f / c->logit_scale;
            for (size_t i = 0; i < (size_t)n_out * w->n_vocab; i++) logits[i] *= r;
        }
    }
    return n_out;
}
