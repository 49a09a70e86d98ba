/*
 * AVX2 + FMA + F16C register-tiled matrix product for float weights (F32,
 * F16, BF16) against F32 activations: the tile behind memfit_matmul_rows.
 *
 * Both operands keep the layout they live in (a Linear weight [out, in] is
 * row-major along `in`, so is each activation row), so the micro-kernel
 * vectorises along the shared dimension k: 4 activation rows x 3 weight rows
 * = 12 accumulators of 8 lanes, 7 loads per 12 FMAs, and the 12 horizontal
 * sums are done together once per k-block. No packing, no scratch.
 *
 * Cache blocking: a block of MF_GEMM_TB activation rows x MF_GEMM_KC of k
 * stays in L2 while the thread's weight rows stream through it in blocks of
 * MF_GEMM_RB rows (L1), so each weight byte comes from memory once per
 * MF_GEMM_TB activations (a ViT-B batch of 8 reads its weights 5 times, not
 * 22), and each group of 4 activation rows is reused from L1 for RB rows.
 */
#include <immintrin.h>

#include "tensor/kernels.h"

static inline __m256 load_f32(const void *base, size_t i)
{
    return _mm256_loadu_ps((const float *)base + i);
}

static inline __m256 load_f16(const void *base, size_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
}

static inline __m256 load_bf16(const void *base, size_t i)
{
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float scalar_f32(const void *base, size_t i)
{
    return ((const float *)base)[i];
}

static inline float scalar_f16(const void *base, size_t i)
{
    return _cvtsh_ss(((const uint16_t *)base)[i]);
}

static inline float scalar_bf16(const void *base, size_t i)
{
    union {
        uint32_t u;
        float f;
    } v = {.u = (uint32_t)((const uint16_t *)base)[i] << 16};
    return v.f;
}

/* The 4 lane sums of a, b, c, d as one vector {sum a, sum b, sum c, sum d}. */
static inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    __m256 ab = _mm256_hadd_ps(a, b);
    __m256 cd = _mm256_hadd_ps(c, d);
    __m256 abcd = _mm256_hadd_ps(ab, cd);
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

static inline float hsum1(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/*
 * One weight type's tile functions. ELEM is the weight element size; w rows
 * are given as byte pointers already advanced to k0. `acc` says whether y
 * already holds a partial sum (k-blocks after the first).
 */
#define GEMM_KERNELS(NAME, ESIZE, LOAD, SCALAR)                                                    \
    static void NAME##_4x3(const uint8_t *w0, const uint8_t *w1, const uint8_t *w2,                \
                           const float *x, size_t xs, size_t kc, float *y, size_t ldy, bool acc)   \
    {                                                                                              \
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;   \
        __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;                   \
        const float *x0 = x, *x1 = x + xs, *x2 = x + 2 * xs, *x3 = x + 3 * xs;                     \
        size_t k = 0;                                                                              \
        for (; k + 8 <= kc; k += 8) {                                                              \
            __m256 a = LOAD(w0, k), b = LOAD(w1, k), c = LOAD(w2, k);                              \
            __m256 v = _mm256_loadu_ps(x0 + k);                                                    \
            c00 = _mm256_fmadd_ps(a, v, c00);                                                      \
            c01 = _mm256_fmadd_ps(b, v, c01);                                                      \
            c02 = _mm256_fmadd_ps(c, v, c02);                                                      \
            v = _mm256_loadu_ps(x1 + k);                                                           \
            c10 = _mm256_fmadd_ps(a, v, c10);                                                      \
            c11 = _mm256_fmadd_ps(b, v, c11);                                                      \
            c12 = _mm256_fmadd_ps(c, v, c12);                                                      \
            v = _mm256_loadu_ps(x2 + k);                                                           \
            c20 = _mm256_fmadd_ps(a, v, c20);                                                      \
            c21 = _mm256_fmadd_ps(b, v, c21);                                                      \
            c22 = _mm256_fmadd_ps(c, v, c22);                                                      \
            v = _mm256_loadu_ps(x3 + k);                                                           \
            c30 = _mm256_fmadd_ps(a, v, c30);                                                      \
            c31 = _mm256_fmadd_ps(b, v, c31);                                                      \
            c32 = _mm256_fmadd_ps(c, v, c32);                                                      \
        }                                                                                          \
        /* Row sums: s0 = {x0.w0, x1.w0, x2.w0, x3.w0}, and so on. */                              \
        float r0[4], r1[4], r2[4];                                                                 \
        _mm_storeu_ps(r0, hsum4(c00, c10, c20, c30));                                              \
        _mm_storeu_ps(r1, hsum4(c01, c11, c21, c31));                                              \
        _mm_storeu_ps(r2, hsum4(c02, c12, c22, c32));                                              \
        for (; k < kc; k++) {                                                                      \
            float a = SCALAR(w0, k), b = SCALAR(w1, k), c = SCALAR(w2, k);                         \
            r0[0] += a * x0[k], r1[0] += b * x0[k], r2[0] += c * x0[k];                            \
            r0[1] += a * x1[k], r1[1] += b * x1[k], r2[1] += c * x1[k];                            \
            r0[2] += a * x2[k], r1[2] += b * x2[k], r2[2] += c * x2[k];                            \
            r0[3] += a * x3[k], r1[3] += b * x3[k], r2[3] += c * x3[k];                            \
        }                                                                                          \
        for (int t = 0; t < 4; t++) {                                                              \
            float *yt = y + t * ldy;                                                               \
            if (acc) {                                                                             \
                yt[0] += r0[t], yt[1] += r1[t], yt[2] += r2[t];                                    \
            } else {                                                                               \
                yt[0] = r0[t], yt[1] = r1[t], yt[2] = r2[t];                                       \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static float NAME##_1x1(const uint8_t *w, const float *x, size_t kc)                           \
    {                                                                                              \
        __m256 s = _mm256_setzero_ps();                                                            \
        size_t k = 0;                                                                              \
        for (; k + 8 <= kc; k += 8)                                                                \
            s = _mm256_fmadd_ps(LOAD(w, k), _mm256_loadu_ps(x + k), s);                            \
        float r = hsum1(s);                                                                        \
        for (; k < kc; k++)                                                                        \
            r += SCALAR(w, k) * x[k];                                                              \
        return r;                                                                                  \
    }                                                                                              \
                                                                                                   \
    void mf_avx2_gemm_##NAME(const void *w, size_t w_stride, size_t n, size_t r0, size_t r1,       \
                             const float *x, size_t xs, size_t n_cols, float *y, size_t ldy,       \
                             bool accumulate)                                                      \
    {                                                                                              \
        const uint8_t *wb = w;                                                                     \
        for (size_t c0 = 0; c0 < n_cols; c0 += MF_GEMM_TB) {                                       \
            size_t c1 = c0 + MF_GEMM_TB < n_cols ? c0 + MF_GEMM_TB : n_cols;                       \
            for (size_t k0 = 0; k0 < n; k0 += MF_GEMM_KC) {                                        \
                size_t kc = k0 + MF_GEMM_KC < n ? MF_GEMM_KC : n - k0;                             \
                bool acc = accumulate || k0 > 0;                                                   \
                for (size_t rb = r0; rb < r1; rb += MF_GEMM_RB) {                                  \
                    size_t re = rb + MF_GEMM_RB < r1 ? rb + MF_GEMM_RB : r1;                       \
                    size_t r3 = rb + (re - rb) / 3 * 3;                                            \
                    size_t c = c0;                                                                 \
                    for (; c + 4 <= c1; c += 4) {                                                  \
                        const float *xc = x + c * xs + k0;                                         \
                        for (size_t r = rb; r < r3; r += 3) {                                      \
                            const uint8_t *a = wb + r * w_stride + k0 * ESIZE;                     \
                            NAME##_4x3(a, a + w_stride, a + 2 * w_stride, xc, xs, kc,              \
                                       y + c * ldy + r, ldy, acc);                                 \
                        }                                                                          \
                        for (size_t r = r3; r < re; r++)                                           \
                            for (size_t t = c; t < c + 4; t++) {                                   \
                                float v = NAME##_1x1(wb + r * w_stride + k0 * ESIZE,               \
                                                     x + t * xs + k0, kc);                         \
                                y[t * ldy + r] = acc ? y[t * ldy + r] + v : v;                     \
                            }                                                                      \
                    }                                                                              \
                    for (; c < c1; c++)                                                            \
                        for (size_t r = rb; r < re; r++) {                                         \
                            float v =                                                              \
                                NAME##_1x1(wb + r * w_stride + k0 * ESIZE, x + c * xs + k0, kc);   \
                            y[c * ldy + r] = acc ? y[c * ldy + r] + v : v;                         \
                        }                                                                          \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

GEMM_KERNELS(f32, 4, load_f32, scalar_f32)
GEMM_KERNELS(f16, 2, load_f16, scalar_f16)
GEMM_KERNELS(bf16, 2, load_bf16, scalar_bf16)
