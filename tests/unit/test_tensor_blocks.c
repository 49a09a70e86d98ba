/* Unit tests of the block layouts: hand-computed bytes from the format
 * definitions (ggml-common.h / ggml-quants.c, bitsandbytes NF4) for the
 * quantizers, hand-built blocks for the readers, and the row API's checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tensor/blocks.h"
#include "tensor/kernels.h"
#include "test_util.h"
#include "unit/tensor_testing.h"

static void test_q8_0_bytes(void **state)
{
    (void)state;
    /* amax 127 -> d = 1.0 (fp16 0x3c00), so q = roundf(x): halves go away from zero. */
    float x[32] = {127, -2.5f, 2.5f, 0.49f, -0.5f, 1, -127, 0.51f};
    for (int j = 8; j < 32; j++)
        x[j] = (float)(j - 20);
    uint8_t out[34];
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, x, out, 32), MEMFIT_OK);
    const uint8_t head[10] = {0x00, 0x3c, 127, (uint8_t)-3, 3, 0, (uint8_t)-1, 1, (uint8_t)-127, 1};
    assert_memory_equal(out, head, sizeof(head));
    for (int j = 8; j < 32; j++)
        assert_int_equal((int8_t)out[2 + j], j - 20);
    float back[32];
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q8_0, out, back, 32), MEMFIT_OK);
    assert_true(back[1] == -3.0f && back[0] == 127.0f);
}

static void test_q4_0_bytes(void **state)
{
    (void)state;
    /* The value of largest magnitude is -8 -> d = -8/-8 = 1; q = trunc(x + 8.5). */
    float x[32];
    for (int k = 0; k < 16; k++) {
        x[k] = (float)(k - 8);
        x[16 + k] = (float)(7 - k);
    }
    uint8_t out[18];
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q4_0, x, out, 32), MEMFIT_OK);
    assert_int_equal(out[0], 0x00);
    assert_int_equal(out[1], 0x3c);
    for (int k = 0; k < 16; k++) /* element k low nibble, element k+16 high nibble */
        assert_int_equal(out[2 + k], k | ((15 - k) << 4));
    float back[32];
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q4_0, out, back, 32), MEMFIT_OK);
    for (int j = 0; j < 32; j++)
        assert_true(back[j] == x[j]);
}

static void test_q4_1_q5_read(void **state)
{
    (void)state;
    struct mf_block_q4_1 b41 = {.d = 0x3c00, .m = 0xbc00}; /* d 1, m -1 */
    b41.qs[3] = 0x52;
    float y[32];
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q4_1, &b41, y, 32), MEMFIT_OK);
    assert_true(y[3] == 1.0f && y[19] == 4.0f && y[0] == -1.0f);

    struct mf_block_q5_0 b50 = {.d = 0x4000}; /* d 2 */
    b50.qs[0] = 0x21;
    uint32_t qh = 1u | (1u << 16) | (1u << 31);
    memcpy(b50.qh, &qh, 4);
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q5_0, &b50, y, 32), MEMFIT_OK);
    assert_true(y[0] == 2.0f);   /* (1|16) - 16 = 1, times 2 */
    assert_true(y[16] == 4.0f);  /* (2|16) - 16 = 2 */
    assert_true(y[31] == 0.0f);  /* (0|16) - 16 */
    assert_true(y[5] == -32.0f); /* 0 - 16 */

    struct mf_block_q5_1 b51 = {.d = 0x3c00, .m = 0x3800}; /* d 1, m 0.5 */
    b51.qs[15] = 0xf0;
    memcpy(b51.qh, &qh, 4);
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q5_1, &b51, y, 32), MEMFIT_OK);
    assert_true(y[31] == 31.5f && y[15] == 0.5f && y[0] == 16.5f);
}

static void test_q2_k_q3_k_read(void **state)
{
    (void)state;
    struct mf_block_q2_k b2;
    memset(&b2, 0, sizeof(b2));
    b2.d = 0x3c00;       /* 1 */
    b2.dmin = 0x3800;    /* 0.5 */
    b2.scales[2] = 0x35; /* sub-block 2 (elements 32..47): scale 5, min 3 */
    b2.qs[0] = 0x0c;     /* element 32: bits 2..3 of qs[0] = 3 */
    float y[256];
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q2_K, &b2, y, 256), MEMFIT_OK);
    assert_true(y[32] == 5.0f * 3 - 1.5f);
    assert_true(y[33] == -1.5f);
    assert_true(y[0] == 0.0f);

    struct mf_block_q3_k b3;
    memset(&b3, 0, sizeof(b3));
    b3.d = 0x3c00;
    /* Scale 9 (0..15): low 4 bits in the high nibble of byte 1, high 2 bits at
     * bits 4..5 of byte 9 (scales 8..11). Value 0b10_0101 = 37 -> 37 - 32 = 5. */
    b3.scales[1] = 0x50;
    b3.scales[9] = 0x20;
    /* Element 150 = 128 + 22: group 4 (bit 4 of hmask[22]), low bits at shift 0 of qs[54]. */
    b3.qs[54] = 0x02;
    b3.hmask[22] = 0x10;
    assert_int_equal(mf_q3k_scale(9, b3.scales), 5);
    assert_int_equal(mf_q3k_scale(0, b3.scales), -32);
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q3_K, &b3, y, 256), MEMFIT_OK);
    assert_true(y[150] == 5.0f * 2);
    assert_true(y[151] == 5.0f * -4); /* high bit clear: 0 - 4 */
    assert_true(y[0] == -32.0f * -4);
}

