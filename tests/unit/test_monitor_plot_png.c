/*
 * Unit tests of the PNG charts: the rasterizer's pieces (src/monitor/
 * raster.c: every glyph of the bitmap font distinct, text, strokes, fills,
 * clipping) and the chart painted through it (src/monitor/plot.c), decoded
 * again with memfit_image_decode: its size, the series lying where the SVG
 * of the same chart puts them, the threshold bands' colours, text in the
 * headline; PNG written by extension or --format, atomically; the live
 * redraw step; and the allocation fault walk.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "test_util.h"
#include "log_gen.h"
#include "memfit/memfit.h"
#include "monitor/raster.h"

/* ---- The rasterizer ----------------------------------------------------- */

static void test_font_glyphs_distinct(void **state)
{
    (void)state;
    for (uint32_t a = 0x20; a <= 0x7E; a++) {
        const uint8_t *ga = mf_font_glyph(a);
        assert_non_null(ga);
        int ink = 0;
        for (int r = 0; r < MF_FONT_ROWS; r++) {
            assert_true(ga[r] < 0x20); /* 5 columns */
            ink += ga[r] != 0;
        }
        if (a != ' ' && ink == 0)
            fail_msg("glyph '%c' is empty", (char)a);
        for (uint32_t b = 0x20; b < a; b++)
            if (memcmp(ga, mf_font_glyph(b), MF_FONT_ROWS) == 0)
                fail_msg("glyphs '%c' and '%c' are the same", (char)a, (char)b);
    }
    /* The characters the chart's labels use beyond ASCII. */
    static const uint32_t extras[] = {0xB7, 0xB2, 0x2076, 0x2026, 0x2265};
    for (size_t i = 0; i < sizeof(extras) / sizeof(extras[0]); i++) {
        const uint8_t *g = mf_font_glyph(extras[i]);
        assert_non_null(g);
        for (uint32_t b = 0x20; b <= 0x7E; b++)
            assert_true(memcmp(g, mf_font_glyph(b), MF_FONT_ROWS) != 0);
    }
    assert_null(mf_font_glyph(0x7F));
    assert_null(mf_font_glyph(0x4E2D));
}

static size_t count_color(const struct mf_raster *r, uint32_t color, int tol, uint32_t x0,
                          uint32_t y0, uint32_t x1, uint32_t y1)
{
    size_t n = 0;
    for (uint32_t y = y0; y < y1 && y < r->h; y++)
        for (uint32_t x = x0; x < x1 && x < r->w; x++) {
            const uint8_t *p = r->rgb + ((size_t)y * r->w + x) * 3;
            if (abs(p[0] - (int)(color >> 16)) <= tol &&
                abs(p[1] - (int)((color >> 8) & 0xFF)) <= tol &&
                abs(p[2] - (int)(color & 0xFF)) <= tol)
                n++;
        }
    return n;
}

/* Each glyph drawn alone gives a different picture, in the cell it owns. */
static void test_text_drawn(void **state)
{
    (void)state;
    struct mf_raster r;
    assert_int_equal(mf_raster_init(&r, 64, 24, 0xFFFFFF), MEMFIT_OK);
    uint8_t prev[64 * 24 * 3];
    for (uint32_t ch = 0x21; ch <= 0x7E; ch++) {
        char text[2] = {(char)ch, 0};
        mf_raster_fill_rect(&r, 0, 0, 64, 24, 0xFFFFFF, 1.0);
        assert_true(mf_raster_text(&r, 10, 12, 10, false, false, MF_TEXT_START, 0x000000, text,
                                   SIZE_MAX) == 6.0);
        size_t ink = count_color(&r, 0x000000, 0, 0, 0, 64, 24);
        assert_true(ink > 0);
        assert_int_equal(ink, count_color(&r, 0x000000, 0, 10, 5, 15, 14)); /* its cell */
        if (ch > 0x21)
            assert_true(memcmp(prev, r.rgb, sizeof(prev)) != 0);
        memcpy(prev, r.rgb, sizeof(prev));
    }
    /* Widths, anchors, truncation with an ellipsis, malformed UTF-8. */
    assert_true(mf_raster_text_width(11, false, "limit", SIZE_MAX) == 30.0);
    assert_true(mf_raster_text_width(18, false, "ab", SIZE_MAX) == 24.0);
    assert_true(mf_raster_text_width(11, false, "abcdef", 3) == 24.0);
    assert_true(mf_raster_text_width(11, false, "\xE2\x89\xA5 \xFF", SIZE_MAX) == 18.0);
    mf_raster_fill_rect(&r, 0, 0, 64, 24, 0xFFFFFF, 1.0);
    mf_raster_text(&r, 60, 12, 10, false, false, MF_TEXT_END, 0x000000, "I", SIZE_MAX);
    assert_true(count_color(&r, 0x000000, 0, 54, 0, 60, 24) > 0);
    assert_int_equal(count_color(&r, 0x000000, 0, 0, 0, 54, 24), 0);
    mf_raster_release(&r);
    mf_raster_release(&r); /* twice is harmless */
}

