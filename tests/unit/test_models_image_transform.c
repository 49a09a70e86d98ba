/* Unit tests of the image transform: parity with the reference pipeline
 * (PIL bicubic resize, torchvision centre crop, ToTensor and Normalize in
 * torch) on the fixtures of tests/fixtures/images, the output sizes of both
 * modes, the scratch contract, argument errors and fault walks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "image_test.h"
#include "models/image.h"

static struct memfit_image_transform transform_of(json_t *c)
{
    struct memfit_image_transform t = memfit_image_transform_default();
    const char *mode = json_string_value(json_object_get(c, "mode"));
    t.mode = mode && strcmp(mode, "multiple") == 0 ? MEMFIT_IMAGE_RESIZE_MULTIPLE
                                                   : MEMFIT_IMAGE_RESIZE_CROP;
    t.resize = (uint32_t)json_integer_value(json_object_get(c, "resize"));
    t.crop = (uint32_t)json_integer_value(json_object_get(c, "crop"));
    if (json_object_get(c, "multiple"))
        t.multiple = (uint32_t)json_integer_value(json_object_get(c, "multiple"));
    return t;
}

/* Runs the transform with a planned scratch, checking that it allocates
 * nothing then (every allocation is made to fail). Returns the output. */
static float *run_planned(const struct memfit_image_transform *t, const struct memfit_image *img,
                          uint32_t *ow, uint32_t *oh)
{
    assert_int_equal(memfit_image_transform_size(t, img->width, img->height, ow, oh), MEMFIT_OK);
    size_t n = (size_t)3 * *ow * *oh;
    size_t scratch_bytes = memfit_image_transform_scratch_bytes(t, img->width, img->height);
    assert_true(scratch_bytes > 0);
    float *out = memfit_malloc(n * sizeof(float));
    uint8_t *scratch = memfit_malloc(scratch_bytes + 1);
    assert_non_null(out);
    assert_non_null(scratch);
    mf_alloc_fail_after(1, true);
    /* an odd address: the scratch needs no alignment */
    enum memfit_status st =
        memfit_image_transform_apply(t, img, out, n, scratch + 1, scratch_bytes);
    mf_alloc_fail_after(0, false);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    memfit_free(scratch);
    return out;
}

/*
 * Resize (+ crop) against PIL. Asserted: after undoing the normalisation
 * (x * std + mean, back on the [0,1] pixel scale), every value is within
 * 1/255 of the reference, the requirement; and, stronger, rounding
 * it to 8 bits gives exactly PIL's value (the resampler reproduces PIL's
 * fixed-point arithmetic, so no pixel differs).
 */
static void check_transform(struct image_case *c)
{
    struct memfit_image_transform t = transform_of(c->entry);
    uint32_t ow, oh;
    float *out = run_planned(&t, &c->img, &ow, &oh);
    assert_int_equal(ow, c->width);
    assert_int_equal(oh, c->height);
    double worst = 0;
    size_t n_pixels = (size_t)ow * oh, off_by_levels = 0;
    for (int ch = 0; ch < 3; ch++)
        for (size_t p = 0; p < n_pixels; p++) {
            double v = (double)out[ch * n_pixels + p] * t.std[ch] + t.mean[ch];
            uint8_t want = c->want.rgb[3 * p + (size_t)ch];
            worst = fmax(worst, fabs(v - want / 255.0));
            off_by_levels += lround(v * 255.0) != want;
        }
    if (off_by_levels || worst > 1.0 / 255)
        fprintf(stderr, "%s -> %s: %zu values differ, max %.6f\n", c->file, c->ref, off_by_levels,
                worst);
    assert_true(worst <= 1.0 / 255);
    assert_int_equal(off_by_levels, 0);
    memfit_free(out);
}

static void test_transform_parity(void **state)
{
    (void)state;
    for_each_image_case("transform", 20, true, check_transform);
}

/* The normalised floats against torch's ToTensor + Normalize: bit-exact
 * ((v / 255 - mean) / std, each step in float32 as torch does it). */
static void check_normalised(struct image_case *c)
{
    struct memfit_image_transform t = transform_of(c->entry);
    uint32_t ow, oh;
    float *out = run_planned(&t, &c->img, &ow, &oh);
    assert_floats_fixture(out, c->ref, (size_t)3 * ow * oh);
    memfit_free(out);
}

static void test_normalised_parity(void **state)
{
    (void)state;
    for_each_image_case("normalised", 2, false, check_normalised);
}

