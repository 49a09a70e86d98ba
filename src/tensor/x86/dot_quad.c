/*
 * AVX2 Q4_0 rows x columns against Q8_0 (kernels.h: mf_avx2_dot_q4_0, its _rows and _rows_cols):
 * the weight row is unpacked once for every column, and the per-block float work is shared by
 * four blocks. Without AVX-512 the old one-row kernel was bound by its own instructions (a Q4_0
 * row ran at 7 GB/s a core, two thirds of what two cores can read), and several columns gained
 * nothing: each column took each block's horizontal sum, conversion and FMA alone.
 *
 * A step is four consecutive blocks of one row against one column. Each block's 32 products
 * (unsigned nibbles times signed quants, maddubs) are reduced together with the other three
 * blocks' into one vector: lane k holds block k's first 16 products, lane 4 + k its last 16,
 * exactly (int16 sums stay within 15 * 128 * 8). The -8 offset (8 * the activation's sum over
 * the same half-block), d_w * d_a and the FMA then take one instruction each for the four
 * blocks. The activation's side (offsets and scales, four blocks to a step) is prepared once
 * per call for each column.
 *
 * Every (row, column) runs the same operations in its own accumulator, whatever the other
 * columns or rows of the call, so vec_dot, the multi-row and the rows x columns kernels agree
 * bit for bit: a sequence's logits do not depend on what it is batched with. Missing blocks of
 * the last step are zeros on both sides (adding 0 * 0). One row alone (vec_dot) and rows
 * longer than MAX_STEPS steps take the offsets off each int16 pair before the reduction
 * instead (step_col_now): the same integers.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"
#include "tensor/x86/vmath.h"

#define INLINE    static inline __attribute__((always_inline))
#define STEP      4   /* blocks per step */
#define COLS      4   /* columns per pass over a row */
#define MAX_STEPS 256 /* prepared steps per column (rows of up to 32768): 48 KB of stack */
#define PF_AHEAD  4   /* rows prefetched ahead (8 and 16 measured no better) */

/* One column's prepared steps: the offsets (lanes as the block sums: 8 * the sum of the
 * half-block's quants) and the four blocks' scales. */
struct col_steps {
    __m256i off[MAX_STEPS];
    __m128 d[MAX_STEPS];
};

/* The int16 products m[k] of four blocks to one int32 vector: lane k = the sum of block k's
 * first 16 products, lane 4 + k its last 16. Adds pairs, then fours, and the two halves of
 * each 128-bit lane with madd. */
INLINE __m256i reduce4(const __m256i m[STEP])
{
    static const int8_t pair_ctl[32] = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
                                        0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};
    __m256i u =
        _mm256_add_epi16(_mm256_unpacklo_epi16(m[0], m[1]), _mm256_unpackhi_epi16(m[0], m[1]));
    __m256i v =
        _mm256_add_epi16(_mm256_unpacklo_epi16(m[2], m[3]), _mm256_unpackhi_epi16(m[2], m[3]));
    __m256i w = _mm256_add_epi16(_mm256_unpacklo_epi32(u, v), _mm256_unpackhi_epi32(u, v));
    w = _mm256_shuffle_epi8(w, _mm256_loadu_si256((const __m256i *)pair_ctl));
    return _mm256_madd_epi16(w, _mm256_set1_epi16(1));
}

