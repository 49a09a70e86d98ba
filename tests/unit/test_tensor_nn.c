/* The transformer blocks (src/tensor/nn.c) against naive double-precision
 * references computed here, through the scalar row steps and, on a CPU with
 * AVX2, the AVX2 ones (mf_layer_norm_with / mf_attention_with), and through
 * the public entry points. CTest also runs this file with MEMFIT_NO_SIMD=1
 * (unit/test_tensor_nn_scalar), so the public entry points and the matrix
 * products under the attention take the scalar path too. Tolerances:
 * - LayerNorm: |y - ref| <= 2e-5 (1 + |ref|) for rows whose mean is up to
 *   10 standard deviations from 0 (rounding of x - mean, relative to the
 *   spread);
 * - attention: |out - ref| <= max|v| (1e-5 + 2 max|ds|), where ds bounds
 *   the float error of a score: head_dim * 2^-24 * scale * sum_d |q_d k_d|
 *   plus 3 * 2^-24 (|score| + |bias terms|), since the softmax moves by at
 *   most 2 max|ds| in L1 when its scores move by ds;
 * - im2col: exact (a copy);
 * - bilinear: |out - ref| <= max|in| (1e-6 + 3e-7 * max(in_h, in_w)), the
 *   reference taking its source coordinates in double, while the kernel
 *   rounds them to float as ATen does (an error up to src * 2^-23).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor/kernels.h"
#include "unit/tensor_testing.h"

/* The row-step tables to check: scalar, and AVX2 when the CPU has it. */
static size_t ops_list(const struct mf_nn_ops *ops[2])
{
    size_t n = 0;
    ops[n++] = mf_nn_ops_scalar();
    if (mf_nn_ops_simd())
        ops[n++] = mf_nn_ops_simd();
    return n;
}

/* ---- LayerNorm ----------------------------------------------------------------- */

static void ref_layer_norm(const float *x, size_t d, const float *w, const float *b, float eps,
                           double *y)
{
    double mean = 0, var = 0;
    for (size_t i = 0; i < d; i++)
        mean += x[i];
    mean /= (double)d;
    for (size_t i = 0; i < d; i++)
        var += (x[i] - mean) * (x[i] - mean);
    double inv = 1 / sqrt(var / (double)d + eps);
    for (size_t i = 0; i < d; i++)
        y[i] = (x[i] - mean) * inv * (w ? w[i] : 1) + (b ? b[i] : 0);
}

static void check_layer_norm(const struct mf_nn_ops *ops, size_t d, size_t n_rows, float offset,
                             bool affine, bool in_place)
{
    struct mf_rng rng = {d * 31 + n_rows};
    size_t ldx = d + 3, ldy = in_place ? ldx : d + 5;
    float *x = malloc(n_rows * ldx * sizeof(float)), *y = malloc(n_rows * ldy * sizeof(float));
    float *w = malloc(d * sizeof(float)), *b = malloc(d * sizeof(float));
    double *ref = malloc(n_rows * d * sizeof(double));
    mf_fill_gauss(&rng, x, n_rows * ldx, 1.0f);
    mf_fill_gauss(&rng, w, d, 1.0f);
    mf_fill_gauss(&rng, b, d, 1.0f);
    for (size_t i = 0; i < n_rows * ldx; i++)
        x[i] += offset;
    const float *wp = affine ? w : NULL, *bp = affine ? b : NULL;
    for (size_t r = 0; r < n_rows; r++)
        ref_layer_norm(x + r * ldx, d, wp, bp, 1e-6f, ref + r * d);
    float *out = in_place ? x : y;
    if (ops)
        mf_layer_norm_with(ops, x, ldx, out, ldy, n_rows, d, wp, bp, 1e-6f);
    else
        memfit_layer_norm(x, ldx, out, ldy, n_rows, d, wp, bp, 1e-6f);
    for (size_t r = 0; r < n_rows; r++)
        for (size_t i = 0; i < d; i++) {
            double e = ref[r * d + i], got = out[r * ldy + i];
            if (!(fabs(got - e) <= 2e-5 * (1 + fabs(e))))
                fail_msg("layer norm d=%zu row %zu [%zu]: %.9g, expected %.9g", d, r, i, got, e);
        }
    free(x);
    free(y);
    free(w);
    free(b);
    free(ref);
}

