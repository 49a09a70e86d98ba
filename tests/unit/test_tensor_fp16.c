/* fp16 and bf16 conversions, exhaustively: all 65536 binary16 values
 * against an independent reference (ldexp arithmetic in double), the
 * scalar fp32 -> fp16 rounding against a reference at every rounding
 * boundary, and the F16C row kernels against the scalar ones bit for bit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "test_util.h"
#include "unit/tensor_testing.h"

/* The value of a finite binary16 by its definition. */
static double ref_fp16_value(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = exp ? ldexp(1024 + mant, exp - 25) : ldexp(mant, -24);
    return sign ? -v : v;
}

/* Reference fp32 -> fp16 (finite inputs): nearest binary16 by search, ties to even mantissa. */
static uint16_t ref_fp32_to_fp16(float f)
{
    double v = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (v >= 65520.0)
        return sign | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff; /* largest h with value <= v */
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (ref_fp16_value(mid) <= v)
            lo = mid;
        else
            hi = (uint16_t)(mid - 1);
    }
    uint16_t h = lo;
    if (h < 0x7bff || v > 65504.0) {
        double below = ref_fp16_value(h), above = h == 0x7bff ? 65536.0 : ref_fp16_value(h + 1);
        if (v - below > above - v || (v - below == above - v && (h & 1)))
            h++;
    }
    return sign | h;
}

static void test_fp16_to_fp32_all(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = memfit_fp16_to_fp32(h);
        if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) {
            /* NaN: payload kept in the top mantissa bits, quiet bit set. */
            uint32_t bits = mf_f32_bits(f);
            assert_true(isnan(f));
            assert_int_equal(bits, ((uint32_t)(h & 0x8000) << 16) | 0x7fc00000u |
                                       ((uint32_t)(h & 0x3ff) << 13));
        } else if (((h >> 10) & 0x1f) == 0x1f) {
            assert_true(isinf(f) && (signbit(f) != 0) == (h >> 15));
        } else {
            assert_true((double)f == ref_fp16_value(h));
            assert_true((signbit(f) != 0) == (h >> 15));
            /* Every finite binary16 survives the round trip. */
            assert_int_equal(memfit_fp32_to_fp16(f), h);
        }
    }
}

static void test_fp32_to_fp16_rounding(void **state)
{
    (void)state;
    /* Around every positive finite binary16: the value, the halfway points to
     * its neighbours, and one float ulp either side of them. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double v = ref_fp16_value((uint16_t)h);
        double next = h == 0x7bff ? 65536.0 : ref_fp16_value((uint16_t)(h + 1));
        float mid = (float)((v + next) / 2); /* exact in binary32 */
        const float probes[] = {(float)v, mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 4; k++) {
            for (int s = 0; s < 2; s++) {
                float f = s ? -probes[k] : probes[k];
                uint16_t want = ref_fp32_to_fp16(f), got = memfit_fp32_to_fp16(f);
                if (want != got) {
                    fprintf(stderr, "%a: got %04x want %04x\n", (double)f, got, want);
                    fail();
                }
            }
        }
    }
    assert_int_equal(memfit_fp32_to_fp16(1e10f), 0x7c00);
    assert_int_equal(memfit_fp32_to_fp16(-INFINITY), 0xfc00);
    assert_int_equal(memfit_fp32_to_fp16(1e-10f), 0x0000);
    assert_int_equal(memfit_fp32_to_fp16(mf_bits_f32(0xff812345u)), 0xfe09);
}

static void test_bf16(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = memfit_bf16_to_fp32(h);
        assert_int_equal(mf_f32_bits(f), (uint32_t)h << 16);
        uint16_t back = memfit_fp32_to_bf16(f);
        if (isnan(f))
            assert_int_equal(back, h | 0x40);
        else
            assert_int_equal(back, h);
    }
    /* Ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7. */
    assert_int_equal(memfit_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(memfit_fp32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82);
    assert_int_equal(memfit_fp32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
}

static void test_f16c_rows(void **state)
{
    (void)state;
    const struct mf_type_traits *v = mf_type_traits_simd(MEMFIT_TYPE_F16);
    if (!v)
        skip();
    const struct mf_type_traits *s = mf_type_traits_scalar(MEMFIT_TYPE_F16);
    uint16_t *h = malloc(65536 * 2), *h2 = malloc(65536 * 2), *h3 = malloc(65536 * 2);
    float *a = malloc(65536 * 4), *b = malloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    s->to_float(h, a, 65536);
    v->to_float(h, b, 65536);
    assert_memory_equal(a, b, 65536 * 4);
    s->from_float(a, h2, 65536);
    v->from_float(a, h3, 65536);
    assert_memory_equal(h2, h3, 65536 * 2);
    /* fp32 inputs across the whole range, every 2^-k step of the exponent. */
    struct mf_rng rng = {21};
    for (uint32_t i = 0; i < 65536; i++)
        a[i] = mf_bits_f32(mf_rng_u32(&rng));
    s->from_float(a, h2, 65536);
    v->from_float(a, h3, 65536);
    assert_memory_equal(h2, h3, 65536 * 2);
    free(h);
    free(h2);
    free(h3);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_to_fp32_all),
        cmocka_unit_test(test_fp32_to_fp16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_f16c_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
