/* NF4 matrices used in place (src/tensor/nf4.c, x86/nf4.c). Tolerances
 * (docs/quantization.md, "NF4 in place"):
 * - the int8 levels are round(127 * codebook);
 * - AVX2, AVX-512 and AVX-512 VNNI row kernels vs the scalar reference: |simd - scalar|
 *   <= 1e-5 * sum |w_i a_i| (exact integer sums per 32, float sums in another order);
 * - memfit_nf4_matvec_rows gives each row bit for bit what the row kernel in use gives
 *   (the VNNI kernel arranges the activation once per call, or step by step for long rows);
 * - memfit_nf4_matvec_rows vs the double dot of the exactly dequantized
 *   weights (double quantization included) with the dequantized Q8_0
 *   activations: |y - ref| <= sum_i |a_i| absmax_i 0.5/127 + 1e-5 sum |w_i a_i|
 *   (the level rounding, element by element, and float order);
 * - memfit_nf4_matmul_rows below 8 activation rows (or scalar) vs the double
 *   dot with F32 activations: 1e-5 * sum |w_i a_i|; from 8 rows with SIMD
 *   (the integer tiles, activations quantized to Q8_0) as the matvec bound
 *   against each row's Q8_0 activations, and within 1e-5 * (sum |w_i a_i| +
 *   the level bound) of the scalar row kernel on those activations.
 * CTest runs it as found and with MEMFIT_NO_SIMD=1 (unit/test_tensor_nf4_dot_scalar). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "tensor/kernels.h"
#include "test_util.h"
#include "unit/tensor_testing.h"

static void test_levels(void **state)
{
    (void)state;
    const float *cb = memfit_nf4_codebook();
    for (int i = 0; i < 16; i++)
        assert_int_equal(mf_nf4_q8[i], (int)lroundf(cb[i] * 127.0f));
}

/* A random NF4 matrix (rows x cols, blocksize bs), optionally double-quantized. */
struct nf4_fixture {
    struct memfit_nf4_matrix m;
    uint8_t *codes, *qabsmax;
    float *absmax, *nested, map[256];
};

static void make_matrix(struct nf4_fixture *f, struct mf_rng *rng, uint64_t rows, uint64_t cols,
                        uint32_t bs, bool dq)
{
    uint64_t n = rows * cols, nb = n / bs;
    float *w = memfit_malloc(n * sizeof(float));
    f->codes = memfit_malloc(n / 2);
    f->absmax = memfit_malloc(nb * sizeof(float));
    f->qabsmax = memfit_malloc(nb);
    f->nested = memfit_malloc((nb / 256 + 1) * sizeof(float));
    assert_true(w && f->codes && f->absmax && f->qabsmax && f->nested);
    mf_fill_gauss(rng, w, n, 0.02f);
    assert_int_equal(memfit_nf4_quantize(w, n, bs, f->codes, f->absmax), MEMFIT_OK);
    memset(&f->m, 0, sizeof(f->m));
    f->m.codes = f->codes;
    f->m.rows = rows;
    f->m.cols = cols;
    f->m.blocksize = bs;
    f->m.absmax = f->absmax;
    if (dq) {
        float offset;
        assert_int_equal(memfit_nf4_pack_absmax(f->absmax, nb, f->qabsmax, f->nested, &offset),
                         MEMFIT_OK);
        memfit_nf4_dynamic_map(f->map);
        /* absmax now holds what a reader reconstructs */
        memfit_nf4_unpack_absmax(f->qabsmax, f->nested, f->map, offset, nb, f->absmax);
        f->m.double_quant = true;
        f->m.absmax = f->qabsmax;
        f->m.nested_absmax = f->nested;
        f->m.nested_map = f->map;
        f->m.nested_blocksize = 256;
        f->m.offset = offset;
    }
    assert_int_equal(memfit_nf4_matrix_check(&f->m), MEMFIT_OK);
    memfit_free(w);
}

static void free_matrix(struct nf4_fixture *f)
{
    memfit_free(f->codes);
    memfit_free(f->absmax);
    memfit_free(f->qabsmax);
    memfit_free(f->nested);
}

