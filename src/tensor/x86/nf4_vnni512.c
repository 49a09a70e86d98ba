/*
 * The AVX-512 VNNI NF4 row kernels: one row (mf_nf4_dot_fn) and several rows
 * of a matrix against one Q8_0 activation, the decode path's NF4 products.
 * Built with dot_avx512.c's flags (AVX-512 F, BW, VL, VNNI, VBMI) and
 * called only when CPUID reports them (mf_nf4_dot_kernel).
 *
 * The codes are used as stored and the activation is rearranged instead:
 * a step is 16 Q8_0 blocks (512 elements, 256 code bytes), read as four
 * groups of 64 code bytes, one 32-element block per 128-bit lane. A lane's
 * high nibbles are its block's even elements and the low nibbles the odd
 * ones, so the activation is split per block into even and odd quants
 * (once per call of the multi-row kernel, on the stack; step by step for
 * one row), and a weight group takes one shift, two ands and two vpshufb
 * into the levels + 128 (unsigned, as vpdpbusd wants). Each int32 lane sums
 * 8 products of one block; the four lanes of a block are reduced to one
 * (position 4j + i for block 4i + j, the order of the Q4_0 kernels in
 * dot_avx512.c) and 128 * (the block's quant sum) is subtracted, which makes
 * each block's integer sum exactly the scalar reference's. The float part
 * is the reference's isum * (absmax * d_a), with FMA and summed in another
 * order. Blocks past the row in the last step have zero quants, zero scale
 * and masked code loads, so they add exact zeros.
 * The codes are prefetched ahead as the Q4_0 rows are (x86/prefetch.h): 1.8B
 * NF4 decode 31-32 -> 35.5 tokens/s on 2 threads.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/nf4_512.h"
#include "tensor/x86/prefetch.h"
#include "tensor/x86/reduce512.h"

#define INLINE static inline __attribute__((always_inline))

#define STEP    16 /* Q8_0 blocks per step */
#define MAX_PRE 32 /* prepared steps on the stack (640 bytes each): rows of up to 16384 */
/* absmax decoded at once on the stack (16 KB): at least two rows' (MEMFIT_NF4_MAX_COLS / 32) */
#define MAX_ABSMAX 4096

/* One step of the activation, arranged as the codes are. */
struct nf4_act {
    __m512i even[4], odd[4]; /* group g, lane j: the even / odd quants of block 4g + j */
    __m512i bias;            /* 128 * (sum of block 4i + j's quants) at position 4j + i */
    __m512 d;                /* d_a of block 4i + j at position 4j + i; 0 past the row */
};

static const int8_t zero_quants[MF_QK];

/* The quants of block b of y, zeros past the n_blk real ones. */
INLINE __m256i block_quants(const struct mf_block_q8_0 *y, size_t b, size_t n_blk)
{
    return _mm256_loadu_si256((const __m256i *)(b < n_blk ? y[b].qs : zero_quants));
}

/* Arranges the n_blk (1..16) blocks at y as one step. */
INLINE void act_load(const struct mf_block_q8_0 *y, size_t n_blk, struct nf4_act *s)
{
    /* per lane: the 8 even bytes, then the 8 odd ones */
    const __m512i split =
        _mm512_broadcast_i32x4(_mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    const __m512i c128 = _mm512_set1_epi8((char)0x80);
    __m512i sums[4];
    _Pragma("GCC unroll 4") for (size_t g = 0; g < 4; g++)
    {
        __m512i t01 = _mm512_inserti64x4(_mm512_castsi256_si512(block_quants(y, 4 * g, n_blk)),
                                         block_quants(y, 4 * g + 1, n_blk), 1);
        __m512i t23 = _mm512_inserti64x4(_mm512_castsi256_si512(block_quants(y, 4 * g + 2, n_blk)),
                                         block_quants(y, 4 * g + 3, n_blk), 1);
        /* lane j: quants 0..15 / 16..31 of block 4g + j */
        __m512i q0 = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(2, 0, 2, 0));
        __m512i q1 = _mm512_shuffle_i64x2(t01, t23, _MM_SHUFFLE(3, 1, 3, 1));
        __m512i s0 = _mm512_shuffle_epi8(q0, split), s1 = _mm512_shuffle_epi8(q1, split);
        s->even[g] = _mm512_unpacklo_epi64(s0, s1);
        s->odd[g] = _mm512_unpackhi_epi64(s0, s1);
        sums[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, s->even[g]),
                                      c128, s->odd[g]);
    }
    s->bias = mf_reduce4_epi32(sums);
    float d[STEP] = {0};
    for (size_t b = 0; b < n_blk; b++)
        d[4 * (b % 4) + b / 4] = _cvtsh_ss(y[b].d);
    s->d = _mm512_loadu_ps(d);
}

