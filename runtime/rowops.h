/*
 * runtime/rowops.h — the element-wise row operations of the forward pass
 * (RMSNorm, SwiGLU, LayerNorm, GELU), run by the active kernel table
 * (runtime/kernels.h: loom_kernels_get()->rmsnorm / ->swiglu / ...). GELU's
 * SIMD levels use the sigmoid form x / (1 + e^(-2y)) with the same 2^x as
 * SwiGLU (relative difference from the scalar tanhf ~1e-7); LayerNorm is the
 * scalar reference on every level.
 *
 * The scalar level is runtime/ops.h, the reference that also compiles as
 * CUDA. The SIMD levels agree with it within float rounding: RMSNorm sums
 * squares in float lanes instead of one double (relative difference
 * ~1e-7), SwiGLU computes the sigmoid with a polynomial 2^x (relative error
 * <= 1.2e-7, runtime/cpu/vmath.h). A row's result depends only on that row
 * (runtime/kernels.h: batch invariance). Never allocate, never fail.
 */
#ifndef LOOM_ROWOPS_H
#define LOOM_ROWOPS_H

/* out[i] = x[i] / rms(x) * w[i] for one row of n (out may alias x). */
void loom_row_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* gate[i] = silu(gate[i]) * up[i] for one row of n. */
void loom_row_swiglu(float *gate, const float *up, int n);

/* out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i] (b may be NULL; out may alias x). */
void loom_row_layernorm(float *out, const float *x, const float *w, const float *b, int n, float eps);

/* gate[i] = gelu(gate[i]) * up[i] (tanh approximation); up may be NULL (then gelu alone). */
void loom_row_gelu(float *gate, const float *up, int n);

#endif
