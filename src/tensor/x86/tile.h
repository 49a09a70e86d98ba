/*
 * Helpers shared by the x86 matrix tiles: an 8 x 8 register transpose (the
 * float panels of gemm.c), and for the two integer tiles (gemm_q8.c with
 * AVX2, gemm_q8_vnni.c with AVX-VNNI) for Q8_0, Q4_0 or NF4 weights against
 * Q8_0 activations, which both hold 8 weight rows per panel as int8 quants
 * (Q4_0's unpacked, NF4's levels looked up at packing) and give each
 * activation one vector of 8 row sums.
 */
#ifndef MEMFIT_TENSOR_X86_TILE_H
#define MEMFIT_TENSOR_X86_TILE_H

#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"

/* The 32 quants of a Q4_0 block as unsigned nibbles 0..15, in element order
 * (the low nibbles of its 16 bytes are elements 0..15, the high ones 16..31). */
static inline __m256i mf_q4_0_nibbles(const struct mf_block_q4_0 *blk)
{
    __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)blk->qs));
    return _mm256_and_si256(_mm256_srlv_epi64(q, _mm256_set_epi64x(4, 4, 0, 0)),
                            _mm256_set1_epi8(0x0f));
}

/* Transposes the 8 x 8 lanes in r: r[j] lane i <- r[i] lane j. */
static inline void mf_transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* The 32 NF4 codes of 16 bytes (the first element of a pair in the high
 * nibble) as their int8 levels (mf_nf4_q8), in element order. */
static inline __m256i mf_nf4_levels32(const uint8_t *codes)
{
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m128i b = _mm_loadu_si128((const __m128i *)codes);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), low4), lo = _mm_and_si128(b, low4);
    __m256i e = _mm256_set_m128i(_mm_unpackhi_epi8(hi, lo), _mm_unpacklo_epi8(hi, lo));
    __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mf_nf4_q8));
    return _mm256_shuffle_epi8(table, e);
}

/*
 * The weights of an integer tile: Q8_0 or Q4_0 rows of w_stride bytes at w,
 * or (type NF4) the NF4 matrix nf4, whose codes become their int8 levels
 * and whose block scale is absmax / 127.
 */
struct mf_q8_src {
    enum memfit_type type;
    const uint8_t *w;
    size_t w_stride;
    const struct memfit_nf4_matrix *nf4;
};

/*
 * Block b (elements k0 + 32b ..) of nr <= 8 weight rows from row rb, rows
 * beyond nr zero (Q4_0's nibbles are unpacked to quants - 8), laid out for
 * the integer tiles: v[g] holds quants 4g..4g+3 of each row (row i in bytes
 * 4i..4i+3), d[i] the row's block scale.
 */
static inline void mf_q8_tile_block(const struct mf_q8_src *src, size_t rb, size_t k0, size_t nr,
                                    size_t b, __m256i v[8], float d[8])
{
    __m256 r[8];
    for (size_t i = 0; i < 8; i++) {
        __m256i q = _mm256_setzero_si256();
        d[i] = 0.0f;
        if (i < nr && src->type == MEMFIT_TYPE_NF4) {
            const struct memfit_nf4_matrix *m = src->nf4;
            uint64_t e = (rb + i) * m->cols + k0 + b * MF_QK; /* the block's first element */
            q = mf_nf4_levels32(m->codes + e / 2);
            unsigned shift = (unsigned)__builtin_ctz(m->blocksize); /* a power of two */
            d[i] = mf_nf4_block_absmax(m, e >> shift) * (1.0f / 127.0f);
        } else if (i < nr) {
            const uint8_t *row = src->w + (rb + i) * src->w_stride;
            if (src->type == MEMFIT_TYPE_Q4_0) {
                const struct mf_block_q4_0 *blk =
                    (const struct mf_block_q4_0 *)row + k0 / MF_QK + b;
                q = _mm256_sub_epi8(mf_q4_0_nibbles(blk), _mm256_set1_epi8(8));
                d[i] = _cvtsh_ss(blk->d);
            } else {
                const struct mf_block_q8_0 *blk =
                    (const struct mf_block_q8_0 *)row + k0 / MF_QK + b;
                q = _mm256_loadu_si256((const __m256i *)blk->qs);
                d[i] = _cvtsh_ss(blk->d);
            }
        }
        r[i] = _mm256_castsi256_ps(q);
    }
    mf_transpose8(r);
    for (size_t g = 0; g < 8; g++)
        v[g] = _mm256_castps_si256(r[g]);
}

/* The 4 bytes at q in every 32-bit lane. */
static inline __m256i mf_q8_bcast4(const void *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* Writes (or adds) the first nr <= 8 row sums of one activation. */
static inline void mf_q8_store8(float *y, __m256 acc, size_t nr, bool add)
{
    if (nr == 8) {
        if (add)
            acc = _mm256_add_ps(acc, _mm256_loadu_ps(y));
        _mm256_storeu_ps(y, acc);
        return;
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    for (size_t i = 0; i < nr; i++)
        y[i] = add ? y[i] + t[i] : t[i];
}

#endif