static void test_shapes(void **state)
{
    (void)state;
    struct mf_raster r;
    assert_int_equal(mf_raster_init(&r, 100, 100, 0xFFFFFF), MEMFIT_OK);
    /* A 3 px line across: full colour on its middle row, nothing far off. */
    mf_raster_stroke_begin(&r);
    mf_raster_stroke_segment(&r, 10, 50, 90, 50, 3.0, false, NULL);
    mf_raster_stroke_end(&r, 0xFF0000, 1.0);
    assert_int_equal(count_color(&r, 0xFF0000, 0, 10, 49, 90, 51), 160);
    assert_int_equal(count_color(&r, 0xFFFFFF, 0, 0, 0, 100, 47), 4700);
    /* Dashed: about 7 / 12 of it on. */
    mf_raster_stroke_begin(&r);
    mf_raster_stroke_segment(&r, 0, 20, 96, 20, 2.0, false, "7 5");
    mf_raster_stroke_end(&r, 0x0000FF, 1.0);
    size_t on = count_color(&r, 0x0000FF, 0, 0, 19, 100, 20);
    assert_true(on >= 54 && on <= 58);
    /* A half-transparent rectangle, clipped. */
    mf_raster_clip(&r, true, 0, 60, 50, 100);
    mf_raster_fill_rect(&r, 20, 70, 80, 80, 0x000000, 0.5);
    mf_raster_clip(&r, false, 0, 0, 0, 0);
    assert_int_equal(count_color(&r, 0x808080, 1, 0, 60, 100, 100), 300);
    /* A circle and a triangle. */
    mf_raster_fill_circle(&r, 80, 90, 4, 0x00FF00, 1.0);
    assert_true(count_color(&r, 0x00FF00, 0, 70, 80, 90, 100) >= 30); /* r 3.5 fully in */
    double tri[6] = {5, 5, 15, 5, 10, 15};
    mf_raster_fill_polygon(&r, tri, 3, 0x00FFFF, 1.0);
    size_t n_tri = count_color(&r, 0x00FFFF, 0, 0, 0, 20, 20);
    assert_true(n_tri >= 35 && n_tri <= 55); /* area 50 */
    assert_int_equal(mf_color_parse("#1f6fc4"), 0x1F6FC4);
    assert_int_equal(mf_color_parse("red"), 0);
    mf_raster_release(&r);
}

/* ---- The chart ---------------------------------------------------------- */

static memfit_analysis *leak_analysis(const char *name, bool with_exit)
{
    char path[300];
    FILE *f = gen_open(name, path, sizeof(path));
    gen_run(f, GEN_LEAK, 400, 420000000ULL);
    if (with_exit)
        gen_exit(f, 40.1, 0, 9, 1);
    fclose(f);
    memfit_analysis *a = NULL;
    assert_int_equal(memfit_analysis_open(path, NULL, &a), MEMFIT_OK);
    return a;
}

