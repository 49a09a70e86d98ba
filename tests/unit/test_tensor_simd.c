/* Every x86 SIMD kernel against its scalar reference (STYLE.md: "every
 * SIMD kernel is compared with its scalar reference within a stated
 * tolerance"). Tolerances (docs/quantization.md):
 * - activation quantizers (Q8_0, Q8_K) and F16 row conversion: identical bytes;
 * - Q4_K and Q6_K dots: identical floats (integer super-block sums, same
 *   float combination order);
 * - Q8_0 and Q4_0 dots: |simd - scalar| <= 1e-5 * sum |w_i a_i| (exact
 *   integer block sums, float lanes summed in another order); with AVX-512
 *   VNNI/VBMI these are x86/dot_avx512.c's kernels (the AVX2 ones under
 *   MEMFIT_NO_AVX512=1);
 * - multi-row dots (mf_vec_dot_rows): identical floats to the one-row
 *   kernel of the same table for every row, at any stride and row count;
 * - F32, F16, BF16 dots: the same bound (float lanes vs double reference);
 *   infinities and NaNs must come out the same class;
 * - the integer Q8_0 matrix path (x86/gemm_q8.c vs mf_gemm_q8_0_scalar):
 *   |simd - scalar| <= 1e-6 * sum |w_i a_i| (same activation bytes and
 *   integer block sums; d_w * d_x and the float adds rounded differently);
 *   the AVX-VNNI and AVX-512 VNNI tiles: identical floats to the AVX2 tile; Q4_0 weights in the
 *   same tiles: the same bound against mf_dot_q4_0 per row;
 * - the K-quant integer tiles (x86/gemm_k*.c, Q4_K and Q6_K): identical
 *   floats to mf_gemm_k_scalar, which is the scalar dot bit for bit (see
 *   check_gemm_k for its bounds against the dequantized references);
 * - the F32 matrix tile (x86/gemm.c, AVX2 or AVX-512 micro-kernel): identical
 *   floats to a scalar fmaf chain over each MF_GEMM_KC slice of k, slices added.
 * - F16 rows (the type's vec_dot_rows): identical floats to its vec_dot per row; the weighted
 *   sum of F16 rows (mf_avx2_f16_axpy_rows vs the scalar one, FMA against mul-add): within
 *   1e-6 * sum |p v| per element;
 * - SwiGLU (x86/act.c vs mf_swiglu_scalar, the same formula): within 4 ulp of each other and
 *   2e-7 relative of a double reference;
 * CTest runs this file twice: as found, and with MEMFIT_NO_AVX512=1 and
 * MEMFIT_NO_VNNI=1 (unit/test_tensor_simd_avx2), so a CPU with the wider
 * kernels checks the AVX2 ones too.
 * Skipped (exit 77) on a CPU without AVX2/FMA/F16C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "test_util.h"
#include "unit/tensor_testing.h"

static const struct mf_type_traits *simd(enum memfit_type t)
{
    const struct mf_type_traits *tr = mf_type_traits_simd(t);
    assert_non_null(tr);
    return tr;
}

static const struct mf_type_traits *scalar(enum memfit_type t)
{
    const struct mf_type_traits *tr = mf_type_traits_scalar(t);
    assert_non_null(tr);
    return tr;
}

/* Dot of `type` weights w with activations made from x, both paths; checks the bound. */
static void compare_dot(enum memfit_type type, const void *w, const float *x, size_t n, bool exact)
{
    const struct mf_type_traits *s = scalar(type), *v = simd(type);
    assert_ptr_not_equal(s->vec_dot, v->vec_dot); /* really two kernels */
    enum memfit_type at = s->vec_dot_type;
    size_t ab = mf_row_bytes(at, n ? n : 1);
    uint8_t *act = malloc(ab + 1);
    float *wf = malloc((n + 1) * sizeof(float)), *af = malloc((n + 1) * sizeof(float));
    scalar(at)->from_float(x, act, n);
    s->to_float(w, wf, n);
    scalar(at)->to_float(act, af, n);
    float ref = s->vec_dot(n, w, act), got = v->vec_dot(n, w, act);
    double bound = exact ? 0 : 1e-5 * mf_abs_dot(wf, af, n);
    bool ok;
    if (isnan(ref) || isinf(ref))
        ok = (isnan(ref) && isnan(got)) || ref == got;
    else
        ok = fabs((double)got - (double)ref) <= bound;
    if (!ok) {
        fprintf(stderr, "%s n=%zu: simd %.9g scalar %.9g bound %.3g\n",
                memfit_type_get_info(type)->name, n, got, ref, bound);
        fail();
    }
    free(act);
    free(wf);
    free(af);
}

static void test_float_dots(void **state)
{
    (void)state;
    static const size_t lengths[] = {0, 1, 7, 8, 9, 31, 32, 33, 100, 1024, 4097};
    static const enum memfit_type types[] = {MEMFIT_TYPE_F32, MEMFIT_TYPE_F16, MEMFIT_TYPE_BF16};
    struct mf_rng rng = {3};
    float *src = malloc(4097 * sizeof(float)), *x = malloc(4097 * sizeof(float));
    uint8_t *w = malloc(4097 * sizeof(float));
    for (size_t t = 0; t < 3; t++) {
        for (size_t k = 0; k < sizeof(lengths) / sizeof(lengths[0]); k++) {
            size_t n = lengths[k];
            mf_fill_gauss(&rng, src, n, 1.0f);
            mf_fill_gauss(&rng, x, n, 1.0f);
            scalar(types[t])->from_float(src, w, n);
            compare_dot(types[t], w, x, n, false);
        }
        /* Edge cases: zeros, denormals, infinities (in weights and activations). */
        size_t n = 40;
        memset(src, 0, n * sizeof(float));
        mf_fill_gauss(&rng, x, n, 1.0f);
        scalar(types[t])->from_float(src, w, n);
        compare_dot(types[t], w, x, n, false);
        for (size_t i = 0; i < n; i++)
            src[i] = (i % 2 ? 1 : -1) * 1e-41f * (float)(i + 1); /* F32 denormals */
        scalar(types[t])->from_float(src, w, n);
        compare_dot(types[t], w, x, n, false);
        for (size_t i = 0; i < n; i++)
            src[i] = 5.96e-8f * (float)(i + 1); /* F16 denormals */
        scalar(types[t])->from_float(src, w, n);
        compare_dot(types[t], w, x, n, false);
        mf_fill_gauss(&rng, src, n, 1.0f);
        src[3] = INFINITY;
        scalar(types[t])->from_float(src, w, n);
        compare_dot(types[t], w, x, n, false); /* inf */
        src[37] = -INFINITY;
        scalar(types[t])->from_float(src, w, n);
        compare_dot(types[t], w, x, n, false); /* inf - inf = NaN */
        mf_fill_gauss(&rng, src, n, 1.0f);
        x[5] = INFINITY;
        x[6] = 0;
        src[6] = INFINITY; /* inf * 0 = NaN */
        scalar(types[t])->from_float(src, w, n);
        compare_dot(types[t], w, x, n, false);
    }
    free(src);
    free(x);
    free(w);
}