/* The 12 scale bytes of q4_K for scales {10,20,30,40,50,60,63,33} and mins {1..8}. */
static const uint8_t k4_scales[12] = {0xca, 0xd4, 0xde, 0xa8, 1, 2, 3, 4, 0x52, 0x6c, 0x7f, 0x81};

static void test_q4_k_scale_packing(void **state)
{
    (void)state;
    const uint8_t sc[8] = {10, 20, 30, 40, 50, 60, 63, 33}, mn[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        mf_k4_scale_min(j, k4_scales, &s, &m);
        assert_int_equal(s, sc[j]);
        assert_int_equal(m, mn[j]);
    }
    struct mf_block_q4_k b;
    memset(&b, 0, sizeof(b));
    b.d = 0x3c00;    /* 1 */
    b.dmin = 0x3800; /* 0.5 */
    memcpy(b.scales, k4_scales, 12);
    b.qs[32 * 2 + 7] =
        0x9e; /* group 2: element 128+7 = 14 (sub-block 4), 160+7 = 9 (sub-block 5) */
    float y[256];
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q4_K, &b, y, 256), MEMFIT_OK);
    assert_true(y[135] == 50.0f * 14 - 0.5f * 5);
    assert_true(y[167] == 60.0f * 9 - 0.5f * 6);
    assert_true(y[0] == -0.5f * 1);
    assert_true(y[255] == -0.5f * 8);

    /* Q5_K: the same plus bit j of qh[l] for sub-block j. */
    struct mf_block_q5_k b5;
    memset(&b5, 0, sizeof(b5));
    b5.d = 0x3c00;
    b5.dmin = 0x3800;
    memcpy(b5.scales, k4_scales, 12);
    b5.qs[32 * 2 + 7] = 0x9e;
    b5.qh[7] = 0x20; /* sub-block 5 */
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q5_K, &b5, y, 256), MEMFIT_OK);
    assert_true(y[135] == 50.0f * 14 - 0.5f * 5);
    assert_true(y[167] == 60.0f * (9 + 16) - 0.5f * 6);
}

static void test_q4_k_quantizer_packs(void **state)
{
    (void)state;
    /* A quantized block must decode to scales no larger than 63 and values
     * close to the input; a block of one repeated value keeps it. */
    struct mf_rng rng = {42};
    float x[256], y[256];
    mf_fill_gauss(&rng, x, 256, 1.0f);
    struct mf_block_q4_k b;
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q4_K, x, &b, 256), MEMFIT_OK);
    uint8_t max_sc = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        mf_k4_scale_min(j, b.scales, &s, &m);
        max_sc = s > max_sc ? s : max_sc;
    }
    assert_int_equal(max_sc, 63); /* the largest sub-block scale maps to 63 */
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q4_K, &b, y, 256), MEMFIT_OK);
    assert_true(mf_rel_rmse(x, y, 256) < 0.15);
    float z[256] = {0};
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q4_K, z, &b, 256), MEMFIT_OK);
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q4_K, &b, y, 256), MEMFIT_OK);
    for (int i = 0; i < 256; i++)
        assert_true(y[i] == 0.0f);
}

static void test_q6_k_layout(void **state)
{
    (void)state;
    struct mf_block_q6_k b;
    memset(&b, 0, sizeof(b));
    b.d = 0x3c00;
    for (int j = 0; j < 16; j++)
        b.scales[j] = (int8_t)(j + 1);
    b.ql[5] = 0x3a; /* element 5: low 0xa; element 69: low 3 */
    b.qh[5] = 0x9c; /* bits 0-1: 0 (el. 5), 2-3: 3 (el. 37), 4-5: 1 (el. 69), 6-7: 2 (el. 101) */
    float y[256];
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q6_K, &b, y, 256), MEMFIT_OK);
    assert_true(y[5] == 1.0f * (10 - 32));
    assert_true(y[37] == 3.0f * (48 - 32));
    assert_true(y[69] == 5.0f * (19 - 32));
    assert_true(y[101] == 7.0f * (32 - 32));
    assert_true(y[200] == 13.0f * -32);
}

