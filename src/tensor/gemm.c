/*
 * memfit_matmul_rows: one thread's rows of a matrix product, the building
 * block the model forwards split across a thread pool.
 *
 * Float weights (F32/F16/BF16) go through a cache-blocked tile: the scalar
 * version here (the reference, and the fallback on CPUs without AVX2) and
 * the register-tiled AVX2 one in x86/gemm.c, with the same loop order.
 * Quantized weights are dequantized a tile at a time into a stack buffer and
 * go through the same float kernel: activations stay F32 (more accurate
 * than quantizing them) and the dequantization is amortised over a block of
 * activations. For one or two activation rows (LLM decoding) memfit_matmul's
 * integer dot products are the better choice.
 *
 * Q8_0 weights with enough activation rows (and AVX2) take an integer path
 * instead: the activations are quantized to Q8_0 a tile at a time and
 * multiplied in int8 (x86/gemm_q8.c), as ggml does for its quantized
 * matmuls; mf_gemm_q8_0_scalar below is that path's reference. Q4_K and
 * Q6_K weights likewise, against Q8_K activations (x86/gemm_k.c, reference
 * mf_gemm_k_scalar).
 */
#include "core/alloc.h"
#include "tensor/blocks.h"
#include "tensor/kernels.h"

static inline float elem_f32(const void *base, size_t i)
{
    return ((const float *)base)[i];
}

static inline float elem_f16(const void *base, size_t i)
{
    return memfit_fp16_to_fp32(((const uint16_t *)base)[i]);
}

static inline float elem_bf16(const void *base, size_t i)
{
    return memfit_bf16_to_fp32(((const uint16_t *)base)[i]);
}