static void test_quant_dots(void **state)
{
    (void)state;
    static const struct {
        enum memfit_type type;
        bool exact;
    } types[] = {{MEMFIT_TYPE_Q8_0, false},
                 {MEMFIT_TYPE_Q4_0, false},
                 {MEMFIT_TYPE_Q4_K, true},
                 {MEMFIT_TYPE_Q6_K, true}};
    static const size_t blocks[] = {1, 2, 3, 17, 64};
    struct mf_rng rng = {9};
    const size_t max_n = 64 * 256;
    float *src = malloc(max_n * sizeof(float)), *x = malloc(max_n * sizeof(float));
    uint8_t *w = malloc(max_n * sizeof(float));
    for (size_t t = 0; t < 4; t++) {
        uint32_t bs = memfit_type_get_info(types[t].type)->block_size;
        for (size_t k = 0; k < sizeof(blocks) / sizeof(blocks[0]); k++) {
            size_t n = blocks[k] * bs;
            /* Quantized Gaussian weights, and random bytes (every bit pattern). */
            mf_fill_gauss(&rng, src, n, 0.05f);
            mf_fill_gauss(&rng, x, n, 2.0f);
            scalar(types[t].type)->from_float(src, w, n);
            compare_dot(types[t].type, w, x, n, types[t].exact);
            size_t bytes = mf_row_bytes(types[t].type, n);
            uint32_t ts = memfit_type_get_info(types[t].type)->type_size;
            for (size_t i = 0; i < bytes; i++)
                w[i] = (uint8_t)mf_rng_u32(&rng);
            for (size_t b = 0; b < bytes / ts; b++) { /* finite fp16 scales */
                size_t d_off = types[t].type == MEMFIT_TYPE_Q6_K ? 208 : 0;
                w[b * ts + d_off + 1] &= 0x3b;
                if (types[t].type == MEMFIT_TYPE_Q4_K)
                    w[b * ts + 3] &= 0x3b;
            }
            compare_dot(types[t].type, w, x, n, types[t].exact);
        }
        /* All-zero weights and activations. */
        size_t n = 2 * bs;
        memset(src, 0, n * sizeof(float));
        scalar(types[t].type)->from_float(src, w, n);
        compare_dot(types[t].type, w, src, n, types[t].exact);
    }
    free(src);
    free(x);
    free(w);
}

/* mf_vec_dot_rows over strided rows: each row bit for bit the table's one-row kernel, and within
 * the scalar bound; row lengths around the AVX-512 kernel's 16-block step (partial steps, and
 * rows too long for its prepared activation), random bytes included (quants -128, Q4_0 0/15). */
/* False, saying so, where the type has no rows x columns kernel in this table (Q4_0 has one
 * with AVX2, Q8_0 with AVX-512 VNNI/VBMI only). */
static bool skip_no_rows_cols(const struct mf_type_traits *v, enum memfit_type type,
                              const char *what)
{
    if (v->vec_dot_rows_cols)
        return true;
    printf("%s %s: skipped (no kernel without AVX-512 VNNI/VBMI, or MEMFIT_NO_AVX512=1)\n", what,
           memfit_type_get_info(type)->name);
    return false;
}

/* The multi-row multi-column kernel (AVX-512 VNNI; Q4_0 also AVX2): every column of every row
 * bit-identical to vec_dot, for 1..8 columns (groups of 4 and a rest), partial steps, rows and
 * activations of random bytes (quants -128 included, finite scales), n past the prepared-activation
 * budgets (AVX-512: 48 steps of 16 blocks; AVX2: 256 of 4). */
static void test_dot_rows_cols(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q8_0};
    static const size_t blocks[] = {1, 5, 16, 17, 40, 172, 193, 600, 1030};
    enum { ROWS = 5, COLS = 8 };
    const size_t pad = 6, max_n = 1030 * 32, ab = mf_row_bytes(MEMFIT_TYPE_Q8_0, max_n);
    struct mf_rng rng = {31};
    uint8_t *w = malloc(ROWS * (ab + pad)), *act = malloc(COLS * ab);
    float out[COLS * ROWS];
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *v = simd(types[t]);
        if (!skip_no_rows_cols(v, types[t], "dot rows x cols"))
            continue;
        uint32_t ts = memfit_type_get_info(types[t])->type_size;
        for (size_t k = 0; k < sizeof(blocks) / sizeof(blocks[0]); k++) {
            size_t n = blocks[k] * 32, rb = mf_row_bytes(types[t], n), ws = rb + pad;
            for (size_t i = 0; i < ROWS * ws; i++)
                w[i] = (uint8_t)mf_rng_u32(&rng);
            for (size_t i = 0; i < COLS * ab; i++)
                act[i] = (uint8_t)mf_rng_u32(&rng);
            for (size_t r = 0; r < ROWS; r++)
                for (size_t b = 0; b < rb / ts; b++)
                    w[r * ws + b * ts + 1] &= 0x3b;
            for (size_t c = 0; c < COLS; c++) {
                for (size_t b = 0; b < n / 32; b++)
                    act[c * ab + b * 34 + 1] &= 0x3b;
                act[c * ab + 2] = 0x80; /* -128 */
            }
            const void *a[COLS];
            for (size_t c = 0; c < COLS; c++)
                a[c] = act + c * ab;
            for (size_t nc = 1; nc <= COLS; nc++) {
                for (size_t nr = 1; nr <= ROWS; nr += 4) { /* 1, 5 rows */
                    memset(out, 0, sizeof(out));
                    v->vec_dot_rows_cols(n, w, ws, a, nc, out, ROWS, nr);
                    for (size_t c = 0; c < nc; c++)
                        for (size_t r = 0; r < nr; r++) {
                            float one = v->vec_dot(n, w + r * ws, a[c]);
                            if (memcmp(&one, &out[c * ROWS + r], sizeof(float)) != 0) {
                                fprintf(stderr,
                                        "%s n=%zu col %zu of %zu row %zu: cols %.9g one %.9g\n",
                                        memfit_type_get_info(types[t])->name, n, c, nc, r,
                                        out[c * ROWS + r], one);
                                fail();
                            }
                        }
                }
            }
        }
    }
    free(w);
    free(act);
}

