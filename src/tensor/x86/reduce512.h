/*
 * A step shared by the AVX-512 VNNI dot kernels (dot_avx512.c,
 * nf4_vnni512.c), which hold 16 blocks of 32 as four vectors of one block
 * per 128-bit lane, four int32 partial sums each. Include only from files
 * built with -mavx512f.
 */
#ifndef MEMFIT_TENSOR_X86_REDUCE512_H
#define MEMFIT_TENSOR_X86_REDUCE512_H

#include <immintrin.h>

/* acc[g] (lane j: four partial sums of block 4g + j) -> one int32 per block, position 4j + g. */
static inline __attribute__((always_inline)) __m512i mf_reduce4_epi32(const __m512i acc[4])
{
    __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[0], acc[1]),
                                 _mm512_unpackhi_epi32(acc[0], acc[1]));
    __m512i v = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[2], acc[3]),
                                 _mm512_unpackhi_epi32(acc[2], acc[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v));
}

#endif
