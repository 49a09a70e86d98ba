/*
 * Transformer blocks shared by the vision models (DINOv2, SAM): LayerNorm,
 * one attention head tiled with an online softmax (flash attention) and
 * SAM's decomposed relative-position bias, im2col for convolutions as
 * matrix products, and PyTorch's bilinear resize. Scalar references here;
 * the LayerNorm row and the attention's softmax and rescale steps have AVX2
 * twins in x86/nn.c, picked at run time through struct mf_nn_ops.
 *
 * DESIGN (attention). For each block of QB queries the keys are visited in
 * blocks of KB: S = Q K^T (memfit_matmul_rows, K rows as the weights), each
 * row of S becomes e^(s - running max) (mf_nn_ops.attn_softmax), and
 * O = O * e^(old max - new max) + S V, with V transposed once per call so
 * that memfit_matmul_rows does this product too (V^T rows as the weights).
 * At the end O / (sum of the weights). Memory: the tiles and V^T, never
 * n_q x n_k.
 */
#include <math.h>
#include <string.h>

#include "tensor/kernels.h"

#define QB    256 /* queries per tile */
#define KB    256 /* keys per tile */
#define FEW_Q 16  /* at most this many queries: attn_few_queries */
#define ALIGN 64

/* ---- Row steps (scalar references) ------------------------------------------ */

/* Sums in double: the reference the AVX2 row is held to. */
static void layer_norm_row_scalar(const float *x, float *y, size_t d, const float *w,
                                  const float *b, float eps)
{
    double sum = 0;
    for (size_t i = 0; i < d; i++)
        sum += x[i];
    float mean = (float)(sum / (double)d);
    double var = 0;
    for (size_t i = 0; i < d; i++) {
        double c = (double)x[i] - mean;
        var += c * c;
    }
    float inv = (float)(1.0 / sqrt(var / (double)d + eps));
    for (size_t i = 0; i < d; i++) {
        float v = (x[i] - mean) * inv;
        y[i] = (w ? v * w[i] : v) + (b ? b[i] : 0.0f);
    }
}

static float attn_softmax_scalar(float *s, size_t n, float scale, const struct mf_attn_bias *bias,
                                 float *m, float *alpha)
{
    float mx = *m;
    if (bias->rel_h) {
        size_t row = bias->k0 / bias->k_w, col = bias->k0 % bias->k_w;
        for (size_t t = 0; t < n; t++) {
            s[t] = s[t] * scale + bias->rel_h[row] + bias->rel_w[col];
            if (++col == bias->k_w)
                col = 0, row++;
        }
    } else {
        for (size_t t = 0; t < n; t++)
            s[t] *= scale;
    }
    for (size_t t = 0; t < n; t++)
        mx = s[t] > mx ? s[t] : mx;
    *alpha = *m == -INFINITY ? 0.0f : mf_expf(*m - mx);
    *m = mx;
    if (mx == -INFINITY) {
        memset(s, 0, n * sizeof(float));
        return 0;
    }
    float sum = 0;
    for (size_t t = 0; t < n; t++) {
        float e = s[t] - mx;
        s[t] = e < -87.3f ? 0.0f : mf_expf(e);
        sum += s[t];
    }
    return sum;
}

static void attn_rescale_scalar(float *o, const float *op, size_t n, float alpha)
{
    for (size_t i = 0; i < n; i++)
        o[i] = o[i] * alpha + op[i];
}

static void attn_axpy_scalar(float *o, const float *v, size_t n, float a)
{
    for (size_t i = 0; i < n; i++)
        o[i] += a * v[i];
}

static const struct mf_nn_ops scalar_ops = {layer_norm_row_scalar, attn_softmax_scalar,
                                            attn_rescale_scalar, attn_axpy_scalar};

#if defined(__x86_64__)
static const struct mf_nn_ops avx2_ops = {mf_avx2_layer_norm_row, mf_avx2_attn_softmax,
                                          mf_avx2_attn_rescale, mf_avx2_attn_axpy};
#endif

const struct mf_nn_ops *mf_nn_ops_scalar(void)
{
    return &scalar_ops;
}

const struct mf_nn_ops *mf_nn_ops_simd(void)
{
#if defined(__x86_64__)
    /* The x86 traits exist exactly when the CPU has AVX2, FMA and F16C. */
    if (mf_type_traits_simd(MEMFIT_TYPE_F32))
        return &avx2_ops;
#endif
    return NULL;
}

