/* runtime/cpu/rowops_scalar.c — RMSNorm, SwiGLU, LayerNorm and GELU of the scalar level:
 * runtime/ops.h's element-wise functions, the reference (also the CUDA
 * code's), behind the kernel table. */
#include "runtime/cpu/cpu_kernels.h"
#include "runtime/ops.h"

void loom_scalar_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    loom_rmsnorm_row(out, x, w, n, eps);
}

void loom_scalar_swiglu(float *gate, const float *up, int n) { loom_swiglu_row(gate, up, n); }

void loom_scalar_layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps) {
    loom_layernorm_row(out, x, w, b, n, eps);
}

void loom_scalar_gelu(float *gate, const float *up, int n) { loom_gelu_row(gate, up, n); }
