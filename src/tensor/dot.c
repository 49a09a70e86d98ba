/*
 * Scalar dot products of a quantized weight row with a quantized
 * activation row: Q8_0 activations for the 32-element types, Q8_K for the
 * K-quants. Within a block the products are summed in integers (exact);
 * blocks are combined in float. These are the references the SIMD kernels
 * are tested against.
 */
#include "tensor/blocks.h"
#include "tensor/kernels.h"

/* Sum of the activation quants of a Q8_0 block (for the types with a min). */
static inline int q8_sum(const struct mf_block_q8_0 *y)
{
    int s = 0;
    for (int j = 0; j < MF_QK; j++)
        s += y->qs[j];
    return s;
}

float mf_dot_q8_0(size_t n, const void *w, const void *a)
{
    const struct mf_block_q8_0 *x = w, *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK; i++) {
        int isum = 0;
        for (int j = 0; j < MF_QK; j++)
            isum += x[i].qs[j] * y[i].qs[j];
        sum += (float)isum * (mf_fp16_to_fp32(x[i].d) * mf_fp16_to_fp32(y[i].d));
    }
    return sum;
}

float mf_dot_q4_0(size_t n, const void *w, const void *a)
{
    const struct mf_block_q4_0 *x = w;
    const struct mf_block_q8_0 *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK; i++) {
        int isum = 0;
        for (int j = 0; j < MF_QK / 2; j++) {
            isum += ((x[i].qs[j] & 0xf) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + MF_QK / 2];
        }
        sum += (float)isum * (mf_fp16_to_fp32(x[i].d) * mf_fp16_to_fp32(y[i].d));
    }
    return sum;
}

/* sum (d*q + m) * (dy*a) = d*dy * sum(q*a) + m*dy * sum(a) */
float mf_dot_q4_1(size_t n, const void *w, const void *a)
{
    const struct mf_block_q4_1 *x = w;
    const struct mf_block_q8_0 *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK; i++) {
        int isum = 0;
        for (int j = 0; j < MF_QK / 2; j++) {
            isum += (x[i].qs[j] & 0xf) * y[i].qs[j];
            isum += (x[i].qs[j] >> 4) * y[i].qs[j + MF_QK / 2];
        }
        float dy = mf_fp16_to_fp32(y[i].d);
        sum += (float)isum * (mf_fp16_to_fp32(x[i].d) * dy) +
               mf_fp16_to_fp32(x[i].m) * dy * (float)q8_sum(&y[i]);
    }
    return sum;
}

static inline int q5_isum(const uint8_t *qs, const uint8_t *qhb, const int8_t *ys, int offset)
{
    uint32_t qh;
    memcpy(&qh, qhb, sizeof(qh));
    int isum = 0;
    for (int j = 0; j < MF_QK / 2; j++) {
        int q0 = (qs[j] & 0xf) | (int)(((qh >> j) & 1u) << 4);
        int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
        isum += (q0 - offset) * ys[j] + (q1 - offset) * ys[j + MF_QK / 2];
    }
    return isum;
}

float mf_dot_q5_0(size_t n, const void *w, const void *a)
{
    const struct mf_block_q5_0 *x = w;
    const struct mf_block_q8_0 *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK; i++) {
        int isum = q5_isum(x[i].qs, x[i].qh, y[i].qs, 16);
        sum += (float)isum * (mf_fp16_to_fp32(x[i].d) * mf_fp16_to_fp32(y[i].d));
    }
    return sum;
}

float mf_dot_q5_1(size_t n, const void *w, const void *a)
{
    const struct mf_block_q5_1 *x = w;
    const struct mf_block_q8_0 *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK; i++) {
        int isum = q5_isum(x[i].qs, x[i].qh, y[i].qs, 0);
        float dy = mf_fp16_to_fp32(y[i].d);
        sum += (float)isum * (mf_fp16_to_fp32(x[i].d) * dy) +
               mf_fp16_to_fp32(x[i].m) * dy * (float)q8_sum(&y[i]);
    }
    return sum;
}

