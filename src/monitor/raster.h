/*
 * A small software rasterizer for the monitor's charts (plot.c draws the
 * same chart through it and through SVG): anti-aliased strokes of any width
 * with round or butt caps and dashes, filled rectangles, polygons and
 * circles, and text in a built-in 5x7 bitmap font, over an 8-bit RGB image.
 * Colours are 0xRRGGBB; opacity is 0..1. Coordinates are SVG's: pixel
 * (i, j) covers [i, i+1] x [j, j+1].
 */
#ifndef MF_MONITOR_RASTER_H
#define MF_MONITOR_RASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"

struct mf_raster {
    uint32_t w, h;
    uint8_t *rgb;                /* w x h x 3, row-major */
    uint8_t *mask;               /* w x h: coverage of the stroke being drawn (0..255) */
    uint32_t mx0, my0, mx1, my1; /* where mask is not zero: [mx0, mx1) x [my0, my1) */
    bool clipped;
    double clip_x0, clip_y0, clip_x1, clip_y1;
};

/* The font: glyphs 5 wide and 9 rows (7 above the baseline, 2 below), in
 * cells 6 units wide; a unit is one pixel up to size 14, then size / 10
 * rounded. */
enum { MF_FONT_ROWS = 9, MF_FONT_ASCENT = 7, MF_FONT_ADVANCE = 6 };

/* An image of w x h filled with `background`. E_NOMEM. */
enum memfit_status mf_raster_init(struct mf_raster *r, uint32_t w, uint32_t h, uint32_t background);
/* Frees the buffers; accepts a raster already released or zeroed. */
void mf_raster_release(struct mf_raster *r);

/* Later drawing stays inside [x0, x1) x [y0, y1) (clip true) or anywhere. */
void mf_raster_clip(struct mf_raster *r, bool clip, double x0, double y0, double x1, double y1);

void mf_raster_fill_rect(struct mf_raster *r, double x0, double y0, double x1, double y1,
                         uint32_t color, double opacity);
/* A simple polygon of n points (xy pairs), even-odd rule. */
void mf_raster_fill_polygon(struct mf_raster *r, const double *xy, size_t n, uint32_t color,
                            double opacity);
void mf_raster_fill_circle(struct mf_raster *r, double cx, double cy, double radius, uint32_t color,
                           double opacity);

/*
 * A stroke: begin, any number of segments (joined where they overlap, so
 * a polyline's joints are not painted twice), end to paint it. `dash`
 * ("7 5": on, off, ... in pixels; NULL or "" solid) runs along each
 * segment from its start.
 */
void mf_raster_stroke_begin(struct mf_raster *r);
void mf_raster_stroke_segment(struct mf_raster *r, double x0, double y0, double x1, double y1,
                              double width, bool round_caps, const char *dash);
void mf_raster_stroke_end(struct mf_raster *r, uint32_t color, double opacity);

/* Anchors of text: x is where it starts, its middle or its end. */
enum mf_text_anchor { MF_TEXT_START, MF_TEXT_MIDDLE, MF_TEXT_END };

/*
 * Draws UTF-8 `text` (at most max_chars characters, then an ellipsis) with
 * its baseline at y, in the font scaled for `size_px`; bold smears each
 * glyph one pixel right; halo puts a white outline under it. Characters the
 * font lacks are drawn as '?'. Returns the width drawn, in pixels.
 */
double mf_raster_text(struct mf_raster *r, double x, double y, double size_px, bool bold, bool halo,
                      enum mf_text_anchor anchor, uint32_t color, const char *text,
                      size_t max_chars);

/* The width mf_raster_text() would draw. */
double mf_raster_text_width(double size_px, bool bold, const char *text, size_t max_chars);

/* The 9 rows of the glyph for code point cp (bit 4 the leftmost column);
 * NULL when the font lacks it. */
const uint8_t *mf_font_glyph(uint32_t cp);

/* The code point of the UTF-8 sequence at s and its length (1 to 4), or 0
 * for a malformed one (overlong, surrogate, beyond U+10FFFF, cut short). */
size_t mf_utf8_next(const unsigned char *s, uint32_t *cp);

/* "#rrggbb" as 0xRRGGBB (0 for anything else). */
uint32_t mf_color_parse(const char *hex);

#endif
