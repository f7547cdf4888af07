/*
 * launch/membw.h — a STREAM-like probe of the machine's memory read
 * bandwidth, the ceiling of decode speed (decode reads every weight once per
 * step).
 *
 * loom_membw_create() maps an anonymous buffer of `bytes` (4 KiB pages, as
 * the weights' file mapping has; no huge-page advice) and fills it with
 * non-zero data from the pool's threads, so every page is backed and each
 * thread first touches the part it later reads. loom_membw_read() reads the
 * whole buffer once with every thread of the pool (thread i a contiguous
 * slice, 64-byte loads folded into a checksum so nothing is optimised away)
 * and returns the seconds it took. The caller repeats it and keeps the best
 * run, as STREAM does; the buffer should be far larger than the last-level
 * cache (bench uses 2 GiB against a 260 MiB L3).
 *
 * Errors: create fails with LOOM_ERR_NOMEM when the buffer cannot be mapped
 * (nothing is left allocated); read cannot fail.
 */
#ifndef LOOM_MEMBW_H
#define LOOM_MEMBW_H

#include <stdint.h>

#include "runtime/status.h"
#include "runtime/threadpool.h"

typedef struct loom_membw loom_membw;

/* bytes is rounded down to a multiple of 4 KiB (at least 4 KiB). The pool
 * fills the buffer; it may differ from the pool later passed to read. */
loom_status loom_membw_create(int64_t bytes, loom_pool *pool, loom_membw **out) LOOM_MUST_USE;
void loom_membw_free(loom_membw *m);
int64_t loom_membw_bytes(const loom_membw *m);

/* One timed pass over the whole buffer with every thread of `pool`; seconds. */
double loom_membw_read(loom_membw *m, loom_pool *pool);

/* The instruction set the read loop uses ("avx512", "avx2", "sse2", "c"). */
const char *loom_membw_isa(void);

#endif
