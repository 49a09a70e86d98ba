/*
 * AVX2 + FMA + F16C kernels: dot products for F32, F16, BF16 (against F32
 * activations), Q8_0 (against Q8_0; Q4_0's are in x86/dot_quad.c), Q4_K and Q6_K (against Q8_K),
 * the activation quantizers Q8_0 and Q8_K, and F16 row conversion.
 *
 * Compiled with -mavx2 -mfma -mf16c; traits.c only hands these out after
 * __builtin_cpu_supports() said yes. Each one computes what its scalar
 * twin in src/tensor computes:
 * - the quantizers give identical bytes (same float operations, same
 *   rounding: roundf for Q8_0 done by hand, nearest-even for Q8_K);
 * - the K-quant dots sum each super-block in integers and combine blocks in
 *   the scalar order, so they are bit-identical to the reference;
 * - the Q8_0 dot keeps eight float lanes of partial block sums (exact
 *   integers times the block scale), so only the float summation order
 *   differs;
 * - the float dots sum in float lanes where the reference sums in double.
 * The 8-bit products use maddubs (unsigned x signed): the weight's sign is
 * moved onto the activation, which is safe because activations from our
 * quantizers never hold -128.
 * The K-quant dots prefetch ahead (x86/prefetch.h): 1.8B Q4_K_M decode 1-3 %
 * faster; the Q8_0 one here was compute-bound (27 GB/s on 2 threads, the same
 * with or without).
 */
#include <float.h>
#include <immintrin.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "tensor/x86/prefetch.h"
#include "tensor/x86/tile.h"
#include "tensor/x86/vmath.h"

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static inline float fp16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* ---- Float rows --------------------------------------------------------- */

void mf_avx2_f16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++)
        dst[i] = fp16(h[i]);
}

