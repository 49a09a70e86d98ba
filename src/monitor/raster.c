/*
 * The rasterizer behind `memfit plot -o chart.png` (see raster.h): it draws
 * into an RGB image what plot.c describes, so the PNG shows the same chart
 * as the SVG without an external renderer.
 *
 * Anti-aliasing is analytic: a pixel's coverage is estimated from the
 * distance of its centre to the shape (strokes, circles), the overlap of
 * its square with the shape (rectangles), or 4 x 4 samples (polygons).
 * Strokes gather their coverage in a mask first (the maximum over their
 * segments) and are painted once, so a polyline's joints are not darker
 * than its segments. Text is a 5x7 bitmap font scaled by whole pixels and
 * snapped to the pixel grid, which keeps small labels crisp.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/raster.h"

/* ---- The font ----------------------------------------------------------- */

/* Printable ASCII (0x20 to 0x7E), then the extras below, 9 rows each. */
static const uint8_t font[][MF_FONT_ROWS] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /*   */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04, 0x00, 0x00}, /* ! */
    {0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* " */
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a, 0x00, 0x00}, /* # */
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04, 0x00, 0x00}, /* $ */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00}, /* % */
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d, 0x00, 0x00}, /* & */
    {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00}, /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00}, /* ) */
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00, 0x00, 0x00}, /* * */
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00, 0x00, 0x00}, /* + */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}, /* , */
    {0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c, 0x00, 0x00}, /* . */
    {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10, 0x00, 0x00}, /* / */
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e, 0x00, 0x00}, /* 0 */
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}, /* 1 */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00}, /* 2 */
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e, 0x00, 0x00}, /* 3 */
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02, 0x00, 0x00}, /* 4 */
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e, 0x00, 0x00}, /* 5 */
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e, 0x00, 0x00}, /* 6 */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00}, /* 7 */
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e, 0x00, 0x00}, /* 8 */
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c, 0x00, 0x00}, /* 9 */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00, 0x00, 0x00}, /* : */
    {0x00, 0x0c, 0x0c, 0x00, 0x00, 0x0c, 0x0c, 0x04, 0x08}, /* ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, 0x00, 0x00}, /* < */
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00, 0x00, 0x00}, /* = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, 0x00, 0x00}, /* > */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04, 0x00, 0x00}, /* ? */
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e, 0x00, 0x00}, /* @ */
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00}, /* A */
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e, 0x00, 0x00}, /* B */
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00}, /* C */
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c, 0x00, 0x00}, /* D */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f, 0x00, 0x00}, /* E */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00}, /* F */
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f, 0x00, 0x00}, /* G */
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11, 0x00, 0x00}, /* H */
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}, /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c, 0x00, 0x00}, /* J */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00}, /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f, 0x00, 0x00}, /* L */
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00}, /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00}, /* N */
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00}, /* O */
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10, 0x00, 0x00}, /* P */
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d, 0x00, 0x00}, /* Q */
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11, 0x00, 0x00}, /* R */
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e, 0x00, 0x00}, /* S */
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00}, /* T */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00}, /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00}, /* V */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a, 0x00, 0x00}, /* W */
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11, 0x00, 0x00}, /* X */
    {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00}, /* Y */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f, 0x00, 0x00}, /* Z */
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e, 0x00, 0x00}, /* [ */
    {0x10, 0x10, 0x08, 0x04, 0x02, 0x01, 0x01, 0x00, 0x00}, /* backslash */
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e, 0x00, 0x00}, /* ] */
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ^ */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f, 0x00}, /* _ */
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /* ` */
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f, 0x00, 0x00}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e, 0x00, 0x00}, /* b */
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e, 0x00, 0x00}, /* c */
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f, 0x00, 0x00}, /* d */
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e, 0x00, 0x00}, /* e */
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08, 0x00, 0x00}, /* f */
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x11, 0x0e}, /* g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00}, /* h */
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}, /* j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00}, /* k */
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e, 0x00, 0x00}, /* l */
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x15, 0x15, 0x00, 0x00}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00}, /* n */
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e, 0x00, 0x00}, /* o */
    {0x00, 0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}, /* p */
    {0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x01, 0x01}, /* q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00}, /* r */
    {0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e, 0x00, 0x00}, /* s */
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00}, /* t */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d, 0x00, 0x00}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04, 0x00, 0x00}, /* v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a, 0x00, 0x00}, /* w */
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x00, 0x00}, /* x */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x11, 0x0e}, /* y */
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f, 0x00, 0x00}, /* z */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02, 0x00, 0x00}, /* { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00}, /* | */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08, 0x00, 0x00}, /* } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00, 0x00, 0x00}, /* ~ */
    {0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, /* U+00B7 middle dot */
    {0x0c, 0x02, 0x04, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00}, /* U+00B2 superscript two */
    {0x0c, 0x10, 0x1c, 0x12, 0x0c, 0x00, 0x00, 0x00, 0x00}, /* U+2076 superscript six */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x15, 0x00, 0x00}, /* U+2026 ellipsis */
    {0x02, 0x04, 0x08, 0x04, 0x02, 0x00, 0x1f, 0x00, 0x00}, /* U+2264 less-than or equal */
    {0x08, 0x04, 0x02, 0x04, 0x08, 0x00, 0x1f, 0x00, 0x00}, /* U+2265 greater-than or equal */
};