static void test_layer_norm(void **state)
{
    (void)state;
    const struct mf_nn_ops *ops[2];
    size_t n_ops = ops_list(ops);
    static const size_t dims[] = {1, 2, 7, 8, 15, 16, 17, 33, 256, 384, 768, 1280};
    for (size_t o = 0; o <= n_ops; o++) /* the last round: the public entry point */
        for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++) {
            const struct mf_nn_ops *op = o < n_ops ? ops[o] : NULL;
            check_layer_norm(op, dims[k], 5, 0.0f, true, false);
            check_layer_norm(op, dims[k], 3, 10.0f, true, false);
            check_layer_norm(op, dims[k], 3, -3.0f, false, false);
            check_layer_norm(op, dims[k], 4, 1.0f, true, true);
            check_layer_norm(op, dims[k], 2, 0.5f, false, true);
        }
    /* A constant row: variance 0, output b. */
    float x[24], y[24], b[24];
    for (size_t i = 0; i < 24; i++)
        x[i] = 3.25f, b[i] = (float)i;
    for (size_t o = 0; o < n_ops; o++) {
        mf_layer_norm_with(ops[o], x, 24, y, 24, 1, 24, NULL, b, 1e-5f);
        for (size_t i = 0; i < 24; i++)
            assert_true(y[i] == b[i]);
    }
}

/* ---- Attention ----------------------------------------------------------------- */

/* out (n_q x head_dim doubles) and the tolerance of each row. */
static void ref_attention(const struct memfit_attention *a, double *out, double *tol)
{
    size_t hd = a->head_dim;
    double *s = malloc(a->n_k * sizeof(double));
    const double u = 1.0 / 16777216.0;
    double vmax = 0;
    for (size_t j = 0; j < a->n_k; j++)
        for (size_t d = 0; d < hd; d++)
            vmax = fmax(vmax, fabs(a->v[j * a->ldv + d]));
    for (size_t i = 0; i < a->n_q; i++) {
        const float *q = a->q + i * a->ldq;
        double mx = -INFINITY, ds = 0;
        for (size_t j = 0; j < a->n_k; j++) {
            const float *k = a->k + j * a->ldk;
            s[j] = a->scale * mf_dot_double(q, k, hd);
            double mag = fabs(s[j]);
            if (a->rel_h) {
                double bh = a->rel_h[i * a->rel_ld + j / a->k_w];
                double bw = a->rel_w[i * a->rel_ld + j % a->k_w];
                s[j] += bh + bw;
                mag += fabs(bh) + fabs(bw);
            }
            if (isfinite(s[j]))
                ds = fmax(ds, (double)hd * u * a->scale * mf_abs_dot(q, k, hd) + 3 * u * mag);
            mx = fmax(mx, s[j]);
        }
        tol[i] = vmax * (1e-5 + 2 * ds);
        double sum = 0;
        for (size_t j = 0; j < a->n_k; j++) {
            s[j] = mx == -INFINITY ? 0 : exp(s[j] - mx);
            sum += s[j];
        }
        for (size_t d = 0; d < hd; d++) {
            double acc = 0;
            for (size_t j = 0; j < a->n_k; j++)
                acc += s[j] * a->v[j * a->ldv + d];
            out[i * hd + d] = sum > 0 ? acc / sum : 0;
        }
    }
    free(s);
}

/* One head over rows ld floats apart, no relative bias. */
static struct memfit_attention attn_args(const float *q, const float *k, const float *v, float *out,
                                         size_t ld, size_t n_q, size_t n_k, size_t head_dim,
                                         float scale)
{
    return (struct memfit_attention){.q = q,
                                     .k = k,
                                     .v = v,
                                     .out = out,
                                     .ldq = ld,
                                     .ldk = ld,
                                     .ldv = ld,
                                     .ldo = ld,
                                     .n_q = n_q,
                                     .n_k = n_k,
                                     .head_dim = head_dim,
                                     .scale = scale};
}

struct attn_case {
    size_t n_q, n_k, head_dim;
    float sigma;  /* of q and k */
    size_t k_w;   /* 0: no relative bias */
    float bias_s; /* sigma of the bias terms */
    size_t pad;   /* extra floats per row of q, k, v and out */
};