float mf_dot_q2_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q2_k *x = w;
    const struct mf_block_q8_k *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++) {
        int isum = 0, msum = 0;
        for (int j = 0; j < MF_QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;
                int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                s += q * y[i].qs[e];
            }
            isum += (x[i].scales[j] & 0xf) * s;
            msum += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        sum += y[i].d *
               (mf_fp16_to_fp32(x[i].d) * (float)isum - mf_fp16_to_fp32(x[i].dmin) * (float)msum);
    }
    return sum;
}

float mf_dot_q3_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q3_k *x = w;
    const struct mf_block_q8_k *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++) {
        int isum = 0;
        for (int j = 0; j < MF_QK_K / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) {
                int e = 16 * j + l;
                int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
                int high = (x[i].hmask[e % 32] >> (e / 32)) & 1;
                s += (q - (high ? 0 : 4)) * y[i].qs[e];
            }
            isum += mf_q3k_scale(j, x[i].scales) * s;
        }
        sum += y[i].d * mf_fp16_to_fp32(x[i].d) * (float)isum;
    }
    return sum;
}

/* The min part of a q4_K/q5_K super-block: sum over sub-blocks of m_j * sum(a in j). */
static inline int k4_min_sum(const uint8_t *scales, const int16_t *bsums)
{
    int msum = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        mf_k4_scale_min(j, scales, &sc, &m);
        msum += m * (bsums[2 * j] + bsums[2 * j + 1]);
    }
    return msum;
}

/* q4_K and q5_K differ only in the fifth bit (qh, NULL for q4_K). */
static inline float k4_dot(const uint16_t *d, const uint16_t *dmin, const uint8_t *scales,
                           const uint8_t *qs, const uint8_t *qh, const struct mf_block_q8_k *y)
{
    int isum = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        mf_k4_scale_min(j, scales, &sc, &m);
        const uint8_t *q = qs + 32 * (j / 2);
        const int8_t *ys = y->qs + 32 * j;
        int s = 0;
        for (int l = 0; l < 32; l++) {
            int v = j % 2 ? q[l] >> 4 : q[l] & 0xf;
            if (qh)
                v += ((qh[l] >> j) & 1) << 4;
            s += v * ys[l];
        }
        isum += sc * s;
    }
    int msum = k4_min_sum(scales, y->bsums);
    return y->d * (mf_fp16_to_fp32(*d) * (float)isum - mf_fp16_to_fp32(*dmin) * (float)msum);
}

float mf_dot_q4_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q4_k *x = w;
    const struct mf_block_q8_k *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++)
        sum += k4_dot(&x[i].d, &x[i].dmin, x[i].scales, x[i].qs, NULL, &y[i]);
    return sum;
}

float mf_dot_q5_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q5_k *x = w;
    const struct mf_block_q8_k *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++)
        sum += k4_dot(&x[i].d, &x[i].dmin, x[i].scales, x[i].qs, x[i].qh, &y[i]);
    return sum;
}

float mf_dot_q6_k(size_t n, const void *w, const void *a)
{
    const struct mf_block_q6_k *x = w;
    const struct mf_block_q8_k *y = a;
    float sum = 0;
    for (size_t i = 0; i < n / MF_QK_K; i++) {
        int isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *ys = y[i].qs + 128 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            for (int k = 0; k < 4; k++) {
                for (int half = 0; half < 2; half++) {
                    int s = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        uint8_t lb = ql[l + 32 * (k & 1)];
                        int low = k >= 2 ? lb >> 4 : lb & 0xf;
                        int q = (low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                        s += q * ys[32 * k + l];
                    }
                    isum += sc[2 * k + half] * s;
                }
            }
        }
        sum += y[i].d * mf_fp16_to_fp32(x[i].d) * (float)isum;
    }
    return sum;
}
