/*
 * The AVX2 NF4 row kernel (mf_nf4_dot_fn) and memfit_nf4_matvec_rows with it. A step is four
 * blocks of 32 (64 code bytes). The codes are not put back in element order: the high nibbles of
 * 32 bytes are the even elements of two blocks (one block per 128-bit lane), the low nibbles the
 * odd ones, so the activation is split the same way instead (even quants, then odd, per block).
 * Levels come from the 16 int8 levels by vpshufb; maddubs multiplies |level| with the
 * activation carrying the level's sign (activations never hold -128). The four products of a
 * step (even and odd of blocks 0-1, even and odd of blocks 2-3) are reduced into one vector whose
 * every lane is one half-block's exact integer sum (in int32), and absmax * d_act and the FMA take
 * one instruction for the four blocks. Before, each block took its own reduction, conversion and
 * FMA, and a step paid two cross-lane permutes to restore element order: an NF4 row ran at 0.6
 * of Q4_0's rate.
 *
 * memfit_nf4_matvec_rows splits the activation once per call (mf_avx2_nf4_matvec_rows); the row
 * kernel splits it step by step: the same lanes, the same floats. Only the order of the float
 * sums differs from the scalar reference.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/vmath.h"

#define INLINE    static inline __attribute__((always_inline))
#define STEP      4   /* blocks per step */
#define MAX_STEPS 256 /* split steps of the activation per call (rows up to 32768): 40 KB */

/* A step of the activation: q[0] the even quants of blocks 0 and 1 (a block per 128-bit lane),
 * q[1] their odd quants, q[2] and q[3] the same for blocks 2 and 3; d in lane order (blocks 0, 0,
 * 2, 2, 1, 1, 3, 3, as the reduction leaves them). */
struct nf4_step {
    __m256i q[4];
    __m256 d;
};

/* The int16 pair sums of four vectors to int32 lanes: lane k (k < 4) = vector k's low 128 bits,
 * lane 4 + k its high 128 bits. A pair sum reaches 2 * 127 * 127, so the pairs are widened
 * first (x86/dot_quad.c, with nibbles of at most 15, adds them as int16). */
INLINE __m256i reduce4(const __m256i m[4])
{
    const __m256i one = _mm256_set1_epi16(1);
    __m256i a = _mm256_hadd_epi32(_mm256_madd_epi16(m[0], one), _mm256_madd_epi16(m[1], one));
    __m256i b = _mm256_hadd_epi32(_mm256_madd_epi16(m[2], one), _mm256_madd_epi16(m[3], one));
    return _mm256_hadd_epi32(a, b);
}

/* Splits four Q8_0 blocks (zeros past `have`) into a step. */
static void split_step(const struct mf_block_q8_0 *y, size_t have, struct nf4_step *s)
{
    /* Per 128-bit lane: the 16 even bytes, then the 16 odd ones, of 32. */
    static const int8_t even_odd[32] = {0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                        0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15};
    const __m256i ctl = _mm256_loadu_si256((const __m256i *)even_odd);
    __m256i e[STEP];
    float d[STEP];
    for (size_t k = 0; k < STEP; k++) {
        if (k < have) {
            e[k] = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)y[k].qs), ctl);
            d[k] = _cvtsh_ss(y[k].d);
        } else {
            e[k] = _mm256_setzero_si256();
            d[k] = 0.0f;
        }
    }
    /* e[k] lane 0: block k's elements 0-15 (8 even, 8 odd), lane 1: 16-31; gather the evens
     * of both lanes into one 128-bit half, the odds into the other. */
    for (int p = 0; p < 2; p++) {
        __m256i a = _mm256_permute4x64_epi64(e[2 * p], 0xd8);     /* even0 even1 | odd0 odd1 */
        __m256i b = _mm256_permute4x64_epi64(e[2 * p + 1], 0xd8); /* the same, block 2p + 1 */
        s->q[2 * p] = _mm256_permute2x128_si256(a, b, 0x20);
        s->q[2 * p + 1] = _mm256_permute2x128_si256(a, b, 0x31);
    }
    s->d = _mm256_setr_ps(d[0], d[0], d[2], d[2], d[1], d[1], d[3], d[3]);
}

