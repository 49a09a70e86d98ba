/*
 * The AVX-512BW NF4 row kernel (mf_nf4_dot_fn), built with -mavx512f
 * -mavx512bw and called only when CPUID reports both (mf_nf4_dot_kernel).
 *
 * 64 codes (32 bytes) per step: each byte is widened to a 16-bit lane, and
 * (c >> 4 | c << 8) & 0x0f0f (one vpternlogd) puts the pair back in element
 * order (the first element sits in the high nibble), so no cross-lane
 * shuffle is needed. The codes look up |level| with vpshufb (the table in
 * every 128-bit lane); codes 0-6 (the negative levels) negate the
 * activation under a compare mask (AVX-512 has no vpsignb; Q8_0 never
 * holds -128) and maddubs multiplies. The two 32-element halves are the
 * two Q8_0 activation blocks: lanes 0-7 and 8-15 of the int32 sums, scaled
 * by their own absmax * d. Each 32 elements' integer sum is exact, as in
 * the scalar reference; only the order of the float sums differs. (Forming
 * a row's absmax * d first, with gathers, and spreading it by permutes
 * measured slower than the two broadcasts per step.)
 *
 * mf_avx512_nf4_absmax decodes double-quantized absmax 16 at a time (the
 * nested map looked up by a gather, the last ones masked; 16 blocks that
 * straddle two nested blocks blend the two scales), the floats of the
 * scalar decoder.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/nf4_512.h"

struct nf4_consts {
    __m512i table, low4, ones, zero, seven;
};

/* 64 codes (32 bytes) against 64 activation quants a, the int32 sums of each half times
 * its scale in s (lanes 0-7, 8-15), added to acc. */
static inline __m512 step64(const struct nf4_consts *k, __m256i c, __m512i a, __m512 s, __m512 acc)
{
    __m512i w16 = _mm512_cvtepu8_epi16(c);
    /* (w16 >> 4 | w16 << 8) & 0x0f0f: the high nibble in the low byte, the low in the high */
    __m512i e = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w16, 4), _mm512_slli_epi16(w16, 8),
                                          k->low4, 0xa8);
    __m512i u = _mm512_shuffle_epi8(k->table, e); /* |level| */
    /* codes 0-6 stand for negative levels */
    __m512i sa = _mm512_mask_sub_epi8(a, _mm512_cmplt_epu8_mask(e, k->seven), k->zero, a);
    __m512i p32 = _mm512_madd_epi16(_mm512_maddubs_epi16(u, sa), k->ones);
    return _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(p32), acc);
}

static inline __m512 scale2(float s0, float s1)
{
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(s0), _mm512_set1_ps(s1));
}

static inline __m512i act2(const struct mf_block_q8_0 *y)
{
    __m256i a0 = _mm256_loadu_si256((const __m256i *)y[0].qs);
    __m256i a1 = _mm256_loadu_si256((const __m256i *)y[1].qs);
    return _mm512_inserti64x4(_mm512_castsi256_si512(a0), a1, 1);
}

float mf_avx512_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                        const void *act)
{
    const struct mf_block_q8_0 *y = act;
    __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)mf_nf4_q8));
    struct nf4_consts k = {_mm512_abs_epi8(table), _mm512_set1_epi16(0x0f0f), _mm512_set1_epi16(1),
                           _mm512_setzero_si512(), _mm512_set1_epi8(7)};
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t nb = n / MF_QK, j = 0;
    for (; j + 4 <= nb; j += 4) {
        const uint8_t *c = codes + j * (MF_QK / 2);
        __m512 s0 = scale2(absmax[j >> shift] * _cvtsh_ss(y[j].d),
                           absmax[(j + 1) >> shift] * _cvtsh_ss(y[j + 1].d));
        __m512 s1 = scale2(absmax[(j + 2) >> shift] * _cvtsh_ss(y[j + 2].d),
                           absmax[(j + 3) >> shift] * _cvtsh_ss(y[j + 3].d));
        acc0 = step64(&k, _mm256_loadu_si256((const __m256i *)c), act2(y + j), s0, acc0);
        acc1 = step64(&k, _mm256_loadu_si256((const __m256i *)(c + 32)), act2(y + j + 2), s1, acc1);
    }
    for (; j + 2 <= nb; j += 2) {
        __m512 s = scale2(absmax[j >> shift] * _cvtsh_ss(y[j].d),
                          absmax[(j + 1) >> shift] * _cvtsh_ss(y[j + 1].d));
        acc0 = step64(&k, _mm256_loadu_si256((const __m256i *)(codes + j * (MF_QK / 2))),
                      act2(y + j), s, acc0);
    }
    if (j < nb) { /* one block: the upper half's codes and activations zero */
        __m256i c = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(codes + j * 16)));
        __m512i a = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)y[j].qs));
        __m512 s = scale2(absmax[j >> shift] * _cvtsh_ss(y[j].d), 0.0f);
        acc1 = step64(&k, c, a, s, acc1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) * (1.0f / 127.0f);
}

/* nested_map values looked up by the 16 codes at q (lanes outside `keep` 0, their codes not read).
 */
static inline __m512 map16(const float *map, const uint8_t *q, __mmask16 keep)
{
    __m512i idx = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8(keep, q)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), keep, idx, map, 4);
}

void mf_avx512_nf4_absmax(const struct memfit_nf4_matrix *m, uint64_t b0, size_t count, float *out)
{
    for (size_t i = 0; i < count; i += 16) {
        size_t len = count - i < 16 ? count - i : 16;
        __mmask16 keep = (__mmask16)((1u << len) - 1);
        __m512 v = map16(m->nested_map, (const uint8_t *)m->absmax + b0 + i, keep);
        mf_nf4_absmax_n(m, b0 + i, len, &v, out + i);
    }
}