/*
 * Double-quantized absmax without gathers: the 256 nested_map floats as four byte planes
 * (plane k: byte k of each float, four zmm of 64 entries), 64 codes looked up in each plane
 * by two vpermt2b and a blend on the codes' top bit, and the bytes put back together by
 * unpacks (the codes permuted first so the floats come out in order). Then map * nested +
 * offset, multiply then add: the scalar decoder's floats.
 */
struct map_planes {
    __m512i t[4][4]; /* plane k, entries 64q..64q+63 */
};

INLINE void planes_init(const float *map, struct map_planes *p)
{
    for (int q = 0; q < 4; q++)
        for (int k = 0; k < 4; k++) {
            __m128i b[4];
            for (int v = 0; v < 4; v++)
                b[v] = _mm512_cvtepi32_epi8(
                    _mm512_srli_epi32(_mm512_loadu_si512(map + 64 * q + 16 * v), 8 * k));
            __m512i t = _mm512_castsi128_si512(b[0]);
            t = _mm512_inserti32x4(t, b[1], 1);
            t = _mm512_inserti32x4(t, b[2], 2);
            p->t[k][q] = _mm512_inserti32x4(t, b[3], 3);
        }
}

/* Position 16L + 4j + r takes code 16j + 4L + r: after the unpacks, vector j holds the
 * floats of codes 16j..16j+15 in order. */
static const uint8_t code_order[64] = {
    0,  1,  2,  3,  16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51, 4,  5,  6,  7,  20, 21,
    22, 23, 36, 37, 38, 39, 52, 53, 54, 55, 8,  9,  10, 11, 24, 25, 26, 27, 40, 41, 42, 43,
    56, 57, 58, 59, 12, 13, 14, 15, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63};

/* The map values of the 64 codes c (in code_order) as four vectors of 16 floats. */
INLINE void lookup64(const struct map_planes *p, __m512i c, __m512 out[4])
{
    __mmask64 top = _mm512_movepi8_mask(c);
    __m512i b[4];
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) b[k] =
        _mm512_mask_blend_epi8(top, _mm512_permutex2var_epi8(p->t[k][0], c, p->t[k][1]),
                               _mm512_permutex2var_epi8(p->t[k][2], c, p->t[k][3]));
    __m512i lo01 = _mm512_unpacklo_epi8(b[0], b[1]), hi01 = _mm512_unpackhi_epi8(b[0], b[1]);
    __m512i lo23 = _mm512_unpacklo_epi8(b[2], b[3]), hi23 = _mm512_unpackhi_epi8(b[2], b[3]);
    out[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(lo01, lo23));
    out[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(lo01, lo23));
    out[2] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(hi01, hi23));
    out[3] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(hi01, hi23));
}

/* count (1..64) absmax from block b0 into out, with the planes of m's map. */
INLINE void absmax64(const struct memfit_nf4_matrix *m, const struct map_planes *p, __m512i order,
                     uint64_t b0, size_t count, float *out)
{
    __m512i c = _mm512_maskz_loadu_epi8(count == 64 ? ~0ull : (1ull << count) - 1,
                                        (const uint8_t *)m->absmax + b0);
    __m512 v[4];
    lookup64(p, _mm512_permutexvar_epi8(order, c), v);
    mf_nf4_absmax_n(m, b0, count, v, out);
}

