/*
 * The unquantized float types (F32, F16, BF16): scalar row conversions and
 * dot products against F32 activations, the public fp16/bf16 helpers, and
 * the weighted sum of F16 rows that decode attention takes over its cache.
 *
 * The scalar dots accumulate in double, as ggml's generic code does, so the
 * reference is more accurate than any reordered SIMD sum it is checked
 * against.
 */
#include "tensor/blocks.h"
#include "tensor/kernels.h"

float memfit_fp16_to_fp32(uint16_t h)
{
    return mf_fp16_to_fp32(h);
}

uint16_t memfit_fp32_to_fp16(float f)
{
    return mf_fp32_to_fp16(f);
}

float memfit_bf16_to_fp32(uint16_t h)
{
    return mf_bf16_to_fp32(h);
}

uint16_t memfit_fp32_to_bf16(float f)
{
    return mf_fp32_to_bf16(f);
}

void mf_f32_to_float(const void *src, float *dst, size_t n)
{
    memmove(dst, src, n * sizeof(float));
}

void mf_f32_from_float(const float *src, void *dst, size_t n)
{
    memmove(dst, src, n * sizeof(float));
}

void mf_f16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = mf_fp16_to_fp32(h[i]);
}

void mf_f16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++)
        h[i] = mf_fp32_to_fp16(src[i]);
}

void mf_bf16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = mf_bf16_to_fp32(h[i]);
}

void mf_bf16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++)
        h[i] = mf_fp32_to_bf16(src[i]);
}

float mf_dot_f32(size_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)(x[i] * y[i]);
    return (float)sum;
}

float mf_dot_f16(size_t n, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)(mf_fp16_to_fp32(x[i]) * y[i]);
    return (float)sum;
}

float mf_dot_bf16(size_t n, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)(mf_bf16_to_fp32(x[i]) * y[i]);
    return (float)sum;
}

void mf_f16_axpy_rows_scalar(size_t n, const void *rows, size_t stride, const float *p,
                             size_t n_rows, float *acc)
{
    for (size_t t = 0; t < n_rows; t++) {
        const uint16_t *v = (const uint16_t *)((const uint8_t *)rows + t * stride);
        for (size_t d = 0; d < n; d++)
            acc[d] += p[t] * mf_fp16_to_fp32(v[d]);
    }
}
