/* NF4 matrices used in place (src/tensor/nf4.c, x86/nf4.c). Tolerances
 * (docs/quantization.md, "NF4 in place"):
 * - the int8 levels are round(127 * codebook);
 * - AVX2 row kernel vs the scalar reference: |simd - scalar| <= 1e-5 *
 *   sum |w_i a_i| (exact integer sums per 32, float sums in another order);
 * - memfit_nf4_matvec_rows vs the double dot of the exactly dequantized
 *   weights (double quantization included) with the dequantized Q8_0
 *   activations: |y - ref| <= sum_i |a_i| absmax_i 0.5/127 + 1e-5 sum |w_i a_i|
 *   (the level rounding, element by element, and float order);
 * - memfit_nf4_matmul_rows vs the double dot with F32 activations:
 *   1e-5 * sum |w_i a_i|.
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

static void test_simd_vs_scalar(void **state)
{
    (void)state;
    mf_nf4_dot_fn simd = mf_nf4_dot_kernel_simd();
    if (!simd) {
        printf("no AVX2 on this CPU: the AVX2 kernel is not compared\n");
        return;
    }
    struct mf_rng rng = {7};
    static const size_t lengths[] = {32, 64, 96, 2048, 5504};
    for (size_t t = 0; t < sizeof(lengths) / sizeof(lengths[0]); t++) {
        size_t n = lengths[t];
        uint8_t codes[5504 / 2];
        float scales[5504 / 32], x[5504], wabs = 0;
        uint8_t act[5504 / 32 * 34];
        for (size_t i = 0; i < n / 2; i++)
            codes[i] = (uint8_t)mf_rng_u32(&rng);
        for (size_t j = 0; j < n / 32; j++)
            scales[j] = (float)mf_rng_unit(&rng) * 0.001f;
        mf_fill_gauss(&rng, x, n, 1.0f);
        assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, x, act, n), MEMFIT_OK);
        for (size_t i = 0; i < n; i++) {
            int code = i % 2 ? codes[i / 2] & 15 : codes[i / 2] >> 4;
            wabs += fabsf(scales[i / 32] * mf_nf4_q8[code] * x[i]);
        }
        float a = mf_nf4_dot_scalar(n, codes, scales, act), b = simd(n, codes, scales, act);
        assert_true(fabsf(a - b) <= 1e-5f * wabs);
    }
}

static void check_matrix(uint64_t rows, uint64_t cols, uint32_t bs, bool dq)
{
    struct mf_rng rng = {rows * 31 + cols + bs + dq};
    struct nf4_fixture f;
    make_matrix(&f, &rng, rows, cols, bs, dq);
    float *x = memfit_malloc(3 * cols * sizeof(float)), *xq = memfit_malloc(cols * sizeof(float));
    float *w = memfit_malloc(rows * cols * sizeof(float)), *y = memfit_malloc(3 * rows * 4);
    float *scratch = memfit_malloc(cols * sizeof(float));
    uint8_t *act = memfit_malloc(cols / 32 * 34);
    assert_true(x && xq && w && y && scratch && act);
    mf_fill_gauss(&rng, x, 3 * cols, 1.0f);
    assert_int_equal(memfit_nf4_dequantize(f.codes, f.absmax, rows * cols, bs, w), MEMFIT_OK);
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, x, act, cols), MEMFIT_OK);
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q8_0, act, xq, cols), MEMFIT_OK);
    /* one token: against the dequantized activations */
    memfit_nf4_matvec_rows(&f.m, 0, rows, act, y);
    for (uint64_t r = 0; r < rows; r++) {
        double ref = 0, mag = 0, lev = 0;
        for (uint64_t i = 0; i < cols; i++) {
            ref += (double)w[r * cols + i] * xq[i];
            mag += fabs((double)w[r * cols + i] * xq[i]);
            lev += fabs((double)xq[i]) * f.absmax[(r * cols + i) / bs] * (0.5 / 127);
        }
        assert_true(fabs(y[r] - ref) <= lev + 1e-5 * mag + 1e-30);
    }
    /* several tokens, F32 activations, a row range */
    uint64_t r0 = rows / 3, r1 = rows;
    memfit_nf4_matmul_rows(&f.m, r0, r1, x, cols, 3, y, rows, scratch);
    for (uint64_t c = 0; c < 3; c++)
        for (uint64_t r = r0; r < r1; r++) {
            double ref = 0, mag = 0;
            for (uint64_t i = 0; i < cols; i++) {
                ref += (double)w[r * cols + i] * x[c * cols + i];
                mag += fabs((double)w[r * cols + i] * x[c * cols + i]);
            }
            assert_true(fabs(y[c * rows + r] - ref) <= 1e-5 * mag + 1e-30);
        }
    memfit_free(x);
    memfit_free(xq);
    memfit_free(w);
    memfit_free(y);
    memfit_free(scratch);
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
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_matrices),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