static void check_attention(const struct mf_nn_ops *ops, const struct attn_case *c)
{
    struct mf_rng rng = {c->n_q * 1000003 + c->n_k * 101 + c->head_dim};
    size_t hd = c->head_dim, ld = hd + c->pad;
    float *q = malloc(c->n_q * ld * sizeof(float)), *k = malloc(c->n_k * ld * sizeof(float));
    float *v = malloc(c->n_k * ld * sizeof(float)), *out = malloc(c->n_q * ld * sizeof(float));
    mf_fill_gauss(&rng, q, c->n_q * ld, c->sigma);
    mf_fill_gauss(&rng, k, c->n_k * ld, c->sigma);
    mf_fill_gauss(&rng, v, c->n_k * ld, 1.0f);
    float *rel_h = NULL, *rel_w = NULL;
    size_t rel_ld = 0;
    if (c->k_w) {
        size_t k_h = c->n_k / c->k_w;
        rel_ld = (k_h > c->k_w ? k_h : c->k_w) + 2;
        rel_h = malloc(c->n_q * rel_ld * sizeof(float));
        rel_w = malloc(c->n_q * rel_ld * sizeof(float));
        mf_fill_gauss(&rng, rel_h, c->n_q * rel_ld, c->bias_s);
        mf_fill_gauss(&rng, rel_w, c->n_q * rel_ld, c->bias_s);
    }
    struct memfit_attention a =
        attn_args(q, k, v, out, ld, c->n_q, c->n_k, hd, 1.0f / sqrtf((float)hd));
    a.rel_h = rel_h, a.rel_w = rel_w, a.rel_ld = rel_ld, a.k_w = c->k_w;
    size_t bytes = memfit_attention_work_bytes(c->n_k, hd);
    assert_true(bytes % 64 == 0);
    void *work = aligned_alloc(64, bytes);
    double *ref = malloc(c->n_q * hd * sizeof(double)), *tol = malloc(c->n_q * sizeof(double));
    ref_attention(&a, ref, tol);
    enum memfit_status st =
        ops ? mf_attention_with(ops, &a, work, bytes) : memfit_attention(&a, work, bytes);
    assert_int_equal(st, MEMFIT_OK);
    for (size_t i = 0; i < c->n_q; i++)
        for (size_t d = 0; d < hd; d++) {
            double e = ref[i * hd + d], got = out[i * ld + d];
            if (!(fabs(got - e) <= tol[i]))
                fail_msg("attention %zux%zu hd %zu k_w %zu: out[%zu][%zu] = %.9g, expected %.9g "
                         "(tolerance %.3g)",
                         c->n_q, c->n_k, hd, c->k_w, i, d, got, e, tol[i]);
        }
    free(q);
    free(k);
    free(v);
    free(out);
    free(rel_h);
    free(rel_w);
    free(work);
    free(ref);
    free(tol);
}

static void test_attention(void **state)
{
    (void)state;
    static const struct attn_case cases[] = {
        {1, 1, 16, 1, 0, 0, 0},
        {1, 200, 64, 1, 0, 0, 0},
        {64, 64, 64, 1, 0, 0, 0},
        {130, 257, 64, 1, 0, 0, 3},
        {70, 100, 80, 1, 0, 0, 0},
        {3, 65, 16, 1, 0, 0, 1},
        {1, 196, 80, 1, 14, 1, 0},
        {100, 196, 64, 1, 14, 2, 5},
        {65, 200, 16, 1, 25, 1, 0},
        {64, 256, 64, 1, 16, 3, 0},
        {7, 130, 64, 1, 1, 1, 0},
        {5, 130, 64, 1, 130, 1, 0},
        {66, 150, 64, 8, 0, 0, 0},
        {40, 300, 80, 30, 0, 0, 0},  /* large scores */
        {20, 196, 16, 6, 14, 50, 2}, /* large scores and bias */
        /* At most 16 queries, several key tiles: the few-query path (SAM's tokens
         * against the image: 7 x 4096, head 16). */
        {7, 4096, 16, 1, 0, 0, 0},
        {12, 600, 64, 1, 25, 1, 1},
        {16, 513, 80, 8, 0, 0, 0},
        {2, 1000, 16, 4, 40, 20, 0},
    };
    const struct mf_nn_ops *ops[2];
    size_t n_ops = ops_list(ops);
    for (size_t o = 0; o <= n_ops; o++)
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
            check_attention(o < n_ops ? ops[o] : NULL, &cases[i]);
}

