#include "runtime/rowops.h"

#include "runtime/kernels.h"
#include "runtime/ops.h"

void loom_row_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    loom_isa isa = loom_isa_get();
    if (isa >= LOOM_ISA_AVX512) loom_row_rmsnorm_avx512(out, x, w, n, eps);
    else if (isa >= LOOM_ISA_AVX2) loom_row_rmsnorm_avx2(out, x, w, n, eps);
    else loom_rmsnorm_row(out, x, w, n, eps);
}

void loom_row_swiglu(float *gate, const float *up, int n) {
    loom_isa isa = loom_isa_get();
    if (isa >= LOOM_ISA_AVX512) loom_row_swiglu_avx512(gate, up, n);
    else if (isa >= LOOM_ISA_AVX2) loom_row_swiglu_avx2(gate, up, n);
    else loom_swiglu_row(gate, up, n);
}
