/*
 * runtime/dynlib.h — a shared library opened at run time rather than
 * linked: the optional GPU libraries (NCCL, cuBLAS), so that a CPU-only run
 * of a build that has them maps none of them.
 */
#ifndef LOOM_DYNLIB_H
#define LOOM_DYNLIB_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/status.h"

typedef struct {
    const char *name; /* the symbol */
    void *dst;        /* where its address goes: the address of a function pointer */
    bool optional;    /* missing: NULL is stored, not an error */
} loom_dynsym;

/* Opens lib and stores each symbol's address through its dst. Either every
 * required symbol resolves (the library then stays open until exit) or
 * nothing is stored and the error names the library, or the symbol, that
 * failed. n <= 64. */
loom_status loom_dynlib_open(const char *lib, const loom_dynsym *syms, size_t n) LOOM_MUST_USE;

#endif
