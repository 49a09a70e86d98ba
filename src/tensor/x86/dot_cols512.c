/*
 * AVX-512 VNNI Q4_0/Q8_0 rows x columns dots (kernels.h, mf_vec_dot_rows_cols_fn): several
 * sequences decoded side by side, each weight step (16 blocks) loaded and unpacked once for up
 * to COLS columns. With several columns the work is compute bound, so the per-column work is
 * cut to the bone: the weight step is transposed once so that int32 lane p of register k holds
 * bytes 4k..4k+3 of block b(p) = 4 (p % 4) + p / 4, and each column's activation is prepared
 * the same way (once per call). Eight vpdpbusd then leave each block's whole integer sum in one
 * lane: no per-column reduction (the one-row kernel in dot_avx512.c reduces four lanes per
 * block with unpacks, for every row and column).
 *
 * Exactness: a block's integer sum (weights unsigned, the -c * sum(a) correction as the
 * accumulator's start) is exact however the products are grouped, and lane p holds block b(p),
 * the order the one-row kernel's reduction leaves; the float work per lane (convert, d_w * d_a,
 * fma into the lane, then _mm512_reduce_add_ps) is the one-row kernel's, operation for
 * operation. So out[c][r] is bit for bit mf_avx512_dot_T(n, row r, a[c]).
 *
 * The last, partial step (n / 32 not a multiple of 16) is copied into a zeroed buffer (masked
 * loads: nothing past the row is read); the missing blocks' scales and activations are 0, so
 * they add +0 where the one-row kernel adds (its repeated block's sum) * 0: the same lanes.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"

#define INLINE  static inline __attribute__((always_inline))
#define STEP    16  /* blocks per step */
#define COLS    4   /* columns per pass over the rows */
#define MAX_PRE 48  /* prepared steps of a pass's columns: 30 KB of stack */
#define Q4_STEP 288 /* bytes of a Q4_0 step */
#define Q8_STEP 544 /* bytes of a Q8_0 step */
#ifndef PF_AHEAD
#define PF_AHEAD 8
#endif
#define Q4_q4_0 true
#define Q4_q8_0 false

/* One step of one column's activation, transposed: a[k] lane p = quants 4k..4k+3 of block b(p). */
struct tstep {
    __m512i a[8];
    __m512i off; /* -c * (sum of block b(p)'s quants) */
    __m512 d;    /* the block's scale */
};

/* Per int32 lane of a 128-bit lane: the 4x4 dword transpose of z[0..3] (out[d] lane j position
 * g = z[g] lane j dword d). */
INLINE void transpose4(const __m512i z[4], __m512i out[4])
{
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpacklo_epi32(z[2], z[3]);
    __m512i t2 = _mm512_unpackhi_epi32(z[0], z[1]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t1);
    out[1] = _mm512_unpackhi_epi64(t0, t1);
    out[2] = _mm512_unpacklo_epi64(t2, t3);
    out[3] = _mm512_unpackhi_epi64(t2, t3);
}

/* Scale bytes into word p = 4j + g (byte 8j + 2g + e) for a Q4_0 step: block j of window g (72
 * bytes at 72 g, the first 64 loaded), windows g & 1 picked by idx, g >= 2 by the blend. */
static const uint8_t scale_idx18[64] = {0,   1,   64, 65, 0,   1,   64, 65,  18,  19, 82,
                                        83,  18,  19, 82, 83,  36,  37, 100, 101, 36, 37,
                                        100, 101, 54, 55, 118, 119, 54, 55,  118, 119};

INLINE __m512 scales_q4_0(const __m512i win[4])
{
    const __m512i idx = _mm512_loadu_si512(scale_idx18);
    __m512i lo = _mm512_permutex2var_epi8(win[0], idx, win[1]);
    __m512i hi = _mm512_permutex2var_epi8(win[2], idx, win[3]);
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_mask_blend_epi8(0xf0f0f0f0ull, lo, hi)));
}

/* The same for a Q8_0 step: block j's scale at byte 34 j of window g (128 bytes at 136 g, in
 * two registers), masked into group g's positions. */
