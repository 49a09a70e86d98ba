/*
 * Integer matrix tile for K-quant weights (Q4_K, Q6_K) against Q8_K
 * activations, behind memfit_matmul_rows when there are enough activation
 * rows: the K-quant twin of gemm_q8.c. Before it, K-quant prompts went
 * through a dequantized F32 panel.
 *
 * Per call, for each tile of MF_GEMM_Q8_TB activations and each super-block
 * (256 k): the activations' slices are quantized to one Q8_K block each
 * (mf_avx2_quant_q8_k, the scalar quantizer's bytes), then every 16 weight
 * rows are unpacked into a struct mf_k_panel (x86/tile.h: unsigned quants,
 * 4 k of each row per 32-bit lane) and a kernel multiplies the panel with
 * all the activations. The kernel sums each sub-block in int32 lanes (one
 * lane per row), scales it by the row's sub-block scale in integers, and at
 * the end of the super-block takes off the mins (Q4_K: dmin * m_j * sum of
 * the sub-block's activations, from Q8_K's bsums) or Q6_K's offset of 32
 * the same way, then does the scalar dot's float steps. The integer sums
 * are the scalar dot's, so the floats are mf_gemm_k_scalar's exactly.
 *
 * Three kernels, picked by the caller: AVX2 (gemm_k_ymm.h compiled here),
 * AVX-VNNI (the same header in gemm_k_vnni.c) and AVX-512 VNNI
 * (gemm_k_avx512.c, one zmm per 16 rows).
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

/* Row i of the panel from a Q4_K super-block: quants in element order into u. */
static void unpack_q4_k(struct mf_k_panel *p, size_t i, const struct mf_block_q4_k *b, uint8_t *u)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (size_t g = 0; g < 4; g++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * g));
        _mm256_storeu_si256((__m256i *)(u + 64 * g), _mm256_and_si256(q, low4));
        _mm256_storeu_si256((__m256i *)(u + 64 * g + 32),
                            _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
    }
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        mf_k4_scale_min(j, b->scales, &sc, &m);
        p->sc[j][i] = sc;
        p->sc2[j][i] = sc * 0x10001;
        p->mp[j][i] = m * 0x10001;
    }
    p->d[i] = _cvtsh_ss(b->d);
    p->dmin[i] = _cvtsh_ss(b->dmin);
}

/* Two int16 as one int32 lane (lo in the low half). */
static inline int32_t pair16(int lo, int hi)
{
    return (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
}

/* Row i of the panel from a Q6_K super-block: quants (0..63, the stored +32 kept). */
static void unpack_q6_k(struct mf_k_panel *p, size_t i, const struct mf_block_q6_k *b, uint8_t *u)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f), low2 = _mm256_set1_epi8(3);
    for (size_t h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        for (int k = 0; k < 4; k++) {
            __m256i l = k & 1 ? l1 : l0;
            if (k >= 2)
                l = _mm256_srli_epi16(l, 4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), low2);
            __m256i q = _mm256_or_si256(_mm256_and_si256(l, low4), _mm256_slli_epi16(hi, 4));
            _mm256_storeu_si256((__m256i *)(u + 128 * h + 32 * k), q);
        }
    }
    for (int j = 0; j < 16; j++) {
        p->sc[j][i] = b->scales[j];
        p->sc2[j][i] = pair16(b->scales[j], b->scales[j]);
    }
    for (int q = 0; q < 8; q++)
        p->mp[q][i] = pair16(b->scales[2 * q], b->scales[2 * q + 1]);
    p->d[i] = _cvtsh_ss(b->d);
    p->dmin[i] = 0.0f;
}

/* The panel from super-block `sb` of nr <= 16 rows (missing rows zero). */
static void pack(struct mf_k_panel *p, bool q6, const uint8_t *w, size_t w_stride, size_t nr)
{
    _Alignas(32) uint8_t u[MF_KP_NR][MF_QK_K];
    for (size_t i = 0; i < MF_KP_NR; i++) {
        if (i < nr && q6) {
            unpack_q6_k(p, i, (const struct mf_block_q6_k *)(w + i * w_stride), u[i]);
        } else if (i < nr) {
            unpack_q4_k(p, i, (const struct mf_block_q4_k *)(w + i * w_stride), u[i]);
        } else {
            memset(u[i], 0, sizeof(u[i]));
            for (int j = 0; j < 16; j++)
                p->sc[j][i] = p->sc2[j][i] = 0;
            for (int q = 0; q < 8; q++)
                p->mp[q][i] = 0;
            p->d[i] = p->dmin[i] = 0.0f;
        }
    }
    /* Each 32 k of 8 rows transposed: vector g of the result holds k 4g..4g+3 of every row. */
    for (size_t h = 0; h < MF_KP_NR / 8; h++)
        for (size_t j = 0; j < MF_QK_K / 32; j++) {
            __m256 r[8];
            for (size_t i = 0; i < 8; i++)
                r[i] = _mm256_castsi256_ps(
                    _mm256_load_si256((const __m256i *)(u[8 * h + i] + 32 * j)));
            mf_transpose8(r);
            for (size_t g = 0; g < 8; g++)
                _mm256_store_si256((__m256i *)(p->q[8 * j + g] + 32 * h),
                                   _mm256_castps_si256(r[g]));
        }
}

#define K_VNNI   0
#define K_KERNEL mf_avx2_k_kernel
#include "tensor/x86/gemm_k_ymm.h"

/* One call's state for the shared loop (mf_tile_run). */
struct run {
    struct mf_k_panel p;
    struct mf_block_q8_k xq[MF_GEMM_Q8_TB];
    const uint8_t *w;
    size_t w_stride, block_bytes;
    bool q6;
    mf_k_kernel_fn kernel;
};

static void quantize_cb(void *ctx, size_t c, const float *x, size_t kc)
{
    struct run *r = ctx;
    mf_avx2_quant_q8_k(x, &r->xq[c], kc);
}

static void pack_cb(void *ctx, size_t rb, size_t nr, size_t k0, size_t kc)
{
    struct run *r = ctx;
    (void)kc;
    pack(&r->p, r->q6, r->w + rb * r->w_stride + k0 / MF_QK_K * r->block_bytes, r->w_stride, nr);
}

static void kernel_cb(void *ctx, size_t c, size_t nc, float *y, size_t ldy, size_t nr, bool add)
{
    struct run *r = ctx;
    r->kernel(&r->p, r->q6, &r->xq[c], nc, y, ldy, nr, add);
}

void mf_avx2_gemm_k(enum memfit_type type, int isa, const void *w, size_t w_stride, size_t n,
                    size_t r0, size_t r1, const float *x, size_t xs, size_t n_cols, float *y,
                    size_t ldy)
{
    struct run r; /* (not zeroed: its buffers are written before they are read) */
    r.w = w;
    r.w_stride = w_stride;
    r.q6 = type == MEMFIT_TYPE_Q6_K;
    r.block_bytes = r.q6 ? sizeof(struct mf_block_q6_k) : sizeof(struct mf_block_q4_k);
    r.kernel = isa == 2   ? mf_avx512vnni_k_kernel
               : isa == 1 ? mf_avxvnni_k_kernel
                          : mf_avx2_k_kernel;
    /* One super-block per slice; the kernels take every activation of the tile at once. */
    const struct mf_tile_loop l = {MF_KP_NR,    MF_GEMM_Q8_TB, MF_QK_K,  &r,
                                   quantize_cb, pack_cb,       kernel_cb};
    mf_tile_run(&l, n, r0, r1, x, xs, n_cols, y, ldy);
}