/* Four fp16 scales, `stride` bytes apart from p, as floats. */
INLINE __m128 scales4(const uint8_t *p, size_t stride)
{
    uint16_t h[STEP];
    _Pragma("GCC unroll 4") for (int k = 0; k < STEP; k++) memcpy(&h[k], p + k * stride, 2);
    uint64_t v = h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 | (uint64_t)h[3] << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* Step s of a Q8_0 activation row of nb blocks at y: the offsets and scales; blocks past nb
 * count as zeros. */
static void prepare_step(const struct mf_block_q8_0 *y, size_t nb, size_t s, __m256i *off,
                         __m128 *d)
{
    struct mf_block_q8_0 pad[STEP];
    size_t b0 = s * STEP;
    if (b0 + STEP > nb) {
        memset(pad, 0, sizeof(pad));
        memcpy(pad, y + b0, (nb - b0) * sizeof(*y));
        y = pad;
        b0 = 0;
    }
    const __m256i ones = _mm256_set1_epi8(1);
    __m256i m[STEP];
    for (int k = 0; k < STEP; k++)
        m[k] = _mm256_maddubs_epi16(ones, _mm256_loadu_si256((const __m256i *)y[b0 + k].qs));
    *off = _mm256_slli_epi32(reduce4(m), 3);
    *d = scales4((const uint8_t *)&y[b0].d, sizeof(*y));
}

/* acc += one step of weight row x (blocks from b0) against column y: the products, less the
 * offsets, times d_w * d_a. */
INLINE __m256 step_col(const __m256i q[STEP], __m256 dw, const struct mf_block_q8_0 *y, __m256i off,
                       __m128 dy, __m256 acc)
{
    __m256i m[STEP];
    _Pragma("GCC unroll 4") for (int k = 0; k < STEP; k++) m[k] =
        _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)y[k].qs));
    __m256i s = _mm256_sub_epi32(reduce4(m), off);
    __m256 d = _mm256_mul_ps(dw, _mm256_set_m128(dy, dy));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
}

/* step_col without a prepared activation: the offset taken off each int16 pair before the
 * reduction ((q - 8) a: a pair at most 2 * 8 * 128, sixteen of them 16384), which leaves the
 * same int32 lanes as subtracting the prepared offsets after it, for fewer instructions. */
INLINE __m256 step_col_now(const __m256i q[STEP], __m256 dw, const struct mf_block_q8_0 *y,
                           __m256 acc)
{
    const __m256i eight = _mm256_set1_epi8(8);
    __m256i m[STEP];
    _Pragma("GCC unroll 4") for (int k = 0; k < STEP; k++)
    {
        __m256i a = _mm256_loadu_si256((const __m256i *)y[k].qs);
        m[k] = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], a), _mm256_maddubs_epi16(eight, a));
    }
    __m128 dy = scales4((const uint8_t *)&y->d, sizeof(*y));
    __m256 d = _mm256_mul_ps(dw, _mm256_set_m128(dy, dy));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(reduce4(m)), d, acc);
}

/* The unpacked nibbles and the scales of four blocks at x. */
INLINE __m256 weight_step(const struct mf_block_q4_0 *x, __m256i q[STEP])
{
    _Pragma("GCC unroll 4") for (int k = 0; k < STEP; k++) q[k] = mf_q4_0_nibbles(x + k);
    __m128 d = scales4((const uint8_t *)&x->d, sizeof(*x));
    return _mm256_set_m128(d, d);
}

/* Row x (nb blocks) against nc columns a[c] with their prepared steps pre[c] (prep) or
 * taking the offsets off as it goes: out[c * ldo]. nc and prep are constants after inlining, so
 * the accumulators stay in registers. */
INLINE void row_cols(const struct mf_block_q4_0 *x, size_t nb, const struct mf_block_q8_0 *const *a,
                     const struct col_steps *const *pre, int nc, bool prep, float *out, size_t ldo)
{
    __m256 acc[COLS];
    __m256i q[STEP];
    _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) acc[c] = _mm256_setzero_ps();
    size_t full = nb / STEP, s = 0;
    for (; s < full; s++) {
        __m256 dw = weight_step(x + s * STEP, q);
        _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++)
        {
            if (prep) {
                acc[c] = step_col(q, dw, a[c] + s * STEP, pre[c]->off[s], pre[c]->d[s], acc[c]);
            } else {
                acc[c] = step_col_now(q, dw, a[c] + s * STEP, acc[c]);
            }
        }
    }
    if (s * STEP < nb) { /* the last, partial step through zero-padded copies */
        struct mf_block_q4_0 wpad[STEP];
        struct mf_block_q8_0 ypad[STEP];
        size_t rest = nb - s * STEP;
        memset(wpad, 0, sizeof(wpad));
        memcpy(wpad, x + s * STEP, rest * sizeof(*x));
        __m256 dw = weight_step(wpad, q);
        for (int c = 0; c < nc; c++) {
            memset(ypad, 0, sizeof(ypad));
            memcpy(ypad, a[c] + s * STEP, rest * sizeof(ypad[0]));
            acc[c] = prep ? step_col(q, dw, ypad, pre[c]->off[s], pre[c]->d[s], acc[c])
                          : step_col_now(q, dw, ypad, acc[c]);
        }
    }
    _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) out[(size_t)c * ldo] = mf_hsum_ps(acc[c]);
}

