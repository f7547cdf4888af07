/*
 * runtime/rowops.h — the element-wise row operations of the forward pass
 * (RMSNorm, SwiGLU) with run-time ISA dispatch (loom_isa_get()).
 *
 * The scalar level is runtime/ops.h, the reference that also compiles as
 * CUDA. The SIMD levels agree with it within float rounding: RMSNorm sums
 * squares in float lanes instead of one double (relative difference
 * ~1e-7), SwiGLU computes the sigmoid with a polynomial 2^x (relative error
 * <= 1.2e-7, runtime/cpu/vmath.h). Never allocate, never fail.
 */
#ifndef LOOM_ROWOPS_H
#define LOOM_ROWOPS_H

/* out[i] = x[i] / rms(x) * w[i] for one row of n (out may alias x). */
void loom_row_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* gate[i] = silu(gate[i]) * up[i] for one row of n. */
void loom_row_swiglu(float *gate, const float *up, int n);

/* Per-ISA implementations (runtime/cpu/rowops_*.c). */
void loom_row_rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps);
void loom_row_swiglu_avx2(float *gate, const float *up, int n);
void loom_row_rmsnorm_avx512(float *out, const float *x, const float *w, int n, float eps);
void loom_row_swiglu_avx512(float *gate, const float *up, int n);

#endif