static struct memfit_image decode_png(const uint8_t *png, size_t len)
{
    struct memfit_image img = {0};
    assert_true(len > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    assert_int_equal(memfit_image_decode(png, len, "chart.png", NULL, &img), MEMFIT_OK);
    return img;
}

/* The points of the SVG path stroked in `color`, in pixels. */
static size_t svg_path_points(const char *svg, const char *color, double *xy, size_t max)
{
    char key[64];
    snprintf(key, sizeof(key), "<path fill=\"none\" stroke=\"%s\"", color);
    const char *p = strstr(svg, key);
    assert_non_null(p);
    p = strstr(p, " d=\"");
    assert_non_null(p);
    p += 4;
    size_t n = 0;
    while (*p == 'M' || *p == 'L') {
        double x, y;
        int used;
        assert_int_equal(sscanf(p + 1, "%lf %lf%n", &x, &y, &used), 2);
        if (n < max) {
            xy[2 * n] = x;
            xy[2 * n + 1] = y;
            n++;
        }
        p += 1 + used;
    }
    return n;
}

/* Whether a pixel within 1 px of (x, y) has one of the colours. */
static bool near_color(const struct memfit_image *img, double x, double y, const uint32_t *colors,
                       size_t n_colors)
{
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            long px = (long)x + dx, py = (long)y + dy;
            if (px < 0 || py < 0 || px >= (long)img->width || py >= (long)img->height)
                continue;
            const uint8_t *p = img->rgb + ((size_t)py * img->width + (size_t)px) * 3;
            for (size_t k = 0; k < n_colors; k++) {
                uint32_t c = colors[k];
                if (abs(p[0] - (int)(c >> 16)) + abs(p[1] - (int)((c >> 8) & 0xFF)) +
                        abs(p[2] - (int)(c & 0xFF)) <=
                    60)
                    return true;
            }
        }
    return false;
}

static size_t count_image(const struct memfit_image *img, uint32_t color, int tol, uint32_t x0,
                          uint32_t y0, uint32_t x1, uint32_t y1)
{
    struct mf_raster r = {.w = img->width, .h = img->height, .rgb = img->rgb};
    return count_color(&r, color, tol, x0, y0, x1, y1);
}

/* The colour of `color` at `opacity` over white. */
static uint32_t over_white(uint32_t color, double opacity)
{
    uint32_t out = 0;
    for (int k = 16; k >= 0; k -= 8) {
        double c = (double)((color >> k) & 0xFF);
        out |= (uint32_t)lround(255.0 + (c - 255.0) * opacity) << k;
    }
    return out;
}