/* Runs the rows x columns kernel over rows x nc and checks every value, bit for bit, against
 * vec_dot (out[c * rows + r]); prints the first mismatch. */
static bool cols_match_one(const struct mf_type_traits *v, size_t n, const uint8_t *w, size_t ws,
                           const void *const *a, size_t nc, size_t rows, float *out)
{
    memset(out, 0, nc * rows * sizeof(float));
    v->vec_dot_rows_cols(n, w, ws, a, nc, out, rows, rows);
    for (size_t c = 0; c < nc; c++)
        for (size_t r = 0; r < rows; r++) {
            float one = v->vec_dot(n, w + r * ws, a[c]);
            if (memcmp(&one, &out[c * rows + r], sizeof(float)) != 0) {
                fprintf(stderr, "n=%zu col %zu of %zu row %zu: cols %.9g one %.9g\n", n, c, nc, r,
                        out[c * rows + r], one);
                return false;
            }
        }
    return true;
}

/* The rows x columns kernel on quantized Gaussian data (within the scalar reference's bound) and
 * on special scales (0, fp16 denormals, inf, NaN in weights and activations; partial last
 * steps): every value, NaN bit patterns included, the one-row kernel's. */
static void test_dot_rows_cols_scales(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q8_0};
    static const uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7e00};
    enum { ROWS = 4, COLS = 4, BLOCKS = 75 }; /* 4 full steps and a partial one */
    const size_t n = BLOCKS * 32, ab = mf_row_bytes(MEMFIT_TYPE_Q8_0, n);
    struct mf_rng rng = {37};
    float *src = malloc(n * sizeof(float)), *wf = malloc(n * sizeof(float));
    float *af = malloc(COLS * n * sizeof(float));
    uint8_t *w = malloc(ROWS * ab), *act = malloc(COLS * ab);
    float out[COLS * ROWS];
    const void *a[COLS];
    for (size_t c = 0; c < COLS; c++)
        a[c] = act + c * ab;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *v = simd(types[t]), *sc = scalar(types[t]);
        size_t rb = mf_row_bytes(types[t], n), ts = memfit_type_get_info(types[t])->type_size;
        if (!skip_no_rows_cols(v, types[t], "dot rows x cols scales"))
            continue;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t r = 0; r < ROWS; r++) {
                mf_fill_gauss(&rng, src, n, 0.05f);
                sc->from_float(src, w + r * rb, n);
            }
            for (size_t c = 0; c < COLS; c++) {
                mf_fill_gauss(&rng, src, n, 2.0f);
                scalar(MEMFIT_TYPE_Q8_0)->from_float(src, act + c * ab, n);
                scalar(MEMFIT_TYPE_Q8_0)->to_float(act + c * ab, af + c * n, n);
            }
            if (pass == 1) /* special scales at random blocks, the last one included */
                for (size_t k = 0; k < 24; k++) {
                    uint16_t d = special[mf_rng_u32(&rng) % 7];
                    size_t b = k == 0 ? BLOCKS - 1 : mf_rng_u32(&rng) % BLOCKS;
                    uint8_t *p = k % 2 ? act + (k / 2 % COLS) * ab + b * 34
                                       : w + (k / 2 % ROWS) * rb + b * ts;
                    memcpy(p, &d, 2);
                }
            if (!cols_match_one(v, n, w, rb, a, COLS, ROWS, out))
                fail();
            for (size_t c = 0; c < COLS && pass == 0; c++)
                for (size_t r = 0; r < ROWS; r++) {
                    float ref = sc->vec_dot(n, w + r * rb, a[c]);
                    sc->to_float(w + r * rb, wf, n);
                    double bound = 1e-5 * mf_abs_dot(wf, af + c * n, n);
                    if (fabs((double)out[c * ROWS + r] - (double)ref) > bound) {
                        fprintf(stderr, "%s col %zu row %zu: cols %.9g scalar %.9g\n",
                                memfit_type_get_info(types[t])->name, c, r, out[c * ROWS + r], ref);
                        fail();
                    }
                }
        }
    }
    free(src);
    free(wf);
    free(af);
    free(w);
    free(act);
}

/* The Q4_K and Q6_K rows x columns kernels (and Q6_K's multi-row one): every column of every
 * row bit-identical to vec_dot and to the scalar reference (exact integer sums), for 1..8 columns,
 * rows of random bytes (every quant and scale pattern, finite fp16 scales) against random Q8_K
 * activations (quants -128 included, bsums their sums). */