/* One kernel against the scalar reference, blocks of 32 << shift for each shift that fits. */
static void compare_kernel(mf_nf4_dot_fn simd)
{
    struct mf_rng rng = {7};
    static const size_t lengths[] = {32, 64, 96, 160, 2048, 5504};
    for (size_t t = 0; t < sizeof(lengths) / sizeof(lengths[0]); t++)
        for (unsigned shift = 0; shift < 3; shift++) {
            size_t n = lengths[t];
            if ((n / 32) % (1u << shift) != 0)
                continue;
            uint8_t codes[5504 / 2];
            float absmax[5504 / 32], x[5504], wabs = 0;
            uint8_t act[5504 / 32 * 34];
            for (size_t i = 0; i < n / 2; i++)
                codes[i] = (uint8_t)mf_rng_u32(&rng);
            for (size_t j = 0; j < n / 32; j++)
                absmax[j] = (float)mf_rng_unit(&rng) * 0.1f;
            mf_fill_gauss(&rng, x, n, 1.0f);
            assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, x, act, n), MEMFIT_OK);
            for (size_t i = 0; i < n; i++) {
                int code = i % 2 ? codes[i / 2] & 15 : codes[i / 2] >> 4;
                wabs += fabsf(absmax[(i / 32) >> shift] / 127 * mf_nf4_q8[code] * x[i]);
            }
            float a = mf_nf4_dot_scalar(n, codes, absmax, shift, act);
            float b = simd(n, codes, absmax, shift, act);
            assert_true(wabs > 0);
            assert_true(fabsf(a - b) <= 1e-5f * wabs);
        }
}

static void test_simd_vs_scalar(void **state)
{
    (void)state;
    mf_nf4_dot_fn avx2 = mf_nf4_dot_kernel_simd(), avx512 = mf_nf4_dot_kernel_avx512();
    if (avx2)
        compare_kernel(avx2);
    else
        printf("no AVX2 on this CPU: the AVX2 kernel is not compared\n");
    if (avx512)
        compare_kernel(avx512);
    else
        printf("no AVX-512F/BW on this CPU: the AVX-512 kernel is not compared\n");
    mf_nf4_dot_fn vnni512 = mf_nf4_dot_kernel_vnni512();
    if (vnni512)
        compare_kernel(vnni512);
    else
        printf("no AVX-512 VNNI on this CPU: the AVX-512 VNNI kernel is not compared\n");
}

/* Row r of the dequantized weights w (cols wide) against the activation a: the double
 * dot, the sum of |products|, and the bound of the level rounding against a. */
static void row_ref(const struct nf4_fixture *f, const float *w, uint64_t r, const float *a,
                    double out[3])
{
    uint64_t cols = f->m.cols;
    out[0] = out[1] = out[2] = 0;
    for (uint64_t i = 0; i < cols; i++) {
        out[0] += (double)w[r * cols + i] * a[i];
        out[1] += fabs((double)w[r * cols + i] * a[i]);
        out[2] += fabs((double)a[i]) * f->absmax[(r * cols + i) / f->m.blocksize] * (0.5 / 127);
    }
}

/*
 * Several tokens, F32 activations, a row range: n_cols below MF_GEMM_Q8_MIN_COLS (or
 * the scalar path) dequantizes exactly and sums in float; from there with SIMD the
 * integer tiles give, per activation, what the scalar row kernel gives for its Q8_0 form.
 */
static void check_matmul(const struct nf4_fixture *f, const float *w, struct mf_rng *rng,
                         uint64_t n_cols)
{
    uint64_t rows = f->m.rows, cols = f->m.cols, r0 = rows / 3, r1 = rows;
    float *x = memfit_malloc(n_cols * cols * sizeof(float)), *xq = memfit_malloc(cols * 4);
    float *y = memfit_malloc(n_cols * rows * sizeof(float)), *scratch = memfit_malloc(cols * 4);
    float *yq = memfit_malloc(rows * sizeof(float));
    uint8_t *act = memfit_malloc(cols / 32 * 34);
    assert_true(x && xq && y && scratch && yq && act);
    mf_fill_gauss(rng, x, n_cols * cols, 1.0f);
    memfit_nf4_matmul_rows(&f->m, r0, r1, x, cols, n_cols, y, rows, scratch);
    bool int8 = mf_tensor_simd_active() && n_cols >= MF_GEMM_Q8_MIN_COLS;
    for (uint64_t c = 0; c < n_cols; c++) {
        const float *xc = x + c * cols;
        assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, xc, act, cols), MEMFIT_OK);
        assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q8_0, act, xq, cols), MEMFIT_OK);
        mf_nf4_matvec_rows_with(mf_nf4_dot_scalar, &f->m, r0, r1, act, yq);
        for (uint64_t r = r0; r < r1; r++) {
            double v = y[c * rows + r], ref[3];
            if (int8) {
                row_ref(f, w, r, xq, ref);
                assert_true(fabs(v - yq[r - r0]) <= 1e-5 * (ref[1] + ref[2]) + 1e-30);
                assert_true(fabs(v - ref[0]) <= ref[2] + 1e-5 * ref[1] + 1e-30);
            } else {
                row_ref(f, w, r, xc, ref);
                assert_true(fabs(v - ref[0]) <= 1e-5 * ref[1] + 1e-30);
            }
        }
    }
    memfit_free(x);
    memfit_free(xq);
    memfit_free(y);
    memfit_free(scratch);
    memfit_free(yq);
    memfit_free(act);
}

