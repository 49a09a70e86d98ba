/*
 * The last step of the AVX-512 NF4 absmax decoders (nf4_avx512.c with a
 * gather, nf4_vnni512.c with byte lookups): up to 64 looked-up nested_map values
 * times their nested absmax plus the offset. Include only from files built
 * with -mavx512f.
 */
#ifndef MEMFIT_TENSOR_X86_NF4_512_H
#define MEMFIT_TENSOR_X86_NF4_512_H

#include <immintrin.h>
#include <string.h>

#include "tensor/kernels.h"

/* Blocks b..b+len-1 (len 1..16 * nv, nv <= 4) with nested_map values v[len / 16]: their
 * absmax into out. The nested scales are read once: len <= 64 spans at most two nested
 * blocks unless they are smaller than 64. */
static inline __attribute__((always_inline)) void mf_nf4_absmax_n(const struct memfit_nf4_matrix *m,
                                                                  uint64_t b, size_t len,
                                                                  const __m512 *v, float *out)
{
    unsigned nshift = (unsigned)__builtin_ctz(m->nested_blocksize);
    uint64_t first = b >> nshift, last = (b + len - 1) >> nshift;
    if (last > first + 1) { /* more than two nested blocks (nested blocks below 64) */
        for (size_t k = 0; k < len; k++)
            out[k] = mf_nf4_block_absmax(m, b + k);
        return;
    }
    float n0, n1;
    memcpy(&n0, (const float *)m->nested_absmax + first, sizeof(n0));
    memcpy(&n1, (const float *)m->nested_absmax + last, sizeof(n1));
    /* the lanes from the next nested block's first block on take its scale */
    uint64_t split = (first + 1) * m->nested_blocksize - b;
    uint64_t next = last > first ? ~0ull << split : 0; /* split < len <= 64 */
    __m512 s0 = _mm512_set1_ps(n0), s1 = _mm512_set1_ps(n1), off = _mm512_set1_ps(m->offset);
    _Pragma("GCC unroll 4") for (size_t j = 0; j * 16 < len; j++)
    {
        __m512 n = _mm512_mask_blend_ps((__mmask16)(next >> (16 * j)), s0, s1);
        /* multiply then add, as the scalar decoder: the same floats */
        __m512 a = _mm512_add_ps(_mm512_mul_ps(v[j], n), off);
        size_t k = len - 16 * j < 16 ? len - 16 * j : 16;
        _mm512_mask_storeu_ps(out + 16 * j, (__mmask16)((1u << k) - 1), a);
    }
}

#endif