static void test_dot_rows_cols_k(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_K, MEMFIT_TYPE_Q6_K};
    static const size_t blocks[] = {1, 3, 8, 17};
    enum { ROWS = 5, COLS = 8 };
    const size_t max_n = 17 * 256, ab = mf_row_bytes(MEMFIT_TYPE_Q8_K, max_n), pad = 4;
    if (!simd(MEMFIT_TYPE_Q4_K)->vec_dot_rows_cols) {
        printf("dot rows x cols K: skipped (no AVX-512 VNNI/VBMI, or MEMFIT_NO_AVX512=1)\n");
        return;
    }
    struct mf_rng rng = {41};
    uint8_t *w = malloc(ROWS * (mf_row_bytes(MEMFIT_TYPE_Q6_K, max_n) + pad));
    uint8_t *act = malloc(COLS * ab);
    float out[COLS * ROWS];
    const void *a[COLS];
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *v = simd(types[t]), *sc = scalar(types[t]);
        bool q6 = types[t] == MEMFIT_TYPE_Q6_K;
        size_t ts = q6 ? sizeof(struct mf_block_q6_k) : sizeof(struct mf_block_q4_k);
        assert_non_null(v->vec_dot_rows_cols);
        if (q6)
            assert_non_null(v->vec_dot_rows);
        for (size_t k = 0; k < sizeof(blocks) / sizeof(blocks[0]); k++) {
            size_t n = blocks[k] * 256, rb = mf_row_bytes(types[t], n), ws = rb + pad;
            size_t yb = mf_row_bytes(MEMFIT_TYPE_Q8_K, n);
            for (size_t i = 0; i < ROWS * ws; i++)
                w[i] = (uint8_t)mf_rng_u32(&rng);
            for (size_t r = 0; r < ROWS; r++)
                for (size_t b = 0; b < n / 256; b++) {
                    uint8_t *blk = w + r * ws + b * ts;
                    if (q6) {
                        blk[209] &= 0x3b; /* d finite */
                    } else {
                        blk[1] &= 0x3b; /* d and dmin finite */
                        blk[3] &= 0x3b;
                    }
                }
            for (size_t c = 0; c < COLS; c++) {
                a[c] = act + c * yb;
                for (size_t b = 0; b < n / 256; b++) {
                    struct mf_block_q8_k y;
                    y.d = (float)(mf_rng_u32(&rng) % 1000 + 1) * 1e-4f;
                    for (size_t i = 0; i < 256; i++)
                        y.qs[i] = (int8_t)mf_rng_u32(&rng);
                    for (size_t j = 0; j < 16; j++) {
                        int bsum = 0;
                        for (size_t i = 0; i < 16; i++)
                            bsum += y.qs[16 * j + i];
                        y.bsums[j] = (int16_t)bsum;
                    }
                    memcpy(act + c * yb + b * sizeof(y), &y, sizeof(y));
                }
            }
            float rows[ROWS];
            mf_vec_dot_rows(v, n, w, ws, a[1], rows, ROWS); /* Q6_K's: one column */
            for (size_t r = 0; r < ROWS; r++) {
                float one = v->vec_dot(n, w + r * ws, a[1]);
                if (memcmp(&one, &rows[r], sizeof(float)) != 0) {
                    fprintf(stderr, "%s n=%zu row %zu: rows %.9g one %.9g\n",
                            memfit_type_get_info(types[t])->name, n, r, rows[r], one);
                    fail();
                }
            }
            for (size_t nc = 1; nc <= COLS; nc++)
                if (!cols_match_one(v, n, w, ws, a, nc, ROWS, out))
                    fail();
            for (size_t c = 0; c < COLS; c++) /* the scalar reference: the same exact sums */
                for (size_t r = 0; r < ROWS; r++) {
                    float ref = sc->vec_dot(n, w + r * ws, a[c]);
                    if (memcmp(&ref, &out[c * ROWS + r], sizeof(float)) != 0) {
                        fprintf(stderr, "%s n=%zu col %zu row %zu: cols %.9g scalar %.9g\n",
                                memfit_type_get_info(types[t])->name, n, c, r, out[c * ROWS + r],
                                ref);
                        fail();
                    }
                }
        }
    }
    free(w);
    free(act);
}

static void test_dot_rows(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q8_0};
    /* 800 blocks: more steps than the AVX-512 Q4_0 rows kernel prepares (it hands such rows to
     * the one-row kernel) */
    static const size_t blocks[] = {1, 4, 15, 16, 17, 33, 64, 172, 600, 800};
    const size_t rows = 7, pad = 6, max_n = 800 * 32; /* pad: rows 2-byte aligned, as blocks need */
    struct mf_rng rng = {29};
#if defined(__x86_64__)
    printf("dot rows: %s kernels\n", simd(MEMFIT_TYPE_Q4_0)->vec_dot == mf_avx512_dot_q4_0
                                         ? "AVX-512 VNNI"
                                         : "AVX2 (no AVX-512 VNNI/VBMI, or MEMFIT_NO_AVX512=1)");
#endif
    float *src = malloc(max_n * sizeof(float)), *x = malloc(max_n * sizeof(float));
    float *wf = malloc(max_n * sizeof(float)), *af = malloc(max_n * sizeof(float));
    uint8_t *w = malloc(rows * (mf_row_bytes(MEMFIT_TYPE_Q8_0, max_n) + pad));
    uint8_t *act = malloc(mf_row_bytes(MEMFIT_TYPE_Q8_0, max_n));
    float y[7];
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *v = simd(types[t]), *sc = scalar(types[t]);
        for (size_t k = 0; k < sizeof(blocks) / sizeof(blocks[0]); k++) {
            size_t n = blocks[k] * 32, rb = mf_row_bytes(types[t], n), ws = rb + pad;
            for (size_t r = 0; r < rows; r++) {
                if (r == 3) { /* every bit pattern, with finite scales */
                    for (size_t i = 0; i < rb; i++)
                        w[r * ws + i] = (uint8_t)mf_rng_u32(&rng);
                    uint32_t ts = memfit_type_get_info(types[t])->type_size;
                    for (size_t b = 0; b < rb / ts; b++)
                        w[r * ws + b * ts + 1] &= 0x3b;
                } else {
                    mf_fill_gauss(&rng, src, n, 0.05f);
                    sc->from_float(src, w + r * ws, n);
                }
            }
            mf_fill_gauss(&rng, x, n, 2.0f);
            scalar(MEMFIT_TYPE_Q8_0)->from_float(x, act, n);
            scalar(MEMFIT_TYPE_Q8_0)->to_float(act, af, n);
            for (size_t nr = 1; nr <= rows; nr += 3) { /* 1, 4, 7 rows */
                mf_vec_dot_rows(v, n, w, ws, act, y, nr);
                for (size_t r = 0; r < nr; r++) {
                    float one = v->vec_dot(n, w + r * ws, act);
                    float ref = sc->vec_dot(n, w + r * ws, act);
                    sc->to_float(w + r * ws, wf, n);
                    double bound = 1e-5 * mf_abs_dot(wf, af, n);
                    if (memcmp(&one, &y[r], sizeof(float)) != 0 ||
                        fabs((double)one - (double)ref) > bound) {
                        fprintf(stderr, "%s n=%zu row %zu of %zu: rows %.9g one %.9g scalar %.9g\n",
                                memfit_type_get_info(types[t])->name, n, r, nr, y[r], one, ref);
                        fail();
                    }
                }
            }
        }
    }
    free(src);
    free(x);
    free(wf);
    free(af);
    free(w);
    free(act);
}

/* Both quantizers on the same input must write the same bytes. */
static void compare_quantizer(enum memfit_type type, const float *x, size_t n)
{
    size_t bytes = mf_row_bytes(type, n);
    uint8_t *a = malloc(bytes), *b = malloc(bytes);
    assert_ptr_not_equal(scalar(type)->from_float, simd(type)->from_float);
    scalar(type)->from_float(x, a, n);
    simd(type)->from_float(x, b, n);
    assert_memory_equal(a, b, bytes);
    free(a);
    free(b);
}

