/*
 * AVX-512 VNNI dot products of Q4_0 and Q8_0 weight rows against one Q8_0
 * activation row: the matrix-vector products of LLM decoding, which should
 * run at the speed the weights stream from memory.
 *
 * Compiled with -mavx512f/bw/vl/vnni/vbmi; traits.c hands these out only
 * after CPUID and XGETBV said yes (and MEMFIT_NO_AVX512 is not 1).
 *
 * Layout of one step (16 blocks, 512 elements): the blocks are taken four
 * at a time, one block per 128-bit lane, so a zmm holds the first 16 quants
 * of blocks 4g..4g+3 and another the last 16 (for Q4_0 these are exactly
 * the low and the high nibbles of the 16 stored bytes: no shuffles). The
 * activation is arranged the same way, with its correction term, once per
 * call of the multi-row kernel (on the stack, then read from L1 for every
 * row) or step by step in the one-row kernel: vpdpbusd multiplies unsigned by signed bytes, so the
 * weights enter unsigned (Q4_0 nibbles q as they are, Q8_0 quants w + 128 by flipping the sign bit)
 * and c * sum(a) (c = 8 or 128) starts each accumulator negated. Each block's integer sum is then
 * exact; the four int32 lanes per block are reduced with unpacks to one lane per block, converted
 * once and multiplied by d_w * d_a (the scales gathered with vpermt2b from the blocks' bytes) into
 * 16 float lanes, summed at the end. So against the scalar reference only the float summation order
 * differs (the same bound as the AVX2 kernels), and the one-row and multi-row kernels run the same
 * operations per row: bit-identical results however rows are split.
 * From memory this runs Q4_0 about 1.7x and Q8_0 about 1.2x as fast per
 * core as the AVX2 kernels (bench_matvec, MEMFIT_NO_AVX512=1 for those).
 *
 * The last, partial step (n / 32 not a multiple of 16) reads the missing
 * blocks' quants and scales as zeros (masked loads, which never touch memory
 * past the row), so they add exact zeros.
 *
 * Each step prefetches the weights MF_PREFETCH_BYTES ahead (x86/prefetch.h).
 */
#include <immintrin.h>
#include <stdbool.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/prefetch.h"
#include "tensor/x86/reduce512.h"

#define INLINE         static inline __attribute__((always_inline))
#define STEP           16 /* blocks per step */
#define PREFETCH_BYTES 8192

/* The activation's 16 blocks of one step, arranged as the weights are. */
struct act_step {
    __m512i a0[4], a1[4]; /* group g: quants 0..15 / 16..31 of blocks 4g..4g+3, one per lane */
    __m512i off[4];       /* -c * (sum of the 8 activations each int32 lane multiplies) */
    __m512 d;             /* d_a in the reduced order (position 4j + i: block 4i + j) */
};

/* Byte indices for vpermt2b: the fp16 scale of block 4i + j into position 4j + i,
 * for blocks of 18 bytes (two 128-byte windows, blocks 0..7 and 8..15) and of
 * 34 bytes (four windows of 136 bytes, one per i; the masks pick each window's positions). */
static const uint8_t idx18[64] = {0,   1,   72, 73, 0,   1,   72, 73,  18,  19, 90,
                                  91,  18,  19, 90, 91,  36,  37, 108, 109, 36, 37,
                                  108, 109, 54, 55, 126, 127, 54, 55,  126, 127};
#define MASK18_HI 0xf0f0f0f0ull /* positions of blocks 8..15 */
static const uint8_t idx34[64] = {0,  1,  0,   1,   0,   1,   0,   1,   34,  35, 34,
                                  35, 34, 35,  34,  35,  68,  69,  68,  69,  68, 69,
                                  68, 69, 102, 103, 102, 103, 102, 103, 102, 103};
static const __mmask64 mask34[4] = {0x03030303ull, 0x0c0c0c0cull, 0x30303030ull, 0xc0c0c0c0ull};

/* 64 bytes at p + o, only the first `avail - o` of them read when `partial`. */
INLINE __m512i load64(const uint8_t *p, size_t o, bool partial, size_t avail)
{
    if (!partial)
        return _mm512_loadu_si512(p + o);
    size_t n = avail > o ? avail - o : 0;
    __mmask64 m = n >= 64 ? ~0ull : ((1ull << n) - 1);
    return _mm512_maskz_loadu_epi8(m, p + o);
}

/* Scales of 16 Q4_0 blocks at x (only `avail` bytes readable when partial), as floats in the
 * reduced order; missing blocks 0. */
