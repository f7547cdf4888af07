/*
 * runtime/ops.h — element-wise math of a transformer block, header-only.
 *
 * Every function is `static inline`, free of VLAs and C-only constructs, and
 * compiles as C11 and as CUDA C++ (host and device), so the GPU kernels run
 * exactly the math the CPU tests check. Rows are plain float arrays.
 */
#ifndef LOOM_OPS_H
#define LOOM_OPS_H

#include <math.h>

#ifndef LOOM_HD
#ifdef __CUDACC__
#define LOOM_HD __host__ __device__
#else
#define LOOM_HD
#endif
#endif

/* x · sigmoid(x) */
static inline LOOM_HD float loom_silu(float x) { return x / (1.0f + expf(-x)); }

/* out[i] = x[i] / rms(x) * w[i]   (out may alias x) */
static inline LOOM_HD void loom_rmsnorm_row(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Rotary embedding angles of one position:
 *   cs[2i] = cos(pos · θ_i), cs[2i+1] = sin(pos · θ_i),  i < rope_dim/2,
 *   θ_i = freq_scale · base^(−2i/rope_dim) / factor_i
 * factors (rope_dim/2 values, Llama-3 long-context scaling) may be NULL. */
static inline LOOM_HD void loom_rope_angles(float *cs, int pos, int rope_dim, float base, float freq_scale,
                                            const float *factors) {
    for (int i = 0; i < rope_dim / 2; i++) {
        double inv = pow((double)base, -2.0 * i / rope_dim) * freq_scale;
        if (factors) inv /= factors[i];
        double a = (double)pos * inv;
        cs[2 * i] = (float)cos(a);
        cs[2 * i + 1] = (float)sin(a);
    }
}

/* Rotates one head in place. Adjacent pairs (x[2i], x[2i+1]) — GGUF `llama`
 * weights were permuted at conversion for this — or, with neox, split
 * halves (x[i], x[i + rope_dim/2]) as `qwen2` uses. Dimensions past
 * rope_dim are left alone. */
static inline LOOM_HD void loom_rope_head(float *x, const float *cs, int rope_dim, int neox) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float c = cs[2 * i], s = cs[2 * i + 1];
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/* In-place softmax of n values. */
static inline LOOM_HD void loom_softmax_row(float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* gate[i] = silu(gate[i]) · up[i] */
static inline LOOM_HD void loom_swiglu_row(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) gate[i] = loom_silu(gate[i]) * up[i];
}

/* ---- the other families' rows (gpt2, bert: LayerNorm, GELU; gemma: GELU, soft-capping) ---- */

/* out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i]   (ggml_norm then the
 * affine part; b may be NULL; out may alias x). Mean and variance in double. */
static inline LOOM_HD void loom_layernorm_row(float *out, const float *x, const float *w, const float *b, int n,
                                              float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += x[i];
    float mean = (float)(sum / n);
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] - mean) * (x[i] - mean);
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] - mean) * scale * w[i] + (b ? b[i] : 0.0f);
}

/* GELU, the tanh approximation (ggml_gelu, PyTorch's gelu(approximate="tanh")):
 * 0.5·x·(1 + tanh(sqrt(2/pi)·(x + 0.044715·x^3))). */
static inline LOOM_HD float loom_gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * x * (1.0f + 0.044715f * x * x)));
}

/* gate[i] = gelu(gate[i]) · up[i]; with up NULL, gelu(gate[i]). */
static inline LOOM_HD void loom_gelu_row(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) gate[i] = loom_gelu(gate[i]) * (up ? up[i] : 1.0f);
}

/* x[i] = cap · tanh(x[i] / cap): gemma2's soft-capping of scores and logits. */
static inline LOOM_HD void loom_softcap_row(float *x, int n, float cap) {
    const float inv = 1.0f / cap;
    for (int i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}

#endif
