/* Unit tests of the dot products and matmul through the public API (the
 * kernels in use, SIMD or not): every weight type's dot must equal the dot
 * of its dequantized rows (in double) within 1e-5 of sum |w_i a_i|, on
 * random blocks (random bytes with sane fp16 scales) and on quantized
 * Gaussian rows; matmul must equal row-by-row vec_dot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tensor/blocks.h"
#include "test_util.h"
#include "unit/tensor_testing.h"

/* Where a block keeps its fp16 scales (byte offsets), to tame random blocks. */
struct scale_fields {
    enum memfit_type type;
    int off[2];
};

static const struct scale_fields fields[] = {
    {MEMFIT_TYPE_Q4_0, {0, -1}},   {MEMFIT_TYPE_Q4_1, {0, 2}},  {MEMFIT_TYPE_Q5_0, {0, -1}},
    {MEMFIT_TYPE_Q5_1, {0, 2}},    {MEMFIT_TYPE_Q8_0, {0, -1}}, {MEMFIT_TYPE_Q2_K, {80, 82}},
    {MEMFIT_TYPE_Q3_K, {108, -1}}, {MEMFIT_TYPE_Q4_K, {0, 2}},  {MEMFIT_TYPE_Q5_K, {0, 2}},
    {MEMFIT_TYPE_Q6_K, {208, -1}},
};

/* Random bytes, then every fp16 scale set to a random value in (0.001, 0.02). */
static void random_blocks(struct mf_rng *rng, const struct scale_fields *f, uint8_t *dst, size_t n)
{
    const struct memfit_type_info *info = memfit_type_get_info(f->type);
    size_t bytes = mf_row_bytes(f->type, n);
    for (size_t i = 0; i < bytes; i++)
        dst[i] = (uint8_t)mf_rng_u32(rng);
    for (size_t b = 0; b < bytes / info->type_size; b++) {
        for (int k = 0; k < 2; k++) {
            if (f->off[k] < 0)
                continue;
            uint16_t h = mf_fp32_to_fp16((float)(0.001 + 0.019 * mf_rng_unit(rng)));
            memcpy(dst + b * info->type_size + (size_t)f->off[k], &h, 2);
        }
    }
}

/* Checks memfit_vec_dot(w, act(x)) against the double dot of the dequantized rows. */
static void check_dot_vs_dequant(enum memfit_type type, const uint8_t *w, const float *x, size_t n)
{
    enum memfit_type at;
    assert_int_equal(memfit_type_dot_type(type, &at), MEMFIT_OK);
    uint8_t *act = malloc(mf_row_bytes(at, n));
    float *wf = malloc(n * sizeof(float)), *af = malloc(n * sizeof(float));
    assert_int_equal(memfit_type_quantize_row(at, x, act, n), MEMFIT_OK);
    assert_int_equal(memfit_type_dequantize_row(type, w, wf, n), MEMFIT_OK);
    assert_int_equal(memfit_type_dequantize_row(at, act, af, n), MEMFIT_OK);
    float got;
    assert_int_equal(memfit_vec_dot(type, n, w, act, &got), MEMFIT_OK);
    double want = mf_dot_double(wf, af, n), scale = mf_abs_dot(wf, af, n);
    if (fabs(got - want) > 1e-5 * scale + 1e-30) {
        fprintf(stderr, "%s n=%zu: dot %.9g, dequantized %.9g (scale %.3g)\n",
                memfit_type_get_info(type)->name, n, got, want, scale);
        fail();
    }
    free(act);
    free(wf);
    free(af);
}

static void test_dot_random_blocks(void **state)
{
    (void)state;
    struct mf_rng rng = {7};
    const size_t n = 1024;
    uint8_t *w = malloc(mf_row_bytes(MEMFIT_TYPE_F32, n));
    float *x = malloc(n * sizeof(float));
    for (size_t t = 0; t < sizeof(fields) / sizeof(fields[0]); t++) {
        for (int rep = 0; rep < 4; rep++) {
            random_blocks(&rng, &fields[t], w, n);
            mf_fill_gauss(&rng, x, n, 1.0f);
            check_dot_vs_dequant(fields[t].type, w, x, n);
        }
    }
    free(w);
    free(x);
}

