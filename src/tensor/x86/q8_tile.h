/*
 * Helpers shared by the two Q8_0 integer tiles (gemm_q8.c with AVX2,
 * gemm_q8_vnni.c with AVX-VNNI): both hold 8 weight rows per panel and give
 * each activation one vector of 8 row sums.
 */
#ifndef MEMFIT_TENSOR_X86_Q8_TILE_H
#define MEMFIT_TENSOR_X86_Q8_TILE_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The 4 bytes at q in every 32-bit lane. */
static inline __m256i mf_q8_bcast4(const void *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* Writes (or adds) the first nr <= 8 row sums of one activation. */
static inline void mf_q8_store8(float *y, __m256 acc, size_t nr, bool add)
{
    if (nr == 8) {
        if (add)
            acc = _mm256_add_ps(acc, _mm256_loadu_ps(y));
        _mm256_storeu_ps(y, acc);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    for (size_t i = 0; i < nr; i++)
        y[i] = add ? y[i] + t[i] : t[i];
}

#endif
