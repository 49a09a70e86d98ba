/*
 * Elementwise activations for the model forwards: exact-erf GELU (what
 * nn.GELU() computes), e^x and the LLMs' SwiGLU over a row, scalar references here, AVX2 in
 * x86/act.c. e^x uses Cephes' range reduction and degree-6 polynomial (about
 * 1 ulp); erf uses Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), which is
 * well inside float GELU's own rounding at the magnitudes that matter and
 * several times cheaper than libm's erff.
 */
#include <math.h>

#include "tensor/kernels.h"

float mf_expf(float x)
{
    x = x < -87.3f ? -87.3f : x > 88.7f ? 88.7f : x;
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } s = {.u = (uint32_t)((int32_t)fx + 127) << 23};
    return y * s.f;
}

void mf_gelu_scalar(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float z = x[i] * 0.70710678118654752f, az = fabsf(z);
        float t = 1.0f / (1.0f + 0.3275911f * az);
        float p = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
                   0.254829592f) *
                  t;
        float erf_abs = 1.0f - p * mf_expf(-az * az);
        x[i] = 0.5f * x[i] * (1.0f + copysignf(erf_abs, z));
    }
}

void mf_swiglu_scalar(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + mf_expf(-g[i])) * u[i];
}

void mf_swiglu(float *g, const float *u, size_t n)
{
#if defined(__x86_64__)
    if (mf_tensor_simd_active()) {
        mf_avx2_swiglu(g, u, n);
        return;
    }
#endif
    mf_swiglu_scalar(g, u, n);
}

static void exp_scalar(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = mf_expf(x[i]);
}

void memfit_gelu(float *x, size_t n)
{
#if defined(__x86_64__)
    if (mf_tensor_simd_active()) {
        mf_avx2_gelu(x, n);
        return;
    }
#endif
    mf_gelu_scalar(x, n);
}

void memfit_exp(float *x, size_t n)
{
#if defined(__x86_64__)
    if (mf_tensor_simd_active()) {
        mf_avx2_exp(x, n);
        return;
    }
#endif
    exp_scalar(x, n);
}