const struct mf_nn_ops *mf_nn_ops(void)
{
    return mf_tensor_simd_active() ? mf_nn_ops_simd() : &scalar_ops;
}

/* ---- LayerNorm ----------------------------------------------------------------- */

void mf_layer_norm_with(const struct mf_nn_ops *ops, const float *x, size_t ldx, float *y,
                        size_t ldy, size_t n_rows, size_t d, const float *w, const float *b,
                        float eps)
{
    if (!x || !y || d == 0)
        return;
    for (size_t r = 0; r < n_rows; r++)
        ops->layer_norm_row(x + r * ldx, y + r * ldy, d, w, b, eps);
}

void memfit_layer_norm(const float *x, size_t ldx, float *y, size_t ldy, size_t n_rows, size_t d,
                       const float *w, const float *b, float eps)
{
    mf_layer_norm_with(mf_nn_ops(), x, ldx, y, ldy, n_rows, d, w, b, eps);
}

/* ---- Attention ----------------------------------------------------------------- */

struct attn_work {
    float *s, *o, *op, *m, *l, *alpha, *vt; /* S [QB][KB], O and O' [QB][hd], V^T [hd][n_k] */
};

static size_t align_up(size_t v)
{
    return (v + ALIGN - 1) / ALIGN * ALIGN;
}

/* The layout of `work`; its size, SIZE_MAX when that overflows. */
static size_t attn_layout(size_t n_k, size_t head_dim, uint8_t *base, struct attn_work *w)
{
    if (head_dim == 0 || n_k > SIZE_MAX / 2 / head_dim / sizeof(float))
        return SIZE_MAX;
    size_t off[7], o = 0;
    size_t floats[7] = {QB * KB, QB * head_dim, QB * head_dim, QB, QB, QB, head_dim * n_k};
    for (int i = 0; i < 7; i++)
        off[i] = o, o += align_up(floats[i] * sizeof(float));
    if (base) {
        w->s = (float *)(base + off[0]);
        w->o = (float *)(base + off[1]);
        w->op = (float *)(base + off[2]);
        w->m = (float *)(base + off[3]);
        w->l = (float *)(base + off[4]);
        w->alpha = (float *)(base + off[5]);
        w->vt = (float *)(base + off[6]);
    }
    return o;
}

size_t memfit_attention_work_bytes(size_t n_k, size_t head_dim)
{
    return attn_layout(n_k, head_dim, NULL, NULL);
}

/* Queries [q0, q0 + qn) (qn <= QB) against every key. */
static void attn_query_block(const struct mf_nn_ops *ops, const struct memfit_attention *a,
                             const struct attn_work *w, size_t q0, size_t qn)
{
    size_t hd = a->head_dim, n_k = a->n_k;
    const float *q = a->q + q0 * a->ldq;
    for (size_t i = 0; i < qn; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0;
    }
    for (size_t k0 = 0; k0 < n_k; k0 += KB) {
        size_t kn = n_k - k0 < KB ? n_k - k0 : KB;
        /* S[i][t] = q_i . k_(k0+t): the key rows are the weights. */
        memfit_matmul_rows(MEMFIT_TYPE_F32, a->k + k0 * a->ldk, a->ldk * sizeof(float), hd, 0, kn,
                           q, a->ldq * sizeof(float), qn, w->s, KB);
        for (size_t i = 0; i < qn; i++) {
            size_t r = (q0 + i) * a->rel_ld;
            struct mf_attn_bias bias = {a->rel_h ? a->rel_h + r : NULL,
                                        a->rel_h ? a->rel_w + r : NULL, k0, a->k_w};
            float sum =
                ops->attn_softmax(w->s + i * KB, kn, a->scale, &bias, &w->m[i], &w->alpha[i]);
            w->l[i] = w->l[i] * w->alpha[i] + sum;
        }
        /* O'[i][d] = sum_t P[i][t] V[k0+t][d]: the rows of V^T are the weights. The
         * first tile writes O itself (nothing to rescale yet). */
        float *dst = k0 == 0 ? w->o : w->op;
        memfit_matmul_rows(MEMFIT_TYPE_F32, w->vt + k0, n_k * sizeof(float), kn, 0, hd, w->s,
                           KB * sizeof(float), qn, dst, hd);
        if (k0 > 0)
            for (size_t i = 0; i < qn; i++)
                ops->attn_rescale(w->o + i * hd, w->op + i * hd, hd, w->alpha[i]);
    }
    for (size_t i = 0; i < qn; i++) {
        float *out = a->out + (q0 + i) * a->ldo;
        const float *o = w->o + i * hd;
        if (w->l[i] > 0) {
            float inv = 1.0f / w->l[i];
            for (size_t d = 0; d < hd; d++)
                out[d] = o[d] * inv;
        } else {
            memset(out, 0, hd * sizeof(float));
        }
    }
}