void mf_avx2_f16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        h[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

/* Loads 8 weights of a float type as floats. */
typedef __m256 (*load8_fn)(const void *base, size_t i);

static inline __m256 load8_f32(const void *base, size_t i)
{
    return _mm256_loadu_ps((const float *)base + i);
}

static inline __m256 load8_f16(const void *base, size_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
}

static inline __m256 load8_bf16(const void *base, size_t i)
{
    __m256i v =
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* Four independent accumulators hide the FMA latency; returns the lane sum
 * of the first n - n % 8 products and leaves the rest to the caller. */
static inline float dot_float_lanes(size_t n, const void *w, const float *y, load8_fn load)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(load(w, i), _mm256_loadu_ps(y + i), acc0);
        acc1 = _mm256_fmadd_ps(load(w, i + 8), _mm256_loadu_ps(y + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(load(w, i + 16), _mm256_loadu_ps(y + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(load(w, i + 24), _mm256_loadu_ps(y + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(load(w, i), _mm256_loadu_ps(y + i), acc0);
    return mf_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

float mf_avx2_dot_f32(size_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    float sum = dot_float_lanes(n, w, y, load8_f32);
    for (size_t i = n - n % 8; i < n; i++)
        sum += x[i] * y[i];
    return sum;
}

float mf_avx2_dot_f16(size_t n, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    float sum = dot_float_lanes(n, w, y, load8_f16);
    for (size_t i = n - n % 8; i < n; i++)
        sum += fp16(x[i]) * y[i];
    return sum;
}

void mf_avx2_dot_f16_rows(size_t n, const void *w, size_t w_stride, const void *a, float *out,
                          size_t n_rows)
{
    for (size_t r = 0; r < n_rows; r++)
        out[r] = mf_avx2_dot_f16(n, (const uint8_t *)w + r * w_stride, a);
}

/* 64 sums at a time held in eight registers while every row adds its p[t] * v; the rest of n
 * (under 64) eight at a time, then one by one. */
void mf_avx2_f16_axpy_rows(size_t n, const void *rows, size_t stride, const float *p, size_t n_rows,
                           float *acc)
{
    const uint8_t *base = rows;
    size_t d0 = 0;
    for (; d0 + 64 <= n; d0 += 64) {
        __m256 s[8];
        for (int j = 0; j < 8; j++)
            s[j] = _mm256_loadu_ps(acc + d0 + 8 * j);
        for (size_t t = 0; t < n_rows; t++) {
            const void *v = base + t * stride;
            __m256 pt = _mm256_broadcast_ss(p + t);
            for (int j = 0; j < 8; j++)
                s[j] = _mm256_fmadd_ps(pt, load8_f16(v, d0 + 8 * (size_t)j), s[j]);
        }
        for (int j = 0; j < 8; j++)
            _mm256_storeu_ps(acc + d0 + 8 * j, s[j]);
    }
    for (; d0 + 8 <= n; d0 += 8) {
        __m256 s = _mm256_loadu_ps(acc + d0);
        for (size_t t = 0; t < n_rows; t++)
            s = _mm256_fmadd_ps(_mm256_broadcast_ss(p + t), load8_f16(base + t * stride, d0), s);
        _mm256_storeu_ps(acc + d0, s);
    }
    for (size_t t = 0; d0 < n && t < n_rows; t++) {
        const uint16_t *v = (const uint16_t *)(base + t * stride);
        for (size_t d = d0; d < n; d++)
            acc[d] += p[t] * fp16(v[d]);
    }
}

float mf_avx2_dot_bf16(size_t n, const void *w, const void *a)
{
    const uint16_t *x = w;
    const float *y = a;
    float sum = dot_float_lanes(n, w, y, load8_bf16);
    for (size_t i = n - n % 8; i < n; i++)
        sum += mf_bf16_to_fp32(x[i]) * y[i];
    return sum;
}

/* ---- Q8_0 against Q8_0 --------------------------------------------------- */

/*
 * These kernels are bound by memory bandwidth once they stop waiting on
 * themselves: a single float accumulator chains every block's FMA (4 cycles
 * each), which capped Q4_0 (then here too) at half the bandwidth. Four accumulators over
 * four blocks per step leave the FMA latency hidden and the loads in
 * flight; the lanes are summed once at the end.
 */

/*
 * d_w * d_a of four consecutive blocks (both fp16 at offset 0 of their
 * blocks): one conversion and one multiply for four blocks instead of two
 * scalar conversions and a multiply each, the same float product.
 */
static inline __m256 scales4(const uint8_t *x, size_t xs, const uint8_t *y, size_t ys)
{
    uint16_t hx[4], hy[4];
    for (int k = 0; k < 4; k++) {
        memcpy(&hx[k], x + k * xs, 2);
        memcpy(&hy[k], y + k * ys, 2);
    }
    __m128i h = _mm_setr_epi16((short)hx[0], (short)hx[1], (short)hx[2], (short)hx[3], (short)hy[0],
                               (short)hy[1], (short)hy[2], (short)hy[3]);
    __m256 f = _mm256_cvtph_ps(h);
    __m128 d = _mm_mul_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
    return _mm256_set_m128(d, d);
}

/* Lane k (0..3) of a vector whose two halves are equal, in all eight lanes
 * (an immediate shuffle: no index vector to keep in a register). */
#define LANE(d4, k) _mm256_shuffle_ps(d4, d4, (k)*0x55)

static inline __m256i q8_0_ints(const struct mf_block_q8_0 *x, const struct mf_block_q8_0 *y)
{
    __m256i xv = _mm256_loadu_si256((const __m256i *)x->qs);
    __m256i yv = _mm256_loadu_si256((const __m256i *)y->qs);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(xv), _mm256_sign_epi8(yv, xv));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/*
 * Sum over nb blocks of d_w d_a * INTS(x + i, y + i), four blocks per step
 * with their scales converted together: p = d0 s0 + d1 s1 (a multiply and an FMA), acc += p, then
 * the same for blocks 2 and 3; so the accumulator chain waits on two adds per four blocks instead
 * of four FMAs. The tail blocks are added one at a time (acc += d s).
 */
#define PAIR(d, la, sa, lb, sb)                                                                    \
    _mm256_fmadd_ps(LANE(d, lb), _mm256_cvtepi32_ps(sb),                                           \
                    _mm256_mul_ps(LANE(d, la), _mm256_cvtepi32_ps(sa)))

#define DOT_TAIL(INTS, x, y, i, nb, acc)                                                           \
    for (; i < (nb); i++)                                                                          \
    acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d)),            \
                                           _mm256_cvtepi32_ps(INTS(x + i, y + i))))

#define DOT_BLOCKS(INTS, x, y, nb, result)                                                         \
    do {                                                                                           \
        __m256 acc_ = _mm256_setzero_ps();                                                         \
        size_t i_ = 0;                                                                             \
        for (; i_ + 4 <= (nb); i_ += 4) {                                                          \
            mf_prefetch_ahead(x + i_, 4 * sizeof(*x));                                             \
            __m256 d_ = scales4((const uint8_t *)(x + i_), sizeof(*x), (const uint8_t *)(y + i_),  \
                                sizeof(*y));                                                       \
            acc_ = _mm256_add_ps(                                                                  \
                acc_, PAIR(d_, 0, INTS(x + i_, y + i_), 1, INTS(x + i_ + 1, y + i_ + 1)));         \
            acc_ = _mm256_add_ps(                                                                  \
                acc_, PAIR(d_, 2, INTS(x + i_ + 2, y + i_ + 2), 3, INTS(x + i_ + 3, y + i_ + 3))); \
        }                                                                                          \
        DOT_TAIL(INTS, x, y, i_, nb, acc_);                                                        \
        result = mf_hsum_ps(acc_);                                                                 \
    } while (0)

float mf_avx2_dot_q8_0(size_t n, const void *w, const void *a)
{
    const struct mf_block_q8_0 *x = w, *y = a;
    float sum;
    DOT_BLOCKS(q8_0_ints, x, y, n / MF_QK, sum);
    return sum;
}

/* ---- K-quants against Q8_K ---------------------------------------------- */

/*
 * Each super-block's integer sums (quants x activations x 6-bit scales, and
 * the min or +32 bias terms against the activation's bsums) are built in
 * int32 lanes, reduced together in one horizontal step, and combined in
 * float exactly as the scalar reference does, so the result is identical.
 * The scales are unpacked with vector shuffles instead of a scalar loop.
 */

/* (a0 + ... + a7, b0 + ... + b7) from two vectors of int32 lanes. */
static inline void hsum2_epi32(__m256i a, __m256i b, int *sa, int *sb)
{
    __m256i h = _mm256_hadd_epi32(a, b); /* a01 a23 b01 b23 | a45 a67 b45 b67 */
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_hadd_epi32(s, s); /* a b a b */
    *sa = _mm_cvtsi128_si32(s);
    *sb = _mm_extract_epi32(s, 1);
}

/* Control bytes picking int16 element j of each 128-bit lane, in every position. */
static inline __m256i bcast16_ctl(int j0, int j1)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 * (2 * j1 + 1) + 2 * j1)),
                            _mm_set1_epi16((short)(0x0100 * (2 * j0 + 1) + 2 * j0)));
}

