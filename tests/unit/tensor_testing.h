/*
 * Helpers shared by the tensor unit tests (header-only): a seeded random
 * generator (so failures reproduce), Gaussian rows, row byte sizes, and the
 * error measures the tolerances in docs/quantization.md are stated in.
 */
#ifndef MF_TENSOR_TESTING_H
#define MF_TENSOR_TESTING_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "memfit/tensor.h"

struct mf_rng {
    uint64_t state;
};

static inline uint32_t mf_rng_u32(struct mf_rng *r)
{
    r->state = r->state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->state >> 32);
}

/* Uniform in [0, 1). */
static inline double mf_rng_unit(struct mf_rng *r)
{
    return (mf_rng_u32(r) >> 8) * (1.0 / 16777216.0);
}

static inline float mf_rng_gauss(struct mf_rng *r)
{
    double u1 = mf_rng_unit(r) + 1e-12, u2 = mf_rng_unit(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static inline void mf_fill_gauss(struct mf_rng *r, float *x, size_t n, float sigma)
{
    for (size_t i = 0; i < n; i++)
        x[i] = sigma * mf_rng_gauss(r);
}

static inline size_t mf_row_bytes(enum memfit_type type, uint64_t n)
{
    uint64_t bytes = 0;
    if (memfit_type_bytes(type, n, &bytes) != MEMFIT_OK)
        return 0;
    return (size_t)bytes;
}

/* sqrt(mean((a-b)^2)) / sqrt(mean(a^2)) */
static inline double mf_rel_rmse(const float *a, const float *b, size_t n)
{
    double err = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        err += d * d;
        ref += (double)a[i] * (double)a[i];
    }
    return ref > 0 ? sqrt(err / ref) : sqrt(err);
}

/* sum |a_i * b_i| in double: the scale a dot product's rounding error is measured against. */
static inline double mf_abs_dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += fabs((double)a[i] * (double)b[i]);
    return s;
}

static inline double mf_dot_double(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

#endif