INLINE __m512 scales18(const uint8_t *x, bool partial, size_t avail)
{
    const __m512i idx = _mm512_loadu_si512(idx18);
    __m512i lo =
        _mm512_permutex2var_epi8(load64(x, 0, partial, avail), idx, load64(x, 64, partial, avail));
    __m512i hi = _mm512_permutex2var_epi8(load64(x, 144, partial, avail), idx,
                                          load64(x, 208, partial, avail));
    __m512i h = _mm512_mask_blend_epi8(MASK18_HI, lo, hi);
    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

/* The same for 16 blocks of 34 bytes (Q8_0 weights or activations). */
INLINE __m512 scales34(const uint8_t *x, bool partial, size_t avail)
{
    const __m512i idx = _mm512_loadu_si512(idx34);
    __m512i h = _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int w = 0; w < 4; w++)
    {
        size_t o = 136 * (size_t)w;
        __m512i p = _mm512_maskz_permutex2var_epi8(mask34[w], load64(x, o, partial, avail), idx,
                                                   load64(x, o + 64, partial, avail));
        h = _mm512_or_si512(h, p);
    }
    return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

/* The 32 quants of Q8_0 block b of a step at y; in the partial step (n_blk real blocks) only
 * what is there is read, missing blocks read as zeros (their scales are zero too). */
INLINE __m256i q8_quants(const struct mf_block_q8_0 *y, size_t b, bool partial, size_t n_blk)
{
    if (!partial)
        return _mm256_loadu_si256((const __m256i *)y[b].qs);
    return _mm256_maskz_loadu_epi8(b < n_blk ? ~0u : 0u, (const uint8_t *)y + b * sizeof(*y) + 2);
}

/* Quants 0..15 (*q0) and 16..31 (*q1) of Q8_0 blocks 4g..4g+3 at y, one block per lane. */
INLINE void q8_group(const struct mf_block_q8_0 *y, int g, bool partial, size_t n_blk, __m512i *q0,
                     __m512i *q1)
{
    size_t b = 4 * (size_t)g;
    __m512i t01 = _mm512_inserti64x4(_mm512_castsi256_si512(q8_quants(y, b, partial, n_blk)),
                                     q8_quants(y, b + 1, partial, n_blk), 1);
    __m512i t23 = _mm512_inserti64x4(_mm512_castsi256_si512(q8_quants(y, b + 2, partial, n_blk)),
                                     q8_quants(y, b + 3, partial, n_blk), 1);
    *q0 = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(2, 0, 2, 0));
    *q1 = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(3, 1, 3, 1));
}

/* One step of the activation: its quants, the -c * sum(a) lanes and its scales. */
INLINE void act_load(const struct mf_block_q8_0 *y, bool partial, size_t n_blk, uint8_t c,
                     struct act_step *s)
{
    const __m512i cv = _mm512_set1_epi8((char)c), zero = _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
    {
        q8_group(y, g, partial, n_blk, &s->a0[g], &s->a1[g]);
        __m512i o = _mm512_dpbusd_epi32(zero, cv, s->a0[g]);
        o = _mm512_dpbusd_epi32(o, cv, s->a1[g]);
        s->off[g] = _mm512_sub_epi32(zero, o);
    }
    s->d = scales34((const uint8_t *)y, partial, n_blk * sizeof(*y));
}

/* The 16 quant bytes of each of 4 consecutive Q4_0 blocks (72 bytes at x), one block per lane. */
static const uint8_t idx_q4[64] = {2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,
                                   20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
                                   38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
                                   56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71};

/* Blocks 4g..4g+3 of a step: one 64-byte load, 8 more bytes and a vpermt2b; in the partial
 * step the same with masked loads, which read only the n_blk real blocks (the missing ones
 * come out as zeros, and their scales are zero). */
INLINE __m512i q4_0_group(const struct mf_block_q4_0 *x, int g, bool partial, size_t n_blk)
{
    const uint8_t *p = (const uint8_t *)x;
    size_t o = 4 * sizeof(*x) * (size_t)g, avail = n_blk * sizeof(*x);
    __m512i tail;
    if (!partial)
        tail = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(p + o + 64)));
    else
        tail = _mm512_castsi128_si512(_mm_maskz_loadu_epi8(avail >= o + 72 ? 0xffu
                                                           : avail > o + 64
                                                               ? (1u << (avail - o - 64)) - 1
                                                               : 0u,
                                                           p + o + 64));
    return _mm512_permutex2var_epi8(load64(p, o, partial, avail), _mm512_loadu_si512(idx_q4), tail);
}

/* One step of one Q4_0 row into its float lanes. */
INLINE __m512 q4_0_step(const struct mf_block_q4_0 *x, const struct act_step *s, bool partial,
                        size_t n_blk, __m512 facc)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i acc[4];
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
    {
        __m512i z = q4_0_group(x, g, partial, n_blk);
        __m512i lo = _mm512_and_si512(z, low4);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
        acc[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s->off[g], lo, s->a0[g]), hi, s->a1[g]);
    }
    __m512 d = _mm512_mul_ps(scales18((const uint8_t *)x, partial, n_blk * sizeof(*x)), s->d);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(mf_reduce4_epi32(acc)), d, facc);
}

