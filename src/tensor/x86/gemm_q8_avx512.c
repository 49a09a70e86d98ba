/*
 * The integer tile for Q8_0 or Q4_0 weights against Q8_0 activations with
 * AVX-512 VNNI (built with -mavx512f -mavx512bw -mavx512vnni, called only
 * after mf_tensor_avx512vnni_active): gemm_q8_vnni.c with 16 weight rows
 * per panel, one zmm, so each 512-bit vpdpbusd does twice the work of the
 * AVX-VNNI one for the same broadcast activation bytes. Same offset trick
 * (activations stored + 128, each row's block starting at -128 * its quant
 * sum), same integer block sums and the same float steps per lane: the
 * results are those of gemm_q8.c and gemm_q8_vnni.c.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

#define NR     16 /* weight rows per panel */
#define MR     8  /* activations per kernel step */
#define KB     (MF_GEMM_KC / MF_QK)
#define UNROLL _Pragma("GCC unroll 8")

struct panel {
    _Alignas(64) int8_t w[KB][8][64];  /* [block][k group of 4][row * 4 + j] */
    _Alignas(64) int32_t bias[KB][NR]; /* -128 * the row's block sum */
    _Alignas(64) float d[KB][NR];      /* the rows' block scales */
};

/* Packs nr <= 16 rows from rb (missing rows zero) of kb blocks from element k0. */
static void pack(struct panel *p, const struct mf_q8_src *src, size_t rb, size_t k0, size_t nr,
                 size_t kb)
{
    for (size_t b = 0; b < kb; b++) {
        for (size_t h = 0; h < 2; h++) {
            __m256i v[8];
            size_t n8 = nr > 8 * h ? nr - 8 * h : 0;
            mf_q8_tile_block(src, rb + 8 * h, k0, n8 < 8 ? n8 : 8, b, v, p->d[b] + 8 * h);
            for (size_t g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)(p->w[b][g] + 32 * h), v[g]);
        }
        __m512i sum = _mm512_setzero_si512();
        for (size_t g = 0; g < 8; g++)
            sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), _mm512_load_si512(p->w[b][g]));
        _mm512_store_si512(p->bias[b], _mm512_mullo_epi32(sum, _mm512_set1_epi32(-128)));
    }
}

static inline __m512i bcast4(const void *q)
{
    int32_t v;
    memcpy(&v, q, sizeof(v));
    return _mm512_set1_epi32(v);
}

/* nc <= MR activations (a[0..nc)) against the panel. */
static void kernel(const struct panel *p, size_t kb, const struct mf_q8_act *a, size_t nc, float *y,
                   size_t ldy, size_t nr, bool add)
{
    const struct mf_q8_act *x[MR];
    for (size_t c = 0; c < MR; c++)
        x[c] = a + (c < nc ? c : 0); /* the missing ones repeat the first, unstored */
    __m512 f[MR];
    UNROLL
    for (size_t c = 0; c < MR; c++)
        f[c] = _mm512_setzero_ps();
    for (size_t b = 0; b < kb; b++) {
        __m512i k[MR];
        __m512i bias = _mm512_load_si512(p->bias[b]);
        UNROLL
        for (size_t c = 0; c < MR; c++)
            k[c] = bias;
        UNROLL
        for (size_t g = 0; g < 8; g++) {
            __m512i w = _mm512_load_si512(p->w[b][g]);
            UNROLL
            for (size_t c = 0; c < MR; c++)
                k[c] = _mm512_dpbusd_epi32(k[c], bcast4(x[c]->u + b * MF_QK + 4 * g), w);
        }
        __m512 d = _mm512_load_ps(p->d[b]);
        UNROLL
        for (size_t c = 0; c < MR; c++)
            f[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(k[c]),
                                   _mm512_mul_ps(d, _mm512_set1_ps(x[c]->d[b])), f[c]);
    }
    const __mmask16 rows = nr >= NR ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    for (size_t c = 0; c < nc; c++) {
        __m512 v = f[c];
        if (add)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rows, y + c * ldy));
        _mm512_mask_storeu_ps(y + c * ldy, rows, v);
    }
}

#define q8_act          mf_q8_act
#define q8_act_quantize mf_q8_act_quantize
#define Q8_ENTRY        mf_avx512vnni_gemm_int8
#include "tensor/x86/gemm_q8_entry.h"