/*
 * A few queries against many keys (SAM's tokens attending to the image:
 * 7 queries, 4096 keys): transposing V would cost more than the products.
 * Per key tile, S^T = K q^T with the queries as the weight rows (the keys
 * read in place), transposed into S's rows, then P V one key row at a
 * time (axpy).
 */
static void attn_few_queries(const struct mf_nn_ops *ops, const struct memfit_attention *a,
                             const struct attn_work *w)
{
    size_t hd = a->head_dim, n_k = a->n_k, nq = a->n_q;
    float *st = w->s + FEW_Q * KB; /* S^T of a tile: KB x nq */
    for (size_t i = 0; i < nq; i++) {
        w->m[i] = -INFINITY;
        w->l[i] = 0;
    }
    for (size_t k0 = 0; k0 < n_k; k0 += KB) {
        size_t kn = n_k - k0 < KB ? n_k - k0 : KB;
        memfit_matmul_rows(MEMFIT_TYPE_F32, a->q, a->ldq * sizeof(float), hd, 0, nq,
                           a->k + k0 * a->ldk, a->ldk * sizeof(float), kn, st, nq);
        for (size_t i = 0; i < nq; i++) {
            float *s = w->s + i * KB;
            for (size_t t = 0; t < kn; t++)
                s[t] = st[t * nq + i];
            size_t r = i * a->rel_ld;
            struct mf_attn_bias bias = {a->rel_h ? a->rel_h + r : NULL,
                                        a->rel_h ? a->rel_w + r : NULL, k0, a->k_w};
            float sum = ops->attn_softmax(s, kn, a->scale, &bias, &w->m[i], &w->alpha[i]);
            w->l[i] = w->l[i] * w->alpha[i] + sum;
            float *o = w->o + i * hd;
            if (k0 == 0)
                memset(o, 0, hd * sizeof(float));
            else
                for (size_t d = 0; d < hd; d++)
                    o[d] *= w->alpha[i];
            for (size_t t = 0; t < kn; t++)
                ops->attn_axpy(o, a->v + (k0 + t) * a->ldv, hd, s[t]);
        }
    }
    for (size_t i = 0; i < nq; i++) {
        float *out = a->out + i * a->ldo;
        const float *o = w->o + i * hd;
        float inv = w->l[i] > 0 ? 1.0f / w->l[i] : 0.0f;
        for (size_t d = 0; d < hd; d++)
            out[d] = o[d] * inv;
    }
}

enum memfit_status mf_attention_with(const struct mf_nn_ops *ops, const struct memfit_attention *a,
                                     void *work, size_t work_bytes)
{
    if (!a || !work || !a->q || !a->k || !a->v || !a->out)
        return memfit_fail(MEMFIT_E_MISUSE, "attention: NULL arguments");
    if (a->n_k == 0 || a->head_dim == 0)
        return memfit_fail(MEMFIT_E_MISUSE, "attention: %zu keys of head_dim %zu", a->n_k,
                           a->head_dim);
    if (a->rel_h && (!a->rel_w || a->k_w == 0 || a->n_k % a->k_w != 0))
        return memfit_fail(MEMFIT_E_MISUSE,
                           "attention: relative bias with rel_w %p over %zu keys in rows of %zu",
                           (const void *)a->rel_w, a->n_k, a->k_w);
    struct attn_work w = {0};
    size_t need = attn_layout(a->n_k, a->head_dim, work, &w);
    if (work_bytes < need || (uintptr_t)work % ALIGN != 0)
        return memfit_fail(MEMFIT_E_MISUSE,
                           "attention: work area of %zu bytes at %p; %zu bytes aligned to %d "
                           "needed",
                           work_bytes, work, need, ALIGN);
    size_t hd = a->head_dim;
    if (a->n_q <= FEW_Q) {
        attn_few_queries(ops, a, &w);
        return MEMFIT_OK;
    }
    for (size_t t = 0; t < a->n_k; t++) {
        const float *v = a->v + t * a->ldv;
        for (size_t d = 0; d < hd; d++)
            w.vt[d * a->n_k + t] = v[d];
    }
    for (size_t q0 = 0; q0 < a->n_q; q0 += QB)
        attn_query_block(ops, a, &w, q0, a->n_q - q0 < QB ? a->n_q - q0 : QB);
    return MEMFIT_OK;
}