/* n_rows rows against nc columns (one pass). Each row first prefetches the row PF_AHEAD on:
 * the hardware prefetcher alone left a core at 8 GB/s from memory against 10.5 in cache
 * (prefetches never fault, past the matrix included: the address is an integer until then). */
INLINE void rows_pass(size_t nb, const uint8_t *w, size_t w_stride,
                      const struct mf_block_q8_0 *const *a, const struct col_steps *const *pre,
                      int nc, bool prep, float *out, size_t ldo, size_t n_rows)
{
    for (size_t r = 0; r < n_rows; r++) {
        uintptr_t ahead = (uintptr_t)w + (r + PF_AHEAD) * w_stride;
        for (size_t o = 0; o < nb * sizeof(struct mf_block_q4_0); o += 64)
            _mm_prefetch((const char *)(ahead + o), _MM_HINT_T0);
        row_cols((const struct mf_block_q4_0 *)(w + r * w_stride), nb, a, pre, nc, prep, out + r,
                 ldo);
    }
}

/* Columns in passes of COLS, each pass's steps prepared once where they fit and more than one
 * row reads them. */
void mf_avx2_dot_q4_0_rows_cols(size_t n, const void *w, size_t w_stride, const void *const *a,
                                size_t n_cols, float *out, size_t ldo, size_t n_rows)
{
    size_t nb = n / MF_QK, n_steps = (nb + STEP - 1) / STEP;
    bool prepared = n_steps <= MAX_STEPS && n_rows > 1;
    struct col_steps pre[COLS];
    for (size_t c0 = 0; c0 < n_cols; c0 += COLS) {
        size_t nc = n_cols - c0 < COLS ? n_cols - c0 : COLS;
        const struct mf_block_q8_0 *ac[COLS];
        const struct col_steps *pc[COLS];
        for (size_t c = 0; c < nc; c++) {
            ac[c] = a[c0 + c];
            pc[c] = prepared ? &pre[c] : NULL;
            for (size_t s = 0; prepared && s < n_steps; s++)
                prepare_step(ac[c], nb, s, &pre[c].off[s], &pre[c].d[s]);
        }
        float *o = out + c0 * ldo;
#define PASS(NC)                                                                                   \
    (prepared ? rows_pass(nb, w, w_stride, ac, pc, NC, true, o, ldo, n_rows)                       \
              : rows_pass(nb, w, w_stride, ac, pc, NC, false, o, ldo, n_rows))
        switch (nc) {
        case 1:
            PASS(1);
            break;
        case 2:
            PASS(2);
            break;
        case 3:
            PASS(3);
            break;
        default:
            PASS(COLS);
            break;
        }
#undef PASS
    }
}

void mf_avx2_dot_q4_0_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                           size_t n_rows)
{
    mf_avx2_dot_q4_0_rows_cols(n, w, w_stride, &a, 1, out, n_rows, n_rows);
}

float mf_avx2_dot_q4_0(size_t n, const void *w, const void *a)
{
    float out;
    mf_avx2_dot_q4_0_rows_cols(n, w, 0, &a, 1, &out, 1, 1);
    return out;
}