static void check_matrix(uint64_t rows, uint64_t cols, uint32_t bs, bool dq)
{
    struct mf_rng rng = {rows * 31 + cols + bs + dq};
    struct nf4_fixture f;
    make_matrix(&f, &rng, rows, cols, bs, dq);
    float *x = memfit_malloc(cols * sizeof(float)), *xq = memfit_malloc(cols * sizeof(float));
    float *w = memfit_malloc(rows * cols * sizeof(float)), *y = memfit_malloc(rows * 4);
    uint8_t *act = memfit_malloc(cols / 32 * 34);
    assert_true(x && xq && w && y && act);
    mf_fill_gauss(&rng, x, cols, 1.0f);
    assert_int_equal(memfit_nf4_dequantize(f.codes, f.absmax, rows * cols, bs, w), MEMFIT_OK);
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, x, act, cols), MEMFIT_OK);
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q8_0, act, xq, cols), MEMFIT_OK);
    /* one token: against the dequantized activations */
    memfit_nf4_matvec_rows(&f.m, 0, rows, act, y);
    mf_nf4_dot_fn dot = mf_nf4_dot_kernel();
    float absmax[MEMFIT_NF4_MAX_COLS / 32];
    unsigned shift = (unsigned)__builtin_ctz(bs / 32);
    for (uint64_t r = 0; r < rows; r++) {
        double ref[3];
        row_ref(&f, w, r, xq, ref);
        assert_true(fabs(y[r] - ref[0]) <= ref[2] + 1e-5 * ref[1] + 1e-30);
        /* the row kernel alone, and a one-row call, give the same float */
        memfit_nf4_row_absmax(&f.m, r, absmax);
        float one = dot(cols, f.codes + r * (cols / 2), absmax, shift, act), solo;
        memfit_nf4_matvec_rows(&f.m, r, r + 1, act, &solo);
        assert_memory_equal(&one, &y[r], sizeof(float));
        assert_memory_equal(&solo, &y[r], sizeof(float));
    }
    check_matmul(&f, w, &rng, 3);
    check_matmul(&f, w, &rng, 13);
    memfit_free(x);
    memfit_free(xq);
    memfit_free(w);
    memfit_free(y);
    memfit_free(act);
    free_matrix(&f);
}

static void test_matrices(void **state)
{
    (void)state;
    check_matrix(7, 64, 64, false);
    check_matrix(13, 256, 64, true);
    check_matrix(40, 2048, 64, true); /* more than 256 blocks: several nested blocks */
    check_matrix(9, 128, 32, true);
    check_matrix(5, 512, 256, false);
    check_matrix(17, 4096, 4096, true);      /* a block longer than the tile's 256 of k */
    check_matrix(11, 352, 32, false);        /* k not a multiple of the tile's 256 */
    check_matrix(3, 16384 + 1024, 64, true); /* too long to arrange on the VNNI kernel's stack */
    check_matrix(5, 2048 + 96, 32, false);   /* a partial last step of 3 blocks */
    check_matrix(20, 8192, 32, true);        /* more rows than the VNNI kernel decodes at once */
}

/* memfit_nf4_row_absmax (AVX-512's gather decoder where active) gives the floats of the
 * one-block decoder, bit for bit, also where 16 blocks straddle nested blocks. */
static void check_row_absmax(const struct memfit_nf4_matrix *m)
{
    uint64_t per_row = m->cols / m->blocksize;
    float out[MEMFIT_NF4_MAX_COLS / 32];
    for (uint64_t r = 0; r < m->rows; r++) {
        memfit_nf4_row_absmax(m, r, out);
        for (uint64_t i = 0; i < per_row; i++) {
            float want = mf_nf4_block_absmax(m, r * per_row + i);
            assert_memory_equal(&out[i], &want, sizeof(float));
        }
    }
}

