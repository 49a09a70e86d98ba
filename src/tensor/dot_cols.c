/*
 * Scalar multi-column dots (kernels.h, mf_vec_dot_cols_fn): one weight row
 * against several Q8_0 activation rows, each weight block unpacked once to
 * signed bytes and then summed with every column. Per column the integer
 * block sums and the float combination are those of mf_dot_q4_0 and
 * mf_dot_q8_0, so the results are bit-identical to theirs.
 */
#include "tensor/blocks.h"
#include "tensor/kernels.h"

/* sum += isum(q, y[i]) * (d_w * d_y) for every column: block i of each activation row. */
static void cols_block(const int8_t *q, float dw, const void *const *a, size_t i, size_t n_cols,
                       float *sum)
{
    for (size_t c = 0; c < n_cols; c++) {
        const struct mf_block_q8_0 *y = (const struct mf_block_q8_0 *)a[c] + i;
        int isum = 0;
        for (int j = 0; j < MF_QK; j++)
            isum += q[j] * y->qs[j];
        sum[c] += (float)isum * (dw * mf_fp16_to_fp32(y->d));
    }
}

void mf_dot_cols_q4_0(size_t n, const void *w, const void *const *a, size_t n_cols, float *out)
{
    const struct mf_block_q4_0 *x = w;
    for (size_t c = 0; c < n_cols; c++)
        out[c] = 0;
    for (size_t i = 0; i < n / MF_QK; i++) {
        int8_t q[MF_QK];
        for (int j = 0; j < MF_QK / 2; j++) {
            q[j] = (int8_t)((x[i].qs[j] & 0xf) - 8);
            q[j + MF_QK / 2] = (int8_t)((x[i].qs[j] >> 4) - 8);
        }
        cols_block(q, mf_fp16_to_fp32(x[i].d), a, i, n_cols, out);
    }
}

void mf_dot_cols_q8_0(size_t n, const void *w, const void *const *a, size_t n_cols, float *out)
{
    const struct mf_block_q8_0 *x = w;
    for (size_t c = 0; c < n_cols; c++)
        out[c] = 0;
    for (size_t i = 0; i < n / MF_QK; i++)
        cols_block(x[i].qs, mf_fp16_to_fp32(x[i].d), a, i, n_cols, out);
}
