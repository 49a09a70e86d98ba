/*
 * memfit_matmul_rows: one thread's rows of a matrix product, the building
 * block the model forwards split across a thread pool.
 *
 * Float weights (F32/F16/BF16) go through a cache-blocked tile: the scalar
 * version here (the reference, and the fallback on CPUs without AVX2) and
 * the register-tiled AVX2 one in x86/gemm.c, with the same loop order.
 * Quantized weights take their activation rows already quantized (the
 * caller does it once per matrix, not once per thread) and are dotted row by
 * row over blocks of MF_GEMM_TB activations, so a weight row is read from
 * memory once per block.
 */
#include "core/alloc.h"
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
                               const float *x, size_t xs, size_t n_cols, float *y, size_t ldy)     \
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
                        y[c * ldy + r] = k0 ? y[c * ldy + r] + s : s;                              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

SCALAR_GEMM(f32, 4, elem_f32)
SCALAR_GEMM(f16, 2, elem_f16)
SCALAR_GEMM(bf16, 2, elem_bf16)

mf_gemm_fn mf_gemm_kernel(enum memfit_type type, bool simd)
{
#if defined(__x86_64__)
    if (simd) {
        switch (type) {
        case MEMFIT_TYPE_F32:
            return mf_avx2_gemm_f32;
        case MEMFIT_TYPE_F16:
            return mf_avx2_gemm_f16;
        case MEMFIT_TYPE_BF16:
            return mf_avx2_gemm_bf16;
        default:
            return NULL;
        }
    }
#endif
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

enum memfit_status memfit_matmul_rows(enum memfit_type type, const void *w, size_t w_stride,
                                      uint64_t n, uint64_t row_begin, uint64_t row_end,
                                      const void *act, size_t act_stride, uint64_t n_cols, float *y,
                                      size_t ldy)
{
    enum memfit_type act_type;
    enum memfit_status st = memfit_type_dot_type(type, &act_type);
    if (st != MEMFIT_OK)
        return st;
    if (row_begin > row_end)
        return memfit_fail(MEMFIT_E_RANGE, "matmul_rows: rows %llu..%llu",
                           (unsigned long long)row_begin, (unsigned long long)row_end);
    uint64_t w_row;
    const struct memfit_type_info *act_info = memfit_type_get_info(act_type);
    if ((st = memfit_type_bytes(type, n, &w_row)) != MEMFIT_OK)
        return st;
    if (n % act_info->block_size != 0)
        return memfit_fail(MEMFIT_E_FORMAT,
                           "matmul_rows: row of %llu elements: not a multiple of %u",
                           (unsigned long long)n, act_info->block_size);
    if (w_stride == 0)
        w_stride = (size_t)w_row;
    mf_gemm_fn gemm = mf_gemm_kernel(type, mf_tensor_simd_active());
    if (gemm) {
        gemm(w, w_stride, (size_t)n, (size_t)row_begin, (size_t)row_end, act,
             act_stride / sizeof(float), (size_t)n_cols, y, ldy);
        return MEMFIT_OK;
    }
    const struct mf_type_traits *t = mf_type_traits(type);
    const uint8_t *wb = w, *ab = act;
    for (uint64_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_TB) {
        uint64_t c1 = c0 + MF_GEMM_TB < n_cols ? c0 + MF_GEMM_TB : n_cols;
        for (uint64_t r = row_begin; r < row_end; r++)
            for (uint64_t c = c0; c < c1; c++)
                y[c * ldy + r] = t->vec_dot((size_t)n, wb + r * w_stride, ab + c * act_stride);
    }
    return MEMFIT_OK;
}