static void test_activation_quantizers(void **state)
{
    (void)state;
    struct mf_rng rng = {13};
    const size_t n = 4096;
    float *x = malloc(n * sizeof(float));
    static const float sigmas[] = {1e-30f, 1e-3f, 1.0f, 1e4f};
    for (size_t s = 0; s < 4; s++) {
        mf_fill_gauss(&rng, x, n, sigmas[s]);
        compare_quantizer(MEMFIT_TYPE_Q8_0, x, n);
        compare_quantizer(MEMFIT_TYPE_Q8_K, x, n);
        compare_quantizer(MEMFIT_TYPE_F16, x, n);
    }
    /* Ties: with amax 127 (d = 1) every x.5 must round away from zero (Q8_0),
     * and to even for Q8_K (whose largest value -127 gives iscale 1). */
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((int)(i % 254) - 127) + (i % 3 == 0 ? 0.5f : 0.0f);
    for (size_t b = 0; b < n; b += 32)
        x[b] = 127.0f;
    compare_quantizer(MEMFIT_TYPE_Q8_0, x, n);
    for (size_t b = 0; b < n; b += 256)
        x[b] = -127.0f;
    compare_quantizer(MEMFIT_TYPE_Q8_K, x, n);
    /* Zeros, denormals, and a block whose largest magnitude appears with both signs. */
    memset(x, 0, n * sizeof(float));
    compare_quantizer(MEMFIT_TYPE_Q8_0, x, n);
    compare_quantizer(MEMFIT_TYPE_Q8_K, x, n);
    for (size_t i = 0; i < n; i++)
        x[i] = 1e-40f * (float)((int)(i % 7) - 3);
    compare_quantizer(MEMFIT_TYPE_Q8_0, x, n);
    compare_quantizer(MEMFIT_TYPE_Q8_K, x, n);
    mf_fill_gauss(&rng, x, 256, 1.0f);
    x[10] = 9.0f;
    x[200] = -9.0f;
    compare_quantizer(MEMFIT_TYPE_Q8_K, x, 256);
    free(x);
}

/* SwiGLU, AVX2 against the scalar formula and a double reference, across the range where
 * e^-g saturates (|g| > 87) and with a tail that is not a multiple of 8. */
static void test_swiglu(void **state)
{
    (void)state;
    enum { N = 2003 };
    float g[N], u[N], ga[N], gs[N];
    struct mf_rng rng = {29};
    mf_fill_gauss(&rng, u, N, 2.0f);
    for (int i = 0; i < N; i++)
        g[i] = (float)(i - 1001) / 10.0f;
    memcpy(ga, g, sizeof(g));
    memcpy(gs, g, sizeof(g));
    mf_avx2_swiglu(ga, u, N);
    mf_swiglu_scalar(gs, u, N);
    for (int i = 0; i < N; i++) {
        double v = g[i], ref = v / (1.0 + exp(-v)) * u[i];
        double tol = 2e-7 * fabs(ref) + 1e-30;
        assert_true(fabs(ga[i] - ref) <= tol * 2);
        assert_true(fabs(gs[i] - ref) <= tol * 2);
        assert_true(fabs(ga[i] - gs[i]) <= 4 * FLT_EPSILON * fabs(gs[i]) + 1e-30);
    }
}

/* F16 rows: the multi-row dot against the one-row one, and the weighted row sums (axpy_rows)
 * against the scalar ones and the to_float fallback, for lengths around the AVX2 kernel's 64-wide
 * and 8-wide parts, at a padded stride, for 0..40 rows, added to what acc held. */
static void test_f16_rows(void **state)
{
    (void)state;
    enum { MAX_N = 200, MAX_ROWS = 40, STRIDE = (MAX_N + 3) * 2 };
    static const size_t lens[] = {1, 7, 8, 64, 72, 128, 131, 200};
    struct mf_rng rng = {31};
    float src[MAX_N], q[MAX_N], p[MAX_ROWS], out[MAX_ROWS];
    float acc_v[MAX_N], acc_s[MAX_N], mag[MAX_N];
    uint8_t *rows = malloc((size_t)MAX_ROWS * STRIDE);
    const struct mf_type_traits *t = simd(MEMFIT_TYPE_F16);
    const struct mf_type_traits *sc = mf_type_traits_scalar(MEMFIT_TYPE_F16);
    assert_non_null(t->vec_dot_rows);
    assert_ptr_equal(t->axpy_rows, mf_avx2_f16_axpy_rows);
    assert_ptr_equal(sc->axpy_rows, mf_f16_axpy_rows_scalar);
    struct mf_type_traits conv = *sc;
    conv.axpy_rows = NULL;
    for (size_t r = 0; r < MAX_ROWS; r++) {
        mf_fill_gauss(&rng, src, MAX_N, 1.0f);
        mf_f16_from_float(src, rows + r * STRIDE, MAX_N);
    }
    mf_fill_gauss(&rng, q, MAX_N, 1.0f);
    mf_fill_gauss(&rng, p, MAX_ROWS, 1.0f);
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t n = lens[k];
        for (size_t nr = 0; nr <= MAX_ROWS; nr += 5) {
            t->vec_dot_rows(n, rows, STRIDE, q, out, nr);
            for (size_t r = 0; r < nr; r++)
                assert_true(out[r] == t->vec_dot(n, rows + r * STRIDE, q));
            for (size_t d = 0; d < n; d++) {
                acc_v[d] = acc_s[d] = (float)d * 0.25f;
                mag[d] = fabsf(acc_s[d]);
            }
            t->axpy_rows(n, rows, STRIDE, p, nr, acc_v);
            sc->axpy_rows(n, rows, STRIDE, p, nr, acc_s);
            /* a type without axpy_rows: each row through to_float, the scalar sums bit for bit */
            float acc_c[MAX_N], row[MAX_N];
            for (size_t d = 0; d < n; d++)
                acc_c[d] = (float)d * 0.25f;
            mf_axpy_rows(&conv, n, rows, STRIDE, p, nr, acc_c, row);
            assert_memory_equal(acc_c, acc_s, n * sizeof(float));
            for (size_t r = 0; r < nr; r++)
                for (size_t d = 0; d < n; d++)
                    mag[d] +=
                        fabsf(p[r] * mf_fp16_to_fp32(((const uint16_t *)(rows + r * STRIDE))[d]));
            for (size_t d = 0; d < n; d++)
                assert_true(fabsf(acc_v[d] - acc_s[d]) <= 1e-6f * mag[d]);
        }
    }
    free(rows);
}

