/*
 * AVX2 + FMA elementwise activations: exact-erf GELU, e^x and SwiGLU, eight lanes at
 * a time, with the same formulas as their scalar twins in src/tensor/act.c
 * (so both agree to a few ulp): e^x by mf_exp8 (x86/vmath.h), erf by
 * Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
 */
#include <immintrin.h>

#include "tensor/kernels.h"
#include "tensor/x86/vmath.h"

void mf_avx2_exp(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, mf_exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        x[i] = mf_expf(x[i]);
}

void mf_avx2_swiglu(float *g, const float *u, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        __m256 e = mf_exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
        _mm256_storeu_ps(
            g + i, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    if (i < n)
        mf_swiglu_scalar(g + i, u + i, n - i);
}

void mf_avx2_gelu(float *x, size_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
        __m256 az = _mm256_andnot_ps(sign, z);
        __m256 t =
            _mm256_div_ps(_mm256_set1_ps(1.0f),
                          _mm256_fmadd_ps(az, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.0f)));
        __m256 p = _mm256_set1_ps(1.061405429f);
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
        p = _mm256_mul_ps(p, t);
        __m256 e = mf_exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(az, az)));
        __m256 erf_abs = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
        __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign, z));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v),
                                              _mm256_add_ps(_mm256_set1_ps(1.0f), erf)));
    }
    if (i < n)
        mf_gelu_scalar(x + i, n - i);
}