static void test_png_chart(void **state)
{
    (void)state;
    memfit_analysis *a = leak_analysis("leak.jsonl", true);
    struct memfit_plot_options o = memfit_plot_options_default();
    o.width = 900;
    o.height = 450;
    uint8_t *png = NULL;
    size_t len = 0;
    assert_int_equal(memfit_plot_png(a, &o, &png, &len), MEMFIT_OK);
    struct memfit_image img = decode_png(png, len);
    assert_int_equal(img.width, 900);
    assert_int_equal(img.height, 450);
    /* The pixels are memfit_plot_rgb()'s, exactly. */
    uint8_t *rgb = NULL;
    assert_int_equal(memfit_plot_rgb(a, &o, &rgb), MEMFIT_OK);
    assert_memory_equal(rgb, img.rgb, (size_t)900 * 450 * 3);
    memfit_free(rgb);

    /* The series lie where the SVG of the same layout puts them: RSS
     * (orange) everywhere; the working set (blue) under the dashed trend
     * (dark) of this perfect leak. */
    char *svg = NULL;
    size_t svg_len;
    assert_int_equal(memfit_plot_svg(a, &o, &svg, &svg_len), MEMFIT_OK);
    double xy[2 * 4096];
    size_t n = svg_path_points(svg, "#f08c00", xy, 4096);
    assert_true(n > 100);
    static const uint32_t rss_color[] = {0xF08C00};
    for (size_t i = 0; i < n; i++)
        if (!near_color(&img, xy[2 * i], xy[2 * i + 1], rss_color, 1))
            fail_msg("no RSS colour near (%.1f, %.1f)", xy[2 * i], xy[2 * i + 1]);
    n = svg_path_points(svg, "#1f6fc4", xy, 4096);
    assert_true(n > 100);
    static const uint32_t ws_colors[] = {0x1F6FC4, 0x212529};
    size_t blue = 0;
    for (size_t i = 0; i < n; i++) {
        if (!near_color(&img, xy[2 * i], xy[2 * i + 1], ws_colors, 2))
            fail_msg("no working-set colour near (%.1f, %.1f)", xy[2 * i], xy[2 * i + 1]);
        blue += near_color(&img, xy[2 * i], xy[2 * i + 1], ws_colors, 1);
    }
    assert_true(blue > n / 4); /* the dashes leave it visible */
    /* A linear ramp is a straight line: the first and last points and the
     * middle one are in line (within 2 px), rising to the right. */
    double x0 = xy[0], y0 = xy[1], x1 = xy[2 * (n - 1)], y1 = xy[2 * (n - 1) + 1];
    double xm = xy[2 * (n / 2)], ym = xy[2 * (n / 2) + 1];
    assert_true(y1 < y0 - 100.0);
    assert_true(fabs(ym - (y0 + (y1 - y0) * (xm - x0) / (x1 - x0))) < 2.0);
    memfit_free(svg);

    /* The warning and critical bands' colours (22 % over white) are there. */
    assert_true(count_image(&img, over_white(0xFFD43B, 0.22), 2, 0, 0, 900, 450) > 2000);
    assert_true(count_image(&img, over_white(0xFF8787, 0.22), 2, 0, 0, 900, 450) > 1000);
    /* Text in the headline: the title and subtitles in the text colours,
     * the verdict "leak" in red; none of it in the plot's left margin. */
    assert_true(count_image(&img, 0x212529, 0, 20, 10, 600, 80) > 300);
    assert_true(count_image(&img, 0x6C757D, 0, 20, 60, 600, 80) > 100);
    assert_true(count_image(&img, 0xC92A2A, 0, 20, 40, 60, 56) > 20);
    assert_int_equal(count_image(&img, 0x212529, 0, 0, 0, 15, 450), 0);
    memfit_image_free(&img);
    memfit_free(png);

    /* The default size, and the size limits. */
    assert_int_equal(memfit_plot_png(a, NULL, &png, &len), MEMFIT_OK);
    img = decode_png(png, len);
    assert_int_equal(img.width, 1000);
    assert_int_equal(img.height, 500);
    memfit_image_free(&img);
    memfit_free(png);
    o.height = 239;
    assert_int_equal(memfit_plot_png(a, &o, &png, &len), MEMFIT_E_RANGE);
    memfit_analysis_close(a);
}

static bool file_starts_with(const char *path, const char *magic)
{
    char buf[16] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, strlen(magic), f);
    fclose(f);
    return n == strlen(magic) && memcmp(buf, magic, n) == 0;
}

