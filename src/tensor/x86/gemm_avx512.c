/*
 * AVX-512F micro-kernel for the float panels of x86/gemm.c: the same
 * k-major panel of 16 weight rows, one ZMM register per k instead of two
 * YMM, and 12 activations per call instead of 6, so each panel load feeds
 * 12 FMAs into 12 accumulators. On a CPU with full-width 512-bit units
 * (Zen 5, Intel server parts) that is twice the multiply-adds per
 * instruction. Every output is the same chain of FMAs over k as in the AVX2
 * kernel, so the results are identical. Built with -mavx512f and called only
 * when mf_tensor_avx512_active().
 */
#include <immintrin.h>

#include "tensor/kernels.h"

#define NR 16 /* panel rows: one ZMM */
#define MR MF_GEMM_AVX512_MR

/* Writes (or adds) the first nr of 16 sums of one activation into y. */
static inline void store_row(float *y, __m512 c, size_t nr, bool acc)
{
    __mmask16 m = nr >= NR ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    if (acc)
        c = _mm512_add_ps(c, _mm512_maskz_loadu_ps(m, y));
    _mm512_mask_storeu_ps(y, m, c);
}

void mf_avx512_gemm_kernel(const float *panel, const float *x, size_t xs, size_t nc, size_t kc,
                           float *y, size_t ldy, size_t nr, bool acc)
{
    const float *xr[MR];
    __m512 c[MR];
#pragma GCC unroll 12
    for (size_t i = 0; i < MR; i++) {
        xr[i] = x + (i < nc ? i : 0) * xs; /* missing activations repeat the first, unstored */
        c[i] = _mm512_setzero_ps();
    }
    for (size_t k = 0; k < kc; k++) {
        __m512 b = _mm512_load_ps(panel + k * NR);
#pragma GCC unroll 12
        for (size_t i = 0; i < MR; i++)
            c[i] = _mm512_fmadd_ps(_mm512_set1_ps(xr[i][k]), b, c[i]);
    }
    for (size_t i = 0; i < nc; i++)
        store_row(y + i * ldy, c[i], nr, acc);
}