/* Scores of -inf through the bias: masked keys weigh 0, an all-masked row is 0. */
static void test_attention_masked(void **state)
{
    (void)state;
    enum { NQ = 3, NK = 130, HD = 16, KW = 10 };
    static float q[NQ * HD], k[NK * HD], v[NK * HD], out[NQ * HD];
    static float rel_h[NQ * 13], rel_w[NQ * 13];
    struct mf_rng rng = {5};
    mf_fill_gauss(&rng, q, NQ * HD, 1.0f);
    mf_fill_gauss(&rng, k, NK * HD, 1.0f);
    mf_fill_gauss(&rng, v, NK * HD, 1.0f);
    /* Query 0: only grid row 12 (the last 10 keys, the last tile) open; query 1:
     * everything masked; query 2: only key row 0 masked. */
    for (size_t r = 0; r < 13; r++) {
        rel_h[0 * 13 + r] = r == 12 ? 0.0f : -INFINITY;
        rel_h[1 * 13 + r] = -INFINITY;
        rel_h[2 * 13 + r] = r == 0 ? -INFINITY : 0.0f;
    }
    struct memfit_attention a = attn_args(q, k, v, out, HD, NQ, NK, HD, 0.25f);
    a.rel_h = rel_h, a.rel_w = rel_w, a.rel_ld = 13, a.k_w = KW;
    size_t bytes = memfit_attention_work_bytes(NK, HD);
    void *work = aligned_alloc(64, bytes);
    double ref[NQ * HD], tol[NQ];
    ref_attention(&a, ref, tol);
    const struct mf_nn_ops *ops[2];
    size_t n_ops = ops_list(ops);
    for (size_t o = 0; o < n_ops; o++) {
        memset(out, 0x7f, sizeof(out));
        assert_int_equal(mf_attention_with(ops[o], &a, work, bytes), MEMFIT_OK);
        for (size_t d = 0; d < HD; d++) {
            assert_true(fabs(out[d] - ref[d]) <= 1e-5);
            assert_true(out[HD + d] == 0.0f);
            assert_true(fabs(out[2 * HD + d] - ref[2 * HD + d]) <= 1e-5);
        }
    }
    free(work);
}

static void test_attention_misuse(void **state)
{
    (void)state;
    float q[64], k[64], v[64], out[64], rel[8];
    struct memfit_attention a = attn_args(q, k, v, out, 8, 8, 8, 8, 1.0f);
    size_t bytes = memfit_attention_work_bytes(8, 8);
    uint8_t *work = aligned_alloc(64, bytes + 64);
    memset(q, 0, sizeof(q));
    memset(k, 0, sizeof(k));
    memset(v, 0, sizeof(v));
    assert_int_equal(memfit_attention(&a, work, bytes), MEMFIT_OK);
    assert_int_equal(memfit_attention(&a, work, bytes - 1), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_attention(&a, work + 4, bytes), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_attention(&a, NULL, bytes), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_attention(NULL, work, bytes), MEMFIT_E_MISUSE);
    struct memfit_attention b = a;
    b.n_k = 0;
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_E_MISUSE);
    b = a;
    b.head_dim = 0;
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_E_MISUSE);
    b = a;
    b.v = NULL;
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_E_MISUSE);
    b = a;
    b.rel_h = rel, b.rel_w = rel, b.rel_ld = 1, b.k_w = 3; /* 3 does not divide 8 */
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_E_MISUSE);
    b.k_w = 0;
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_E_MISUSE);
    b.k_w = 4, b.rel_w = NULL;
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_E_MISUSE);
    b = a;
    b.n_q = 0; /* nothing to do */
    assert_int_equal(memfit_attention(&b, work, bytes), MEMFIT_OK);
    /* Uniform weights over zero scores: out = mean of v. */
    for (size_t i = 0; i < 64; i++)
        v[i] = (float)(i % 8) + (float)(i / 8);
    assert_int_equal(memfit_attention(&a, work, bytes), MEMFIT_OK);
    for (size_t d = 0; d < 8; d++)
        assert_true(fabsf(out[3 * 8 + d] - ((float)d + 3.5f)) < 1e-5f);
    assert_true(memfit_attention_work_bytes(SIZE_MAX / 4, 64) == SIZE_MAX);
    free(work);
}

/* ---- im2col ------------------------------------------------------------------- */