/* count absmax from block b0 into out in one loop, the full groups of 64 without masks. */
INLINE void absmax_range(const struct memfit_nf4_matrix *m, const struct map_planes *p,
                         __m512i order, uint64_t b0, size_t count, float *out)
{
    size_t i = 0;
    for (; i + 64 <= count; i += 64)
        absmax64(m, p, order, b0 + i, 64, out + i);
    if (i < count)
        absmax64(m, p, order, b0 + i, count - i, out + i);
}

void mf_avx512vnni_nf4_absmax(const struct memfit_nf4_matrix *m, uint64_t b0, size_t count,
                              float *out)
{
    struct map_planes p;
    planes_init(m->nested_map, &p);
    absmax_range(m, &p, _mm512_loadu_si512(code_order), b0, count, out);
}

/* Per row: the levels table, the absmax shift and the positions of each block's absmax. */
struct nf4_row_consts {
    __m512i table; /* mf_nf4_q8 + 128 in every lane */
    __m512i idx;   /* position 4j + i: (4i + j) >> shift (shift <= 4) */
    unsigned shift;
};

INLINE void consts_init(unsigned shift, struct nf4_row_consts *k)
{
    uint8_t t[16];
    for (int i = 0; i < 16; i++)
        t[i] = (uint8_t)(mf_nf4_q8[i] + 128);
    k->table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t));
    int32_t idx[STEP];
    for (int p = 0; p < STEP; p++)
        idx[p] = shift <= 4 ? (4 * (p % 4) + p / 4) >> shift : 0;
    k->idx = _mm512_loadu_si512(idx);
    k->shift = shift;
}

/* The absmax of step i's blocks in the reduced order (n_blk real blocks, a multiple of the
 * blocks per absmax; masked loads never read past them). */
INLINE __m512 step_absmax(const float *absmax, size_t i, size_t n_blk,
                          const struct nf4_row_consts *k)
{
    if (k->shift > 4) /* blocks of 1024 or more: one absmax for the step */
        return _mm512_set1_ps(absmax[(i * STEP) >> k->shift]);
    size_t count = n_blk >> k->shift;
    __m512 a =
        _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1), absmax + ((i * STEP) >> k->shift));
    return _mm512_permutexvar_ps(k->idx, a);
}

/* One step of one row (n_blk real blocks at codes) into its float lanes. */
INLINE __m512 step(const uint8_t *codes, const struct nf4_act *s, __m512 scale, size_t n_blk,
                   const struct nf4_row_consts *k, __m512 facc)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i acc[4];
    _Pragma("GCC unroll 4") for (size_t g = 0; g < 4; g++)
    {
        __m512i z;
        if (n_blk == STEP) {
            z = _mm512_loadu_si512(codes + 64 * g);
            __asm__("" : "+v"(z)); /* one load, not one per use */
        } else {
            size_t have = n_blk * (MF_QK / 2) > 64 * g ? n_blk * (MF_QK / 2) - 64 * g : 0;
            __mmask64 m = have >= 64 ? ~0ull : (1ull << have) - 1;
            z = _mm512_maskz_loadu_epi8(m, codes + 64 * g);
        }
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
        __m512i lo = _mm512_and_si512(z, low4);
        acc[g] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(k->table, hi),
                                     s->even[g]);
        acc[g] = _mm512_dpbusd_epi32(acc[g], _mm512_shuffle_epi8(k->table, lo), s->odd[g]);
    }
    __m512i isum = _mm512_sub_epi32(mf_reduce4_epi32(acc), s->bias);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, facc);
}

/* Step i's activation: prepared in pre, or arranged into *tmp. */
INLINE const struct nf4_act *act_at(const struct mf_block_q8_0 *y, const struct nf4_act *pre,
                                    size_t i, size_t n_blk, struct nf4_act *tmp)
{
    if (pre)
        return &pre[i];
    act_load(y + i * STEP, n_blk, tmp);
    return tmp;
}

