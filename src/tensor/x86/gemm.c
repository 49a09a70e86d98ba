/*
 * AVX2 + FMA + F16C matrix tiles behind memfit_matmul_rows, for every
 * weight type: weights are unpacked (converted or dequantized) 16 rows x
 * MF_GEMM_KC of k at a time into a k-major panel on the stack, then a 6 x 16
 * outer-product micro-kernel runs over the activations: per k, two panel
 * loads and six activation broadcasts feed 12 FMAs into 12 accumulators
 * (6 activations x 16 outputs), with no horizontal sums and vector stores.
 *
 * Cache blocking: a block of MF_GEMM_TB activation rows x MF_GEMM_KC of k
 * stays in L2 while the thread's weight rows pass through it 16 at a time
 * (the 16 KiB panel stays in L1), so each weight byte comes from memory
 * once per MF_GEMM_TB activations and is unpacked once per block.
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/kernels.h"
#include "tensor/x86/tile.h"

#define NR 16 /* outputs (weight rows) per panel */
#define MR 6  /* activations per micro-kernel */

/* Writes (or adds) the first nr of 16 sums of one activation into y. */
static inline void store_row(float *y, __m256 lo, __m256 hi, size_t nr, bool acc)
{
    if (nr == NR) {
        if (acc) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(y));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(y + 8));
        }
        _mm256_storeu_ps(y, lo);
        _mm256_storeu_ps(y + 8, hi);
        return;
    }
    float t[NR];
    _mm256_storeu_ps(t, lo);
    _mm256_storeu_ps(t + 8, hi);
    for (size_t i = 0; i < nr; i++)
        y[i] = acc ? y[i] + t[i] : t[i];
}

/* nc <= 6 activations; a call with fewer repeats the first in the missing
 * places (unstored): as fast as a full call, where a one-activation kernel
 * would wait on its two FMA chains for every k (kernel_1x16 does when the
 * tail is one activation). */
static void kernel_6x16(const float *p, const float *x, size_t xs, size_t nc, size_t kc, float *y,
                        size_t ldy, size_t nr, bool acc)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *x0 = x, *x1 = x + (nc > 1) * xs, *x2 = x + (nc > 2) * 2 * xs,
                *x3 = x + (nc > 3) * 3 * xs, *x4 = x + (nc > 4) * 4 * xs,
                *x5 = x + (nc > 5) * 5 * xs;
    for (size_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(p + k * NR), b1 = _mm256_load_ps(p + k * NR + 8);
        __m256 a = _mm256_broadcast_ss(x0 + k);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(x1 + k);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(x2 + k);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(x3 + k);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(x4 + k);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(x5 + k);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    store_row(y, c00, c01, nr, acc);
    if (nc > 1)
        store_row(y + ldy, c10, c11, nr, acc);
    if (nc > 2)
        store_row(y + 2 * ldy, c20, c21, nr, acc);
    if (nc > 3)
        store_row(y + 3 * ldy, c30, c31, nr, acc);
    if (nc > 4)
        store_row(y + 4 * ldy, c40, c41, nr, acc);
    if (nc > 5)
        store_row(y + 5 * ldy, c50, c51, nr, acc);
}

/* One activation (a lone one: a tail of several goes to kernel_6x16). */
static void kernel_1x16(const float *p, const float *x, size_t kc, float *y, size_t nr, bool acc)
{
    __m256 c0 = _mm256_setzero_ps(), c1 = c0;
    for (size_t k = 0; k < kc; k++) {
        __m256 a = _mm256_broadcast_ss(x + k);
        c0 = _mm256_fmadd_ps(a, _mm256_load_ps(p + k * NR), c0);
        c1 = _mm256_fmadd_ps(a, _mm256_load_ps(p + k * NR + 8), c1);
    }
    store_row(y, c0, c1, nr, acc);
}

/*
 * panel[k][i] = row i, element k, for nr rows of kc floats (rows beyond nr
 * are 0): 8 x 8 blocks transposed in registers, the k tail element by element.
 */
static void pack(float *panel, const float *rows, size_t row_stride, size_t nr, size_t kc)
{
    size_t k8 = kc & ~(size_t)7;
    for (size_t g = 0; g < NR; g += 8) {
        size_t n = nr > g ? (nr - g < 8 ? nr - g : 8) : 0;
        for (size_t k = 0; k < k8; k += 8) {
            __m256 r[8];
            for (size_t i = 0; i < 8; i++)
                r[i] =
                    i < n ? _mm256_loadu_ps(rows + (g + i) * row_stride + k) : _mm256_setzero_ps();
            if (n)
                mf_transpose8(r);
            for (size_t j = 0; j < 8; j++)
                _mm256_store_ps(panel + (k + j) * NR + g, r[j]);
        }
    }
    for (size_t k = k8; k < kc; k++) {
        float *d = panel + k * NR;
        size_t i = 0;
        for (; i < nr; i++)
            d[i] = rows[i * row_stride + k];
        for (; i < NR; i++)
            d[i] = 0;
    }
}

void mf_avx2_gemm(enum memfit_type type, mf_to_float_fn to_float, uint32_t block_size,
                  uint32_t type_size, const void *w, size_t w_stride, size_t n, size_t r0,
                  size_t r1, const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)
{
    _Alignas(64) float panel[MF_GEMM_KC * NR]; /* 64: the AVX-512 kernel loads it by ZMM */
    _Alignas(32) float rows[NR * MF_GEMM_KC];
    const uint8_t *wb = w;
    bool wide = mf_tensor_avx512_active();
    for (size_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_TB) {
        size_t c1 = c0 + MF_GEMM_TB < n_cols ? c0 + MF_GEMM_TB : n_cols;
        for (size_t k0 = 0; k0 < n; k0 += MF_GEMM_KC) {
            size_t kc = k0 + MF_GEMM_KC < n ? MF_GEMM_KC : n - k0;
            size_t k_bytes = k0 / block_size * type_size;
            bool acc = k0 > 0;
            for (size_t rb = r0; rb < r1; rb += NR) {
                size_t nr = rb + NR < r1 ? NR : r1 - rb;
                if (type == MEMFIT_TYPE_F32) {
                    pack(panel, (const float *)(wb + rb * w_stride) + k0, w_stride / sizeof(float),
                         nr, kc);
                } else {
                    for (size_t i = 0; i < nr; i++)
                        to_float(wb + (rb + i) * w_stride + k_bytes, rows + i * kc, kc);
                    pack(panel, rows, kc, nr, kc);
                }
                size_t mr = wide ? MF_GEMM_AVX512_MR : MR;
                for (size_t c = c0; c < c1; c += mr) {
                    size_t nc = c + mr < c1 ? mr : c1 - c;
                    if (nc == 1)
                        kernel_1x16(panel, x + c * xs + k0, kc, y + c * ldy + rb, nr, acc);
                    else if (wide)
                        mf_avx512_gemm_kernel(panel, x + c * xs + k0, xs, nc, kc, y + c * ldy + rb,
                                              ldy, nr, acc);
                    else
                        kernel_6x16(panel, x + c * xs + k0, xs, nc, kc, y + c * ldy + rb, ldy, nr,
                                    acc);
                }
            }
        }
    }
}