static const uint8_t scale_idx34[64] = {0,  1,  0,   1,   0,   1,   0,   1,   34,  35, 34,
                                        35, 34, 35,  34,  35,  68,  69,  68,  69,  68, 69,
                                        68, 69, 102, 103, 102, 103, 102, 103, 102, 103};

INLINE __m512 scales_q8_0(const __m512i win[4], const __m512i win2[4])
{
    const __m512i idx = _mm512_loadu_si512(scale_idx34);
    __m512i h = _mm512_setzero_si512();
    _Pragma("GCC unroll 8") for (int g = 0; g < 4; g++) h = _mm512_or_si512(
        h, _mm512_maskz_permutex2var_epi8(0x03030303ull << (2 * g), win[g], idx, win2[g]));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

/* The quants of 4 Q4_0 blocks (72 bytes), one block per 128-bit lane: bytes 18j + 2 + i. */
static const uint8_t qs_idx18[64] = {
    2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
    50, 51, 52, 53, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71};

/* A full Q4_0 step at x (288 readable bytes): the nibbles transposed (w[d]: low nibbles of
 * quant dword d, pairing with a[d]; w[4 + d]: the high ones, pairing with a[4 + d]), scales. */
INLINE __m512 q4_0_weights(const uint8_t *x, __m512i w[8])
{
    const __m512i idx = _mm512_loadu_si512(qs_idx18), low4 = _mm512_set1_epi8(0x0f);
    __m512i win[4], z[4], t[4];
    _Pragma("GCC unroll 8") for (int g = 0; g < 4; g++)
    {
        win[g] = _mm512_loadu_si512(x + 72 * g);
        __m512i tail = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(x + 72 * g + 64)));
        z[g] = _mm512_permutex2var_epi8(win[g], idx, tail);
    }
    transpose4(z, t);
    _Pragma("GCC unroll 8") for (int d = 0; d < 4; d++)
    {
        w[d] = _mm512_and_si512(t[d], low4);
        w[4 + d] = _mm512_and_si512(_mm512_srli_epi16(t[d], 4), low4);
    }
    return scales_q4_0(win);
}

/* A full Q8_0 step at x (544 readable bytes): w[k] = quant dword k, + 128 (unsigned) for
 * weights (`flip`), as it is for activations; the scales. */
INLINE __m512 q8_0_weights(const uint8_t *x, __m512i w[8], bool flip)
{
    const __m512i sign = _mm512_set1_epi8(flip ? (char)0x80 : 0);
    __m512i win[4], win2[4], lo[4], hi[4];
    _Pragma("GCC unroll 8") for (int g = 0; g < 4; g++)
    {
        const uint8_t *p = x + 136 * g;
        win[g] = _mm512_loadu_si512(p);
        win2[g] = _mm512_loadu_si512(p + 64);
        __m512i t01 =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                               _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
        __m512i t23 = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 70))),
            _mm256_loadu_si256((const __m256i *)(p + 104)), 1);
        if (flip) {
            t01 = _mm512_xor_si512(t01, sign);
            t23 = _mm512_xor_si512(t23, sign);
        }
        lo[g] = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(2, 0, 2, 0));
        hi[g] = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(3, 1, 3, 1));
    }
    transpose4(lo, w);
    transpose4(hi, w + 4);
    return scales_q8_0(win, win2);
}

/* A step's weights (w, dw) into nc columns' float lanes, column c's activation at s[c]: the
 * block sums in one chain of eight vpdpbusd from the correction, then the one-row kernel's
 * float operations. */
INLINE void step_cols(const __m512i w[8], __m512 dw, const struct tstep *const *s, int nc,
                      __m512 *facc)
{
    _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++)
    {
        __m512i p = s[c]->off;
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) p =
            _mm512_dpbusd_epi32(p, w[k], s[c]->a[k]);
        __m512 d = _mm512_mul_ps(dw, s[c]->d);
        facc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), d, facc[c]);
    }
}

/* Step i of a weight row (or, `act`, a Q8_0 activation) at x: in place, or the partial last
 * step (i == full, rest_bytes of it) through the zeroed copy in buf. */
