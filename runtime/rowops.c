/* runtime/rowops.c — the row operations through the kernel table. */
#include "runtime/rowops.h"

#include "runtime/kernels.h"

void loom_row_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    loom_kernels_get()->rmsnorm(out, x, w, n, eps);
}

void loom_row_swiglu(float *gate, const float *up, int n) { loom_kernels_get()->swiglu(gate, up, n); }

void loom_row_layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    loom_kernels_get()->layernorm(out, x, w, b, n, eps);
}

void loom_row_gelu(float *gate, const float *up, int n) { loom_kernels_get()->gelu(gate, up, n); }
