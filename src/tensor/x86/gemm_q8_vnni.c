/*
 * AVX-VNNI integer matrix tile for Q8_0 or Q4_0 weights against Q8_0 activations:
 * the tile of gemm_q8.c, with each step's sign, multiply and widening done
 * by one instruction, vpdpbusd (4 unsigned x signed byte products summed
 * into each int32 lane, exactly). Built with -mavxvnni and called only when
 * CPUID reports AVX-VNNI (mf_tensor_vnni_active).
 *
 * vpdpbusd multiplies unsigned by signed bytes, so the activations' quants
 * are stored offset, u = q + 128 (q ^ 0x80: 1..255), and each weight row's
 * block starts its sum at -128 * (sum of its quants), which the panel keeps:
 * sum (q + 128) w - 128 sum w = sum q w. Products are at most 255 * 128 and
 * four of them fit an int32 lane with room for the whole block.
 *
 * Layout: 8 weight rows x MF_GEMM_KC of k per panel, each 32-byte vector
 * holding 4 consecutive k of each row (as in gemm_q8.c, without |w|); MR
 * activations share every panel load. The integer block sums, and the float
 * arithmetic after them, are those of gemm_q8.c: the results are identical.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

#define NR 8 /* weight rows per panel */
#define MR 8 /* activations per kernel call (4 and 6 measured slower) */
#define KB (MF_GEMM_KC / MF_QK)
/* The loops over the MR activations must unroll for their accumulators to
 * live in registers (GCC's -O2 does not unroll them by itself). */
#define UNROLL _Pragma("GCC unroll 8")

struct panel {
    _Alignas(32) int8_t w[KB][8][32];  /* [block][k group of 4][row * 4 + j] */
    _Alignas(32) int32_t bias[KB][NR]; /* -128 * the row's block sum */
    _Alignas(32) float d[KB][NR];      /* the rows' block scales */
};

/* Packs nr <= 8 rows from rb (missing rows zero) of kb blocks from element k0. */
static void pack(struct panel *p, const struct mf_q8_src *src, size_t rb, size_t k0, size_t nr,
                 size_t kb)
{
    const __m256i ones = _mm256_set1_epi8(1);
    for (size_t b = 0; b < kb; b++) {
        __m256i v[8], sum = _mm256_setzero_si256();
        mf_q8_tile_block(src, rb, k0, nr, b, v, p->d[b]);
        for (size_t g = 0; g < 8; g++) {
            _mm256_store_si256((__m256i *)p->w[b][g], v[g]);
            sum = _mm256_dpbusd_avx_epi32(sum, ones, v[g]); /* each row's quants summed */
        }
        _mm256_store_si256((__m256i *)p->bias[b], _mm256_mullo_epi32(sum, _mm256_set1_epi32(-128)));
    }
}

/* nc <= MR activations (a[0..nc)) against the panel. */
static void kernel(const struct panel *p, size_t kb, const struct mf_q8_act *a, size_t nc, float *y,
                   size_t ldy, size_t nr, bool add)
{
    const struct mf_q8_act *x[MR];
    for (size_t c = 0; c < MR; c++)
        x[c] = a + (c < nc ? c : 0); /* the missing ones repeat the first, unstored */
    __m256 f[MR];
    UNROLL
    for (size_t c = 0; c < MR; c++)
        f[c] = _mm256_setzero_ps();
    for (size_t b = 0; b < kb; b++) {
        __m256i k[MR];
        __m256i bias = _mm256_load_si256((const __m256i *)p->bias[b]);
        UNROLL
        for (size_t c = 0; c < MR; c++)
            k[c] = bias;
        UNROLL
        for (size_t g = 0; g < 8; g++) {
            __m256i w = _mm256_load_si256((const __m256i *)p->w[b][g]);
            UNROLL
            for (size_t c = 0; c < MR; c++)
                k[c] = _mm256_dpbusd_avx_epi32(k[c], mf_q8_bcast4(x[c]->u + b * MF_QK + 4 * g), w);
        }
        __m256 d = _mm256_load_ps(p->d[b]);
        UNROLL
        for (size_t c = 0; c < MR; c++)
            f[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(k[c]),
                                   _mm256_mul_ps(d, _mm256_set1_ps(x[c]->d[b])), f[c]);
    }
    for (size_t c = 0; c < nc; c++)
        mf_q8_store8(y + c * ldy, f[c], nr, add);
}

#define q8_act          mf_q8_act
#define q8_act_quantize mf_q8_act_quantize
#define Q8_ENTRY        mf_avxvnni_gemm_int8
#include "tensor/x86/gemm_q8_entry.h"
