/*
 * launch/membw.c — STREAM-like read bandwidth probe (see membw.h).
 */
#include "launch/membw.h"
#include "runtime/clock.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MEMBW_X86 1
#endif

struct loom_membw {
    uint8_t *buf;   /* (bytes) anonymous mapping, 4 KiB aligned */
    int64_t bytes;
    uint64_t sums[64 * 8]; /* per-thread checksums, 64 bytes apart (no false sharing) */
};

static volatile uint64_t membw_sink;


/* ---- read loops: sum 64-bit lanes of [p, p + n), n a multiple of 256 ---- */

#ifndef MEMBW_X86
static uint64_t read_c(const uint8_t *p, int64_t n) {
    const uint64_t *q = (const uint64_t *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (int64_t i = 0; i < n / 8; i += 8) {
        a += q[i] + q[i + 4];
        b += q[i + 1] + q[i + 5];
        c += q[i + 2] + q[i + 6];
        d += q[i + 3] + q[i + 7];
    }
    return a + b + c + d;
}
#endif

#ifdef MEMBW_X86
static uint64_t read_sse2(const uint8_t *p, int64_t n) {
    __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
    for (int64_t i = 0; i < n; i += 64) {
        a = _mm_add_epi64(a, _mm_load_si128((const __m128i *)(p + i)));
        b = _mm_add_epi64(b, _mm_load_si128((const __m128i *)(p + i + 16)));
        c = _mm_add_epi64(c, _mm_load_si128((const __m128i *)(p + i + 32)));
        d = _mm_add_epi64(d, _mm_load_si128((const __m128i *)(p + i + 48)));
    }
    a = _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d));
    uint64_t v[2];
    _mm_storeu_si128((__m128i *)v, a);
    return v[0] + v[1];
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, int64_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (int64_t i = 0; i < n; i += 128) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 32)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 64)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)v, a);
    return v[0] + v[1] + v[2] + v[3];
}

__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, int64_t n) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (int64_t i = 0; i < n; i += 256) {
        a = _mm512_add_epi64(a, _mm512_load_si512((const void *)(p + i)));
        b = _mm512_add_epi64(b, _mm512_load_si512((const void *)(p + i + 64)));
        c = _mm512_add_epi64(c, _mm512_load_si512((const void *)(p + i + 128)));
        d = _mm512_add_epi64(d, _mm512_load_si512((const void *)(p + i + 192)));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
}
#endif

typedef uint64_t (*read_fn)(const uint8_t *p, int64_t n);

static read_fn pick(const char **name) {
#ifdef MEMBW_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return *name = "avx512", read_avx512;
    if (__builtin_cpu_supports("avx2")) return *name = "avx2", read_avx2;
    return *name = "sse2", read_sse2;
#else
    return *name = "c", read_c;
#endif
}

const char *loom_membw_isa(void) {
    const char *name;
    (void)pick(&name);
    return name;
}

/* ---- pool tasks ---- */

typedef struct {
    loom_membw *m;
    read_fn fn;
    int fill;
} task;

static void run_task(void *ctx, int ith, int nth) {
    task *t = ctx;
    int64_t b, e;
    loom_split_range(t->m->bytes, 4096, ith, nth, &b, &e);
    if (e <= b) return;
    if (t->fill) {
        uint64_t *q = (uint64_t *)(t->m->buf + b);
        for (int64_t i = 0; i < (e - b) / 8; i++) q[i] = 0x9e3779b97f4a7c15ull * (uint64_t)(b / 8 + i + 1);
        return;
    }
    t->m->sums[(ith % 64) * 8] = t->fn(t->m->buf + b, e - b);
}

loom_status loom_membw_create(int64_t bytes, loom_pool *pool, loom_membw **out) {
    *out = NULL;
    bytes &= ~(int64_t)4095;
    if (bytes < 4096) bytes = 4096;
    loom_membw *m = calloc(1, sizeof *m);
    if (!m) return loom_error(LOOM_ERR_NOMEM, "out of memory for the bandwidth probe");
    void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        free(m);
        return loom_error(LOOM_ERR_NOMEM, "cannot map %lld bytes for the bandwidth probe", (long long)bytes);
    }
    m->buf = p;
    m->bytes = bytes;
    task t = {m, NULL, 1};
    loom_pool_run(pool, run_task, &t);
    *out = m;
    return NULL;
}

void loom_membw_free(loom_membw *m) {
    if (!m) return;
    munmap(m->buf, (size_t)m->bytes);
    free(m);
}

int64_t loom_membw_bytes(const loom_membw *m) { return m->bytes; }

double loom_membw_read(loom_membw *m, loom_pool *pool) {
    const char *name;
    task t = {m, pick(&name), 0};
    double t0 = loom_now_s();
    loom_pool_run(pool, run_task, &t);
    double dt = loom_now_s() - t0;
    uint64_t s = 0;
    for (int i = 0; i < 64; i++) s += m->sums[i * 8];
    membw_sink = s;
    return dt;
}
