/*
 * The ymm kernel of the K-quant integer tile (gemm_k.c), compiled twice:
 * with K_VNNI 0 in gemm_k.c (AVX2: maddubs gives int16 pairs of products,
 * which cannot overflow, 2 * 63 * 127 < 32767, and madd with the rows'
 * sub-block scales widens and scales them in one step), and with K_VNNI 1
 * in gemm_k_vnni.c (AVX-VNNI: vpdpbusd sums 4 unsigned quant x signed
 * activation products per int32 lane exactly, and each sub-block's sum is
 * multiplied by the scales in int32). Either way each row's lane ends with
 * the sum over sub-blocks of scale * integer sum, the scalar dot's isum.
 * The includer defines K_VNNI and K_KERNEL (the mf_k_kernel_fn's name).
 */
#if K_VNNI
#define MR 4 /* activations per step: a sub-block sum and a total each, in registers */
#else
#define MR 8 /* activations per step */
#endif
#define UNROLL _Pragma("GCC unroll 8")

/* Half h of the panel (rows 8h..8h+7) against nc activations. */
static inline __attribute__((always_inline)) void k_half(const struct mf_k_panel *p, size_t h,
                                                         bool q6, const struct mf_block_q8_k *x,
                                                         size_t nc, float *y, size_t ldy,
                                                         size_t nr8, bool add)
{
    const size_t nsb = q6 ? 16 : 8, gps = q6 ? 4 : 8; /* sub-blocks, 4-k groups in each */
    for (size_t c0 = 0; c0 < nc; c0 += MR) {
        size_t m = nc - c0 < MR ? nc - c0 : MR;
        const struct mf_block_q8_k *xc[MR];
        __m256i acc[MR];
        UNROLL
        for (size_t c = 0; c < MR; c++) {
            xc[c] = x + c0 + (c < m ? c : 0); /* the missing ones repeat the first, unstored */
            acc[c] = _mm256_setzero_si256();
        }
        for (size_t j = 0; j < nsb; j++) {
#if K_VNNI
            __m256i k[MR];
            UNROLL
            for (size_t c = 0; c < MR; c++)
                k[c] = _mm256_setzero_si256();
            for (size_t g = j * gps; g < (j + 1) * gps; g++) {
                __m256i wv = _mm256_load_si256((const __m256i *)(p->q[g] + 32 * h));
                UNROLL
                for (size_t c = 0; c < MR; c++)
                    k[c] = _mm256_dpbusd_avx_epi32(k[c], wv, mf_q8_bcast4(xc[c]->qs + 4 * g));
            }
            __m256i s = _mm256_load_si256((const __m256i *)&p->sc[j][8 * h]);
            UNROLL
            for (size_t c = 0; c < MR; c++)
                acc[c] = _mm256_add_epi32(acc[c], _mm256_mullo_epi32(k[c], s));
#else
            __m256i s = _mm256_load_si256((const __m256i *)&p->sc2[j][8 * h]);
            for (size_t g = j * gps; g < (j + 1) * gps; g++) {
                __m256i wv = _mm256_load_si256((const __m256i *)(p->q[g] + 32 * h));
                UNROLL
                for (size_t c = 0; c < MR; c++)
                    acc[c] = _mm256_add_epi32(
                        acc[c], _mm256_madd_epi16(
                                    _mm256_maddubs_epi16(wv, mf_q8_bcast4(xc[c]->qs + 4 * g)), s));
            }
#endif
        }
        for (size_t c = 0; c < m; c++)
            mf_k_finish8(p, h, q6, xc[c], acc[c], y + (c0 + c) * ldy + 8 * h, nr8, add);
    }
}

void K_KERNEL(const struct mf_k_panel *p, bool q6, const struct mf_block_q8_k *x, size_t nc,
              float *y, size_t ldy, size_t nr, bool add)
{
    for (size_t h = 0; h < MF_KP_NR / 8 && 8 * h < nr; h++) {
        size_t nr8 = nr - 8 * h < 8 ? nr - 8 * h : 8;
        if (q6)
            k_half(p, h, true, x, nc, y, ldy, nr8, add);
        else
            k_half(p, h, false, x, nc, y, ldy, nr8, add);
    }
}
