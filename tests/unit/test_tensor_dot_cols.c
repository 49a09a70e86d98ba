/* The multi-column dots (kernels.h, mf_vec_dot_cols_fn) for Q4_0 and Q8_0
 * weights against Q8_0 activations:
 * - the scalar kernels: bit-identical to the scalar vec_dot, column by column;
 * - the AVX2 kernel (and the AVX-VNNI one where active): within the SIMD
 *   vec_dot's bound, |cols - scalar| <= 1e-5 * sum |w_i a_i|, and the two
 *   identical to each other;
 * - every kernel: a column's value is bit for bit the same whatever n_cols
 *   (1..9), its place in the call and the other columns (the property that
 *   keeps a batched sequence's logits equal to its logits alone);
 * - n_cols 0 writes nothing, n 0 gives zeros, Q8_0 weights of -128 do not
 *   saturate.
 * CTest runs it again with MEMFIT_NO_VNNI=1 (unit/test_tensor_dot_cols_avx2)
 * so a VNNI CPU checks the active AVX2 path too. The SIMD parts say they are
 * skipped on a CPU without AVX2/FMA/F16C; the scalar ones always run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "tensor/kernels.h"
#include "unit/tensor_testing.h"

#define MAX_COLS   9
#define MAX_BLOCKS 64

static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q8_0};
static const size_t blocks[] = {1, 2, 3, 17, 64};

struct fixture {
    uint8_t w[MAX_BLOCKS * 34];
    uint8_t act[MAX_COLS][MAX_BLOCKS * 34];
    const void *a[MAX_COLS];
    float wf[MAX_BLOCKS * 32], af[MAX_COLS][MAX_BLOCKS * 32];
};

/* Weights of `type` (Gaussian, or random bytes with finite scales when `raw`) and
 * MAX_COLS activation rows, n elements each. */
static void make(struct fixture *f, struct mf_rng *rng, enum memfit_type type, size_t n, bool raw)
{
    float x[MAX_BLOCKS * 32];
    const struct mf_type_traits *s = mf_type_traits_scalar(type);
    const struct mf_type_traits *q8 = mf_type_traits_scalar(MEMFIT_TYPE_Q8_0);
    mf_fill_gauss(rng, x, n, 0.05f);
    s->from_float(x, f->w, n);
    if (raw) {
        uint32_t ts = memfit_type_get_info(type)->type_size;
        for (size_t i = 0; i < n / 32 * ts; i++)
            f->w[i] = (uint8_t)mf_rng_u32(rng);
        for (size_t b = 0; b < n / 32; b++)
            f->w[b * ts + 1] &= 0x3b; /* a finite fp16 scale */
    }
    s->to_float(f->w, f->wf, n);
    for (size_t c = 0; c < MAX_COLS; c++) {
        mf_fill_gauss(rng, x, n, c == 0 ? 0.0f : 2.0f); /* column 0 all zero */
        q8->from_float(x, f->act[c], n);
        q8->to_float(f->act[c], f->af[c], n);
        f->a[c] = f->act[c];
    }
}

/* Column independence of `k`: every n_cols, every first column, and the columns reversed. */
static void check_independent(mf_vec_dot_cols_fn k, const struct fixture *f, size_t n,
                              const char *what)
{
    float alone[MAX_COLS], got[MAX_COLS];
    for (size_t c = 0; c < MAX_COLS; c++)
        k(n, f->w, &f->a[c], 1, &alone[c]);
    for (size_t c0 = 0; c0 < MAX_COLS; c0++)
        for (size_t nc = 1; c0 + nc <= MAX_COLS; nc++) {
            k(n, f->w, &f->a[c0], nc, got);
            for (size_t c = 0; c < nc; c++)
                if (memcmp(&got[c], &alone[c0 + c], sizeof(float)) != 0) {
                    fprintf(stderr, "%s n=%zu: column %zu of %zu from %zu: %.9g, alone %.9g\n",
                            what, n, c, nc, c0, got[c], alone[c0 + c]);
                    fail();
                }
        }
    const void *rev[MAX_COLS];
    for (size_t c = 0; c < MAX_COLS; c++)
        rev[c] = f->a[MAX_COLS - 1 - c];
    k(n, f->w, rev, MAX_COLS, got);
    for (size_t c = 0; c < MAX_COLS; c++)
        assert_memory_equal(&got[c], &alone[MAX_COLS - 1 - c], sizeof(float));
}

static void test_scalar_equals_vec_dot(void **state)
{
    (void)state;
    static struct fixture f;
    struct mf_rng rng = {21};
    for (size_t t = 0; t < 2; t++) {
        mf_vec_dot_cols_fn k = mf_type_dot_cols_scalar(types[t]);
        mf_vec_dot_fn dot = mf_type_traits_scalar(types[t])->vec_dot;
        assert_non_null(k);
        for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++)
            for (int raw = 0; raw < 2; raw++) {
                size_t n = blocks[b] * 32;
                make(&f, &rng, types[t], n, raw);
                float got[MAX_COLS];
                k(n, f.w, f.a, MAX_COLS, got);
                for (size_t c = 0; c < MAX_COLS; c++) {
                    float ref = dot(n, f.w, f.a[c]);
                    assert_memory_equal(&got[c], &ref, sizeof(float));
                }
                check_independent(k, &f, n, "scalar");
            }
    }
    /* Types without a multi-column kernel say so. */
    assert_null(mf_type_dot_cols_scalar(MEMFIT_TYPE_F32));
    assert_null(mf_type_dot_cols(MEMFIT_TYPE_Q5_0));
}