/* Step i of one row (n_blk real blocks) into its float lanes. */
INLINE __m512 row_step(const uint8_t *codes, const float *absmax, const struct nf4_row_consts *k,
                       const struct mf_block_q8_0 *y, const struct nf4_act *pre, size_t i,
                       size_t n_blk, __m512 facc)
{
    struct nf4_act tmp;
    const struct nf4_act *s = act_at(y, pre, i, n_blk, &tmp);
    __m512 scale = _mm512_mul_ps(step_absmax(absmax, i, n_blk, k), s->d);
    return step(codes + i * STEP * (MF_QK / 2), s, scale, n_blk, k, facc);
}

/* One row: the same operations whether the activation comes from pre or step by step (the
 * full steps with their block count known to the compiler, then the partial one). */
INLINE float row(size_t n, const uint8_t *codes, const float *absmax,
                 const struct nf4_row_consts *k, const struct mf_block_q8_0 *y,
                 const struct nf4_act *pre)
{
    size_t nb = n / MF_QK, full = nb / STEP, rest = nb % STEP;
    __m512 facc = _mm512_setzero_ps();
    for (size_t i = 0; i < full; i++) {
        mf_prefetch_ahead(codes + i * STEP * (MF_QK / 2), STEP * (MF_QK / 2));
        facc = row_step(codes, absmax, k, y, pre, i, STEP, facc);
    }
    if (rest)
        facc = row_step(codes, absmax, k, y, pre, full, rest, facc);
    return _mm512_reduce_add_ps(facc) * (1.0f / 127.0f);
}

float mf_avx512vnni_nf4_dot(size_t n, const uint8_t *codes, const float *absmax, unsigned shift,
                            const void *act)
{
    struct nf4_row_consts k;
    consts_init(shift, &k);
    return row(n, codes, absmax, &k, act, NULL);
}

void mf_avx512vnni_nf4_matvec_rows(const struct memfit_nf4_matrix *m, uint64_t row_begin,
                                   uint64_t row_end, const void *act, float *y)
{
    float absmax[MAX_ABSMAX];
    struct nf4_act pre[MAX_PRE];
    size_t n = (size_t)m->cols, nb = n / MF_QK, steps = (nb + STEP - 1) / STEP;
    const struct mf_block_q8_0 *a = act;
    const struct nf4_act *use = NULL;
    size_t per_row = n / m->blocksize, chunk = MAX_ABSMAX / per_row;
    if (steps <= MAX_PRE && row_end - row_begin > 1) {
        for (size_t i = 0; i < steps; i++)
            act_load(a + i * STEP, nb - i * STEP < STEP ? nb - i * STEP : STEP, &pre[i]);
        use = pre;
    }
    struct nf4_row_consts k;
    consts_init((unsigned)__builtin_ctz(m->blocksize / MF_QK), &k);
    struct map_planes p;
    const __m512i order = _mm512_loadu_si512(code_order);
    if (m->double_quant)
        planes_init(m->nested_map, &p);
    /*
     * The absmax of as many rows as fit decoded in one tight loop, then those rows (the same
     * floats however they are grouped: each is decoded on its own). Decoding 64 at a time
     * just before each row ran 20 % more instructions (the tables reloaded, loops over masks)
     * and made an NF4 row of 2048 cost 30.3 ns against Q4_0's 26.8 in cache; now 24.6. The
     * absmax bytes, a line per two such rows, are not prefetched: prefetching them a chunk
     * ahead measured the same, and 16-64 rows ahead of the rows had been 3-12 % slower.
     */
    for (uint64_t r0 = row_begin; r0 < row_end; r0 += chunk) {
        size_t rows = row_end - r0 < chunk ? (size_t)(row_end - r0) : chunk;
        if (m->double_quant)
            absmax_range(m, &p, order, r0 * per_row, rows * per_row, absmax);
        else
            mf_nf4_absmax_range(m, r0 * per_row, rows * per_row, absmax);
        for (size_t i = 0; i < rows; i++)
            y[r0 + i - row_begin] =
                row(n, m->codes + (r0 + i) * (n / 2), absmax + i * per_row, &k, a, use);
    }
}