float mf_avx2_dot_q4_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q4_k *x = w;
    const struct mf_block_q8_k *y = a;
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i pick[8] = {bcast16_ctl(0, 0), bcast16_ctl(1, 1), bcast16_ctl(2, 2),
                             bcast16_ctl(3, 3), bcast16_ctl(4, 4), bcast16_ctl(5, 5),
                             bcast16_ctl(6, 6), bcast16_ctl(7, 7)};
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++) {
        mf_prefetch_ahead(x + i, sizeof(*x));
        /* The 12 scale bytes as 8 scales and 8 mins (mf_k4_scale_min, four at a time). */
        uint32_t s[3];
        memcpy(s, x[i].scales, sizeof(s));
        uint64_t sc = (uint64_t)(s[0] & 0x3f3f3f3fu) |
                      (uint64_t)((s[2] & 0x0f0f0f0fu) | ((s[0] >> 2) & 0x30303030u)) << 32;
        uint64_t mn = (uint64_t)(s[1] & 0x3f3f3f3fu) |
                      (uint64_t)(((s[2] >> 4) & 0x0f0f0f0fu) | ((s[1] >> 2) & 0x30303030u)) << 32;
        __m256i scv =
            _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        /* m_j against bsums 2j and 2j+1: each min twice, as int16. */
        __m256i mv = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)mn), dup));
        __m256i msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), mv);
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
        for (int g = 0; g < 4; g++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * g));
            __m256i lo = _mm256_and_si256(q, low4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * g));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * g + 32));
            __m256i s0 = _mm256_shuffle_epi8(scv, pick[2 * g]);
            __m256i s1 = _mm256_shuffle_epi8(scv, pick[2 * g + 1]);
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1));
        }
        int isum, m;
        hsum2_epi32(_mm256_add_epi32(acc0, acc1), msum, &isum, &m);
        sum += y[i].d * (fp16(x[i].d) * (float)isum - fp16(x[i].dmin) * (float)m);
    }
    return sum;
}

