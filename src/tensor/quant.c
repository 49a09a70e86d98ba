/*
 * Scalar quantizers (F32 rows -> blocks) with the semantics of ggml's
 * reference quantizers (quantize_row_*_ref, the non-imatrix path), so a row
 * quantized here has the same quality as one quantized by llama.cpp:
 *
 * - Q8_0: d = amax/127, q = roundf(x/d).            (also the activation format)
 * - Q4_0: d = -max/8 with max the signed value of largest magnitude.
 * - Q8_K: d = max/-127, nearest-even rounding, plus the 16-element sums.
 * - Q4_K: per 32-element sub-block a weighted least-squares search for scale
 *   and min (the min/max fit and 21 more candidate scales), then 6-bit
 *   scales/mins against the super-block's largest, then a final rounding
 *   with the quantized scales.
 * - Q6_K: per 16-element sub-block an x^2-weighted search over 19 scales
 *   around 32/max, then 8-bit scales against the largest.
 */
#include <float.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"

/* Below this the group is all zeros (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

static inline int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void mf_quant_q8_0(const float *src, void *dst, size_t n)
{
    struct mf_block_q8_0 *b = dst;
    for (size_t i = 0; i < n / MF_QK; i++, b++, src += MF_QK) {
        float amax = 0;
        for (int j = 0; j < MF_QK; j++)
            amax = fmaxf(amax, fabsf(src[j]));
        float d = amax / 127.f;
        /* A subnormal d has no finite inverse (ggml's cast is then undefined);
         * its fp16 is 0 anyway, so the quants may as well be 0. */
        float id = d != 0.f && d >= FLT_MIN ? 1.f / d : 0.f;
        b->d = mf_fp32_to_fp16(d);
        for (int j = 0; j < MF_QK; j++)
            b->qs[j] = (int8_t)roundf(src[j] * id);
    }
}