/* `k` against the scalar vec_dot within the SIMD bound, and independent. */
static void check_simd(mf_vec_dot_cols_fn (*get)(enum memfit_type), const char *what)
{
    static struct fixture f;
    struct mf_rng rng = {33};
    for (size_t t = 0; t < 2; t++) {
        mf_vec_dot_fn dot = mf_type_traits_scalar(types[t])->vec_dot;
        mf_vec_dot_cols_fn kt = get(types[t]);
        assert_non_null(kt);
        for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++)
            for (int raw = 0; raw < 2; raw++) {
                size_t n = blocks[b] * 32;
                make(&f, &rng, types[t], n, raw);
                float got[MAX_COLS];
                kt(n, f.w, f.a, MAX_COLS, got);
                for (size_t c = 0; c < MAX_COLS; c++) {
                    float ref = dot(n, f.w, f.a[c]);
                    double bound = 1e-5 * mf_abs_dot(f.wf, f.af[c], n);
                    if (fabs((double)got[c] - (double)ref) > bound) {
                        fprintf(stderr, "%s %s n=%zu col %zu: %.9g scalar %.9g bound %.3g\n", what,
                                memfit_type_get_info(types[t])->name, n, c, got[c], ref, bound);
                        fail();
                    }
                }
                check_independent(kt, &f, n, what);
            }
    }
}

static void test_simd(void **state)
{
    (void)state;
    if (!mf_type_dot_cols_simd(MEMFIT_TYPE_Q4_0)) {
        printf("dot cols: SIMD kernels not checked (no AVX2/FMA/F16C or not x86)\n");
        return;
    }
    check_simd(mf_type_dot_cols_simd, "avx2");
    check_simd(mf_type_dot_cols, "active");
    printf("dot cols: AVX2 and active kernels (%s) within the bound\n", memfit_tensor_isa());
}

/* Each AVX2 kernel explicitly, and the active one identical to it (AVX-VNNI: same ints). */
static void test_avx2_and_active_identical(void **state)
{
    (void)state;
    static struct fixture f;
    struct mf_rng rng = {45};
    for (size_t t = 0; t < 2; t++) {
        mf_vec_dot_cols_fn avx2 = mf_type_dot_cols_simd(types[t]);
        mf_vec_dot_cols_fn active = mf_type_dot_cols(types[t]);
        if (!avx2) {
            printf("dot cols: SIMD kernels not checked (no AVX2/FMA/F16C or not x86)\n");
            return;
        }
        assert_non_null(active);
        for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++) {
            size_t n = blocks[b] * 32;
            make(&f, &rng, types[t], n, true);
            if (types[t] == MEMFIT_TYPE_Q8_0) /* the extreme quant -128 in every block */
                for (size_t i = 0; i < n / 32; i++)
                    f.w[i * 34 + 2 + i % 32] = 0x80;
            float x[MAX_COLS], y[MAX_COLS];
            avx2(n, f.w, f.a, MAX_COLS, x);
            active(n, f.w, f.a, MAX_COLS, y);
            if (mf_tensor_simd_active()) /* else the active kernel is the scalar one */
                assert_memory_equal(x, y, sizeof(x));
            check_independent(avx2, &f, n, "avx2");
            /* -128 does not saturate: still within the bound of the scalar reference. */
            mf_vec_dot_fn dot = mf_type_traits_scalar(types[t])->vec_dot;
            float wf[MAX_BLOCKS * 32];
            mf_type_traits_scalar(types[t])->to_float(f.w, wf, n);
            for (size_t c = 0; c < MAX_COLS; c++) {
                float ref = dot(n, f.w, f.a[c]);
                assert_true(fabs((double)x[c] - ref) <= 1e-5 * mf_abs_dot(wf, f.af[c], n));
            }
        }
    }
    printf("dot cols: AVX2 kernels and the active ones (%s) identical\n", memfit_tensor_isa());
}

static void test_edges(void **state)
{
    (void)state;
    static struct fixture f;
    struct mf_rng rng = {57};
    make(&f, &rng, MEMFIT_TYPE_Q4_0, 64, false);
    mf_vec_dot_cols_fn ks[3] = {mf_type_dot_cols_scalar(MEMFIT_TYPE_Q4_0),
                                mf_type_dot_cols_simd(MEMFIT_TYPE_Q4_0),
                                mf_type_dot_cols(MEMFIT_TYPE_Q4_0)};
    for (int i = 0; i < 3; i++) {
        if (!ks[i])
            continue;
        float out[MAX_COLS] = {7, 7, 7};
        ks[i](64, f.w, f.a, 0, out); /* no columns: nothing written */
        assert_true(out[0] == 7);
        ks[i](0, f.w, f.a, 3, out); /* no elements: zeros */
        for (int c = 0; c < 3; c++)
            assert_true(out[c] == 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalar_equals_vec_dot),
        cmocka_unit_test(test_simd),
        cmocka_unit_test(test_avx2_and_active_identical),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
