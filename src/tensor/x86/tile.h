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

/*
 * The loop nest the integer tiles share: MF_GEMM_Q8_TB activations at a
 * time, MF_GEMM_Q8_RC weight rows per pass over k (so the outputs stay in
 * L2 while every slice adds to them), kc of k per slice. Per slice the
 * activations are quantized once (quantize: tile activation c from kc
 * floats at x), every nr rows are packed once (pack: rows rb.. of the slice
 * at k0) and multiplied with every mr activations (kernel: tile
 * activations c..c+nc, outputs at y for activation c and row rb; add for
 * every slice after the first).
 */
struct mf_tile_loop {
    size_t nr, mr, kc;
    void *ctx;
    void (*quantize)(void *ctx, size_t c, const float *x, size_t kc);
    void (*pack)(void *ctx, size_t rb, size_t nr, size_t k0, size_t kc);
    void (*kernel)(void *ctx, size_t c, size_t nc, float *y, size_t ldy, size_t nr, bool add);
};

static inline void mf_tile_run(const struct mf_tile_loop *l, size_t n, size_t r0, size_t r1,
                               const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)
{
    for (size_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_Q8_TB) {
        size_t nc = n_cols - c0 < MF_GEMM_Q8_TB ? n_cols - c0 : MF_GEMM_Q8_TB;
        for (size_t q0 = r0; q0 < r1; q0 += MF_GEMM_Q8_RC) {
            size_t q1 = r1 - q0 < MF_GEMM_Q8_RC ? r1 : q0 + MF_GEMM_Q8_RC;
            for (size_t k0 = 0; k0 < n; k0 += l->kc) {
                size_t kc = n - k0 < l->kc ? n - k0 : l->kc;
                for (size_t c = 0; c < nc; c++)
                    l->quantize(l->ctx, c, x + (c0 + c) * xs + k0, kc);
                for (size_t rb = q0; rb < q1; rb += l->nr) {
                    size_t nr = q1 - rb < l->nr ? q1 - rb : l->nr;
                    l->pack(l->ctx, rb, nr, k0, kc);
                    for (size_t c = 0; c < nc; c += l->mr)
                        l->kernel(l->ctx, c, nc - c < l->mr ? nc - c : l->mr,
                                  y + (c0 + c) * ldy + rb, ldy, nr, k0 > 0);
                }
            }
        }
    }
}

/* One activation's slice of MF_GEMM_KC for the vpdpbusd tiles (gemm_q8_vnni.c,
 * gemm_q8_avx512.c): quants offset by 128 (unsigned) and block scales. */
struct mf_q8_act {
    _Alignas(64) uint8_t u[MF_GEMM_KC];
    float d[MF_GEMM_KC / MF_QK];
};

/* Quantizes kc floats (the bytes mf_avx2_quant_q8_0 gives) into a's offset form. */
static inline void mf_q8_act_quantize(const float *x, size_t kc, struct mf_q8_act *a)
{
    struct mf_block_q8_0 blocks[MF_GEMM_KC / MF_QK];
    mf_avx2_quant_q8_0(x, blocks, kc);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (size_t b = 0; b < kc / MF_QK; b++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)blocks[b].qs);
        _mm256_store_si256((__m256i *)(a->u + b * MF_QK), _mm256_xor_si256(q, flip));
        a->d[b] = _cvtsh_ss(blocks[b].d);
    }
}

/*
 * The panel of the K-quant integer tiles (gemm_k*.c): one super-block (256
 * k) of MF_KP_NR weight rows (Q4_K or Q6_K), quants unpacked to unsigned
 * bytes (Q4_K 0..15, Q6_K 0..63, its -32 taken off through the activation's
 * bsums) and laid out as the Q8_0 tiles' panels: q[g] holds k 4g..4g+3 of
 * each row, row i in bytes 4i..4i+3, so one 32-bit activation broadcast
 * serves every row and each int32 lane sums one row. 16 rows: one zmm, or
 * two ymm halves (rows 0..7 in bytes 0..31, 8..15 in 32..63).
 */
#define MF_KP_NR 16
struct mf_k_panel {
    _Alignas(64) uint8_t q[64][MF_KP_NR * 4];
    _Alignas(64) int32_t sc[16][MF_KP_NR];  /* sub-block scales: Q4_K 8 of 32 k, Q6_K 16 of 16 */
    _Alignas(64) int32_t sc2[16][MF_KP_NR]; /* the same as two equal int16 (for madd) */
    /* int16 pairs against the activation's bsums (2p, 2p + 1): Q4_K (m_p, m_p), Q6_K
     * (sc_2p, sc_2p+1) */
    _Alignas(64) int32_t mp[8][MF_KP_NR];
    _Alignas(64) float d[MF_KP_NR], dmin[MF_KP_NR];
};

/*
 * One activation's super-block result for the ymm half h (rows 8h..8h+7) of
 * a K-quant panel, from acc = per row sum over sub-blocks of scale * integer
 * sum: adds the mins (Q4_K) or the -32 offset (Q6_K) through the bsums and
 * does the scalar dot's float steps, Q4_K d_x * (d * acc - dmin * mins), Q6_K
 * (d_x * d) * (acc - 32 * sum sc bsum); writes or adds nr8 <= 8 rows at y.
 */
static inline void mf_k_finish8(const struct mf_k_panel *p, size_t h, bool q6,
                                const struct mf_block_q8_k *x, __m256i acc, float *y, size_t nr8,
                                bool add)
{
    __m256i m = _mm256_setzero_si256();
    for (size_t q = 0; q < 8; q++) {
        int32_t pair;
        memcpy(&pair, x->bsums + 2 * q, sizeof(pair));
        m = _mm256_add_epi32(m,
                             _mm256_madd_epi16(_mm256_load_si256((const __m256i *)&p->mp[q][8 * h]),
                                               _mm256_set1_epi32(pair)));
    }
    __m256 d = _mm256_load_ps(p->d + 8 * h), yd = _mm256_set1_ps(x->d), f;
    if (q6)
        f = _mm256_mul_ps(_mm256_mul_ps(yd, d),
                          _mm256_cvtepi32_ps(_mm256_sub_epi32(acc, _mm256_slli_epi32(m, 5))));
    else
        f = _mm256_mul_ps(yd, _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(acc)),
                                            _mm256_mul_ps(_mm256_load_ps(p->dmin + 8 * h),
                                                          _mm256_cvtepi32_ps(m))));
    mf_q8_store8(y, f, nr8, add);
}

#endif