static void test_write_formats(void **state)
{
    (void)state;
    memfit_analysis *a = leak_analysis("w.jsonl", false);
    char png[300], svg[300], forced[300];
    gen_path("chart.PNG", png, sizeof(png));
    gen_path("chart.svg", svg, sizeof(svg));
    gen_path("forced.svg", forced, sizeof(forced));
    assert_int_equal(memfit_plot_write(a, NULL, png), MEMFIT_OK);
    assert_true(file_starts_with(png, "\x89PNG"));
    assert_int_equal(memfit_plot_write(a, NULL, svg), MEMFIT_OK);
    assert_true(file_starts_with(svg, "<?xml"));
    struct memfit_plot_options o = memfit_plot_options_default();
    assert_int_equal(memfit_plot_format_parse("PNG", &o.format), MEMFIT_OK);
    assert_int_equal(memfit_plot_write(a, &o, forced), MEMFIT_OK);
    assert_true(file_starts_with(forced, "\x89PNG"));
    /* memfit_plot_write_svg() stays SVG whatever the name says. */
    assert_int_equal(memfit_plot_write_svg(a, &o, png), MEMFIT_OK);
    assert_true(file_starts_with(png, "<?xml"));

    assert_int_equal(memfit_plot_format_parse("jpeg", &o.format), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "jpeg"));
    assert_int_equal(memfit_plot_format_of_path("a.png/x"), MEMFIT_PLOT_FORMAT_SVG);
    assert_int_equal(memfit_plot_format_of_path("x.Png"), MEMFIT_PLOT_FORMAT_PNG);
    o.format = (enum memfit_plot_format)7;
    assert_int_equal(memfit_plot_write(a, &o, forced), MEMFIT_E_RANGE);
    assert_int_equal(memfit_plot_write(a, NULL, "/nonexistent-dir/x.png"), MEMFIT_E_NOT_FOUND);
    memfit_analysis_close(a);
}

static void test_redraw(void **state)
{
    (void)state;
    char log[300], out[300];
    gen_path("live.png", out, sizeof(out));
    FILE *f = gen_open("live.jsonl", log, sizeof(log));
    gen_start(f, 0.1, 420000000ULL);
    fflush(f);
    struct memfit_plot_redraw_info info;
    assert_int_equal(memfit_plot_redraw(log, NULL, NULL, out, &info), MEMFIT_OK);
    assert_int_equal(info.n_samples, 0);
    assert_false(info.written);
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0);
    for (int i = 1; i <= 50; i++)
        gen_sample(f, 0.1 * i, 100e6 + 1e6 * i, 90e6, 420000000ULL, "ok", 100);
    fflush(f);
    assert_int_equal(memfit_plot_redraw(log, NULL, NULL, out, &info), MEMFIT_OK);
    assert_int_equal(info.n_samples, 50);
    assert_true(info.written && !info.ended);
    assert_true(fabs(info.last_sample_s - 5.0) < 1e-9);
    assert_true(file_starts_with(out, "\x89PNG"));
    gen_exit(f, 5.1, 0, 0, 0);
    fclose(f);
    assert_int_equal(memfit_plot_redraw(log, NULL, NULL, out, &info), MEMFIT_OK);
    assert_true(info.ended);
    assert_int_equal(memfit_plot_redraw("/nonexistent.jsonl", NULL, NULL, out, NULL),
                     MEMFIT_E_NOT_FOUND);
}

struct walk_ctx {
    memfit_analysis *a;
    uint8_t *png;
    const char *path;
};

static enum memfit_status walk_png(void *p)
{
    struct walk_ctx *c = p;
    size_t len;
    struct memfit_plot_options o = memfit_plot_options_default();
    o.width = 400;
    o.height = 300;
    return memfit_plot_png(c->a, &o, &c->png, &len);
}

static void walk_png_free(void *p)
{
    struct walk_ctx *c = p;
    memfit_free(c->png);
    c->png = NULL;
}

static enum memfit_status walk_write(void *p)
{
    struct walk_ctx *c = p;
    struct memfit_plot_options o = memfit_plot_options_default();
    o.width = 400;
    o.height = 300;
    return memfit_plot_write(c->a, &o, c->path);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct walk_ctx c = {leak_analysis("walk.jsonl", true), NULL, NULL};
    assert_true(mf_test_alloc_failures(walk_png, walk_png_free, &c) > 2);
    char out[300];
    c.path = gen_path("walk.png", out, sizeof(out));
    assert_true(mf_test_alloc_failures(walk_write, NULL, &c) > 2);
    memfit_analysis_close(c.a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_font_glyphs_distinct),
        cmocka_unit_test(test_text_drawn),
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_png_chart),
        cmocka_unit_test(test_write_formats),
        cmocka_unit_test(test_redraw),
        cmocka_unit_test(test_alloc_failures),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gen_cleanup();
    return rc;
}