void mf_quant_q4_0(const float *src, void *dst, size_t n)
{
    struct mf_block_q4_0 *b = dst;
    for (size_t i = 0; i < n / MF_QK; i++, b++, src += MF_QK) {
        float amax = 0, max = 0;
        for (int j = 0; j < MF_QK; j++) {
            if (amax < fabsf(src[j])) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        float d = max / -8.f;
        float id = d != 0.f ? 1.f / d : 0.f;
        b->d = mf_fp32_to_fp16(d);
        for (int j = 0; j < MF_QK / 2; j++) {
            /* (x/d + 8.5) truncated: values land in 0..16, 16 is clamped to 15. */
            int q0 = (int8_t)(src[j] * id + 8.5f);
            int q1 = (int8_t)(src[j + MF_QK / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            b->qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void mf_quant_q8_k(const float *src, void *dst, size_t n)
{
    struct mf_block_q8_k *b = dst;
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, src += MF_QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < MF_QK_K; j++) {
            if (fabsf(src[j]) > amax) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        float iscale = amax != 0.f ? -127.f / max : 0.f;
        if (!isfinite(iscale) || iscale == 0.f) {
            /* All zeros, or so small (subnormal) that 127/max overflows: a zero block. */
            memset(b, 0, sizeof(*b));
            continue;
        }
        for (int j = 0; j < MF_QK_K; j++) {
            int v = mf_nearest_int(iscale * src[j]);
            b->qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < MF_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += b->qs[16 * j + l];
            b->bsums[j] = (int16_t)sum;
        }
        b->d = 1.f / iscale;
    }
}

/*
 * Fits x ~ scale * L + min (min <= 0) with L in 0..nmax, minimizing the
 * weighted squared error: first the plain min/max fit, then nstep+1 other
 * scale candidates (rmin + rdelta*is + nmax)/(max - min), each solved in
 * closed form for scale and min. Returns the scale and -min (ggml's
 * make_qkx2_quants with use_mad = false).
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           uint8_t *Laux, float *out_neg_min, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        min = x[i] < min ? x[i] : min;
        max = x[i] > max ? x[i] : max;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *out_neg_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.f / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clamp_int(mf_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        best_error += w[i] * diff * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(mf_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0)
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)Laux[i] + this_min - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best_error) {
            memcpy(L, Laux, (size_t)n);
            best_error = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *out_neg_min = -min;
    return scale;
}

void mf_quant_q4_k(const float *src, void *dst, size_t n)
{
    struct mf_block_q4_k *b = dst;
    uint8_t L[MF_QK_K], Laux[32];
    float weights[32], mins[MF_QK_K / 32], scales[MF_QK_K / 32];
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, src += MF_QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < MF_QK_K / 32; j++) {
            const float *x = src + 32 * j;
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++)
                sum_x2 += x[l] * x[l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++)
                weights[l] = av_x + fabsf(x[l]);
            scales[j] =
                fit_scale_min(32, 15, x, weights, L + 32 * j, Laux, &mins[j], -1.f, 0.1f, 20);
            max_scale = scales[j] > max_scale ? scales[j] : max_scale;
            max_min = mins[j] > max_min ? mins[j] : max_min;
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        memset(b->scales, 0, sizeof(b->scales));
        for (int j = 0; j < MF_QK_K / 32; j++) {
            /* ggml stores the rounded value in a uint8_t before clamping to 63. */
            uint8_t ls = (uint8_t)mf_nearest_int(inv_scale * scales[j]);
            uint8_t lm = (uint8_t)mf_nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                b->scales[j] = ls;
                b->scales[j + 4] = lm;
            } else {
                b->scales[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
                b->scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
                b->scales[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        b->d = mf_fp32_to_fp16(max_scale / 63.f);
        b->dmin = mf_fp32_to_fp16(max_min / 63.f);
        for (int j = 0; j < MF_QK_K / 32; j++) {
            uint8_t sc, m;
            mf_k4_scale_min(j, b->scales, &sc, &m);
            float d = mf_fp16_to_fp32(b->d) * (float)sc;
            if (d == 0.f)
                continue;
            float dm = mf_fp16_to_fp32(b->dmin) * (float)m;
            for (int l = 0; l < 32; l++)
                L[32 * j + l] =
                    (uint8_t)clamp_int(mf_nearest_int((src[32 * j + l] + dm) / d), 0, 15);
        }
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                b->qs[32 * g + l] = (uint8_t)(L[64 * g + l] | (L[64 * g + l + 32] << 4));
    }
}

/*
 * Symmetric fit x ~ scale * (L - nmax), L - nmax in -nmax..nmax-1, weights
 * x^2: tries iscale = -(nmax + 0.1*is)/max for is = -9..9 and keeps the one
 * with the best weighted least-squares fit (ggml's make_qx_quants with
 * rmse_type 1). Returns the scale, L holds the offset codes.
 */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -(float)nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clamp_int(mf_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.f ? sumlx / suml2 : 0.f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clamp_int(mf_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clamp_int(mf_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void mf_quant_q6_k(const float *src, void *dst, size_t n)
{
    struct mf_block_q6_k *b = dst;
    int8_t L[MF_QK_K];
    float scales[MF_QK_K / 16];
    for (size_t i = 0; i < n / MF_QK_K; i++, b++, src += MF_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < MF_QK_K / 16; j++) {
            scales[j] = fit_scale_sym(16, 32, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(b, 0, sizeof(*b));
        if (max_abs_scale < GROUP_MAX_EPS)
            continue;
        float iscale = -128.f / max_scale;
        b->d = mf_fp32_to_fp16(1.f / iscale);
        for (int j = 0; j < MF_QK_K / 16; j++) {
            int v = mf_nearest_int(iscale * scales[j]);
            b->scales[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < MF_QK_K / 16; j++) {
            float d = mf_fp16_to_fp32(b->d) * (float)b->scales[j];
            if (d == 0.f)
                continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    (int8_t)(clamp_int(mf_nearest_int(src[16 * j + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            const int8_t *q = L + 128 * h;
            uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((q[l] & 0xf) | ((q[l + 64] & 0xf) << 4));
                ql[l + 32] = (uint8_t)((q[l + 32] & 0xf) | ((q[l + 96] & 0xf) << 4));
                qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                  ((q[l + 96] >> 4) << 6));
            }
        }
    }
}