/* The absmax of the step's blocks in lane order: block j's is absmax[j >> shift]. */
INLINE __m256 step_absmax(const float *absmax, size_t j, unsigned shift)
{
    if (shift == 1) { /* blocks of 64 (bitsandbytes' default): two values */
        __m128 v = _mm_castpd_ps(_mm_load_sd((const double *)(absmax + (j >> 1))));
        __m128 x = _mm_unpacklo_ps(v, v); /* a0 a0 a1 a1 */
        return _mm256_set_m128(x, x);
    }
    float a0 = absmax[j >> shift], a1 = absmax[(j + 1) >> shift];
    float a2 = absmax[(j + 2) >> shift], a3 = absmax[(j + 3) >> shift];
    return _mm256_setr_ps(a0, a0, a2, a2, a1, a1, a3, a3);
}

/* acc += a step of codes c (64 bytes, the 4 blocks from j) against the split activation s. */
INLINE __m256 step_dot(const uint8_t *c, const struct nf4_step *s, __m256 am, __m256 acc)
{
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mf_nf4_q8));
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256i b0 = _mm256_loadu_si256((const __m256i *)c);
    __m256i b1 = _mm256_loadu_si256((const __m256i *)(c + 32));
    __m256i idx[4] = {_mm256_and_si256(_mm256_srli_epi16(b0, 4), low4), _mm256_and_si256(b0, low4),
                      _mm256_and_si256(_mm256_srli_epi16(b1, 4), low4), _mm256_and_si256(b1, low4)};
    __m256i m[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
    {
        __m256i w = _mm256_shuffle_epi8(table, idx[k]);
        m[k] = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(s->q[k], w));
    }
    __m256 d = _mm256_mul_ps(am, s->d);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce4(m)), d, acc);
}

/* A row of nb blocks: codes, the absmax per block group, the activation y split (pre) or not. */
INLINE float row_dot(size_t nb, const uint8_t *codes, const float *absmax, unsigned shift,
                     const struct mf_block_q8_0 *y, const struct nf4_step *pre)
{
    __m256 acc = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + STEP <= nb; j += STEP) {
        struct nf4_step one;
        if (!pre)
            split_step(y + j, STEP, &one);
        acc = step_dot(codes + j * (MF_QK / 2), pre ? &pre[j / STEP] : &one,
                       step_absmax(absmax, j, shift), acc);
    }
    if (j < nb) { /* a partial step: zero codes and activation past the row */
        uint8_t c[STEP * MF_QK / 2] = {0};
        float am[STEP] = {0};
        struct nf4_step one;
        memcpy(c, codes + j * (MF_QK / 2), (nb - j) * (MF_QK / 2));
        for (size_t k = 0; k < nb - j; k++)
            am[k] = absmax[(j + k) >> shift];
        if (!pre)
            split_step(y + j, nb - j, &one);
        acc = step_dot(c, pre ? &pre[j / STEP] : &one, step_absmax(am, 0, 0), acc);
    }
    return mf_hsum_ps(acc) * (1.0f / 127.0f);
}

float mf_avx2_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                      const void *act)
{
    size_t nb = n / MF_QK;
    return shift == 1 ? row_dot(nb, codes, absmax, 1, act, NULL)
                      : row_dot(nb, codes, absmax, shift, act, NULL);
}

void mf_avx2_nf4_matvec_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin,
                             uint64_t row_end, const void *act, float *y)
{
    float absmax[MEMFIT_NF4_MAX_COLS / 32];
    struct nf4_step pre[MAX_STEPS];
    size_t n = (size_t)m->cols, nb = n / MF_QK, steps = (nb + STEP - 1) / STEP;
    const struct mf_block_q8_0 *a = act;
    const struct nf4_step *use = NULL;
    unsigned shift = (unsigned)__builtin_ctz(m->blocksize / MF_QK);
    if (steps <= MAX_STEPS && row_end - row_begin > 1) {
        for (size_t i = 0; i < steps; i++)
            split_step(a + i * STEP, nb - i * STEP < STEP ? nb - i * STEP : STEP, &pre[i]);
        use = pre;
    }
    for (uint64_t r = row_begin; r < row_end; r++) {
        memfit_nf4_row_absmax(m, r, absmax);
        const uint8_t *codes = m->codes + r * (n / 2);
        y[r - row_begin] = shift == 1 ? row_dot(nb, codes, absmax, 1, a, use)
                                      : row_dot(nb, codes, absmax, shift, a, use);
    }
}