static void test_nf4_codes(void **state)
{
    (void)state;
    const float *cb = memfit_nf4_codebook();
    assert_true(cb[0] == -1.0f && cb[7] == 0.0f && cb[15] == 1.0f);
    /* absmax 2: x/2 -> 1 (15), -1 (0), 0 (7), 0.25 -> 0.2461 (10), 0.5 is below
     * the 0.4407/0.5626 midpoint (12); the midpoint itself goes to the lower code. */
    float x[64] = {2.0f, -2.0f, 0.0f, 0.5f, 1.0f, 0};
    x[5] = 2.0f * ((cb[12] + cb[13]) / 2.0f);
    uint8_t codes[32];
    float absmax[1];
    assert_int_equal(memfit_nf4_quantize(x, 64, 64, codes, absmax), MEMFIT_OK);
    assert_true(absmax[0] == 2.0f);
    assert_int_equal(codes[0], 0xf0); /* first element in the high nibble */
    assert_int_equal(codes[1], 0x7a);
    assert_int_equal(codes[2], 0xcc); /* 1.0/2 -> 12, then the tie -> 12 */
    assert_int_equal(codes[3], 0x77); /* zeros -> 7 */
    float y[64];
    assert_int_equal(memfit_nf4_dequantize(codes, absmax, 64, 64, y), MEMFIT_OK);
    assert_true(y[0] == 2.0f && y[1] == -2.0f && y[2] == 0.0f);
    /* An odd count packs the missing element as the code of 0.0. */
    float odd[3] = {1.0f, -1.0f, 1.0f};
    uint8_t oc[2];
    assert_int_equal(memfit_nf4_quantize(odd, 3, 64, oc, absmax), MEMFIT_OK);
    assert_int_equal(oc[0], 0xf0);
    assert_int_equal(oc[1], 0xf7);
    assert_int_equal(memfit_nf4_quantize(odd, 3, 48, oc, absmax), MEMFIT_E_RANGE);
}

static void test_row_checks(void **state)
{
    (void)state;
    float x[512] = {0};
    uint8_t buf[1024];
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, x, buf, 33), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "33"));
    assert_int_equal(memfit_type_dequantize_row(MEMFIT_TYPE_Q4_K, buf, x, 128), MEMFIT_E_FORMAT);
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_Q4_1, x, buf, 32), MEMFIT_E_UNSUPPORTED);
    assert_int_equal(memfit_type_quantize_row(MEMFIT_TYPE_I32, x, buf, 32), MEMFIT_E_UNSUPPORTED);
    assert_int_equal(memfit_type_quantize_row((enum memfit_type)77, x, buf, 32),
                     MEMFIT_E_UNSUPPORTED);
    float out = 1;
    assert_int_equal(memfit_vec_dot(MEMFIT_TYPE_Q4_0, 48, buf, buf, &out), MEMFIT_E_FORMAT);
    assert_true(out == 1);
    assert_int_equal(memfit_vec_dot(MEMFIT_TYPE_NF4, 64, buf, buf, &out), MEMFIT_E_UNSUPPORTED);
    enum memfit_type t;
    assert_int_equal(memfit_type_dot_type(MEMFIT_TYPE_Q6_K, &t), MEMFIT_OK);
    assert_int_equal(t, MEMFIT_TYPE_Q8_K);
    assert_int_equal(memfit_type_dot_type(MEMFIT_TYPE_Q5_1, &t), MEMFIT_OK);
    assert_int_equal(t, MEMFIT_TYPE_Q8_0);
    assert_int_equal(memfit_type_dot_type(MEMFIT_TYPE_F16, &t), MEMFIT_OK);
    assert_int_equal(t, MEMFIT_TYPE_F32);
    /* F32 rows have a block of 1: any length. */
    assert_int_equal(memfit_vec_dot(MEMFIT_TYPE_F32, 3, x, x, &out), MEMFIT_OK);
    assert_true(out == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_bytes),         cmocka_unit_test(test_q4_0_bytes),
        cmocka_unit_test(test_q4_1_q5_read),       cmocka_unit_test(test_q2_k_q3_k_read),
        cmocka_unit_test(test_q4_k_scale_packing), cmocka_unit_test(test_q4_k_quantizer_packs),
        cmocka_unit_test(test_q6_k_layout),        cmocka_unit_test(test_nf4_codes),
        cmocka_unit_test(test_row_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