static void test_matmul_rows(void **state)
{
    (void)state;
    if (!mf_tensor_simd_active())
        skip();
    /* memfit_matmul (SIMD kernels) over several rows against scalar row dots. */
    struct mf_rng rng = {17};
    const size_t n = 1024, rows = 9;
    float *wf = malloc(rows * n * sizeof(float)), *x = malloc(n * sizeof(float));
    uint8_t *w = malloc(rows * n * sizeof(float)), *act = malloc(n * sizeof(float));
    float y[9];
    mf_fill_gauss(&rng, wf, rows * n, 1.0f);
    mf_fill_gauss(&rng, x, n, 1.0f);
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q4_K,
                                             MEMFIT_TYPE_Q6_K, MEMFIT_TYPE_F16,  MEMFIT_TYPE_F32};
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *s = scalar(types[t]);
        size_t rb = mf_row_bytes(types[t], n);
        for (size_t r = 0; r < rows; r++)
            s->from_float(wf + r * n, w + r * rb, n);
        assert_int_equal(memfit_matmul(types[t], w, rows, n, x, 1, y, NULL, 0), MEMFIT_OK);
        scalar(s->vec_dot_type)->from_float(x, act, n);
        for (size_t r = 0; r < rows; r++) {
            float ref = s->vec_dot(n, w + r * rb, act);
            assert_true(fabsf(y[r] - ref) <= 1e-5f * (float)n);
        }
    }
    free(wf);
    free(x);
    free(w);
    free(act);
}

/* True when the AVX-VNNI tile can be compared; says so when it cannot. */
static bool vnni_to_check(const char *what)
{
    if (!mf_tensor_vnni_active())
        printf("gemm %s: AVX-VNNI tile not checked (no AVX-VNNI on this CPU, or "
               "MEMFIT_NO_VNNI=1)\n",
               what);
    return mf_tensor_vnni_active();
}

/* True when the AVX-512 VNNI tiles can be compared; says so when they cannot. */
static bool avx512vnni_to_check(const char *what)
{
    if (!mf_tensor_avx512vnni_active())
        printf("gemm %s: AVX-512 VNNI tile not checked (no AVX-512 VNNI on this CPU, or "
               "MEMFIT_NO_AVX512=1)\n",
               what);
    return mf_tensor_avx512vnni_active();
}

/* The integer Q8_0 path against its scalar reference: rows not a multiple of
 * the panel (8), activations not a multiple of the kernel (4) or the tile
 * (128), k not a multiple of MF_GEMM_KC, strided rows, and the extreme quant
 * -128 (|w| = 128 must not saturate). */
static void test_gemm_q8_0(void **state)
{
    (void)state;
#if !defined(__x86_64__)
    skip();
#else
    struct mf_rng rng = {23};
    const size_t n = 800, rows = 29, cols = 131, stride_pad = 34;
    size_t rb = mf_row_bytes(MEMFIT_TYPE_Q8_0, n), ws = rb + stride_pad;
    float *wf = malloc(rows * n * sizeof(float)), *x = malloc(cols * n * sizeof(float));
    float *wd = malloc(rows * n * sizeof(float)), *xd = malloc(cols * n * sizeof(float));
    float *y1 = malloc(rows * cols * sizeof(float)), *y2 = malloc(rows * cols * sizeof(float));
    uint8_t *w = calloc(rows, ws), *xq = malloc(rb);
    mf_fill_gauss(&rng, wf, rows * n, 1.0f);
    mf_fill_gauss(&rng, x, cols * n, 2.0f);
    for (size_t r = 0; r < rows; r++) {
        scalar(MEMFIT_TYPE_Q8_0)->from_float(wf + r * n, w + r * ws, n);
        scalar(MEMFIT_TYPE_Q8_0)->to_float(w + r * ws, wd + r * n, n);
    }
    w[3 * ws + 2] = 0x80; /* row 3, block 0, element 0: -128 */
    scalar(MEMFIT_TYPE_Q8_0)->to_float(w + 3 * ws, wd + 3 * n, n);
    for (size_t c = 0; c < cols; c++) {
        scalar(MEMFIT_TYPE_Q8_0)->from_float(x + c * n, xq, n);
        scalar(MEMFIT_TYPE_Q8_0)->to_float(xq, xd + c * n, n);
    }
    mf_gemm_q8_0_scalar(w, ws, n, 0, rows, x, n, cols, y1, rows);
    mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, cols, y2, rows);
    double worst = 0;
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < rows; r++) {
            double exact = mf_dot_double(wd + r * n, xd + c * n, n);
            double mag = mf_abs_dot(wd + r * n, xd + c * n, n);
            double d = fabs((double)y1[c * rows + r] - y2[c * rows + r]) / mag;
            if (d > worst)
                worst = d;
            assert_true(fabs((double)y1[c * rows + r] - exact) <= 1e-5 * mag);
        }
    printf("gemm q8_0: max |simd - scalar| / sum|w a| = %.2e\n", worst);
    assert_true(worst <= 1e-6);
    /* A row range in the middle (other panel groupings): the same floats, as
     * each row's arithmetic stays in its own lane. */
    memcpy(y1, y2, rows * cols * sizeof(float));
    mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 5, 21, x, n, cols, y2, rows);
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 5; r < 21; r++)
            assert_true(y1[c * rows + r] == y2[c * rows + r]);
    /* The AVX-VNNI tile: the same integer block sums and float steps, so the
     * same floats as the AVX2 tile, for a whole range and a middle one. */
    if (vnni_to_check("q8_0")) {
        mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, cols, y1, rows);
        memset(y2, 0, rows * cols * sizeof(float));
        mf_avxvnni_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, cols, y2, rows);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
        mf_avxvnni_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 5, 21, x, n, cols, y2, rows);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
        /* Fewer activations than one kernel call takes (1 and 9 = 8 + 1). */
        for (size_t nc = 1; nc <= 9; nc += 8) {
            mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, nc, y1, rows);
            mf_avxvnni_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, nc, y2, rows);
            assert_memory_equal(y1, y2, rows * nc * sizeof(float));
        }
    }
    /* The AVX-512 VNNI tile (16-row panels): the AVX2 tile's floats again. */
    if (avx512vnni_to_check("q8_0")) {
        mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, cols, y1, rows);
        memset(y2, 0, rows * cols * sizeof(float));
        mf_avx512vnni_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, cols, y2, rows);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
        mf_avx512vnni_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 5, 21, x, n, cols, y2, rows);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
        for (size_t nc = 1; nc <= 9; nc += 8) {
            mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, nc, y1, rows);
            mf_avx512vnni_gemm_int8(MEMFIT_TYPE_Q8_0, w, ws, n, 0, rows, x, n, nc, y2, rows);
            assert_memory_equal(y1, y2, rows * nc * sizeof(float));
        }
    }
    free(wf);
    free(x);
    free(wd);
    free(xd);
    free(y1);
    free(y2);
    free(w);
    free(xq);
#endif
}

/* Q4_0 weights through the integer tiles: each output is mf_dot_q4_0 (scalar)
 * of the row with the activation's Q8_0 bytes, to float rounding (the same
 * integer block sums); the AVX-VNNI tile gives the AVX2 tile's floats. */
