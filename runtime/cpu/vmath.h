/*
 * runtime/cpu/vmath.h — vector math shared by the SIMD kernel files: 2^x on
 * 16 (AVX-512) or 8 (AVX2) floats. Included only by files compiled for that
 * ISA (*_avx512.c, *_avx2.c); each part is guarded by the ISA macro.
 */
#ifndef LOOM_CPU_VMATH_H
#define LOOM_CPU_VMATH_H

#include <immintrin.h>

#define LOOM_VINLINE static inline __attribute__((always_inline))

#if defined(__AVX512F__)
/* 2^x: n = round(x), f = x - n in [-1/2, 1/2] (exact), 2^f by a degree-6
 * polynomial (relative error <= 1.1e-7 with FMA Horner), times 2^n by
 * scalef. 0 for x < -126 (and -inf); NaN stays NaN. Same polynomial as
 * loom_exp2_8. */
LOOM_VINLINE __m512 loom_exp2_16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-126.0f);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);
    x = _mm512_max_ps(lo, x); /* NaN in x comes through */
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.534603798063472e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3400021707639098e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618489071726799e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550328642129898e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.24022646248340607f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931471824645996f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

#endif

#if defined(__AVX2__) && defined(__FMA__)
/* 2^x: n = round(x), f = x - n in [-1/2, 1/2] (exact), 2^f by a degree-6
 * polynomial (relative error <= 1.1e-7 with FMA Horner), times 2^n through
 * the exponent bits. 0 for x < -126 (and -inf); NaN stays NaN. Same
 * polynomial as loom_exp2_16. */
LOOM_VINLINE __m256 loom_exp2_8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-126.0f);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ);
    x = _mm256_max_ps(lo, x); /* NaN in x comes through */
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.534603798063472e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3400021707639098e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618489071726799e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550328642129898e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.24022646248340607f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.6931471824645996f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

#endif

#endif