#define SCALAR_GEMM(NAME, ESIZE, ELEM)                                                             \
    void mf_gemm_scalar_##NAME(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,     \
                               const float *x, size_t xs, size_t n_cols, float *y, size_t ldy,     \
                               bool accumulate)                                                    \
    {                                                                                              \
        const uint8_t *wb = w;                                                                     \
        for (size_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_TB) {                                       \
            size_t c1 = c0 + MF_GEMM_TB < n_cols ? c0 + MF_GEMM_TB : n_cols;                       \
            for (size_t k0 = 0; k0 < n; k0 += MF_GEMM_KC) {                                        \
                size_t kc = k0 + MF_GEMM_KC < n ? MF_GEMM_KC : n - k0;                             \
                for (size_t r = r0; r < r1; r++) {                                                 \
                    const uint8_t *a = wb + r * w_stride + k0 * ESIZE;                             \
                    for (size_t c = c0; c < c1; c++) {                                             \
                        const float *xc = x + c * xs + k0;                                         \
                        float s = 0;                                                               \
                        for (size_t k = 0; k < kc; k++)                                            \
                            s += ELEM(a, k) * xc[k];                                               \
                        y[c * ldy + r] = (accumulate || k0) ? y[c * ldy + r] + s : s;              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

SCALAR_GEMM(f32, 4, elem_f32)
SCALAR_GEMM(f16, 2, elem_f16)
SCALAR_GEMM(bf16, 2, elem_bf16)

mf_gemm_fn mf_gemm_kernel(enum memfit_type type)
{
    switch (type) {
    case MEMFIT_TYPE_F32:
        return mf_gemm_scalar_f32;
    case MEMFIT_TYPE_F16:
        return mf_gemm_scalar_f16;
    case MEMFIT_TYPE_BF16:
        return mf_gemm_scalar_bf16;
    default:
        return NULL;
    }
}

/*
 * Quantized weights: a block of MF_GEMM_RB rows x MF_GEMM_KC of k is
 * dequantized into a stack tile and multiplied by the float kernel against
 * every activation of the block, so the dequantization is paid once per
 * MF_GEMM_TB activations and the arithmetic is the F32 kernel's.
 */
static void gemm_dequant(const struct mf_type_traits *t, const struct memfit_type_info *info,
                         mf_gemm_fn f32, const uint8_t *w, size_t w_stride, size_t n, size_t r0,
                         size_t r1, const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)
{
    float tile[MF_GEMM_RB * MF_GEMM_KC];
    for (size_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_TB) {
        size_t c1 = c0 + MF_GEMM_TB < n_cols ? c0 + MF_GEMM_TB : n_cols;
        for (size_t k0 = 0; k0 < n; k0 += MF_GEMM_KC) {
            size_t kc = k0 + MF_GEMM_KC < n ? MF_GEMM_KC : n - k0;
            size_t k_bytes = k0 / info->block_size * info->type_size;
            for (size_t rb = r0; rb < r1; rb += MF_GEMM_RB) {
                size_t rows = rb + MF_GEMM_RB < r1 ? MF_GEMM_RB : r1 - rb;
                for (size_t i = 0; i < rows; i++)
                    t->to_float(w + (rb + i) * w_stride + k_bytes, tile + i * kc, kc);
                f32(tile, kc * sizeof(float), kc, 0, rows, x + c0 * xs + k0, xs, c1 - c0,
                    y + c0 * ldy + rb, ldy, k0 > 0);
            }
        }
    }
}

void mf_gemm_q8_0_scalar(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,
                         const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)
{
    enum { ROW = MF_GEMM_KC / MF_QK * sizeof(struct mf_block_q8_0) };
    struct mf_block_q8_0 xq[MF_GEMM_Q8_TB * MF_GEMM_KC / MF_QK];
    const uint8_t *wb = w;
    for (size_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_Q8_TB) {
        size_t c1 = c0 + MF_GEMM_Q8_TB < n_cols ? c0 + MF_GEMM_Q8_TB : n_cols;
        for (size_t k0 = 0; k0 < n; k0 += MF_GEMM_KC) {
            size_t kc = k0 + MF_GEMM_KC < n ? MF_GEMM_KC : n - k0, kb = kc / MF_QK;
            for (size_t c = c0; c < c1; c++)
                mf_quant_q8_0(x + c * xs + k0, (uint8_t *)xq + (c - c0) * ROW, kc);
            for (size_t r = r0; r < r1; r++) {
                const struct mf_block_q8_0 *wr = (const void *)(wb + r * w_stride);
                wr += k0 / MF_QK;
                for (size_t c = c0; c < c1; c++) {
                    const struct mf_block_q8_0 *xr = (const void *)((uint8_t *)xq + (c - c0) * ROW);
                    float s = 0;
                    for (size_t b = 0; b < kb; b++) {
                        int32_t sum = 0;
                        for (int k = 0; k < MF_QK; k++)
                            sum += (int32_t)wr[b].qs[k] * xr[b].qs[k];
                        s += (float)sum *
                             (memfit_fp16_to_fp32(wr[b].d) * memfit_fp16_to_fp32(xr[b].d));
                    }
                    y[c * ldy + r] = k0 ? y[c * ldy + r] + s : s;
                }
            }
        }
    }
}

void mf_gemm_k_scalar(enum memfit_type type, const void *w, size_t w_stride, size_t n, size_t r0,
                      size_t r1, const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)
{
    const struct mf_type_traits *t = mf_type_traits_scalar(type);
    size_t block_bytes = memfit_type_get_info(type)->type_size;
    const uint8_t *wb = w;
    struct mf_block_q8_k xq;
    for (size_t c = 0; c < n_cols; c++)
        for (size_t sb = 0; sb < n / MF_QK_K; sb++) {
            mf_quant_q8_k(x + c * xs + sb * MF_QK_K, &xq, MF_QK_K);
            for (size_t r = r0; r < r1; r++) {
                float v = t->vec_dot(MF_QK_K, wb + r * w_stride + sb * block_bytes, &xq);
                y[c * ldy + r] = sb ? y[c * ldy + r] + v : v;
            }
        }
}

enum memfit_status memfit_matmul_rows(enum memfit_type type, const void *w, size_t w_stride,
                                      uint64_t n, uint64_t row_begin, uint64_t row_end,
                                      const float *act, size_t act_stride, uint64_t n_cols,
                                      float *y, size_t ldy)
{
    const struct memfit_type_info *info = memfit_type_get_info(type);
    const struct mf_type_traits *t = mf_type_traits(type);
    if (!info || !t || !t->to_float)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "matmul_rows: no kernel for type %s",
                           info ? info->name : "unknown");
    if (row_begin > row_end)
        return memfit_fail(MEMFIT_E_RANGE, "matmul_rows: rows %llu..%llu",
                           (unsigned long long)row_begin, (unsigned long long)row_end);
    uint64_t w_row;
    enum memfit_status st = memfit_type_bytes(type, n, &w_row);
    if (st != MEMFIT_OK)
        return st;
    if (info->is_quantized && MF_GEMM_KC % info->block_size != 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "matmul_rows: %s blocks of %u do not divide %d",
                           info->name, info->block_size, MF_GEMM_KC);
    if (w_stride == 0)
        w_stride = (size_t)w_row;
    if (type == MEMFIT_TYPE_F32 && w_stride % sizeof(float) != 0)
        return memfit_fail(MEMFIT_E_MISUSE, "matmul_rows: F32 row stride %zu not a multiple of 4",
                           w_stride);
#if defined(__x86_64__)
    if (mf_tensor_simd_active() && (type == MEMFIT_TYPE_Q8_0 || type == MEMFIT_TYPE_Q4_0) &&
        n_cols >= MF_GEMM_Q8_MIN_COLS) {
        (mf_tensor_avx512vnni_active() ? mf_avx512vnni_gemm_int8
         : mf_tensor_vnni_active()
             ? mf_avxvnni_gemm_int8
             : mf_avx2_gemm_int8)(type, w, w_stride, (size_t)n, (size_t)row_begin, (size_t)row_end,
                                  act, act_stride / sizeof(float), (size_t)n_cols, y, ldy);
        return MEMFIT_OK;
    }
    if (mf_tensor_simd_active() && (type == MEMFIT_TYPE_Q4_K || type == MEMFIT_TYPE_Q6_K) &&
        n_cols >= MF_GEMM_Q8_MIN_COLS) {
        int isa = mf_tensor_avx512vnni_active() ? 2 : mf_tensor_vnni_active() ? 1 : 0;
        mf_avx2_gemm_k(type, isa, w, w_stride, (size_t)n, (size_t)row_begin, (size_t)row_end, act,
                       act_stride / sizeof(float), (size_t)n_cols, y, ldy);
        return MEMFIT_OK;
    }
    if (mf_tensor_simd_active()) {
        mf_avx2_gemm(type, t->to_float, info->block_size, info->type_size, w, w_stride, (size_t)n,
                     (size_t)row_begin, (size_t)row_end, act, act_stride / sizeof(float),
                     (size_t)n_cols, y, ldy);
        return MEMFIT_OK;
    }
#endif
    mf_gemm_fn gemm = mf_gemm_kernel(type);
    if (gemm)
        gemm(w, w_stride, (size_t)n, (size_t)row_begin, (size_t)row_end, act,
             act_stride / sizeof(float), (size_t)n_cols, y, ldy, false);
    else
        gemm_dequant(t, info, mf_gemm_kernel(MEMFIT_TYPE_F32), w, w_stride, (size_t)n,
                     (size_t)row_begin, (size_t)row_end, act, act_stride / sizeof(float),
                     (size_t)n_cols, y, ldy);
    return MEMFIT_OK;
}
