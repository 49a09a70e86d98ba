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
    _Alignas(32) int8_t u[KB][8][32]; /* |w| */
    _Alignas(32) float d[KB][NR];     /* the rows' block scales */
};

/* One activation's MF_GEMM_KC slice, quantized. */
struct q8_act {
    struct mf_block_q8_0 b[KB];
};

static void q8_act_quantize(const float *x, size_t kc, struct q8_act *a)
{
    mf_avx2_quant_q8_0(x, a->b, kc);
}

/* Packs nr <= 8 rows from rb (missing rows zero) of kb blocks from element k0. */
static void pack(struct panel *p, const struct mf_q8_src *src, size_t rb, size_t k0, size_t nr,
                 size_t kb)
{
    for (size_t b = 0; b < kb; b++) {
        __m256i v[8];
        mf_q8_tile_block(src, rb, k0, nr, b, v, p->d[b]);
        for (size_t g = 0; g < 8; g++) {
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

/* nc <= 4 activations (a[0..nc)) against the panel. */
static void kernel(const struct panel *p, size_t kb, const struct q8_act *a, size_t nc, float *y,
                   size_t ldy, size_t nr, bool add)
{
    const struct mf_block_q8_0 *x0 = a[0].b;
    const struct mf_block_q8_0 *x1 = a[nc > 1 ? 1 : 0].b;
    const struct mf_block_q8_0 *x2 = a[nc > 2 ? 2 : 0].b;
    const struct mf_block_q8_0 *x3 = a[nc > 3 ? 3 : 0].b;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 f0 = _mm256_setzero_ps(), f1 = f0, f2 = f0, f3 = f0;
    for (size_t b = 0; b < kb; b++) {
        __m256i k0 = _mm256_setzero_si256(), k1 = k0, k2 = k0, k3 = k0;
        for (size_t g = 0; g < 8; g++) {
            __m256i w = _mm256_load_si256((const __m256i *)p->w[b][g]);
            __m256i u = _mm256_load_si256((const __m256i *)p->u[b][g]);
            Q8_STEP(k0, x0);
            Q8_STEP(k1, x1);
            Q8_STEP(k2, x2);
            Q8_STEP(k3, x3);
        }
        __m256 d = _mm256_load_ps(p->d[b]);
        f0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k0),
                             _mm256_mul_ps(d, _mm256_set1_ps(_cvtsh_ss(x0[b].d))), f0);
        f1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k1),
                             _mm256_mul_ps(d, _mm256_set1_ps(_cvtsh_ss(x1[b].d))), f1);
        f2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k2),
                             _mm256_mul_ps(d, _mm256_set1_ps(_cvtsh_ss(x2[b].d))), f2);
        f3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k3),
                             _mm256_mul_ps(d, _mm256_set1_ps(_cvtsh_ss(x3[b].d))), f3);
    }
    mf_q8_store8(y, f0, nr, add);
    if (nc > 1)
        mf_q8_store8(y + ldy, f1, nr, add);
    if (nc > 2)
        mf_q8_store8(y + 2 * ldy, f2, nr, add);
    if (nc > 3)
        mf_q8_store8(y + 3 * ldy, f3, nr, add);
}

#define Q8_ENTRY mf_avx2_gemm_int8
#include "tensor/x86/gemm_q8_entry.h"
