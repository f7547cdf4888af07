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



void loom_scalar_lora_down(const uint16_t *a, int nk, int64_t cols, const float *const *x, float *const *t,
                           const float *s, int n) {
    for (int kk = 0; kk < nk; kk++)
        for (int i = 0; i < n; i++) {
            const uint16_t *ak = a + (size_t)kk * cols;
            float d = 0;
            for (int64_t c = 0; c < cols; c++) d += loom_f16_to_f32(ak[c]) * x[i][c];
            t[i][kk] = s[i] * d;
        }
}

void loom_scalar_lora_up(float *y, const float *t, const uint16_t *bt, int r, int64_t rows, int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++) {
        float v = y[o];
        for (int k = 0; k < r; k++) v += t[k] * loom_f16_to_f32(bt[(size_t)k * rows + o]);
        y[o] = v;
    }
}