enum memfit_status memfit_attention(const struct memfit_attention *a, void *work, size_t work_bytes)
{
    return mf_attention_with(mf_nn_ops(), a, work, work_bytes);
}

/* ---- im2col ------------------------------------------------------------------- */

void memfit_im2col(const float *x, size_t h, size_t w, size_t c, size_t kh, size_t kw,
                   size_t stride, size_t pad, size_t row_begin, size_t row_end, float *out)
{
    if (!x || !out || c == 0 || kh == 0 || kw == 0 || stride == 0 || h + 2 * pad < kh ||
        w + 2 * pad < kw)
        return;
    size_t oh = (h + 2 * pad - kh) / stride + 1, ow = (w + 2 * pad - kw) / stride + 1;
    if (row_end > oh * ow)
        row_end = oh * ow;
    size_t n_taps = kh * kw, cols = c * n_taps;
    for (size_t r = row_begin; r < row_end; r++) {
        float *o = out + (r - row_begin) * cols;
        size_t y0 = r / ow * stride, x0 = r % ow * stride; /* top-left, padded coordinates */
        if (n_taps == 1 && y0 >= pad && y0 - pad < h && x0 >= pad && x0 - pad < w) {
            memcpy(o, x + ((y0 - pad) * w + (x0 - pad)) * c, c * sizeof(float));
            continue;
        }
        for (size_t ky = 0; ky < kh; ky++) {
            size_t yy = y0 + ky;
            bool row_in = yy >= pad && yy - pad < h;
            for (size_t kx = 0; kx < kw; kx++) {
                size_t xx = x0 + kx, tap = ky * kw + kx;
                if (!row_in || xx < pad || xx - pad >= w) {
                    for (size_t ch = 0; ch < c; ch++)
                        o[ch * n_taps + tap] = 0;
                    continue;
                }
                const float *p = x + ((yy - pad) * w + (xx - pad)) * c;
                for (size_t ch = 0; ch < c; ch++)
                    o[ch * n_taps + tap] = p[ch];
            }
        }
    }
}

/* ---- Bilinear resize ------------------------------------------------------------ */

/* One output coordinate's two source taps and weights, as ATen's
 * compute_source_index_and_lambda (UpSample.h) does it in float. */
static void linear_taps(float scale, size_t dst, size_t in, size_t *i0, size_t *i1, float *l0,
                        float *l1)
{
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0)
        src = 0;
    size_t i = (size_t)floorf(src);
    if (i > in - 1)
        i = in - 1;
    float l = src - (float)i;
    l = l < 0 ? 0 : l > 1 ? 1 : l;
    *i0 = i;
    *i1 = i < in - 1 ? i + 1 : i;
    *l1 = l;
    *l0 = 1.0f - l;
}

void memfit_resize_bilinear(const float *in, size_t in_h, size_t in_w, size_t ld_in, float *out,
                            size_t out_h, size_t out_w, size_t ld_out, size_t row_begin,
                            size_t row_end)
{
    if (!in || !out || in_h == 0 || in_w == 0 || out_h == 0 || out_w == 0)
        return;
    if (row_end > out_h)
        row_end = out_h;
    float sy = (float)in_h / (float)out_h, sx = (float)in_w / (float)out_w;
    for (size_t oy = row_begin; oy < row_end; oy++) {
        size_t y0, y1;
        float ly0, ly1;
        linear_taps(sy, oy, in_h, &y0, &y1, &ly0, &ly1);
        const float *a = in + y0 * ld_in, *c = in + y1 * ld_in;
        float *o = out + oy * ld_out;
        for (size_t ox = 0; ox < out_w; ox++) {
            size_t x0, x1;
            float lx0, lx1;
            linear_taps(sx, ox, in_w, &x0, &x1, &lx0, &lx1);
            /* ATen's Interpolate<2>: rows first, each as value * weight summed in order. */
            float top = a[x0] * lx0 + a[x1] * lx1, bottom = c[x0] * lx0 + c[x1] * lx1;
            o[ox] = top * ly0 + bottom * ly1;
        }
    }
}