static void test_sizes(void **state)
{
    (void)state;
    struct memfit_image_transform t = memfit_image_transform_default();
    uint32_t w, h;
    assert_int_equal(memfit_image_transform_size(&t, 1920, 1080, &w, &h), MEMFIT_OK);
    assert_int_equal(w, 224);
    assert_int_equal(h, 224);
    assert_int_equal(memfit_image_transform_size(&t, 1, 1, &w, &h), MEMFIT_OK);
    assert_int_equal(w, 224);
    t.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
    static const uint32_t cases[][2] = {{14, 14}, {20, 14}, {21, 28},   {1, 14},
                                        {7, 14},  {6, 14},  {518, 518}, {1000, 994}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(memfit_image_transform_size(&t, cases[i][0], 30, &w, &h), MEMFIT_OK);
        assert_int_equal(w, cases[i][1]);
        assert_int_equal(h, 28);
    }
    t = memfit_image_transform_default();
    t.crop = 256;
    assert_int_equal(memfit_image_transform_size(&t, 3, 1000, &w, &h), MEMFIT_OK);
    assert_int_equal(w, 256);
}

static void test_errors(void **state)
{
    (void)state;
    struct memfit_image_transform t = memfit_image_transform_default();
    uint8_t px[3 * 4] = {0};
    struct memfit_image img = {.width = 2, .height = 2, .rgb = px};
    float out[3 * 224 * 224];
    uint32_t w = 7, h = 7;
    t.crop = 300;
    assert_int_equal(memfit_image_transform_size(&t, 10, 10, &w, &h), MEMFIT_E_RANGE);
    assert_int_equal(w, 7); /* untouched on failure */
    assert_int_equal(memfit_image_transform_scratch_bytes(&t, 10, 10), 0);
    t = memfit_image_transform_default();
    t.resize = 0;
    assert_int_equal(memfit_image_transform_size(&t, 10, 10, &w, &h), MEMFIT_E_RANGE);
    t = memfit_image_transform_default();
    t.std[1] = 0;
    assert_int_equal(memfit_image_transform_apply(&t, &img, out, 3 * 224 * 224, NULL, 0),
                     MEMFIT_E_RANGE);
    t = memfit_image_transform_default();
    t.mean[2] = NAN;
    assert_int_equal(memfit_image_transform_size(&t, 10, 10, &w, &h), MEMFIT_E_RANGE);
    t = memfit_image_transform_default();
    t.mode = (enum memfit_image_resize)7;
    assert_int_equal(memfit_image_transform_size(&t, 10, 10, &w, &h), MEMFIT_E_MISUSE);
    t = memfit_image_transform_default();
    t.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE;
    t.multiple = 0;
    assert_int_equal(memfit_image_transform_size(&t, 10, 10, &w, &h), MEMFIT_E_RANGE);
    t = memfit_image_transform_default();
    assert_int_equal(memfit_image_transform_size(&t, 0, 10, &w, &h), MEMFIT_E_RANGE);
    assert_int_equal(memfit_image_transform_size(NULL, 10, 10, &w, &h), MEMFIT_E_MISUSE);
    /* a 1 x 20000 strip resizes to 256 x 5,120,000 (only the crop is
     * computed); sides beyond 2^24, given or resized, are refused */
    assert_int_equal(memfit_image_transform_size(&t, 1, 20000, &w, &h), MEMFIT_OK);
    assert_int_equal(memfit_image_transform_size(&t, 1, (1u << 24) + 1, &w, &h), MEMFIT_E_RANGE);
    t.resize = 65536;
    t.crop = 1;
    assert_int_equal(memfit_image_transform_size(&t, 1, 300, &w, &h), MEMFIT_E_RANGE);

    t = memfit_image_transform_default();
    assert_int_equal(memfit_image_transform_apply(&t, &img, out, 3 * 224 * 224 - 1, NULL, 0),
                     MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "150528 needed"));
    size_t need = memfit_image_transform_scratch_bytes(&t, 2, 2);
    uint8_t *scratch = memfit_malloc(need);
    assert_non_null(scratch);
    assert_int_equal(memfit_image_transform_apply(&t, &img, out, 3 * 224 * 224, scratch, need - 1),
                     MEMFIT_E_RANGE);
    assert_int_equal(memfit_image_transform_apply(&t, &img, out, 3 * 224 * 224, scratch, need),
                     MEMFIT_OK);
    memfit_free(scratch);
    struct memfit_image none = {0};
    assert_int_equal(memfit_image_transform_apply(&t, &none, out, 3 * 224 * 224, NULL, 0),
                     MEMFIT_E_MISUSE);
    assert_int_equal(memfit_image_transform_apply(&t, &img, NULL, 3 * 224 * 224, NULL, 0),
                     MEMFIT_E_MISUSE);
}

/* A uniform image stays uniform through every path (upsampling a 1x1 must
 * not divide by zero), and the values are (v/255 - mean) / std. */
