/* Unit tests of src/models/sam_image.c, SAM's pre- and post-processing:
 * the resize against PIL's BILINEAR (bit-exact 8-bit values) and the
 * normalised, padded floats against torch (bit-exact) on the "sam" cases of
 * tests/fixtures/images/index.json; the resized sizes; argument errors and
 * allocation failures; the postprocess against a naive double evaluation of
 * the two bilinear resizes. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_util.h"
#include "image_test.h"
#include "models/image.h"
#include "models/sam.h"

static const float sam_mean[3] = {123.675f, 116.28f, 103.53f};
static const float sam_std[3] = {58.395f, 57.12f, 57.375f};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Runs memfit_sam_preprocess; the caller frees the 3 x S x S floats. */
static float *preprocess(const struct memfit_image *img, uint32_t size)
{
    float *out = memfit_malloc((size_t)3 * size * size * sizeof(float));
    assert_non_null(out);
    enum memfit_status st = memfit_sam_preprocess(img, size, out);
    if (st != MEMFIT_OK)
        fprintf(stderr, "%s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
    return out;
}

/* The resize alone against PIL, byte for byte, then the whole preprocess
 * against the normalisation of PIL's bytes (each value as torch computes
 * it: (float)v - mean, then / std, in float32) and zero padding. */
static void check_resize(const char *file, const char *ref, uint32_t size, uint32_t w, uint32_t h)
{
    struct memfit_image img, want;
    load_fixture(file, &img);
    load_reference_rgb(ref, w, h, &want);
    uint32_t rw, rh;
    memfit_sam_resized_size(size, img.width, img.height, &rw, &rh);
    assert_int_equal(rw, w);
    assert_int_equal(rh, h);

    struct mf_resample r = {img.width, img.height, w, h, 0, 0, w, h, MF_RESAMPLE_BILINEAR};
    size_t scratch_bytes = mf_image_resample_scratch_bytes(&r);
    uint8_t *scratch = memfit_malloc(scratch_bytes ? scratch_bytes : 1);
    uint8_t *got = memfit_malloc((size_t)w * h * 3);
    assert_non_null(scratch);
    assert_non_null(got);
    assert_int_equal(mf_image_resample(&r, img.rgb, got, scratch, scratch_bytes), MEMFIT_OK);
    size_t differ = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        differ += got[i] != want.rgb[i];
    if (differ)
        fprintf(stderr, "%s -> %s: %zu bytes differ\n", file, ref, differ);
    assert_int_equal(differ, 0);

    float *out = preprocess(&img, size);
    size_t plane = (size_t)size * size;
    differ = 0;
    for (int c = 0; c < 3; c++)
        for (size_t y = 0; y < size; y++)
            for (size_t x = 0; x < size; x++) {
                float v = 0.0f;
                if (y < h && x < w)
                    v = ((float)want.rgb[(y * w + x) * 3 + (size_t)c] - sam_mean[c]) / sam_std[c];
                float o = out[(size_t)c * plane + y * size + x];
                differ += memcmp(&o, &v, sizeof(v)) != 0;
            }
    assert_int_equal(differ, 0);
    memfit_free(out);
    memfit_free(got);
    memfit_free(scratch);
    memfit_image_free(&want);
    memfit_image_free(&img);
}

/* The preprocess against torch's floats, bit for bit. */
static void check_normalised(const char *file, const char *ref, uint32_t size)
{
    struct memfit_image img;
    load_fixture(file, &img);
    float *out = preprocess(&img, size);
    assert_floats_fixture(out, ref, (size_t)3 * size * size);
    memfit_free(out);
    memfit_image_free(&img);
}

static void test_preprocess_parity(void **state)
{
    (void)state;
    json_t *index = load_index();
    json_t *cases = json_object_get(index, "sam");
    assert_true(json_array_size(cases) >= 8);
    size_t i, n_png = 0, n_f32 = 0;
    json_t *e;
    json_array_foreach(cases, i, e)
    {
        const char *file = json_string_value(json_object_get(e, "file"));
        const char *ref = json_string_value(json_object_get(e, "ref"));
        uint32_t size = (uint32_t)json_integer_value(json_object_get(e, "size"));
        uint32_t w = (uint32_t)json_integer_value(json_object_get(e, "width"));
        uint32_t h = (uint32_t)json_integer_value(json_object_get(e, "height"));
        if (ends_with(ref, ".png")) {
            check_resize(file, ref, size, w, h);
            n_png++;
        } else {
            check_normalised(file, ref, size);
            n_f32++;
        }
    }
    assert_true(n_png >= 6 && n_f32 >= 2);
    json_decref(index);
}

static void test_resized_size(void **state)
{
    (void)state;
    static const uint32_t cases[][5] = {
        /* S, w, h, want w, want h */
        {1024, 1920, 1080, 1024, 576}, /* 1080 * 0.5333 = 576.0 */
        {1024, 1080, 1920, 576, 1024},
        {1024, 500, 375, 1024, 768},
        {1024, 1024, 1024, 1024, 1024},
        {128, 3, 5, 77, 128},     /* 3 * 25.6 = 76.8 + 0.5 */
        {1024, 1, 5000, 0, 1024}, /* 0.2 + 0.5 truncates to 0 */
        {1024, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t w = 99, h = 99;
        memfit_sam_resized_size(cases[i][0], cases[i][1], cases[i][2], &w, &h);
        assert_int_equal(w, cases[i][3]);
        assert_int_equal(h, cases[i][4]);
    }
}

static void test_preprocess_errors(void **state)
{
    (void)state;
    uint8_t px[3 * 5000];
    memset(px, 100, sizeof(px));
    struct memfit_image img = {.width = 1, .height = 5000, .rgb = px};
    float out[3 * 16 * 16];
    /* resizes to 0 x 16: PIL refuses an empty size */
    assert_int_equal(memfit_sam_preprocess(&img, 16, out), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "0x16"));
    assert_int_equal(mf_sam_preprocess_scratch_bytes(1, 5000, 16), 0);
    img.height = 2;
    assert_int_equal(memfit_sam_preprocess(&img, 0, out), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_preprocess(NULL, 16, out), MEMFIT_E_MISUSE);
    assert_int_equal(memfit_sam_preprocess(&img, 16, NULL), MEMFIT_E_MISUSE);
    struct memfit_image none = {0};
    assert_int_equal(memfit_sam_preprocess(&none, 16, out), MEMFIT_E_MISUSE);

    /* the planned variant: a short scratch is refused, an exact one at an
     * odd address works and allocates nothing */
    size_t need = mf_sam_preprocess_scratch_bytes(1, 2, 16);
    assert_true(need > 0);
    uint8_t *scratch = memfit_malloc(need + 1);
    assert_non_null(scratch);
    assert_int_equal(mf_sam_preprocess_into(&img, 16, out, scratch + 1, need - 1), MEMFIT_E_MISUSE);
    mf_alloc_fail_after(1, true);
    enum memfit_status st = mf_sam_preprocess_into(&img, 16, out, scratch + 1, need);
    mf_alloc_fail_after(0, false);
    assert_int_equal(st, MEMFIT_OK);
    /* 1 x 2 -> 8 x 16: a uniform image stays uniform, the rest is 0 */
    float v = (100.0f - sam_mean[1]) / sam_std[1];
    for (size_t y = 0; y < 16; y++)
        for (size_t x = 0; x < 16; x++)
            assert_true(out[256 + y * 16 + x] == (x < 8 ? v : 0.0f));
    memfit_free(scratch);
}

struct walk_ctx {
    struct memfit_image img;
    float *out;
};

static enum memfit_status walk_preprocess(void *p)
{
    struct walk_ctx *c = p;
    return memfit_sam_preprocess(&c->img, 64, c->out);
}

static void test_preprocess_alloc_failures(void **state)
{
    (void)state;
    struct walk_ctx c;
    load_fixture("photo600x400.jpg", &c.img);
    c.out = memfit_malloc((size_t)3 * 64 * 64 * sizeof(float));
    assert_non_null(c.out);
    assert_true(mf_test_alloc_failures(walk_preprocess, NULL, &c) >= 2);
    memfit_free(c.out);
    memfit_image_free(&c.img);
}

/* ---- postprocess ---------------------------------------------------------- */

/* F.interpolate(bilinear, align_corners=False) from its formula, the
 * blend in double; the source coordinates in float, as torch computes them
 * for float tensors (in double they would move by up to ~1e-4 of a pixel at
 * 1500 pixels, which a 40-logit step turns into a few 1e-3). */
static void naive_bilinear(const double *in, size_t in_h, size_t in_w, size_t ld_in, double *out,
                           size_t out_h, size_t out_w)
{
    float sh = (float)in_h / (float)out_h, sw = (float)in_w / (float)out_w;
    for (size_t y = 0; y < out_h; y++) {
        float fy = fmaxf(sh * ((float)y + 0.5f) - 0.5f, 0.0f);
        size_t y0 = (size_t)fy, y1 = y0 + 1 < in_h ? y0 + 1 : in_h - 1;
        double ly = (double)fy - (double)y0;
        for (size_t x = 0; x < out_w; x++) {
            float fx = fmaxf(sw * ((float)x + 0.5f) - 0.5f, 0.0f);
            size_t x0 = (size_t)fx, x1 = x0 + 1 < in_w ? x0 + 1 : in_w - 1;
            double lx = (double)fx - (double)x0;
            out[y * out_w + x] =
                (1 - ly) * ((1 - lx) * in[y0 * ld_in + x0] + lx * in[y0 * ld_in + x1]) +
                ly * ((1 - lx) * in[y1 * ld_in + x0] + lx * in[y1 * ld_in + x1]);
        }
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / (double)(1ull << 53);
}

static void test_postprocess_naive(void **state)
{
    (void)state;
    static const uint32_t cases[][6] = {
        /* mask, S, resized w, resized h, width, height */
        {16, 64, 64, 43, 97, 65}, /* wide, upsampled */
        {8, 32, 20, 32, 5, 8},    /* tall, downsampled */
        {32, 128, 128, 128, 128, 128},
        {32, 128, 77, 128, 3, 5}, /* a 3 x 5 image */
        {16, 16, 16, 16, 16, 16}, /* identity: the values pass through */
        {256, 1024, 1024, 683, 1500, 1000},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        uint32_t m = cases[c][0], s = cases[c][1], rw = cases[c][2], rh = cases[c][3];
        uint32_t w = cases[c][4], h = cases[c][5];
        float *low = memfit_malloc((size_t)m * m * sizeof(float));
        float *scratch = memfit_malloc((size_t)s * s * sizeof(float));
        float *out = memfit_malloc((size_t)w * h * sizeof(float));
        double *dl = memfit_malloc((size_t)m * m * sizeof(double));
        double *ds = memfit_malloc((size_t)s * s * sizeof(double));
        double *dout = memfit_malloc((size_t)w * h * sizeof(double));
        assert_true(low && scratch && out && dl && ds && dout);
        for (size_t i = 0; i < (size_t)m * m; i++)
            dl[i] = low[i] = (float)(uniform() * 40.0 - 20.0);
        memfit_sam_postprocess(low, m, s, rw, rh, w, h, scratch, out);
        naive_bilinear(dl, m, m, m, ds, s, s);
        naive_bilinear(ds, rh, rw, s, dout, h, w);
        double worst = 0;
        for (size_t i = 0; i < (size_t)w * h; i++)
            worst = fmax(worst, fabs(out[i] - dout[i]));
        if (worst > 1e-4)
            fprintf(stderr, "case %zu: max difference %g\n", c, worst);
        assert_true(worst <= 1e-4);
        if (m == s && rw == s && rh == s && w == s && h == s)
            assert_memory_equal(out, low, (size_t)m * m * sizeof(float));
        memfit_free(low);
        memfit_free(scratch);
        memfit_free(out);
        memfit_free(dl);
        memfit_free(ds);
        memfit_free(dout);
    }
}

/* tests/fixtures/sam/<name> (float32 little-endian); NULL when absent. */
static float *read_sam_fixture(const char *name, size_t n_floats)
{
    char rel[256], path[512];
    snprintf(rel, sizeof(rel), "sam/%s", name);
    mf_test_fixture(rel, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *buf = memfit_malloc(n_floats * sizeof(float) + 1);
    assert_non_null(buf);
    size_t got = fread(buf, sizeof(float), n_floats + 1, f);
    fclose(f);
    assert_int_equal(got, n_floats);
    return buf;
}

/* The reference's postprocess_masks of the tiny model's point1_multi masks
 * (3 x 32 x 32 logits; input 128, the 200 x 150 image resized to 128 x 96)
 * as scripts/make_sam_reference.py computed it (tests/fixtures/sam). */
static void test_postprocess_reference(void **state)
{
    (void)state;
    const uint32_t m = 32, s = 128, w = 200, h = 150;
    uint32_t rw, rh;
    memfit_sam_resized_size(s, w, h, &rw, &rh);
    assert_int_equal(rw, 128);
    assert_int_equal(rh, 96);
    float *low = read_sam_fixture("point1_multi.low_res.bin", (size_t)3 * m * m);
    float *want = read_sam_fixture("post_a.bin", (size_t)3 * w * h);
    if (!low || !want) {
        memfit_free(low);
        memfit_free(want);
        skip();
    }
    float *scratch = memfit_malloc((size_t)s * s * sizeof(float));
    float *out = memfit_malloc((size_t)w * h * sizeof(float));
    assert_true(scratch && out);
    double worst = 0, largest = 0;
    size_t sign_flips = 0;
    for (size_t k = 0; k < 3; k++) {
        memfit_sam_postprocess(low + k * m * m, m, s, rw, rh, w, h, scratch, out);
        const float *ref = want + k * w * h;
        for (size_t i = 0; i < (size_t)w * h; i++) {
            worst = fmax(worst, fabs((double)out[i] - ref[i]));
            largest = fmax(largest, fabs(ref[i]));
            sign_flips += (out[i] > 0.0f) != (ref[i] > 0.0f);
        }
    }
    fprintf(stderr,
            "postprocess vs reference: max |difference| %g (values up to %g), %zu mask "
            "pixels differ\n",
            worst, largest, sign_flips);
    assert_true(worst <= 1e-5 * fmax(largest, 1.0));
    assert_int_equal(sign_flips, 0);
    memfit_free(scratch);
    memfit_free(out);
    memfit_free(low);
    memfit_free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preprocess_parity), cmocka_unit_test(test_resized_size),
        cmocka_unit_test(test_preprocess_errors), cmocka_unit_test(test_preprocess_alloc_failures),
        cmocka_unit_test(test_postprocess_naive), cmocka_unit_test(test_postprocess_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