float mf_avx2_dot_q6_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q6_k *x = w;
    const struct mf_block_q8_k *y = a;
    const __m256i low4 = _mm256_set1_epi8(0x0f), low2 = _mm256_set1_epi8(3);
    /* Scale 2k of the half in the low 128 bits, 2k+1 in the high ones. */
    const __m256i pick[4] = {bcast16_ctl(0, 1), bcast16_ctl(2, 3), bcast16_ctl(4, 5),
                             bcast16_ctl(6, 7)};
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++) {
        mf_prefetch_ahead(x + i, sizeof(*x));
        /* The quants are stored +32: take 32 * sum(sc_j * bsum_j) off at the end. */
        __m128i sc8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i bias = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), sc16);
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const int8_t *ys = y[i].qs + 128 * h;
            __m256i scv = _mm256_broadcastsi128_si256(h ? _mm256_extracti128_si256(sc16, 1)
                                                        : _mm256_castsi256_si128(sc16));
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4),
                                   _mm256_slli_epi16(_mm256_and_si256(hb, low2), 4));
            q[1] = _mm256_or_si256(
                _mm256_and_si256(l1, low4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), low2), 4));
            q[2] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), low2), 4));
            q[3] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), low2), 4));
            for (int k = 0; k < 4; k++) {
                __m256i yk = _mm256_loadu_si256((const __m256i *)(ys + 32 * k));
                /* Lanes 0..7 hold elements 0..15 (scale 2k), lanes 8..15 elements 16..31. */
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yk),
                                              _mm256_shuffle_epi8(scv, pick[k]));
                if (k & 1)
                    acc1 = _mm256_add_epi32(acc1, p);
                else
                    acc0 = _mm256_add_epi32(acc0, p);
            }
        }
        int isum, b;
        hsum2_epi32(_mm256_add_epi32(acc0, acc1), bias, &isum, &b);
        sum += y[i].d * fp16(x[i].d) * (float)(isum - 32 * b);
    }
    return sum;
}

/* ---- Activation quantizers ---------------------------------------------- */

/* Packs four vectors of 8 int32 (each in -127..127) into 32 int8 in order. */
static inline __m256i pack_i32x32(__m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* roundf (half away from zero) on 8 floats, exactly. */
static inline __m256i round_away(__m256 v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));
    return _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

static inline __m256 abs_ps(__m256 v)
{
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

void mf_avx2_quant_q8_0(const float *src, void *dst, size_t n)
{
    struct mf_block_q8_0 *b = dst;
    for (size_t i = 0; i < n / MF_QK; i++, b++, src += MF_QK) {
        __m256 v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_loadu_ps(src + 8 * k);
        __m256 m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])),
                                 _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
        float d = mf_hmax_ps(m) / 127.f;
        float id = d >= FLT_MIN ? 1.f / d : 0.f; /* as the scalar quantizer */
        b->d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = round_away(_mm256_mul_ps(v[k], mul));
        _mm256_storeu_si256((__m256i *)b->qs, pack_i32x32(q[0], q[1], q[2], q[3]));
    }
}

void mf_avx2_quant_q8_k(const float *src, void *dst, size_t n)
{
    struct mf_block_q8_k *b = dst;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, src += MF_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < MF_QK_K; k += 8)
            m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(src + k)));
        float amax = mf_hmax_ps(m);
        if (amax == 0.f || !isfinite(-127.f / amax)) { /* as the scalar quantizer */
            memset(b, 0, sizeof(*b));
            continue;
        }
        /* The scale's sign comes from the first element of largest magnitude. */
        float max = amax;
        for (int j = 0; j < MF_QK_K; j++) {
            if (fabsf(src[j]) == amax) {
                max = src[j];
                break;
            }
        }
        float iscale = -127.f / max;
        __m256 mul = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int k = 0; k < MF_QK_K; k += 32) {
            __m256i q[4];
            for (int r = 0; r < 4; r++) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + k + 8 * r), mul);
                v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[r] = _mm256_min_epi32(_mm256_cvtps_epi32(v), top);
            }
            _mm256_storeu_si256((__m256i *)(b->qs + k), pack_i32x32(q[0], q[1], q[2], q[3]));
        }
        for (int j = 0; j < MF_QK_K / 16; j++) {
            __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b->qs + 16 * j)));
            b->bsums[j] = (int16_t)hsum_epi32(_mm256_madd_epi16(v, _mm256_set1_epi16(1)));
        }
        b->d = 1.f / iscale;
    }
}
