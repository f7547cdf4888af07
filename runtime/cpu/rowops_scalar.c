/* runtime/cpu/rowops_scalar.c — RMSNorm and SwiGLU of the scalar level:
 * runtime/ops.h's element-wise functions, the reference (also the CUDA
 * code's), behind the kernel table. */
#include "runtime/cpu/cpu_kernels.h"
#include "runtime/ops.h"

void loom_scalar_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    loom_rmsnorm_row(out, x, w, n, eps);
}

void loom_scalar_swiglu(float *gate, const float *up, int n) { loom_swiglu_row(gate, up, n); }