static void test_uniform(void **state)
{
    (void)state;
    static const uint32_t sizes[][2] = {{1, 1},     {1, 7},     {9, 1},   {256, 256},
                                        {256, 999}, {999, 256}, {5000, 3}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = (size_t)sizes[s][0] * sizes[s][1];
        uint8_t *px = memfit_malloc(n * 3);
        assert_non_null(px);
        for (size_t i = 0; i < n; i++) {
            px[3 * i] = 200;
            px[3 * i + 1] = 0;
            px[3 * i + 2] = 255;
        }
        struct memfit_image img = {.width = sizes[s][0], .height = sizes[s][1], .rgb = px};
        for (int mode = 0; mode < 2; mode++) {
            struct memfit_image_transform t = memfit_image_transform_default();
            t.mode = (enum memfit_image_resize)mode;
            uint32_t w, h;
            assert_int_equal(memfit_image_transform_size(&t, img.width, img.height, &w, &h),
                             MEMFIT_OK);
            size_t m = (size_t)w * h;
            float *out = memfit_malloc(3 * m * sizeof(float));
            assert_non_null(out);
            assert_int_equal(memfit_image_transform_apply(&t, &img, out, 3 * m, NULL, 0),
                             MEMFIT_OK);
            const uint8_t v[3] = {200, 0, 255};
            for (int c = 0; c < 3; c++) {
                float want = ((float)v[c] / 255.0f - t.mean[c]) / t.std[c];
                for (size_t i = 0; i < m; i++)
                    assert_true(out[c * m + i] == want);
            }
            memfit_free(out);
        }
        memfit_free(px);
    }
}

/* The resampler alone: a window of a resize equals the same pixels of the
 * full resize (what the crop relies on), with either filter. */
static void test_window_matches_full(void **state)
{
    (void)state;
    struct memfit_image img;
    load_fixture("photo317x211.png", &img);
    static const uint32_t sizes[][2] = {{100, 70}, {500, 333}, {317, 100}, {90, 211}};
    for (size_t i = 0; i < 2 * sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t s = i / 2;
        struct mf_resample full = {
            img.width,   img.height,  sizes[s][0],
            sizes[s][1], 0,           0,
            sizes[s][0], sizes[s][1], i % 2 ? MF_RESAMPLE_BILINEAR : MF_RESAMPLE_BICUBIC};
        struct mf_resample win = full;
        win.x0 = sizes[s][0] / 3;
        win.y0 = sizes[s][1] / 4;
        win.win_width = sizes[s][0] / 2;
        win.win_height = sizes[s][1] / 2;
        size_t fb = mf_image_resample_scratch_bytes(&full),
               wb = mf_image_resample_scratch_bytes(&win);
        assert_true(fb > 0 && wb > 0);
        uint8_t *fs = memfit_malloc(fb), *ws = memfit_malloc(wb);
        uint8_t *fo = memfit_malloc((size_t)sizes[s][0] * sizes[s][1] * 3);
        uint8_t *wo = memfit_malloc((size_t)win.win_width * win.win_height * 3);
        assert_non_null(fs);
        assert_non_null(ws);
        assert_non_null(fo);
        assert_non_null(wo);
        assert_int_equal(mf_image_resample(&full, img.rgb, fo, fs, fb), MEMFIT_OK);
        assert_int_equal(mf_image_resample(&win, img.rgb, wo, ws, wb), MEMFIT_OK);
        assert_int_equal(mf_image_resample(&win, img.rgb, wo, ws, wb - 1), MEMFIT_E_MISUSE);
        for (uint32_t y = 0; y < win.win_height; y++)
            assert_memory_equal(wo + (size_t)y * win.win_width * 3,
                                fo + ((size_t)(win.y0 + y) * sizes[s][0] + win.x0) * 3,
                                (size_t)win.win_width * 3);
        memfit_free(fs);
        memfit_free(ws);
        memfit_free(fo);
        memfit_free(wo);
    }
    struct mf_resample bad = {img.width, img.height, 10, 10, 5, 5, 6, 6, MF_RESAMPLE_BICUBIC};
    assert_int_equal(mf_image_resample_scratch_bytes(&bad), 0);
    memfit_image_free(&img);
}

struct walk_ctx {
    struct memfit_image_transform t;
    struct memfit_image img;
    float *out;
    size_t n;
};

static enum memfit_status walk_apply(void *p)
{
    struct walk_ctx *c = p;
    return memfit_image_transform_apply(&c->t, &c->img, c->out, c->n, NULL, 0);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct walk_ctx c = {.t = memfit_image_transform_default()};
    load_fixture("photo600x400.jpg", &c.img);
    c.n = 3 * 224 * 224;
    c.out = memfit_malloc(c.n * sizeof(float));
    assert_non_null(c.out);
    assert_true(mf_test_alloc_failures(walk_apply, NULL, &c) >= 2);
    memfit_free(c.out);
    memfit_image_free(&c.img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transform_parity),
        cmocka_unit_test(test_normalised_parity),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_window_matches_full),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