static void test_im2col(void **state)
{
    (void)state;
    static const struct {
        size_t h, w, c, kh, kw, s, p;
    } cases[] = {{5, 7, 3, 1, 1, 1, 0},    {6, 6, 4, 2, 2, 2, 0}, {7, 5, 3, 3, 3, 1, 1},
                 {8, 9, 2, 3, 3, 2, 1},    {5, 5, 1, 3, 3, 1, 0}, {32, 48, 3, 16, 16, 16, 0},
                 {6, 7, 5, 3, 2, 1, 1},    {4, 4, 3, 1, 1, 1, 1}, {9, 9, 6, 3, 3, 3, 2},
                 {16, 16, 8, 16, 16, 1, 0}};
    struct mf_rng rng = {11};
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        size_t h = cases[t].h, w = cases[t].w, c = cases[t].c, kh = cases[t].kh, kw = cases[t].kw,
               s = cases[t].s, p = cases[t].p;
        size_t oh = (h + 2 * p - kh) / s + 1, ow = (w + 2 * p - kw) / s + 1;
        size_t cols = c * kh * kw, rows = oh * ow;
        float *x = malloc(h * w * c * sizeof(float));
        float *out = malloc(rows * cols * sizeof(float)), *tile = malloc(rows * cols * 4);
        mf_fill_gauss(&rng, x, h * w * c, 1.0f);
        memset(out, 0x7f, rows * cols * sizeof(float));
        memfit_im2col(x, h, w, c, kh, kw, s, p, 0, rows, out);
        for (size_t r = 0; r < rows; r++)
            for (size_t ch = 0; ch < c; ch++)
                for (size_t ky = 0; ky < kh; ky++)
                    for (size_t kx = 0; kx < kw; kx++) {
                        long y = (long)(r / ow * s + ky) - (long)p;
                        long xx = (long)(r % ow * s + kx) - (long)p;
                        float e = y < 0 || y >= (long)h || xx < 0 || xx >= (long)w
                                      ? 0.0f
                                      : x[((size_t)y * w + (size_t)xx) * c + ch];
                        float got = out[r * cols + (ch * kh + ky) * kw + kx];
                        if (got != e)
                            fail_msg("im2col case %zu row %zu (c %zu, %zu, %zu): %g, expected %g",
                                     t, r, ch, ky, kx, got, e);
                    }
        /* Row ranges: each tile holds only its rows, from out[0]. */
        size_t cuts[] = {0, rows / 3, rows / 3 + 1, rows};
        for (size_t i = 0; i + 1 < 4; i++) {
            memfit_im2col(x, h, w, c, kh, kw, s, p, cuts[i], cuts[i + 1], tile);
            assert_memory_equal(tile, out + cuts[i] * cols, (cuts[i + 1] - cuts[i]) * cols * 4);
        }
        free(x);
        free(out);
        free(tile);
    }
}

/* ---- Bilinear resize ------------------------------------------------------------- */

static double ref_bilinear(const float *in, size_t in_h, size_t in_w, size_t ld, size_t out_h,
                           size_t out_w, size_t oy, size_t ox)
{
    double sy = fmax((double)in_h / out_h * (oy + 0.5) - 0.5, 0);
    double sx = fmax((double)in_w / out_w * (ox + 0.5) - 0.5, 0);
    size_t y0 = (size_t)sy, x0 = (size_t)sx;
    y0 = y0 > in_h - 1 ? in_h - 1 : y0;
    x0 = x0 > in_w - 1 ? in_w - 1 : x0;
    size_t y1 = y0 + (y0 < in_h - 1), x1 = x0 + (x0 < in_w - 1);
    double ly = fmin(sy - y0, 1), lx = fmin(sx - x0, 1);
    return (1 - ly) * ((1 - lx) * in[y0 * ld + x0] + lx * in[y0 * ld + x1]) +
           ly * ((1 - lx) * in[y1 * ld + x0] + lx * in[y1 * ld + x1]);
}