static void test_gemm_q4_0(void **state)
{
    (void)state;
#if !defined(__x86_64__)
    skip();
#else
    struct mf_rng rng = {29};
    const size_t n = 800, rows = 21, cols = 45, ws = mf_row_bytes(MEMFIT_TYPE_Q4_0, n) + 6;
    size_t ab = mf_row_bytes(MEMFIT_TYPE_Q8_0, n);
    float *wf = malloc(n * sizeof(float)), *x = malloc(cols * n * sizeof(float));
    float *y1 = malloc(rows * cols * sizeof(float)), *y2 = malloc(rows * cols * sizeof(float));
    float *wd = malloc(n * sizeof(float)), *xd = malloc(n * sizeof(float));
    uint8_t *w = calloc(rows, ws), *xq = malloc(ab);
    for (size_t r = 0; r < rows; r++) {
        mf_fill_gauss(&rng, wf, n, 1.0f);
        scalar(MEMFIT_TYPE_Q4_0)->from_float(wf, w + r * ws, n);
    }
    mf_fill_gauss(&rng, x, cols * n, 2.0f);
    mf_avx2_gemm_int8(MEMFIT_TYPE_Q4_0, w, ws, n, 0, rows, x, n, cols, y1, rows);
    double worst = 0;
    for (size_t c = 0; c < cols; c++) {
        scalar(MEMFIT_TYPE_Q8_0)->from_float(x + c * n, xq, n);
        scalar(MEMFIT_TYPE_Q8_0)->to_float(xq, xd, n);
        for (size_t r = 0; r < rows; r++) {
            scalar(MEMFIT_TYPE_Q4_0)->to_float(w + r * ws, wd, n);
            double ref = scalar(MEMFIT_TYPE_Q4_0)->vec_dot(n, w + r * ws, xq);
            double d = fabs(ref - y1[c * rows + r]) / mf_abs_dot(wd, xd, n);
            worst = d > worst ? d : worst;
        }
    }
    printf("gemm q4_0: max |tile - scalar dot| / sum|w a| = %.2e\n", worst);
    assert_true(worst <= 1e-6);
    if (vnni_to_check("q4_0")) {
        mf_avxvnni_gemm_int8(MEMFIT_TYPE_Q4_0, w, ws, n, 0, rows, x, n, cols, y2, rows);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
    }
    if (avx512vnni_to_check("q4_0")) {
        memset(y2, 0, rows * cols * sizeof(float));
        mf_avx512vnni_gemm_int8(MEMFIT_TYPE_Q4_0, w, ws, n, 0, rows, x, n, cols, y2, rows);
        assert_memory_equal(y1, y2, rows * cols * sizeof(float));
    }
    free(wf);
    free(x);
    free(y1);
    free(y2);
    free(wd);
    free(xd);
    free(w);
    free(xq);
#endif
}

/* The float tile against the fmaf chains it computes: panels of 16 rows with
 * 1..16 rows used, 1..13 activations (micro-kernel tails of the 6- and
 * 12-activation kernels, and the lone one), k across two slices with a tail
 * that is not a multiple of 8 (the transposing pack's scalar end). */
static void test_gemm_f32_exact(void **state)
{
    (void)state;
#if !defined(__x86_64__)
    skip();
#else
    struct mf_rng rng = {31};
    const size_t rows = 37, n = 403, cols = 29;
    float *w = malloc(rows * n * sizeof(float)), *x = malloc(cols * n * sizeof(float));
    float *y = malloc(rows * cols * sizeof(float)), *ref = malloc(rows * cols * sizeof(float));
    mf_fill_gauss(&rng, w, rows * n, 1.0f);
    mf_fill_gauss(&rng, x, cols * n, 1.0f);
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < rows; r++) {
            float sum = 0;
            for (size_t k0 = 0; k0 < n; k0 += MF_GEMM_KC) {
                float s = 0;
                for (size_t k = k0; k < n && k < k0 + MF_GEMM_KC; k++)
                    s = fmaf(x[c * n + k], w[r * n + k], s);
                sum = k0 ? sum + s : s;
            }
            ref[c * rows + r] = sum;
        }
    const struct mf_type_traits *t = mf_type_traits(MEMFIT_TYPE_F32);
    static const size_t ncs[] = {1, 2, 5, 6, 7, 12, 13, 29};
    static const size_t ranges[][2] = {{0, 37}, {3, 4}, {5, 21}, {16, 37}};
    for (size_t i = 0; i < sizeof(ncs) / sizeof(ncs[0]); i++)
        for (size_t j = 0; j < sizeof(ranges) / sizeof(ranges[0]); j++) {
            size_t r0 = ranges[j][0], r1 = ranges[j][1];
            memset(y, 0, rows * cols * sizeof(float));
            mf_avx2_gemm(MEMFIT_TYPE_F32, t->to_float, 1, 4, w, n * sizeof(float), n, r0, r1, x, n,
                         ncs[i], y, rows);
            for (size_t c = 0; c < cols; c++)
                for (size_t r = 0; r < rows; r++) {
                    bool in = c < ncs[i] && r >= r0 && r < r1;
                    float want = in ? ref[c * rows + r] : 0.0f;
                    if (y[c * rows + r] != want) {
                        fprintf(stderr, "n_cols %zu rows %zu..%zu: y[%zu][%zu] %.9g want %.9g\n",
                                ncs[i], r0, r1, c, r, y[c * rows + r], want);
                        fail();
                    }
                }
        }
    printf("gemm f32: identical to the fmaf chains (%s)\n", memfit_tensor_isa());
    free(w);
    free(x);
    free(y);
    free(ref);
#endif
}

/* Whether the K-quant tile's kernel `isa` (0 AVX2, 1 AVX-VNNI, 2 AVX-512 VNNI) can run here. */
static bool k_isa_ok(int isa)
{
    if (isa == 2)
        return avx512vnni_to_check("K");
    if (isa == 1)
        return vnni_to_check("K");
    return true;
}

/* Q4_K or Q6_K weights through the K-quant integer tile (x86/gemm_k*.c):
 * - mf_gemm_k_scalar equals the scalar vec_dot of each row with the
 *   activation's Q8_K row (bit for bit) and the double dot of the
 *   dequantized rows within 1e-5 * sum|w a|; against the float activations
 *   (the dequantize-then-F32 reference) within the Q8_K rounding, sum_i
 *   |w_i| * |d_x| / 2, plus that;
 * - every kernel (AVX2, AVX-VNNI, AVX-512 VNNI where the CPU has them) gives
 *   mf_gemm_k_scalar's floats exactly, for rows not a multiple of the panel
 *   (16) or of a ymm half (8), activations not a multiple of the kernels'
 *   steps or of the tile (128), a middle row range and 1 or 9 activations,
 *   with the largest scales, mins and quants in some rows;
 * - memfit_matmul_rows takes the tile (the same floats). */
