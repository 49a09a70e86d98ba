/* Quantize -> dequantize round trips on Gaussian data, per type, against
 * the relative RMSE bounds documented in docs/quantization.md (measured,
 * then given a margin), and NF4 with and without double quantization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "unit/tensor_testing.h"

#define N_VALUES (64 * 1024)

static double round_trip(enum memfit_type type, const float *x, size_t n)
{
    uint8_t *q = malloc(mf_row_bytes(type, n));
    float *y = malloc(n * sizeof(float));
    assert_int_equal(memfit_type_quantize_row(type, x, q, n), MEMFIT_OK);
    assert_int_equal(memfit_type_dequantize_row(type, q, y, n), MEMFIT_OK);
    double e = mf_rel_rmse(x, y, n);
    free(q);
    free(y);
    return e;
}

static void test_round_trip_bounds(void **state)
{
    (void)state;
    /* bound = measured relative RMSE (docs/quantization.md) plus about 10%. */
    static const struct {
        enum memfit_type type;
        double bound;
    } cases[] = {
        {MEMFIT_TYPE_F16, 2.4e-4},  {MEMFIT_TYPE_BF16, 1.9e-3}, {MEMFIT_TYPE_Q8_0, 6.0e-3},
        {MEMFIT_TYPE_Q8_K, 7.7e-3}, {MEMFIT_TYPE_Q6_K, 0.0195}, {MEMFIT_TYPE_Q4_K, 0.079},
        {MEMFIT_TYPE_Q4_0, 0.095},
    };
    struct mf_rng rng = {1};
    float *x = malloc(N_VALUES * sizeof(float));
    mf_fill_gauss(&rng, x, N_VALUES, 0.02f);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double e = round_trip(cases[i].type, x, N_VALUES);
        print_message("%-5s relative RMSE %.4g (bound %.3g)\n",
                      memfit_type_get_info(cases[i].type)->name, e, cases[i].bound);
        assert_true(e < cases[i].bound);
    }
    assert_true(round_trip(MEMFIT_TYPE_F32, x, N_VALUES) == 0.0);
    free(x);
}

static double nf4_round_trip(const float *x, size_t n, uint32_t blocksize, bool nested)
{
    size_t n_blocks = (n + blocksize - 1) / blocksize;
    uint8_t *codes = malloc((n + 1) / 2), *qabs = malloc(n_blocks);
    float *absmax = malloc(n_blocks * sizeof(float)), *y = malloc(n * sizeof(float));
    float *nested_absmax = malloc(((n_blocks + 255) / 256) * sizeof(float)), map[256], offset;
    assert_int_equal(memfit_nf4_quantize(x, n, blocksize, codes, absmax), MEMFIT_OK);
    if (nested) {
        assert_int_equal(memfit_nf4_pack_absmax(absmax, n_blocks, qabs, nested_absmax, &offset),
                         MEMFIT_OK);
        memfit_nf4_dynamic_map(map);
        float *back = malloc(n_blocks * sizeof(float));
        assert_int_equal(memfit_nf4_unpack_absmax(qabs, nested_absmax, map, offset, n_blocks, back),
                         MEMFIT_OK);
        /* 8-bit absmax codes: each within ~1% of its block's scale. */
        for (size_t b = 0; b < n_blocks; b++)
            assert_true(fabsf(back[b] - absmax[b]) <= 0.02f * absmax[b] + 1e-6f);
        memcpy(absmax, back, n_blocks * sizeof(float));
        free(back);
    }
    assert_int_equal(memfit_nf4_dequantize(codes, absmax, n, blocksize, y), MEMFIT_OK);
    double e = mf_rel_rmse(x, y, n);
    free(codes);
    free(qabs);
    free(absmax);
    free(y);
    free(nested_absmax);
    return e;
}

static void test_nf4_round_trip(void **state)
{
    (void)state;
    struct mf_rng rng = {2};
    float *x = malloc(N_VALUES * sizeof(float));
    mf_fill_gauss(&rng, x, N_VALUES, 0.02f);
    double plain = nf4_round_trip(x, N_VALUES, 64, false);
    double nested = nf4_round_trip(x, N_VALUES, 64, true);
    double odd = nf4_round_trip(x, 1001, 64, true); /* short last blocks, odd count */
    print_message("nf4 relative RMSE %.4g, double-quantized %.4g, odd length %.4g\n", plain, nested,
                  odd);
    assert_true(plain < 0.101);
    assert_true(nested < 0.101);
    assert_true(odd < 0.105);
    free(x);
}

static void test_dynamic_map(void **state)
{
    (void)state;
    float map[256];
    memfit_nf4_dynamic_map(map);
    for (int i = 1; i < 256; i++)
        assert_true(map[i] > map[i - 1]);
    /* 127 negative values, 0, 127 positive values, 1. */
    assert_true(map[127] == 0.0f);
    assert_true(map[255] == 1.0f);
    assert_true(map[128] > 5.4e-7f && map[128] < 5.6e-7f); /* 1e-6 * (0.1 + 1) / 2 */
    assert_true(map[0] == -map[254]);
    assert_true(fabsf(map[254] - 0.99296875f) < 1e-6f); /* 1 - 0.9/128 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_bounds),
        cmocka_unit_test(test_nf4_round_trip),
        cmocka_unit_test(test_dynamic_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
