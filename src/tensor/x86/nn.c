/*
 * AVX2 + FMA row steps of the transformer blocks (struct mf_nn_ops, scalar
 * references in src/tensor/nn.c): a LayerNorm row, and the attention's
 * per-query softmax step (scale, relative-position bias, running max, e^x,
 * sum) and output rescale. Sums run in eight float lanes where the scalar
 * references sum in order (LayerNorm: in double), so results agree to
 * float rounding, not bit for bit.
 */
#include <immintrin.h>
#include <math.h>

#include "tensor/kernels.h"
#include "tensor/x86/vmath.h"

/* Two passes for the moments: the mean, then the centred sum and sum of
 * squares, the first correcting the mean's rounding (the corrected two-pass
 * algorithm), so rows far from zero keep their variance. */
void mf_avx2_layer_norm_row(const float *x, float *y, size_t d, const float *w, const float *b,
                            float eps)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    }
    float sum = mf_hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < d; i++)
        sum += x[i];
    float mean = sum / (float)d;
    __m256 vm = _mm256_set1_ps(mean), c0 = _mm256_setzero_ps(), q0 = _mm256_setzero_ps();
    for (i = 0; i + 8 <= d; i += 8) {
        __m256 c = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
        c0 = _mm256_add_ps(c0, c);
        q0 = _mm256_fmadd_ps(c, c, q0);
    }
    float cs = mf_hsum_ps(c0), sq = mf_hsum_ps(q0);
    for (; i < d; i++) {
        float c = x[i] - mean;
        cs += c;
        sq += c * c;
    }
    float var = (sq - cs * cs / (float)d) / (float)d;
    mean += cs / (float)d;
    float inv = 1.0f / sqrtf((var > 0 ? var : 0) + eps);
    vm = _mm256_set1_ps(mean);
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= d; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi);
        if (w)
            v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        if (b)
            v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < d; i++) {
        float v = (x[i] - mean) * inv;
        y[i] = (w ? v * w[i] : v) + (b ? b[i] : 0.0f);
    }
}

/* s[0..n) = s * scale + bh + bw[0..n); returns max(mx, the new values). */
static float scale_bias(float *s, size_t n, __m256 vs, float scale, float bh, const float *bw,
                        float mx)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY), vbh = _mm256_set1_ps(bh);
    size_t t = 0;
    if (bw) {
        for (; t + 8 <= n; t += 8) {
            __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(s + t), vs, vbh);
            v = _mm256_add_ps(v, _mm256_loadu_ps(bw + t));
            _mm256_storeu_ps(s + t, v);
            vmax = _mm256_max_ps(vmax, v);
        }
    } else {
        for (; t + 8 <= n; t += 8) {
            __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + t), vs);
            _mm256_storeu_ps(s + t, v);
            vmax = _mm256_max_ps(vmax, v);
        }
    }
    for (; t < n; t++) {
        s[t] = bw ? s[t] * scale + bh + bw[t] : s[t] * scale;
        mx = s[t] > mx ? s[t] : mx;
    }
    float vm = mf_hmax_ps(vmax);
    return vm > mx ? vm : mx;
}

float mf_avx2_attn_softmax(float *s, size_t n, float scale, const struct mf_attn_bias *bias,
                           float *m, float *alpha)
{
    __m256 vs = _mm256_set1_ps(scale);
    float mx = *m;
    if (bias->rel_h) {
        /* Runs of keys on one grid row share rel_h and read rel_w in order. */
        size_t row = bias->k0 / bias->k_w, col = bias->k0 % bias->k_w;
        for (size_t t = 0; t < n; row++, col = 0) {
            size_t len = bias->k_w - col < n - t ? bias->k_w - col : n - t;
            mx = scale_bias(s + t, len, vs, scale, bias->rel_h[row], bias->rel_w + col, mx);
            t += len;
        }
    } else {
        mx = scale_bias(s, n, vs, scale, 0, NULL, mx);
    }
    *alpha = *m == -INFINITY ? 0.0f : mf_expf(*m - mx);
    *m = mx;
    if (mx == -INFINITY) {
        for (size_t t = 0; t < n; t++)
            s[t] = 0;
        return 0;
    }
    __m256 vmx = _mm256_set1_ps(mx), lim = _mm256_set1_ps(-87.3f), acc = _mm256_setzero_ps();
    size_t t = 0;
    for (; t + 8 <= n; t += 8) {
        __m256 e = _mm256_sub_ps(_mm256_loadu_ps(s + t), vmx);
        __m256 p = _mm256_and_ps(mf_exp8(e), _mm256_cmp_ps(e, lim, _CMP_GE_OQ));
        _mm256_storeu_ps(s + t, p);
        acc = _mm256_add_ps(acc, p);
    }
    if (t < n) {
        /* The tail (all of a short row, as 7 keys of SAM's image-to-token
         * attention) in one masked vector rather than n scalar exps. */
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - t)), lanes);
        __m256 e = _mm256_sub_ps(_mm256_maskload_ps(s + t, mask), vmx);
        __m256 keep = _mm256_and_ps(_mm256_cmp_ps(e, lim, _CMP_GE_OQ), _mm256_castsi256_ps(mask));
        __m256 p = _mm256_and_ps(mf_exp8(e), keep);
        _mm256_maskstore_ps(s + t, mask, p);
        acc = _mm256_add_ps(acc, p);
    }
    return mf_hsum_ps(acc);
}

void mf_avx2_attn_rescale(float *o, const float *op, size_t n, float alpha)
{
    __m256 va = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i,
                         _mm256_fmadd_ps(_mm256_loadu_ps(o + i), va, _mm256_loadu_ps(op + i)));
    for (; i < n; i++)
        o[i] = o[i] * alpha + op[i];
}

void mf_avx2_attn_axpy(float *o, const float *v, size_t n, float a)
{
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i,
                         _mm256_fmadd_ps(_mm256_loadu_ps(v + i), va, _mm256_loadu_ps(o + i)));
    for (; i < n; i++)
        o[i] += a * v[i];
}