static void test_dot_quantized_rows(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_F32,  MEMFIT_TYPE_F16,  MEMFIT_TYPE_BF16,
                                             MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q4_K,
                                             MEMFIT_TYPE_Q6_K};
    struct mf_rng rng = {11};
    const size_t n = 2048;
    uint8_t *w = malloc(mf_row_bytes(MEMFIT_TYPE_F32, n));
    float *src = malloc(n * sizeof(float)), *x = malloc(n * sizeof(float));
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        mf_fill_gauss(&rng, src, n, 0.02f);
        mf_fill_gauss(&rng, x, n, 3.0f);
        assert_int_equal(memfit_type_quantize_row(types[t], src, w, n), MEMFIT_OK);
        check_dot_vs_dequant(types[t], w, x, n);
        /* And the dot of the quantized rows is close to the float dot. */
        float got;
        enum memfit_type at;
        assert_int_equal(memfit_type_dot_type(types[t], &at), MEMFIT_OK);
        uint8_t *act = malloc(mf_row_bytes(at, n));
        assert_int_equal(memfit_type_quantize_row(at, x, act, n), MEMFIT_OK);
        assert_int_equal(memfit_vec_dot(types[t], n, w, act, &got), MEMFIT_OK);
        double exact = mf_dot_double(src, x, n), scale = mf_abs_dot(src, x, n);
        assert_true(fabs(got - exact) < 0.1 * scale);
        free(act);
    }
    free(w);
    free(src);
    free(x);
}

static void test_matmul(void **state)
{
    (void)state;
    static const enum memfit_type types[] = {MEMFIT_TYPE_F32,  MEMFIT_TYPE_F16,  MEMFIT_TYPE_Q8_0,
                                             MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q4_K, MEMFIT_TYPE_Q6_K};
    struct mf_rng rng = {5};
    const size_t n = 512, rows = 7, cols = 3;
    float *wf = malloc(rows * n * sizeof(float)), *x = malloc(cols * n * sizeof(float));
    uint8_t *w = malloc(rows * n * sizeof(float)), *act = malloc(n * sizeof(float));
    float y[21];
    mf_fill_gauss(&rng, wf, rows * n, 1.0f);
    mf_fill_gauss(&rng, x, cols * n, 1.0f);
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        size_t rb = mf_row_bytes(types[t], n);
        for (size_t r = 0; r < rows; r++)
            assert_int_equal(memfit_type_quantize_row(types[t], wf + r * n, w + r * rb, n),
                             MEMFIT_OK);
        size_t work_bytes;
        assert_int_equal(memfit_matmul_work_bytes(types[t], n, cols, &work_bytes), MEMFIT_OK);
        void *work = work_bytes ? malloc(work_bytes) : NULL;
        assert_int_equal(memfit_matmul(types[t], w, rows, n, x, cols, y, work, work_bytes),
                         MEMFIT_OK);
        enum memfit_type at;
        assert_int_equal(memfit_type_dot_type(types[t], &at), MEMFIT_OK);
        for (size_t c = 0; c < cols; c++) {
            const void *a = x + c * n;
            if (at != MEMFIT_TYPE_F32) {
                assert_int_equal(memfit_type_quantize_row(at, x + c * n, act, n), MEMFIT_OK);
                a = act;
            }
            for (size_t r = 0; r < rows; r++) {
                float want;
                assert_int_equal(memfit_vec_dot(types[t], n, w + r * rb, a, &want), MEMFIT_OK);
                assert_true(y[c * rows + r] == want);
            }
        }
        /* Without a workspace matmul allocates its own; a short one is misuse. */
        float y2[21];
        assert_int_equal(memfit_matmul(types[t], w, rows, n, x, cols, y2, NULL, 0), MEMFIT_OK);
        assert_memory_equal(y, y2, sizeof(y));
        if (work_bytes) {
            assert_int_equal(memfit_matmul(types[t], w, rows, n, x, cols, y2, work, 1),
                             MEMFIT_E_MISUSE);
        }
        free(work);
    }
    assert_int_equal(memfit_matmul(MEMFIT_TYPE_Q4_K, w, rows, 100, x, 1, y, NULL, 0),
                     MEMFIT_E_FORMAT);
    free(wf);
    free(x);
    free(w);
    free(act);
}

struct matmul_ctx {
    const uint8_t *w;
    const float *x;
    float y[4];
};

static enum memfit_status matmul_op(void *p)
{
    struct matmul_ctx *c = p;
    return memfit_matmul(MEMFIT_TYPE_Q8_0, c->w, 2, 64, c->x, 2, c->y, NULL, 0);
}

static void test_matmul_alloc_failure(void **state)
{
    (void)state;
    float x[128] = {1, 2, 3};
    uint8_t w[2 * 68] = {0};
    struct matmul_ctx c = {w, x, {0}};
    assert_true(mf_test_alloc_failures(matmul_op, NULL, &c) >= 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_random_blocks),
        cmocka_unit_test(test_dot_quantized_rows),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
