/*
 * The AVX2 NF4 row kernel (mf_nf4_dot_fn): 64 codes (32 bytes) per step are
 * split into nibbles, put back in element order (the first element of a pair
 * sits in the high nibble), looked up in the 16 int8 levels with vpshufb and
 * multiplied with the Q8_0 activations by maddubs (the weight's sign moved
 * onto the activation, which never holds -128). Each 32 elements' integer
 * sum is exact, as in the scalar reference; only the order of the float
 * sums differs.
 */
#include <immintrin.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"
#include "tensor/x86/vmath.h"

static inline __m256 block_sum(__m256i w, const struct mf_block_q8_0 *y, float scale, __m256 acc)
{
    __m256i a = _mm256_loadu_si256((const __m256i *)y->qs);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_set1_ps(scale * _cvtsh_ss(y->d)), _mm256_cvtepi32_ps(p32), acc);
}

float mf_avx2_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                      const void *act)
{
    const struct mf_block_q8_0 *y = act;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mf_nf4_q8));
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t nb = n / MF_QK, j = 0;
    for (; j + 2 <= nb; j += 2) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(codes + j * (MF_QK / 2)));
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
        __m256i lo = _mm256_and_si256(b, low4);
        /* per 128-bit lane: bytes 0-7 -> elements 0-15, bytes 8-15 -> 16-31 */
        __m256i u0 = _mm256_unpacklo_epi8(hi, lo), u1 = _mm256_unpackhi_epi8(hi, lo);
        __m256i e0 = _mm256_permute2x128_si256(u0, u1, 0x20);
        __m256i e1 = _mm256_permute2x128_si256(u0, u1, 0x31);
        acc0 = block_sum(_mm256_shuffle_epi8(table, e0), y + j, absmax[j >> shift], acc0);
        acc1 = block_sum(_mm256_shuffle_epi8(table, e1), y + j + 1, absmax[(j + 1) >> shift], acc1);
    }
    if (j < nb)
        acc0 = block_sum(mf_nf4_levels32(codes + j * (MF_QK / 2)), y + j, absmax[j >> shift], acc0);
    return mf_hsum_ps(_mm256_add_ps(acc0, acc1)) * (1.0f / 127.0f);
}