INLINE __m512 row_step(bool q4, bool act, const uint8_t *x, size_t i, size_t full,
                       size_t rest_bytes, uint8_t *buf, __m512i w[8])
{
    size_t sb = q4 ? Q4_STEP : Q8_STEP;
    const uint8_t *p = x + i * sb;
    if (i == full) {
        _Pragma("GCC unroll 9") for (size_t o = 0; o < sb; o += 64)
        {
            size_t k = rest_bytes > o ? rest_bytes - o : 0;
            __mmask64 m = k >= 64 ? ~0ull : (1ull << k) - 1;
            _mm512_store_si512(buf + o, _mm512_maskz_loadu_epi8(m, p + o));
        }
        p = buf;
    }
    return q4 ? q4_0_weights(p, w) : q8_0_weights(p, w, !act);
}

/* One column's Q8_0 activation (n elements at y), step by step as the weights are laid out,
 * with the correction -c * (block sum); the missing blocks of a partial step are zeros. */
static void prepare(size_t n, const uint8_t *y, uint8_t c, struct tstep *pre)
{
    size_t nb = n / MF_QK, full = nb / STEP, rest_bytes = nb % STEP * 34;
    const __m512i cv = _mm512_set1_epi8((char)c), zero = _mm512_setzero_si512();
    uint8_t buf[Q8_STEP + 32] __attribute__((aligned(64)));
    for (size_t i = 0; i * STEP < nb; i++) {
        struct tstep *s = &pre[i];
        s->d = row_step(false, true, y, i, full, rest_bytes, buf, s->a);
        __m512i sum = zero;
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) sum =
            _mm512_dpbusd_epi32(sum, cv, s->a[k]);
        s->off = _mm512_sub_epi32(zero, sum);
    }
}

/* n_rows rows against nc (a constant after inlining) prepared columns, column c's steps at
 * pre + c * n_steps: out[c * ldo + r]. With several columns a row takes long enough that the
 * hardware prefetcher no longer keeps the weight stream busy: each step prefetches the same
 * step PF_AHEAD rows on (prefetches never fault, past the matrix included: the address is
 * an integer until then). */
INLINE void rows_cols(bool q4, size_t n, const uint8_t *w, size_t w_stride, const struct tstep *pre,
                      size_t n_steps, int nc, float *out, size_t ldo, size_t n_rows)
{
    size_t nb = n / MF_QK, full = nb / STEP, rest_bytes = nb % STEP * (q4 ? 18 : 34);
    size_t sb = q4 ? Q4_STEP : Q8_STEP;
    uint8_t buf[Q8_STEP + 32] __attribute__((aligned(64)));
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *x = w + r * w_stride;
        __m512 facc[COLS];
        __m512i q[8];
        const struct tstep *s[COLS];
        _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) facc[c] = _mm512_setzero_ps();
        for (size_t i = 0; i < n_steps; i++) {
            uintptr_t ahead = (uintptr_t)x + PF_AHEAD * w_stride + i * sb;
            _Pragma("GCC unroll 9") for (size_t o = 0; o < sb; o += 64)
                _mm_prefetch((const char *)(ahead + o), _MM_HINT_T0);
            __m512 dw = row_step(q4, false, x, i, full, rest_bytes, buf, q);
            _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) s[c] =
                &pre[(size_t)c * n_steps + i];
            step_cols(q, dw, s, nc, facc);
        }
        _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) out[(size_t)c * ldo + r] =
            _mm512_reduce_add_ps(facc[c]);
    }
}

/* Columns in passes of up to COLS, each pass's activations prepared once; where they do not
 * fit MAX_PRE steps, column by column through the _rows kernel (the same numbers). */
