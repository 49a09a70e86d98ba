/*
 * The K-quant integer tile's kernel with AVX-512 VNNI (built with
 * -mavx512f -mavx512bw -mavx512vnni, called only after
 * mf_tensor_avx512vnni_active): the 16 rows of a panel in one zmm, each
 * sub-block summed by 512-bit vpdpbusd and scaled in int32, the mins (or
 * Q6_K's offset) through vpdpwssd on the bsums, then the scalar dot's float
 * steps. The same integer sums and float steps as the ymm kernels, so the
 * same floats.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

#define MR     8 /* activations per step (16 of the 32 zmm registers hold their sums) */
#define UNROLL _Pragma("GCC unroll 8")

static inline __m512i bcast4(const void *q)
{
    int32_t v;
    memcpy(&v, q, sizeof(v));
    return _mm512_set1_epi32(v);
}

static inline __attribute__((always_inline)) void run(const struct mf_k_panel *p, bool q6,
                                                      const struct mf_block_q8_k *x, size_t nc,
                                                      float *y, size_t ldy, size_t nr, bool add)
{
    const size_t nsb = q6 ? 16 : 8, gps = q6 ? 4 : 8; /* sub-blocks, 4-k groups in each */
    const __mmask16 rows = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    for (size_t c0 = 0; c0 < nc; c0 += MR) {
        size_t m = nc - c0 < MR ? nc - c0 : MR;
        const struct mf_block_q8_k *xc[MR];
        __m512i acc[MR];
        UNROLL
        for (size_t c = 0; c < MR; c++) {
            xc[c] = x + c0 + (c < m ? c : 0); /* the missing ones repeat the first, unstored */
            acc[c] = _mm512_setzero_si512();
        }
        for (size_t j = 0; j < nsb; j++) {
            __m512i k[MR];
            UNROLL
            for (size_t c = 0; c < MR; c++)
                k[c] = _mm512_setzero_si512();
            for (size_t g = j * gps; g < (j + 1) * gps; g++) {
                __m512i wv = _mm512_load_si512(p->q[g]);
                UNROLL
                for (size_t c = 0; c < MR; c++)
                    k[c] = _mm512_dpbusd_epi32(k[c], wv, bcast4(xc[c]->qs + 4 * g));
            }
            __m512i s = _mm512_load_si512(p->sc[j]);
            UNROLL
            for (size_t c = 0; c < MR; c++)
                acc[c] = _mm512_add_epi32(acc[c], _mm512_mullo_epi32(k[c], s));
        }
        __m512 d = _mm512_load_ps(p->d), dmin = _mm512_load_ps(p->dmin);
        for (size_t c = 0; c < m; c++) {
            __m512i mins = _mm512_setzero_si512();
            for (size_t q = 0; q < 8; q++)
                mins = _mm512_dpwssd_epi32(mins, _mm512_load_si512(p->mp[q]),
                                           bcast4(xc[c]->bsums + 2 * q));
            __m512 yd = _mm512_set1_ps(xc[c]->d), f;
            if (q6)
                f = _mm512_mul_ps(_mm512_mul_ps(yd, d), _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                                            acc[c], _mm512_slli_epi32(mins, 5))));
            else
                f = _mm512_mul_ps(yd, _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(acc[c])),
                                                    _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mins))));
            float *yc = y + (c0 + c) * ldy;
            if (add)
                f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(rows, yc));
            _mm512_mask_storeu_ps(yc, rows, f);
        }
    }
}

void mf_avx512vnni_k_kernel(const struct mf_k_panel *p, bool q6, const struct mf_block_q8_k *x,
                            size_t nc, float *y, size_t ldy, size_t nr, bool add)
{
    if (q6)
        run(p, true, x, nc, y, ldy, nr, add);
    else
        run(p, false, x, nc, y, ldy, nr, add);
}
