/*
 * AVX2 integer matrix tile for Q8_0 (or Q4_0) weights against Q8_0
 * activations, behind memfit_matmul_rows when there are enough activation
 * rows (ggml's approach: activations quantized to Q8_0 blocks, products in
 * int8). Q4_0 blocks are unpacked to int8 quants (nibble - 8) when packed,
 * and from there are Q8_0 blocks with small values.
 *
 * Layout: 8 weight rows x MF_GEMM_KC of k are repacked once per call into a
 * panel where each 32-byte vector holds 4 consecutive k of each of the 8
 * rows (|w| and w, for the sign trick), so a step needs no horizontal sum:
 * the activation's 4 bytes are broadcast, given w's signs
 * (_mm256_sign_epi8), multiplied with |w| by _mm256_maddubs_epi16 (exact:
 * |w| <= 128, |x| <= 127, a pair sums to at most 32512) and widened to
 * int32 by _mm256_madd_epi16: 32 multiply-adds, one int32 lane per row.
 * After the 8 steps of a 32-element block, each activation's int32 row sums
 * are converted once and scaled by d_w (8 rows) * d_x into float
 * accumulators. 4 activations share each panel load. The weight bytes read
 * are 3.8x (Q4_0: 7.1x) fewer than F32's.
 *
 * The scalar reference for Q8_0 is mf_gemm_q8_0_scalar (../gemm.c): the same
 * activation bytes, the same integer block sums; float rounding differs
 * only in d_w * d_x (one product here, per row there) and the final add.
 * For Q4_0 it is mf_dot_q4_0 per row (the same integer block sums).
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

#define NR 8 /* weight rows per panel */
#define KB (MF_GEMM_KC / MF_QK)
#define MR 4 /* activations per kernel call */

struct panel {
    _Alignas(32) int8_t w[KB][8][32]; /* [block][k group of 4][row * 4 + j] */
    _Alignas(32) int8_t u[KB][8][32]; /* |w|; Q4_0: the nibbles (w + 8), w unused */
    _Alignas(32) float d[KB][NR];     /* the rows' block scales */
    bool q4;                          /* Q4_0 weights */
};

/* One activation's MF_GEMM_KC slice, quantized, with 8 * each block's sum of quants (the
 * offset of Q4_0's nibbles). */
struct q8_act {
    struct mf_block_q8_0 b[KB];
    int32_t off[KB];
};

static void q8_act_quantize(const float *x, size_t kc, struct q8_act *a)
{
    mf_avx2_quant_q8_0(x, a->b, kc);
    const __m256i eight = _mm256_set1_epi8(8);
    for (size_t b = 0; b < kc / MF_QK; b++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)a->b[b].qs);
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, q), _mm256_set1_epi16(1));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        a->off[b] = _mm_cvtsi128_si32(h);
    }
}

/* Packs nr <= 8 rows from rb (missing rows zero) of kb blocks from element k0. */
static void pack(struct panel *p, const struct mf_q8_src *src, size_t rb, size_t k0, size_t nr,
                 size_t kb)
{
    p->q4 = src->type == MEMFIT_TYPE_Q4_0;
    for (size_t b = 0; b < kb; b++) {
        __m256i v[8];
        mf_q8_tile_block(src, rb, k0, nr, b, v, p->d[b]);
        for (size_t g = 0; g < 8 && p->q4; g++)
            _mm256_store_si256((__m256i *)p->u[b][g], _mm256_add_epi8(v[g], _mm256_set1_epi8(8)));
        for (size_t g = 0; g < 8 && !p->q4; g++) {
            _mm256_store_si256((__m256i *)p->w[b][g], v[g]);
            _mm256_store_si256((__m256i *)p->u[b][g], _mm256_abs_epi8(v[g]));
        }
    }
}

#define Q8_STEP(k, xr)                                                                             \
    k = _mm256_add_epi32(                                                                          \
        k,                                                                                         \
        _mm256_madd_epi16(                                                                         \
            _mm256_maddubs_epi16(u, _mm256_sign_epi8(mf_q8_bcast4((xr)[b].qs + 4 * g), w)), ones))

/* Q4_0: the nibbles times the activation (a pair at most 2 * 15 * 128, so a block's eight steps
 * add up in int16), widened once per block, less the offset: the same int32 block sums. */
#define Q4_STEP(k, xr)                                                                             \
    k = _mm256_add_epi16(k, _mm256_maddubs_epi16(u, mf_q8_bcast4((xr)[b].qs + 4 * g)))

/* The block's integer sums (k[c]) times d_w * d_x into the float sums f[c]. */
#define BLOCK_FLOATS(c)                                                                            \
    f[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k[c]),                                               \
                           _mm256_mul_ps(d, _mm256_set1_ps(_cvtsh_ss(x[c][b].d))), f[c])

/* nc <= 4 activations (a[0..nc)) against the panel; q4: Q4_0 weights (a constant). */
static inline __attribute__((always_inline)) void kernel_body(const struct panel *p, size_t kb,
                                                              const struct q8_act *a, size_t nc,
                                                              float *y, size_t ldy, size_t nr,
                                                              bool add, bool q4)
{
    const struct q8_act *xa[4] = {&a[0], &a[nc > 1 ? 1 : 0], &a[nc > 2 ? 2 : 0],
                                  &a[nc > 3 ? 3 : 0]};
    const struct mf_block_q8_0 *x[4] = {xa[0]->b, xa[1]->b, xa[2]->b, xa[3]->b};
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (size_t b = 0; b < kb; b++) {
        __m256i k[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
        _Pragma("GCC unroll 8") for (size_t g = 0; g < 8; g++)
        {
            __m256i u = _mm256_load_si256((const __m256i *)p->u[b][g]);
            if (q4) {
                Q4_STEP(k[0], x[0]);
                Q4_STEP(k[1], x[1]);
                Q4_STEP(k[2], x[2]);
                Q4_STEP(k[3], x[3]);
            } else {
                __m256i w = _mm256_load_si256((const __m256i *)p->w[b][g]);
                Q8_STEP(k[0], x[0]);
                Q8_STEP(k[1], x[1]);
                Q8_STEP(k[2], x[2]);
                Q8_STEP(k[3], x[3]);
            }
        }
        _Pragma("GCC unroll 4") for (int c = 0; c < 4 && q4; c++) k[c] =
            _mm256_sub_epi32(_mm256_madd_epi16(k[c], ones), _mm256_set1_epi32(xa[c]->off[b]));
        __m256 d = _mm256_load_ps(p->d[b]);
        BLOCK_FLOATS(0);
        BLOCK_FLOATS(1);
        BLOCK_FLOATS(2);
        BLOCK_FLOATS(3);
    }
    for (size_t c = 0; c < nc; c++)
        mf_q8_store8(y + c * ldy, f[c], nr, add);
}

static void kernel(const struct panel *p, size_t kb, const struct q8_act *a, size_t nc, float *y,
                   size_t ldy, size_t nr, bool add)
{
    if (p->q4)
        kernel_body(p, kb, a, nc, y, ldy, nr, add, true);
    else
        kernel_body(p, kb, a, nc, y, ldy, nr, add, false);
}

#define Q8_ENTRY mf_avx2_gemm_int8
#include "tensor/x86/gemm_q8_entry.h"