#define DEFINE_MATVEC_COLS(T, C)                                                                   \
    void mf_avx512_dot_##T##_rows_cols(size_t n, const void *w, size_t w_stride,                   \
                                       const void *const *a, size_t n_cols, float *out,            \
                                       size_t ldo, size_t n_rows)                                  \
    {                                                                                              \
        struct tstep pre[MAX_PRE];                                                                 \
        size_t n_steps = (n / MF_QK + STEP - 1) / STEP;                                            \
        for (size_t c0 = 0; c0 < n_cols; c0 += COLS) {                                             \
            size_t nc = n_cols - c0 < COLS ? n_cols - c0 : COLS;                                   \
            float *o = out + c0 * ldo;                                                             \
            if (nc * n_steps > MAX_PRE) {                                                          \
                for (size_t c = 0; c < nc; c++)                                                    \
                    mf_avx512_dot_##T##_rows(n, w, w_stride, a[c0 + c], o + c * ldo, n_rows);      \
                continue;                                                                          \
            }                                                                                      \
            for (size_t c = 0; c < nc; c++)                                                        \
                prepare(n, a[c0 + c], C, pre + c * n_steps);                                       \
            switch (nc) {                                                                          \
            case 1:                                                                                \
                rows_cols(Q4_##T, n, w, w_stride, pre, n_steps, 1, o, ldo, n_rows);                \
                break;                                                                             \
            case 2:                                                                                \
                rows_cols(Q4_##T, n, w, w_stride, pre, n_steps, 2, o, ldo, n_rows);                \
                break;                                                                             \
            case 3:                                                                                \
                rows_cols(Q4_##T, n, w, w_stride, pre, n_steps, 3, o, ldo, n_rows);                \
                break;                                                                             \
            default:                                                                               \
                rows_cols(Q4_##T, n, w, w_stride, pre, n_steps, COLS, o, ldo, n_rows);             \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_MATVEC_COLS(q4_0, 8)
DEFINE_MATVEC_COLS(q8_0, 128)

/*
 * Q4_0's multi-row kernel for one activation (the traits' vec_dot_rows where AVX-512 VNNI
 * runs): one column through the transposed steps, bit for bit the one-row kernel as every
 * column is. Without the one-row kernel's reduction of four lanes per block it takes 20 ns a
 * row of 2048 in cache against 26, which decode needs when the host's CPU runs slower than its
 * memory: 1.8B Q4_0 decode +6 % (5 alternating rounds, 2 threads). For Q8_0 the one-row kernel
 * stays (this measured 1 % slower: its weights take more unpacking per byte here).
 */
void mf_avx512_dot_q4_0_rows_t(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                               size_t n_rows)
{
    mf_avx512_dot_q4_0_rows_cols(n, w, w_stride, &a, 1, out, n_rows, n_rows);
}

/*
 * Q4_K and Q6_K rows x columns against Q8_K. The one-row kernels (AVX2 and scalar) agree bit
 * for bit: each super-block's integer sums are exact and combined in float super-block by
 * super-block, as sum += d_a * (d * isum - dmin * msum) (Q4_K) or
 * sum += d_a * d * (float)(isum - 32 * bias) (Q6_K, quants stored + 32). So any exact integer
 * route gives the same floats. Here register g holds the weight quants (unsigned) of elements
 * 64g..64g+63, dotted with the activation's 64 quants as they are in memory; each int32 lane
 * then lies in one sub-block and vpdpwssd multiplies it by the sub-block's scale (a lane's
 * four products fit int16: |q a| <= 63 * 128). The min/bias term is the bsums against the
 * per-16 mins or scales, as in the one-row kernels. The columns' sums are reduced together
 * and combined as float lanes, each lane running the reference's scalar operations.
 */

/* Bytes 0..7: the 8 sub-block scales, 8..15: the 8 mins (mf_k4_scale_min, four at a time). */
INLINE __m128i k4_scales_mins(const uint8_t *scales)
{
    uint32_t s[3];
    memcpy(s, scales, sizeof(s));
    return _mm_setr_epi32((int)(s[0] & 0x3f3f3f3fu),
                          (int)((s[2] & 0x0f0f0f0fu) | ((s[0] >> 2) & 0x30303030u)),
                          (int)(s[1] & 0x3f3f3f3fu),
                          (int)(((s[2] >> 4) & 0x0f0f0f0fu) | ((s[1] >> 2) & 0x30303030u)));
}

/* One K-quant super-block's weights, shared by the columns. */
struct kblock {
    __m512i q[4];  /* unsigned quants of elements 64g..64g+63 */
    __m512i sc[4]; /* each int32 lane's sub-block scale, as (int16 scale, 0) */
    __m256i mv;    /* int16 factors of the 16 bsums: Q4_K mins (each twice), Q6_K scales */
    float d, dmin;
};

INLINE void q4_k_block(const struct mf_block_q4_k *x, struct kblock *k)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m128i mins_twice =
        _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    __m128i sm = k4_scales_mins(x->scales);
    k->mv = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, mins_twice));
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
    {
        /* low nibbles of qs[32g..32g+31]: sub-block 2g; the high ones: 2g + 1 */
        __m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * g)));
        k->q[g] = _mm512_and_si512(_mm512_mask_srli_epi16(z, 0xffff0000u, z, 4), low4);
        k->sc[g] = _mm512_cvtepu8_epi32(
            _mm_shuffle_epi8(sm, _mm_set_epi64x(0x0101010101010101ll * (2 * g + 1),
                                                0x0101010101010101ll * (2 * g))));
    }
    k->d = _cvtsh_ss(x->d);
    k->dmin = _cvtsh_ss(x->dmin);
}

INLINE void q6_k_block(const struct mf_block_q6_k *x, struct kblock *k)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), low2 = _mm512_set1_epi8(3);
    __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    k->mv = sc16;
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
    {
        /* elements 128h + 64m + 32j + l (g = 2h + m): nibble m of ql[64h + 32j + l], bits
         * 4m + 2j of qh[32h + l]; sub-block (scale) 4g + lane / 4 */
        int h = g / 2, m = g % 2;
        __m512i l = _mm512_loadu_si512((const __m512i *)(x->ql + 64 * h));
        __m512i lo = _mm512_and_si512(m ? _mm512_srli_epi16(l, 4) : l, low4);
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * h)));
        __m512i cnt = _mm512_inserti64x4(_mm512_set1_epi16((short)(4 * m)),
                                         _mm256_set1_epi16((short)(4 * m + 2)), 1);
        __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(qh, cnt), low2);
        k->q[g] = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
        __m256i pick = _mm256_setr_epi16(
            (short)(4 * g), (short)(4 * g), (short)(4 * g), (short)(4 * g), (short)(4 * g + 1),
            (short)(4 * g + 1), (short)(4 * g + 1), (short)(4 * g + 1), (short)(4 * g + 2),
            (short)(4 * g + 2), (short)(4 * g + 2), (short)(4 * g + 2), (short)(4 * g + 3),
            (short)(4 * g + 3), (short)(4 * g + 3), (short)(4 * g + 3));
        k->sc[g] = _mm512_cvtepu16_epi32(_mm256_permutexvar_epi16(pick, sc16));
    }
    k->d = _cvtsh_ss(x->d);
    k->dmin = 0;
}

