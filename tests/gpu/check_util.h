/*
 * tests/gpu/check_util.h — what the device check's files share: the record
 * of checks (PASS / FAIL / NOT RUN lines on stdout, collected for the JSON
 * summary), measured figures, random inputs and device buffer helpers that
 * turn a failed device call into a failed check (never an exit).
 */
#ifndef LOOM_GPU_CHECK_UTIL_H
#define LOOM_GPU_CHECK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/device.h"
#include "runtime/status.h"

/* One check: pass 1, fail 0; detail is printed after the name. */
void ck_record(const char *name, int pass, const char *fmt, ...) LOOM_PRINTF(3, 4);
/* A failed device call as a failed check (frees st). Returns 0. */
int ck_status(const char *name, loom_status st);
/* A measured figure (printed, and in the JSON). */
void ck_metric(const char *name, double value, const char *unit);
/* A note for the JSON summary and stdout. */
void ck_note(const char *key, const char *fmt, ...) LOOM_PRINTF(2, 3);
int ck_failures(void);
/* The summary printed last: every failed check, the checks that are not
 * per-type kernel entries, the worst kernel entry per group, every figure. */
void ck_summary(void);
int ck_count(void);
/* Writes the JSON summary to path (no-op for NULL). */
void ck_write_json(const char *path);

/* Deterministic random floats, roughly normal with std sd. */
void ck_randn(float *x, size_t n, double sd, uint64_t seed);

/* alloc + upload (NULL and a failed check on error) */
void *ck_dup(loom_device *d, const void *h, size_t bytes, const char *what);
/* upload; a failed check on error */
void ck_upload(loom_device *d, void *dp, const void *h, size_t bytes);
/* download + sync; 0 and a failed check on error */
int ck_fetch(loom_device *d, void *h, const void *dp, size_t bytes, const char *what);

/* max |a - b| over n, and max |b| (the reference) */
double ck_maxdiff(const float *a, const float *ref, size_t n, double *ref_max);

/* ops.c */
void ck_ops(loom_device *ref, loom_device *dut);

#endif