static void check_bilinear(size_t in_h, size_t in_w, size_t out_h, size_t out_w)
{
    struct mf_rng rng = {in_h * 7 + out_w};
    size_t ld_in = in_w + 1, ld_out = out_w + 2;
    float *in = malloc(in_h * ld_in * sizeof(float));
    float *out = malloc(out_h * ld_out * sizeof(float)), *part = malloc(out_h * ld_out * 4);
    mf_fill_gauss(&rng, in, in_h * ld_in, 2.0f);
    double amax = 0;
    for (size_t i = 0; i < in_h * ld_in; i++)
        amax = fmax(amax, fabs(in[i]));
    double tol = amax * (1e-6 + 3e-7 * (double)(in_h > in_w ? in_h : in_w));
    memfit_resize_bilinear(in, in_h, in_w, ld_in, out, out_h, out_w, ld_out, 0, out_h);
    for (size_t y = 0; y < out_h; y++)
        for (size_t x = 0; x < out_w; x++) {
            double e = ref_bilinear(in, in_h, in_w, ld_in, out_h, out_w, y, x);
            double got = out[y * ld_out + x];
            if (!(fabs(got - e) <= tol))
                fail_msg("bilinear %zux%zu -> %zux%zu at (%zu, %zu): %.9g, expected %.9g", in_h,
                         in_w, out_h, out_w, y, x, got, e);
        }
    /* Row ranges (threads): the same values, rows outside untouched. */
    memset(part, 0, out_h * ld_out * sizeof(float));
    size_t cut = out_h / 3;
    memfit_resize_bilinear(in, in_h, in_w, ld_in, part, out_h, out_w, ld_out, cut, out_h);
    for (size_t y = 0; y < out_h; y++)
        for (size_t x = 0; x < out_w; x++)
            assert_true(part[y * ld_out + x] == (y < cut ? 0.0f : out[y * ld_out + x]));
    memfit_resize_bilinear(in, in_h, in_w, ld_in, part, out_h, out_w, ld_out, 0, cut);
    for (size_t y = 0; y < out_h; y++)
        assert_memory_equal(part + y * ld_out, out + y * ld_out, out_w * sizeof(float));
    free(in);
    free(out);
    free(part);
}

static void test_bilinear(void **state)
{
    (void)state;
    check_bilinear(256, 256, 1024, 1024); /* SAM's masks */
    check_bilinear(1024, 1024, 256, 256);
    check_bilinear(64, 64, 1024, 1024);
    check_bilinear(7, 5, 3, 4);
    check_bilinear(13, 17, 40, 29); /* non-integer ratios, up */
    check_bilinear(100, 37, 37, 100);
    check_bilinear(37, 23, 11, 50);
    check_bilinear(5, 5, 5, 5);
    check_bilinear(1, 1, 4, 3);
    check_bilinear(3, 3, 1, 1);
    check_bilinear(480, 640, 1024, 768);
}

/* The exact arithmetic of ATen (UpSample.h, cpu/UpSampleKernel.cpp) for
 * float input given an output size: float scale, src = scale * (dst + 0.5)
 * - 0.5 in float, clamped at 0, and the two rows blended after each is. */
static void test_bilinear_aten_arithmetic(void **state)
{
    (void)state;
    enum { IH = 4, IW = 5, OH = 9, OW = 7 };
    float in[IH * IW], out[OH * OW];
    struct mf_rng rng = {3};
    mf_fill_gauss(&rng, in, IH * IW, 1.0f);
    memfit_resize_bilinear(in, IH, IW, IW, out, OH, OW, OW, 0, OH);
    float sy = (float)IH / (float)OH, sx = (float)IW / (float)OW;
    for (size_t y = 0; y < OH; y++)
        for (size_t x = 0; x < OW; x++) {
            volatile float fy = sy * ((float)y + 0.5f) - 0.5f, fx = sx * ((float)x + 0.5f) - 0.5f;
            float ry = fy < 0 ? 0 : fy, rx = fx < 0 ? 0 : fx;
            size_t y0 = (size_t)ry, x0 = (size_t)rx;
            size_t y1 = y0 < IH - 1 ? y0 + 1 : y0, x1 = x0 < IW - 1 ? x0 + 1 : x0;
            float ly1 = ry - (float)y0, lx1 = rx - (float)x0, ly0 = 1 - ly1, lx0 = 1 - lx1;
            volatile float top = in[y0 * IW + x0] * lx0 + in[y0 * IW + x1] * lx1;
            volatile float bot = in[y1 * IW + x0] * lx0 + in[y1 * IW + x1] * lx1;
            volatile float e = top * ly0 + bot * ly1;
            assert_true(out[y * OW + x] == e);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_masked),
        cmocka_unit_test(test_attention_misuse),
        cmocka_unit_test(test_im2col),
        cmocka_unit_test(test_bilinear),
        cmocka_unit_test(test_bilinear_aten_arithmetic),
    };
    printf("row steps: scalar%s\n", mf_nn_ops_simd() ? " and avx2" : " only");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