/* Lane c of the result: the sum of the int32 lanes of v[c] (c < 4). */
INLINE __m128i hsum4_epi32(const __m256i v[4])
{
    __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Rows of Q4_K or Q6_K (bs bytes a super-block) against nc (a constant after inlining) Q8_K
 * columns: out[c * ldo + r]. */
INLINE void rows_cols_k(bool q6, size_t n, const uint8_t *w, size_t w_stride,
                        const struct mf_block_q8_k *const *a, int nc, float *out, size_t ldo,
                        size_t n_rows)
{
    size_t nb = n / MF_QK_K, bs = q6 ? sizeof(struct mf_block_q6_k) : sizeof(struct mf_block_q4_k);
    for (size_t r = 0; r < n_rows; r++) {
        const uint8_t *x = w + r * w_stride;
        uintptr_t ahead = (uintptr_t)x + PF_AHEAD * w_stride;
        __m128 sum = _mm_setzero_ps();
        for (size_t i = 0; i < nb; i++) {
            _Pragma("GCC unroll 4") for (size_t o = 0; o < bs; o += 64)
                _mm_prefetch((const char *)(ahead + i * bs + o), _MM_HINT_T0);
            struct kblock k;
            if (q6)
                q6_k_block((const struct mf_block_q6_k *)(x + i * bs), &k);
            else
                q4_k_block((const struct mf_block_q4_k *)(x + i * bs), &k);
            __m256i is[4], ms[4];
            float yd[4] = {0, 0, 0, 0};
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
            {
                if (c >= nc) {
                    is[c] = ms[c] = _mm256_setzero_si256();
                    continue;
                }
                const struct mf_block_q8_k *y = a[c] + i;
                __m512i acc = _mm512_setzero_si512();
                _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
                {
                    __m512i p =
                        _mm512_dpbusd_epi32(_mm512_setzero_si512(), k.q[g],
                                            _mm512_loadu_si512((const __m512i *)(y->qs + 64 * g)));
                    acc = _mm512_dpwssd_epi32(acc, p, k.sc[g]);
                }
                is[c] = _mm256_add_epi32(_mm512_castsi512_si256(acc),
                                         _mm512_extracti64x4_epi64(acc, 1));
                ms[c] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), k.mv);
                yd[c] = y->d;
            }
            __m128i isum = hsum4_epi32(is), msum = hsum4_epi32(ms);
            __m128 t;
            if (q6) /* d_a * d * (float)(isum - 32 * bias) */
                t = _mm_mul_ps(_mm_mul_ps(_mm_loadu_ps(yd), _mm_set1_ps(k.d)),
                               _mm_cvtepi32_ps(_mm_sub_epi32(isum, _mm_slli_epi32(msum, 5))));
            else /* d_a * (d * isum - dmin * msum) */
                t = _mm_mul_ps(_mm_loadu_ps(yd),
                               _mm_sub_ps(_mm_mul_ps(_mm_set1_ps(k.d), _mm_cvtepi32_ps(isum)),
                                          _mm_mul_ps(_mm_set1_ps(k.dmin), _mm_cvtepi32_ps(msum))));
            sum = _mm_add_ps(sum, t);
        }
        float v[4];
        _mm_storeu_ps(v, sum);
        _Pragma("GCC unroll 4") for (int c = 0; c < nc; c++) out[(size_t)c * ldo + r] = v[c];
    }
}