/* The code points of the glyphs after ASCII, in the table's order: the
 * characters the chart's labels use beyond ASCII. */
static const uint32_t font_extras[] = {0x00B7, 0x00B2, 0x2076, 0x2026, 0x2264, 0x2265};

const uint8_t *mf_font_glyph(uint32_t cp)
{
    if (cp >= 0x20 && cp <= 0x7E)
        return font[cp - 0x20];
    for (size_t i = 0; i < sizeof(font_extras) / sizeof(font_extras[0]); i++)
        if (font_extras[i] == cp)
            return font[95 + i];
    return NULL;
}

size_t mf_utf8_next(const unsigned char *s, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (n == 0 || c > 0xF4)
        return 0;
    uint32_t v = c & (0x3Fu >> (n - 1));
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

uint32_t mf_color_parse(const char *hex)
{
    if (!hex || hex[0] != '#' || strlen(hex) != 7)
        return 0;
    uint32_t v = 0;
    for (int i = 1; i < 7; i++) {
        char ch = hex[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                              : 16;
        if (d == 16)
            return 0;
        v = v << 4 | d;
    }
    return v;
}

/* ---- The image ---------------------------------------------------------- */

enum memfit_status mf_raster_init(struct mf_raster *r, uint32_t w, uint32_t h, uint32_t background)
{
    memset(r, 0, sizeof(*r));
    if (w == 0 || h == 0 || (size_t)w > SIZE_MAX / 3 / h)
        return memfit_fail(MEMFIT_E_RANGE, "image %ux%u: bad size", w, h);
    size_t n = (size_t)w * h;
    r->rgb = memfit_malloc(n * 3);
    r->mask = r->rgb ? memfit_calloc(n, 1) : NULL;
    if (!r->mask) {
        memfit_free(r->rgb);
        r->rgb = NULL;
        return memfit_fail(MEMFIT_E_NOMEM, "image %ux%u: out of memory (%zu bytes)", w, h, n * 4);
    }
    r->w = w;
    r->h = h;
    for (size_t i = 0; i < n; i++) {
        r->rgb[3 * i] = (uint8_t)(background >> 16);
        r->rgb[3 * i + 1] = (uint8_t)(background >> 8);
        r->rgb[3 * i + 2] = (uint8_t)background;
    }
    r->mx0 = r->my0 = UINT32_MAX;
    return MEMFIT_OK;
}

void mf_raster_release(struct mf_raster *r)
{
    if (!r)
        return;
    memfit_free(r->rgb);
    memfit_free(r->mask);
    memset(r, 0, sizeof(*r));
}

void mf_raster_clip(struct mf_raster *r, bool clip, double x0, double y0, double x1, double y1)
{
    r->clipped = clip;
    r->clip_x0 = x0;
    r->clip_y0 = y0;
    r->clip_x1 = x1;
    r->clip_y1 = y1;
}

/* The pixels [*i0, *i1) x [*j0, *j1) that the box [x0, x1] x [y0, y1]
 * (widened by pad) touches, inside the image and the clip; false if none. */
static bool pixel_box(const struct mf_raster *r, double x0, double y0, double x1, double y1,
                      double pad, uint32_t *i0, uint32_t *j0, uint32_t *i1, uint32_t *j1)
{
    double lx = fmin(x0, x1) - pad, hx = fmax(x0, x1) + pad;
    double ly = fmin(y0, y1) - pad, hy = fmax(y0, y1) + pad;
    if (r->clipped) {
        lx = fmax(lx, r->clip_x0);
        ly = fmax(ly, r->clip_y0);
        hx = fmin(hx, r->clip_x1);
        hy = fmin(hy, r->clip_y1);
    }
    lx = fmax(floor(lx), 0.0);
    ly = fmax(floor(ly), 0.0);
    hx = fmin(ceil(hx), (double)r->w);
    hy = fmin(ceil(hy), (double)r->h);
    if (!(lx < hx && ly < hy)) /* also false for NaN */
        return false;
    *i0 = (uint32_t)lx;
    *j0 = (uint32_t)ly;
    *i1 = (uint32_t)hx;
    *j1 = (uint32_t)hy;
    return true;
}

static void blend(struct mf_raster *r, uint32_t i, uint32_t j, uint32_t color, double a)
{
    if (!(a > 0.0))
        return;
    if (a > 1.0)
        a = 1.0;
    uint8_t *p = r->rgb + ((size_t)j * r->w + i) * 3;
    for (int k = 0; k < 3; k++) {
        double c = (double)((color >> (16 - 8 * k)) & 0xFF);
        p[k] = (uint8_t)lround(p[k] + (c - p[k]) * a);
    }
}

/* Length of the overlap of [a0, a1] with the pixel [i, i + 1]. */
static double overlap(double a0, double a1, double i)
{
    return fmax(0.0, fmin(a1, i + 1.0) - fmax(a0, i));
}

void mf_raster_fill_rect(struct mf_raster *r, double x0, double y0, double x1, double y1,
                         uint32_t color, double opacity)
{
    double lx = fmin(x0, x1), hx = fmax(x0, x1), ly = fmin(y0, y1), hy = fmax(y0, y1);
    if (r->clipped) {
        lx = fmax(lx, r->clip_x0);
        hx = fmin(hx, r->clip_x1);
        ly = fmax(ly, r->clip_y0);
        hy = fmin(hy, r->clip_y1);
    }
    uint32_t i0, j0, i1, j1;
    if (!pixel_box(r, lx, ly, hx, hy, 0.0, &i0, &j0, &i1, &j1))
        return;
    for (uint32_t j = j0; j < j1; j++) {
        double cy = overlap(ly, hy, j);
        for (uint32_t i = i0; i < i1; i++)
            blend(r, i, j, color, opacity * cy * overlap(lx, hx, i));
    }
}

void mf_raster_fill_polygon(struct mf_raster *r, const double *xy, size_t n, uint32_t color,
                            double opacity)
{
    if (n < 3)
        return;
    double lx = xy[0], hx = xy[0], ly = xy[1], hy = xy[1];
    for (size_t k = 1; k < n; k++) {
        lx = fmin(lx, xy[2 * k]);
        hx = fmax(hx, xy[2 * k]);
        ly = fmin(ly, xy[2 * k + 1]);
        hy = fmax(hy, xy[2 * k + 1]);
    }
    uint32_t i0, j0, i1, j1;
    if (!pixel_box(r, lx, ly, hx, hy, 0.0, &i0, &j0, &i1, &j1))
        return;
    for (uint32_t j = j0; j < j1; j++) {
        for (uint32_t i = i0; i < i1; i++) {
            int inside = 0;
            for (int s = 0; s < 16; s++) {
                double px = i + (s % 4 + 0.5) / 4.0, py = j + (s / 4 + 0.5) / 4.0;
                bool in = false;
                for (size_t a = 0, b = n - 1; a < n; b = a++) {
                    double xa = xy[2 * a], ya = xy[2 * a + 1], xb = xy[2 * b], yb = xy[2 * b + 1];
                    if ((ya > py) != (yb > py) && px < xa + (py - ya) * (xb - xa) / (yb - ya))
                        in = !in;
                }
                inside += in;
            }
            blend(r, i, j, color, opacity * inside / 16.0);
        }
    }
}

void mf_raster_fill_circle(struct mf_raster *r, double cx, double cy, double radius, uint32_t color,
                           double opacity)
{
    uint32_t i0, j0, i1, j1;
    if (!pixel_box(r, cx, cy, cx, cy, radius + 1.0, &i0, &j0, &i1, &j1))
        return;
    for (uint32_t j = j0; j < j1; j++)
        for (uint32_t i = i0; i < i1; i++) {
            double d = hypot(i + 0.5 - cx, j + 0.5 - cy);
            blend(r, i, j, color, opacity * fmin(1.0, fmax(0.0, radius + 0.5 - d)));
        }
}

/* ---- Strokes ------------------------------------------------------------ */

void mf_raster_stroke_begin(struct mf_raster *r)
{
    r->mx0 = r->my0 = UINT32_MAX;
    r->mx1 = r->my1 = 0;
}

/* One solid piece into the mask: the pixels whose centre lies within
 * width / 2 of the segment (round caps) or of its rectangle (butt caps),
 * with a one-pixel ramp at the edge. Only the x range a row can reach is
 * visited, so a long diagonal costs its length, not its bounding box. */
static void mask_segment(struct mf_raster *r, double x0, double y0, double x1, double y1,
                         double width, bool round_caps)
{
    double hw = width / 2.0, reach = hw + 1.0;
    uint32_t i0, j0, i1, j1;
    if (!pixel_box(r, x0, y0, x1, y1, reach, &i0, &j0, &i1, &j1))
        return;
    double dx = x1 - x0, dy = y1 - y0, len = hypot(dx, dy);
    if (len < 1e-9 && !round_caps)
        return;
    for (uint32_t j = j0; j < j1; j++) {
        double py = j + 0.5;
        /* The x range of the segment's points within `reach` of this row. */
        double xa = fmin(x0, x1), xb = fmax(x0, x1);
        if (fabs(dy) > 1e-9) {
            double ta = fmin(1.0, fmax(0.0, (py - reach - y0) / dy));
            double tb = fmin(1.0, fmax(0.0, (py + reach - y0) / dy));
            xa = fmin(x0 + ta * dx, x0 + tb * dx);
            xb = fmax(x0 + ta * dx, x0 + tb * dx);
        }
        double lo = fmax((double)i0, floor(xa - reach)), hi = fmin((double)i1, ceil(xb + reach));
        for (double fi = lo; fi < hi; fi++) {
            uint32_t i = (uint32_t)fi;
            double px = i + 0.5, cover;
            if (len < 1e-9) {
                cover = hw + 0.5 - hypot(px - x0, py - y0);
            } else {
                double s = ((px - x0) * dx + (py - y0) * dy) / len; /* along, from the start */
                double perp = fabs((px - x0) * dy - (py - y0) * dx) / len;
                if (round_caps) {
                    double sc = fmin(len, fmax(0.0, s));
                    cover = hw + 0.5 - hypot(px - (x0 + dx * sc / len), py - (y0 + dy * sc / len));
                } else {
                    cover = fmin(hw + 0.5 - perp, fmin(s, len - s) + 0.5);
                    cover = fmin(cover, 1.0) * fmin(1.0, hw * 2.0); /* hairlines are fainter */
                }
            }
            if (!(cover > 0.0))
                continue;
            uint8_t v = (uint8_t)lround(fmin(cover, 1.0) * 255.0);
            uint8_t *m = r->mask + (size_t)j * r->w + i;
            if (v > *m)
                *m = v;
            if (i < r->mx0)
                r->mx0 = i;
            if (i + 1 > r->mx1)
                r->mx1 = i + 1;
            if (j < r->my0)
                r->my0 = j;
            if (j + 1 > r->my1)
                r->my1 = j + 1;
        }
    }
}

/* A dash pattern: up to 8 lengths, on first; false when solid. */
static bool parse_dash(const char *dash, double *lens, int *n)
{
    *n = 0;
    double total = 0.0;
    while (dash && *dash && *n < 8) {
        char *end;
        double v = strtod(dash, &end);
        if (end == dash || !(v >= 0.0))
            break;
        lens[(*n)++] = v;
        total += v;
        dash = end + strspn(end, " ,");
    }
    if (*n % 2) { /* SVG repeats an odd list */
        for (int k = 0; k < *n && *n + k < 8; k++)
            lens[*n + k] = lens[k];
        *n *= 2;
    }
    return *n >= 2 && total > 0.0;
}

void mf_raster_stroke_segment(struct mf_raster *r, double x0, double y0, double x1, double y1,
                              double width, bool round_caps, const char *dash)
{
    double lens[16];
    int n;
    if (!(width > 0.0) || !isfinite(x0 + y0 + x1 + y1))
        return;
    if (!parse_dash(dash, lens, &n)) {
        mask_segment(r, x0, y0, x1, y1, width, round_caps);
        return;
    }
    double len = hypot(x1 - x0, y1 - y0), s = 0.0;
    for (int k = 0; s < len; k = (k + 1) % n) {
        double e = fmin(len, s + lens[k]);
        if (k % 2 == 0 && e > s)
            mask_segment(r, x0 + (x1 - x0) * s / len, y0 + (y1 - y0) * s / len,
                         x0 + (x1 - x0) * e / len, y0 + (y1 - y0) * e / len, width, round_caps);
        s = e;
        if (s > 1e7) /* a pattern of zeros and a long line */
            break;
    }
}

void mf_raster_stroke_end(struct mf_raster *r, uint32_t color, double opacity)
{
    double cx0 = 0.0, cy0 = 0.0, cx1 = r->w, cy1 = r->h;
    if (r->clipped) {
        cx0 = r->clip_x0;
        cy0 = r->clip_y0;
        cx1 = r->clip_x1;
        cy1 = r->clip_y1;
    }
    for (uint32_t j = r->my0; j < r->my1; j++) {
        uint8_t *m = r->mask + (size_t)j * r->w;
        bool row_in = j + 0.5 >= cy0 && j + 0.5 < cy1;
        for (uint32_t i = r->mx0; i < r->mx1; i++) {
            if (m[i] && row_in && i + 0.5 >= cx0 && i + 0.5 < cx1)
                blend(r, i, j, color, opacity * m[i] / 255.0);
            m[i] = 0;
        }
    }
    mf_raster_stroke_begin(r);
}

/* ---- Text --------------------------------------------------------------- */

static double font_unit(double size_px)
{
    return size_px < 15.0 ? 1.0 : round(size_px / 10.0);
}

static double advance(double unit, bool bold)
{
    return MF_FONT_ADVANCE * unit + (bold && unit < 2.0 ? 1.0 : 0.0);
}

/* Walks the characters drawn for text: at most max_chars, then an
 * ellipsis; malformed bytes and characters the font lacks as '?'. */
static const uint8_t *next_glyph(const unsigned char **s, size_t *chars, size_t max_chars)
{
    if (!**s)
        return NULL;
    if ((*chars)++ == max_chars) {
        *s += strlen((const char *)*s);
        return mf_font_glyph(0x2026);
    }
    uint32_t cp = '?';
    size_t n = mf_utf8_next(*s, &cp);
    *s += n ? n : 1;
    const uint8_t *g = mf_font_glyph(cp);
    return g ? g : mf_font_glyph('?');
}

double mf_raster_text_width(double size_px, bool bold, const char *text, size_t max_chars)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t chars = 0, n = 0;
    while (next_glyph(&s, &chars, max_chars))
        n++;
    return (double)n * advance(font_unit(size_px), bold);
}

/* Paints the set cells of glyph g at (x, top), each grown by `grow` pixels. */
static void paint_glyph(struct mf_raster *r, const uint8_t *g, double x, double top, double unit,
                        bool bold, double grow, uint32_t color)
{
    for (int row = 0; row < MF_FONT_ROWS; row++)
        for (int col = 0; col < 5; col++) {
            if (!(g[row] & (0x10 >> col)))
                continue;
            double cx = x + col * unit, cy = top + row * unit;
            mf_raster_fill_rect(r, cx - grow, cy - grow, cx + unit + (bold ? 1.0 : 0.0) + grow,
                                cy + unit + grow, color, 1.0);
        }
}

double mf_raster_text(struct mf_raster *r, double x, double y, double size_px, bool bold, bool halo,
                      enum mf_text_anchor anchor, uint32_t color, const char *text,
                      size_t max_chars)
{
    double unit = font_unit(size_px), adv = advance(unit, bold);
    double width = mf_raster_text_width(size_px, bold, text, max_chars);
    if (anchor == MF_TEXT_MIDDLE)
        x -= width / 2.0;
    else if (anchor == MF_TEXT_END)
        x -= width;
    x = round(x);
    double top = round(y) - MF_FONT_ASCENT * unit;
    for (int pass = halo ? 0 : 1; pass < 2; pass++) {
        const unsigned char *s = (const unsigned char *)text;
        size_t chars = 0;
        double gx = x;
        for (const uint8_t *g; (g = next_glyph(&s, &chars, max_chars)); gx += adv)
            paint_glyph(r, g, gx, top, unit, bold, pass == 0 ? 1.0 : 0.0,
                        pass == 0 ? 0xFFFFFF : color);
    }
    return width;
}