static void check_gemm_k(enum memfit_type type, uint32_t seed)
{
    struct mf_rng rng = {seed};
    const size_t n = 768, rows = 37, cols = 139;
    const size_t ws = mf_row_bytes(type, n) + 10, ab = mf_row_bytes(MEMFIT_TYPE_Q8_K, n);
    const struct mf_type_traits *t = scalar(type), *q8k = scalar(MEMFIT_TYPE_Q8_K);
    float *wf = malloc(n * sizeof(float)), *x = malloc(cols * n * sizeof(float));
    float *wd = malloc(rows * n * sizeof(float)), *xd = malloc(n * sizeof(float));
    float *y1 = malloc(rows * cols * sizeof(float)), *y2 = malloc(rows * cols * sizeof(float));
    uint8_t *w = calloc(rows, ws), *xq = malloc(ab);
    for (size_t r = 0; r < rows; r++) {
        mf_fill_gauss(&rng, wf, n, 1.0f);
        t->from_float(wf, w + r * ws, n);
    }
    /* Extremes: row 3's first super-block all largest quants and scales (Q4_K mins too),
     * row 20's (the second panel) Q6_K scales -128 and 127. */
    if (type == MEMFIT_TYPE_Q4_K) {
        struct mf_block_q4_k *b = (void *)(w + 3 * ws);
        memset(b->scales, 0xff, sizeof(b->scales));
        memset(b->qs, 0xff, sizeof(b->qs));
    } else {
        struct mf_block_q6_k *b = (void *)(w + 3 * ws);
        memset(b->ql, 0xff, sizeof(b->ql));
        memset(b->qh, 0xff, sizeof(b->qh));
        memset(b->scales, 0x7f, sizeof(b->scales));
        b = (void *)(w + 20 * ws);
        b->scales[0] = -128;
        b->scales[15] = 127;
    }
    for (size_t r = 0; r < rows; r++)
        t->to_float(w + r * ws, wd + r * n, n);
    mf_fill_gauss(&rng, x, cols * n, 2.0f);
    mf_gemm_k_scalar(type, w, ws, n, 0, rows, x, n, cols, y1, rows);
    double worst = 0, worst_f32 = 0;
    for (size_t c = 0; c < cols; c++) {
        q8k->from_float(x + c * n, xq, n);
        q8k->to_float(xq, xd, n);
        for (size_t r = 0; r < rows; r++) {
            const float *wr = wd + r * n;
            float ref = t->vec_dot(n, w + r * ws, xq);
            assert_true(ref == y1[c * rows + r]);
            double mag = mf_abs_dot(wr, xd, n);
            double d = fabs(mf_dot_double(wr, xd, n) - y1[c * rows + r]);
            assert_true(d <= 1e-5 * mag);
            worst = d / mag > worst ? d / mag : worst;
            /* Against the float activations: Q8_K rounds each to within |d_x| / 2. */
            double q_err = 0;
            for (size_t i = 0; i < n; i++) {
                const struct mf_block_q8_k *blk =
                    (const void *)(xq + i / MF_QK_K * sizeof(struct mf_block_q8_k));
                q_err += fabs((double)wr[i]) * fabs((double)blk->d) * 0.5;
            }
            double e = fabs(mf_dot_double(wr, x + c * n, n) - y1[c * rows + r]);
            assert_true(e <= q_err * (1 + 1e-4) + 1e-5 * mag);
            worst_f32 = e / q_err > worst_f32 ? e / q_err : worst_f32;
        }
    }
    const char *name = memfit_type_get_info(type)->name;
    printf("gemm %s: scalar tile = scalar dot; |tile - exact| / sum|w a| <= %.2e; "
           "|tile - f32 dot| / Q8_K bound <= %.2f\n",
           name, worst, worst_f32);
    for (int isa = 0; isa < 3; isa++) {
        if (!k_isa_ok(isa))
            continue;
        memset(y2, 0, rows * cols * sizeof(float));
        mf_avx2_gemm_k(type, isa, w, ws, n, 0, rows, x, n, cols, y2, rows);
        for (size_t i = 0; i < rows * cols; i++)
            assert_true(y1[i] == y2[i]);
        mf_avx2_gemm_k(type, isa, w, ws, n, 5, 29, x, n, cols, y2, rows);
        for (size_t i = 0; i < rows * cols; i++)
            assert_true(y1[i] == y2[i]);
        for (size_t nc = 1; nc <= 9; nc += 8) {
            mf_avx2_gemm_k(type, isa, w, ws, n, 0, rows, x, n, nc, y2, rows);
            for (size_t i = 0; i < rows * nc; i++)
                assert_true(y1[i] == y2[i]);
        }
        printf("gemm %s: kernel %d gives the scalar tile's floats\n", name, isa);
    }
    if (mf_tensor_simd_active()) { /* (without it memfit_matmul_rows takes the float panel) */
        memset(y2, 0, rows * cols * sizeof(float));
        assert_int_equal(
            memfit_matmul_rows(type, w, ws, n, 0, rows, x, n * sizeof(float), cols, y2, rows),
            MEMFIT_OK);
        for (size_t i = 0; i < rows * cols; i++)
            assert_true(y1[i] == y2[i]);
    }
    free(wf);
    free(x);
    free(wd);
    free(xd);
    free(y1);
    free(y2);
    free(w);
    free(xq);
}

static void test_gemm_k(void **state)
{
    (void)state;
#if !defined(__x86_64__)
    skip();
#else
    check_gemm_k(MEMFIT_TYPE_Q4_K, 31);
    check_gemm_k(MEMFIT_TYPE_Q6_K, 37);
#endif
}

int main(void)
{
    if (!mf_type_traits_simd(MEMFIT_TYPE_F32))
        MF_TEST_SKIP_ALL("this CPU lacks AVX2/FMA/F16C (or this is not an x86 build)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_dots),
        cmocka_unit_test(test_quant_dots),
        cmocka_unit_test(test_dot_rows),
        cmocka_unit_test(test_dot_rows_cols),
        cmocka_unit_test(test_dot_rows_cols_scales),
        cmocka_unit_test(test_dot_rows_cols_k),
        cmocka_unit_test(test_activation_quantizers),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_f16_rows),
        cmocka_unit_test(test_matmul_rows),
        cmocka_unit_test(test_gemm_q8_0),
        cmocka_unit_test(test_gemm_q4_0),
        cmocka_unit_test(test_gemm_f32_exact),
        cmocka_unit_test(test_gemm_k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