/* One step of one Q8_0 row into its float lanes. */
INLINE __m512 q8_0_step(const struct mf_block_q8_0 *x, const struct act_step *s, bool partial,
                        size_t n_blk, __m512 facc)
{
    const __m512i sign = _mm512_set1_epi8((char)0x80);
    __m512i acc[4];
    _Pragma("GCC unroll 4") for (int g = 0; g < 4; g++)
    {
        __m512i w0, w1;
        q8_group(x, g, partial, n_blk, &w0, &w1);
        w0 = _mm512_xor_si512(w0, sign); /* w + 128, unsigned */
        w1 = _mm512_xor_si512(w1, sign);
        acc[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s->off[g], w0, s->a0[g]), w1, s->a1[g]);
    }
    __m512 d = _mm512_mul_ps(scales34((const uint8_t *)x, partial, n_blk * sizeof(*x)), s->d);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(mf_reduce4_epi32(acc)), d, facc);
}

/* The activation steps of a whole row (n / 512 of them, rounded up), for kernels that reuse
 * them over many rows. */
INLINE void act_prepare(size_t n, const struct mf_block_q8_0 *y, uint8_t c, struct act_step *pre)
{
    size_t nb = n / MF_QK, full = nb / STEP, rest = nb % STEP;
    for (size_t i = 0; i < full; i++)
        act_load(y + i * STEP, false, STEP, c, &pre[i]);
    if (rest)
        act_load(y + full * STEP, true, rest, c, &pre[full]);
}

/* Step i of the activation: prepared in `pre`, or loaded into *s. */
INLINE const struct act_step *act_at(const struct mf_block_q8_0 *y, const struct act_step *pre,
                                     size_t i, bool partial, size_t n_blk, uint8_t c,
                                     struct act_step *s)
{
    if (pre)
        return &pre[i];
    act_load(y + i * STEP, partial, n_blk, c, s);
    return s;
}

/*
 * One row of one type: row . a. The activation comes from `pre` (act_prepare) or, without it,
 * is loaded step by step; the numbers are the same either way. One row at a time: weight rows
 * streamed side by side (sharing the activation in registers) ran slower from memory, the
 * hardware prefetcher following one stream far better than several.
 */
#define DEFINE_ROW(T, BLOCK, C)                                                                    \
    INLINE float row_##T(size_t n, const BLOCK *x, const struct mf_block_q8_0 *y,                  \
                         const struct act_step *pre)                                               \
    {                                                                                              \
        size_t nb = n / MF_QK, full = nb / STEP, rest = nb % STEP;                                 \
        __m512 facc = _mm512_setzero_ps();                                                         \
        struct act_step s;                                                                         \
        for (size_t i = 0; i < full; i++) {                                                        \
            mf_prefetch_ahead(x + i * STEP, STEP * sizeof(BLOCK));                                 \
            facc =                                                                                 \
                T##_step(x + i * STEP, act_at(y, pre, i, false, STEP, C, &s), false, STEP, facc);  \
        }                                                                                          \
        if (rest)                                                                                  \
            facc = T##_step(x + full * STEP, act_at(y, pre, full, true, rest, C, &s), true, rest,  \
                            facc);                                                                 \
        return _mm512_reduce_add_ps(facc);                                                         \
    }

DEFINE_ROW(q4_0, struct mf_block_q4_0, 8)
DEFINE_ROW(q8_0, struct mf_block_q8_0, 128)

/* n_rows rows of a matrix: the activation prepared once on the stack (up to MAX_PRE steps of
 * 832 bytes: rows of up to 16384 elements; longer ones load it step by step). */
#define MAX_PRE 32
#define DEFINE_MATVEC(T, BLOCK, C)                                                                 \
    void mf_avx512_dot_##T##_rows(size_t n, const void *w, size_t w_stride, const void *a,         \
                                  float *out, size_t n_rows)                                       \
    {                                                                                              \
        struct act_step pre[MAX_PRE];                                                              \
        const struct act_step *use = NULL;                                                         \
        if ((n / MF_QK + STEP - 1) / STEP <= MAX_PRE && n_rows > 1) {                              \
            act_prepare(n, a, C, pre);                                                             \
            use = pre;                                                                             \
        }                                                                                          \
        for (size_t r = 0; r < n_rows; r++)                                                        \
            out[r] = row_##T(n, (const BLOCK *)((const uint8_t *)w + r * w_stride), a, use);       \
    }

float mf_avx512_dot_q4_0(size_t n, const void *w, const void *a)
{
    return row_q4_0(n, w, a, NULL);
}

float mf_avx512_dot_q8_0(size_t n, const void *w, const void *a)
{
    return row_q8_0(n, w, a, NULL);
}

DEFINE_MATVEC(q4_0, struct mf_block_q4_0, 8)
DEFINE_MATVEC(q8_0, struct mf_block_q8_0, 128)
