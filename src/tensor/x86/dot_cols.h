/*
 * The multi-column Q4_0/Q8_0 dots against Q8_0 (kernels.h,
 * mf_vec_dot_cols_fn) as a template: x86/dot_cols.c includes it with
 * maddubs + madd for the 32-byte integer dot, x86/dot_cols_vnni.c with
 * vpdpbusd. Both give the same int32 lanes (maddubs cannot saturate here:
 * |w| <= 128 and |a| <= 127, so a pair stays within 32512), hence the same
 * floats.
 *
 * A weight block is loaded, unpacked to signed bytes and split into |w| and
 * its sign once, then dotted with up to COLS_MAX columns held in registers;
 * more columns go in further passes over the row (now in L1). Each column
 * has two float accumulators (even and odd blocks, for latency) and runs the
 * same operations in the same order whatever the pass holds, so its value
 * does not depend on n_cols.
 *
 * Before including: COLS_IDOT(ax, sy), the int32 lanes of the byte products
 * of unsigned ax and signed sy summed by four; COLS_NAME(x), the prefix.
 */
#include <immintrin.h>
#include <stdbool.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"
#include "tensor/x86/vmath.h"

#define COLS_MAX 4

/* Block i of a Q4_0 or Q8_0 weight row: |w| in *ax, w in *sx, the scale returned. */
static inline __attribute__((always_inline)) float weight_block(bool q4, const void *w, size_t i,
                                                                __m256i *ax, __m256i *sx)
{
    __m256i q;
    float d;
    if (q4) {
        const struct mf_block_q4_0 *b = (const struct mf_block_q4_0 *)w + i;
        q = _mm256_sub_epi8(mf_q4_0_nibbles(b), _mm256_set1_epi8(8));
        d = _cvtsh_ss(b->d);
    } else {
        const struct mf_block_q8_0 *b = (const struct mf_block_q8_0 *)w + i;
        q = _mm256_loadu_si256((const __m256i *)b->qs);
        d = _cvtsh_ss(b->d);
    }
    *ax = _mm256_abs_epi8(q);
    *sx = q;
    return d;
}

/* acc += (d_w * d_y) * (integer dot of block i of activation row a with the weight block). */
static inline __attribute__((always_inline)) __m256 col_block(__m256 acc, __m256i ax, __m256i sx,
                                                              float dw, const void *a, size_t i)
{
    const struct mf_block_q8_0 *y = (const struct mf_block_q8_0 *)a + i;
    __m256i yv = _mm256_loadu_si256((const __m256i *)y->qs);
    __m256i p = COLS_IDOT(ax, _mm256_sign_epi8(yv, sx));
    return _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(y->d)), _mm256_cvtepi32_ps(p), acc);
}

/* nc (a constant after inlining, 1..COLS_MAX) columns over nb blocks. */
static inline __attribute__((always_inline)) void
cols_pass(bool q4, size_t nb, const void *w, const void *const *a, size_t nc, float *out)
{
    __m256 acc0[COLS_MAX], acc1[COLS_MAX];
    for (size_t c = 0; c < nc; c++) {
        acc0[c] = _mm256_setzero_ps();
        acc1[c] = _mm256_setzero_ps();
    }
    size_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i ax0, sx0, ax1, sx1;
        float d0 = weight_block(q4, w, i, &ax0, &sx0);
        float d1 = weight_block(q4, w, i + 1, &ax1, &sx1);
        for (size_t c = 0; c < nc; c++) {
            acc0[c] = col_block(acc0[c], ax0, sx0, d0, a[c], i);
            acc1[c] = col_block(acc1[c], ax1, sx1, d1, a[c], i + 1);
        }
    }
    if (i < nb) {
        __m256i ax0, sx0;
        float d0 = weight_block(q4, w, i, &ax0, &sx0);
        for (size_t c = 0; c < nc; c++)
            acc0[c] = col_block(acc0[c], ax0, sx0, d0, a[c], i);
    }
    for (size_t c = 0; c < nc; c++)
        out[c] = mf_hsum_ps(_mm256_add_ps(acc0[c], acc1[c]));
}

static inline __attribute__((always_inline)) void
cols_all(bool q4, size_t n, const void *w, const void *const *a, size_t n_cols, float *out)
{
    size_t nb = n / MF_QK, c = 0;
    for (; c + COLS_MAX <= n_cols; c += COLS_MAX)
        cols_pass(q4, nb, w, a + c, COLS_MAX, out + c);
    switch (n_cols - c) {
    case 3:
        cols_pass(q4, nb, w, a + c, 3, out + c);
        break;
    case 2:
        cols_pass(q4, nb, w, a + c, 2, out + c);
        break;
    case 1:
        cols_pass(q4, nb, w, a + c, 1, out + c);
        break;
    default:
        break;
    }
}

void COLS_NAME(dot_cols_q4_0)(size_t n, const void *w, const void *const *a, size_t n_cols,
                              float *out)
{
    cols_all(true, n, w, a, n_cols, out);
}

void COLS_NAME(dot_cols_q8_0)(size_t n, const void *w, const void *const *a, size_t n_cols,
                              float *out)
{
    cols_all(false, n, w, a, n_cols, out);
}
