/*
 * runtime/threadpool.h — a persistent pool of worker threads.
 *
 * loom_pool_run() runs fn(ctx, ith, nth) on every thread of the pool — the
 * caller is thread 0 — and returns when all have finished. Workers are
 * created once; between runs they spin briefly (a run follows the previous
 * one within microseconds during a forward pass) and then sleep on a futex,
 * so an idle pool and oversubscribed MPI ranks cost no CPU.
 *
 * Not reentrant: one run at a time per pool, from one calling thread.
 */
#ifndef LOOM_THREADPOOL_H
#define LOOM_THREADPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/status.h"

typedef struct loom_pool loom_pool;
typedef void (*loom_pool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 (1 = no workers, run() calls fn inline). */
loom_status loom_pool_create(int n_threads, loom_pool **out) LOOM_MUST_USE;
void loom_pool_free(loom_pool *p);
int loom_pool_size(const loom_pool *p);
void loom_pool_run(loom_pool *p, loom_pool_fn fn, void *ctx);

/* The round trip of a cache line between the calling thread and each worker
 * in turn (`trips` round trips each, after a few to warm up), in ns: the
 * slowest worker's mean; 0 for a pool of one. About 60-110 ns where two
 * cores share an L3 and 300-400 where they do not (Zen 4). */
double loom_pool_handoff_ns(loom_pool *p, int trips);

/* A range of work units [lo, hi) shared by a pool run's threads: its owner
 * takes pieces from the front, and a thread whose own ranges are done takes
 * pieces from the back (work stealing), so threads that run at different
 * speeds (two cores' share of the memory bus is not always even) finish
 * together. Both ends move by one compare-and-swap of (lo, hi). */
typedef struct {
    _Alignas(64) _Atomic uint64_t v; /* lo | hi << 32 */
} loom_span;

/* [lo, hi), 0 <= lo <= hi < 2^32 */
void loom_span_init(loom_span *s, int64_t lo, int64_t hi);
/* Takes up to n >= 1 units from the front (or the back) of s into [*lo, *hi);
 * false when s is empty. */
bool loom_span_take(loom_span *s, bool front, int64_t n, int64_t *lo, int64_t *hi);
/* Units not taken yet (a snapshot). */
int64_t loom_span_left(loom_span *s);

/* The CPUs this process may run on (its affinity mask), at least 1. */
int loom_cpu_count(void);

/* Splits [0, n) into nth near-equal parts, each a multiple of `align` except
 * possibly the last; sets [*begin, *end) for part ith. */
void loom_split_range(int64_t n, int64_t align, int ith, int nth, int64_t *begin, int64_t *end);

#endif