/* mf_nf4_absmax_range from any block, any count: the one-block decoder's floats; so do both
 * AVX-512 decoders called directly where the CPU runs them (the range picks only one). */
static void check_absmax_range(const struct memfit_nf4_matrix *m)
{
    typedef void (*decoder)(const struct memfit_nf4_matrix *, uint64_t, size_t, float *);
    decoder decoders[3] = {mf_nf4_absmax_range, NULL, NULL};
#if defined(__x86_64__)
    if (mf_nf4_dot_kernel_avx512())
        decoders[1] = mf_avx512_nf4_absmax;
    if (mf_nf4_dot_kernel_vnni512())
        decoders[2] = mf_avx512vnni_nf4_absmax;
#endif
    uint64_t nb = m->rows * m->cols / m->blocksize;
    float out[600];
    static const size_t starts[] = {0, 1, 5, 240, 250, 255, 256, 300};
    static const size_t counts[] = {1, 7, 15, 16, 17, 33, 64, 65, 262};
    for (int d = 0; d < 3; d++)
        for (size_t s = 0; decoders[d] && s < sizeof(starts) / sizeof(starts[0]); s++)
            for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                if (starts[s] + counts[c] > nb)
                    continue;
                decoders[d](m, starts[s], counts[c], out);
                for (size_t i = 0; i < counts[c]; i++) {
                    float want = mf_nf4_block_absmax(m, starts[s] + i);
                    assert_memory_equal(&out[i], &want, sizeof(float));
                }
            }
}

static void test_row_absmax(void **state)
{
    (void)state;
    struct mf_rng rng = {11};
    struct nf4_fixture f;
    make_matrix(&f, &rng, 40, 2048, 64, true); /* 32 blocks a row, nested blocks of 256 */
    check_row_absmax(&f.m);
    f.m.nested_blocksize = 8;     /* every 16 straddle (the nested array has nb / 256 + 1 */
    f.m.nested_absmax = f.absmax; /* entries; the absmax array is long enough) */
    check_row_absmax(&f.m);
    free_matrix(&f);
    make_matrix(&f, &rng, 9, 352, 32, true); /* 11 blocks a row: a tail */
    check_row_absmax(&f.m);
    free_matrix(&f);
    make_matrix(&f, &rng, 50, 352, 32, true); /* 550 blocks: rows straddle nested blocks */
    check_row_absmax(&f.m);
    check_absmax_range(&f.m);
    f.m.nested_blocksize = 16; /* 16 unaligned blocks straddle two nested ones */
    f.m.nested_absmax = f.absmax;
    check_row_absmax(&f.m);
    check_absmax_range(&f.m);
    f.m.nested_blocksize = 4; /* or more */
    check_absmax_range(&f.m);
    f.m.nested_blocksize = 64; /* 64 unaligned blocks straddle two, or three of 32 */
    check_absmax_range(&f.m);
    f.m.nested_blocksize = 32;
    check_absmax_range(&f.m);
    free_matrix(&f);
}

static void test_check(void **state)
{
    (void)state;
    uint8_t codes[64];
    float absmax[4] = {1, 1, 1, 1};
    struct memfit_nf4_matrix m = {
        .codes = codes, .rows = 2, .cols = 64, .blocksize = 64, .absmax = absmax};
    assert_int_equal(memfit_nf4_matrix_check(&m), MEMFIT_OK);
    m.cols = 96; /* blocks of 64 straddle rows */
    assert_int_equal(memfit_nf4_matrix_check(&m), MEMFIT_E_FORMAT);
    m.cols = 64;
    m.blocksize = 48;
    assert_int_equal(memfit_nf4_matrix_check(&m), MEMFIT_E_RANGE);
    m.blocksize = 64;
    m.double_quant = true; /* without its nested arrays */
    assert_int_equal(memfit_nf4_matrix_check(&m), MEMFIT_E_MISUSE);
    m.double_quant = false;
    m.cols = MEMFIT_NF4_MAX_COLS + 64;
    assert_int_equal(memfit_nf4_matrix_check(&m), MEMFIT_E_RANGE);
    memfit_clear_error();
}

int main(void)
{
    printf("isa: %s\n", memfit_tensor_isa());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),   cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_matrices), cmocka_unit_test(test_row_absmax),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