#define DEFINE_MATVEC_COLS_K(T, Q6)                                                                \
    void mf_avx512_dot_##T##_rows_cols(size_t n, const void *w, size_t w_stride,                   \
                                       const void *const *a, size_t n_cols, float *out,            \
                                       size_t ldo, size_t n_rows)                                  \
    {                                                                                              \
        const struct mf_block_q8_k *const *y = (const struct mf_block_q8_k *const *)a;             \
        for (size_t c0 = 0; c0 < n_cols; c0 += COLS) {                                             \
            size_t nc = n_cols - c0 < COLS ? n_cols - c0 : COLS;                                   \
            float *o = out + c0 * ldo;                                                             \
            switch (nc) {                                                                          \
            case 1:                                                                                \
                rows_cols_k(Q6, n, w, w_stride, y + c0, 1, o, ldo, n_rows);                        \
                break;                                                                             \
            case 2:                                                                                \
                rows_cols_k(Q6, n, w, w_stride, y + c0, 2, o, ldo, n_rows);                        \
                break;                                                                             \
            case 3:                                                                                \
                rows_cols_k(Q6, n, w, w_stride, y + c0, 3, o, ldo, n_rows);                        \
                break;                                                                             \
            default:                                                                               \
                rows_cols_k(Q6, n, w, w_stride, y + c0, COLS, o, ldo, n_rows);                     \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_MATVEC_COLS_K(q4_k, false)
DEFINE_MATVEC_COLS_K(q6_k, true)

/* Q6_K's multi-row kernel: the rows x columns kernel with one column, which streams Q6_K rows
 * faster than the AVX2 one-row kernel (bench_dot_cols: about 1.7x from memory); the same
 * numbers. (Q4_K's one-row kernel is the faster one alone, so it keeps it.) */
void mf_avx512_dot_q6_k_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                             size_t n_rows)
{
    rows_cols_k(true, n, w, w_stride, (const struct mf_block_q8_k *const *)&a, 1, out, 0, n_rows);
}
