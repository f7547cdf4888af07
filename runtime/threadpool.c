#define _GNU_SOURCE
#include "runtime/threadpool.h"

#include "runtime/clock.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Spin iterations before a worker sleeps: ~50–100 µs of pause loops. */
#define LOOM_POOL_SPIN 20000

struct loom_pool {
    int n;                     /* threads including the caller */
    pthread_t *threads;        /* (n - 1) workers */
    loom_pool_fn fn;
    void *ctx;
    _Atomic uint32_t gen;      /* bumped per run; workers wait for a change */
    _Atomic int pending;       /* workers still running the current run */
    _Atomic int sleepers;      /* workers blocked in futex_wait */
    _Atomic int stop;
};

typedef struct {
    loom_pool *p;
    int ith;
} worker_arg;

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake_all(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static void *worker_main(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    loom_pool *p = wa.p;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < LOOM_POOL_SPIN) {
                cpu_relax();
                continue;
            }
            atomic_fetch_add(&p->sleepers, 1);
            /* seq_cst on both sides (sleepers, gen) so a run is never missed */
            if (atomic_load(&p->gen) == seen) futex_wait(&p->gen, seen);
            atomic_fetch_sub(&p->sleepers, 1);
            spins = 0;
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        p->fn(p->ctx, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

loom_status loom_pool_create(int n_threads, loom_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return loom_error(LOOM_ERR_INVALID, "thread count %d is out of range (1..1024)", n_threads);
    loom_pool *p = calloc(1, sizeof *p);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "cannot allocate a thread pool");
    p->n = n_threads;
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            free(p);
            return loom_error(LOOM_ERR_NOMEM, "cannot allocate a thread pool");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        int rc = wa ? 0 : 1;
        if (wa) {
            wa->p = p;
            wa->ith = i;
            rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
            if (rc) free(wa);
        }
        if (rc) {
            p->n = i; /* stop the workers started so far */
            loom_pool_free(p);
            return loom_error(LOOM_ERR_NOMEM, "cannot start worker thread %d of %d", i, n_threads);
        }
    }
    *out = p;
    return NULL;
}

void loom_pool_free(loom_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        atomic_store(&p->stop, 1);
        atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
        futex_wake_all(&p->gen);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    }
    free(p->threads);
    free(p);
}

int loom_pool_size(const loom_pool *p) { return p ? p->n : 1; }

void loom_pool_run(loom_pool *p, loom_pool_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) futex_wake_all(&p->gen);
    fn(ctx, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins < LOOM_POOL_SPIN) cpu_relax();
        else sched_yield();
    }
}

typedef struct {
    _Alignas(64) _Atomic int64_t flag; /* thread 0 writes odd values, the worker answers with the next even one */
    _Alignas(64) _Atomic int turn;     /* the worker whose turn it is */
    int warm, trips;
    double ns;                         /* the slowest worker's mean round trip */
} handoff_task;

static void handoff_run(void *ctx, int ith, int nth) {
    handoff_task *t = ctx;
    const int64_t n = t->warm + t->trips;
    if (ith > 0) {
        while (atomic_load_explicit(&t->turn, memory_order_acquire) != ith) cpu_relax();
        for (int64_t i = 0; i < n; i++) {
            while (atomic_load_explicit(&t->flag, memory_order_acquire) != 2 * i + 1) cpu_relax();
            atomic_store_explicit(&t->flag, 2 * i + 2, memory_order_release);
        }
        return;
    }
    for (int j = 1; j < nth; j++) {
        double t0 = 0;
        atomic_store_explicit(&t->flag, 0, memory_order_relaxed);
        atomic_store_explicit(&t->turn, j, memory_order_release);
        for (int64_t i = 0; i < n; i++) {
            if (i == t->warm) t0 = loom_now_s(); /* the worker is answering by now */
            atomic_store_explicit(&t->flag, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(&t->flag, memory_order_acquire) != 2 * i + 2) cpu_relax();
        }
        const double ns = (loom_now_s() - t0) * 1e9 / t->trips;
        if (ns > t->ns) t->ns = ns;
        /* the next worker starts from flag 0 only after this one has seen its last value */
    }
}

double loom_pool_handoff_ns(loom_pool *p, int trips) {
    if (!p || p->n < 2 || trips < 1) return 0;
    handoff_task t = {.warm = trips / 16 > 8 ? trips / 16 : 8, .trips = trips};
    atomic_init(&t.flag, 0);
    atomic_init(&t.turn, 0);
    loom_pool_run(p, handoff_run, &t);
    return t.ns;
}

int loom_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void loom_split_range(int64_t n, int64_t align, int ith, int nth, int64_t *begin, int64_t *end) {
    if (align < 1) align = 1;
    int64_t units = (n + align - 1) / align;
    int64_t per = units / nth, extra = units % nth;
    int64_t ub = ith * per + (ith < extra ? ith : extra);
    int64_t ue = ub + per + (ith < extra ? 1 : 0);
    *begin = ub * align < n ? ub * align : n;
    *end = ue * align < n ? ue * align : n;
}

void loom_span_init(loom_span *s, int64_t lo, int64_t hi) {
    atomic_store_explicit(&s->v, (uint64_t)(uint32_t)lo | (uint64_t)(uint32_t)hi << 32, memory_order_relaxed);
}

bool loom_span_take(loom_span *s, bool front, int64_t n, int64_t *lo, int64_t *hi) {
    uint64_t v = atomic_load_explicit(&s->v, memory_order_relaxed);
    for (;;) {
        const uint32_t a = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (a >= b) return false;
        const uint32_t k = (int64_t)(b - a) < n ? b - a : (uint32_t)n;
        const uint64_t nv = front ? (uint64_t)(a + k) | (uint64_t)b << 32 : (uint64_t)a | (uint64_t)(b - k) << 32;
        if (atomic_compare_exchange_weak_explicit(&s->v, &v, nv, memory_order_relaxed, memory_order_relaxed)) {
            *lo = front ? a : b - k;
            *hi = front ? a + k : b;
            return true;
        }
    }
}

int64_t loom_span_left(loom_span *s) {
    const uint64_t v = atomic_load_explicit(&s->v, memory_order_relaxed);
    const uint32_t a = (uint32_t)v, b = (uint32_t)(v >> 32);
    return a < b ? b - a : 0;
}
