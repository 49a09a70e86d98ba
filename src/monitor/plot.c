/*
 * `memfit plot`: draws the selected run of an analysis as an SVG chart —
 * working set and RSS over time, the limit and the warning/critical bands
 * under it, level changes, OOM kills, gaps, and the least-squares trend of
 * the working set over the span analyze.c fitted (the statistics are
 * analyze.c's; nothing is computed twice). The document is built in memory
 * and written through a temporary file renamed at the end.
 *
 * Scales never divide by zero: an empty or flat range is widened first.
 * Long runs are thinned to the first, lowest, highest and last value of
 * each pixel column, so the file stays small and the envelope exact.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "monitor/analysis.h"
#include "monitor/raster.h"

#define FONT        "DejaVu Sans, Helvetica, Arial, sans-serif"
#define CHAR_WIDTH  0.6 /* of the font size: a generous estimate, to avoid overlap */
#define COLOR_WS    "#1f6fc4"
#define COLOR_RSS   "#f08c00"
#define COLOR_TREND "#212529"
#define COLOR_LIMIT "#c92a2a"
#define COLOR_OOM   "#e03131"
#define COLOR_TEXT  "#212529"
#define COLOR_MUTED "#6c757d"
/* A white outline under text drawn over the data keeps it readable. */
#define HALO                                                                                       \
    "paint-order=\"stroke\" stroke=\"#ffffff\" stroke-width=\"3\" stroke-linejoin=\"round\""

enum { LEVEL_UNKNOWN = MEMFIT_ANALYSIS_N_LEVELS - 1 };
static const char *const level_colors[MEMFIT_ANALYSIS_N_LEVELS] = {"#2f9e44", "#e8a200", "#e8590c",
                                                                   "#c92a2a", "#868e96"};

struct memfit_plot_options memfit_plot_options_default(void)
{
    struct memfit_plot_options o = {
        .title = NULL, .width = 1000, .height = 500, .format = MEMFIT_PLOT_FORMAT_AUTO};
    return o;
}

/* ---- A growing string --------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed; /* an allocation failed: later writes are dropped */
};

static bool sb_reserve(struct sbuf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = memfit_realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) MEMFIT_PRINTF(2, 3);

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_putc(struct sbuf *b, char c)
{
    if (sb_reserve(b, 1)) {
        b->p[b->len++] = c;
        b->p[b->len] = '\0';
    }
}

/* Length of the valid UTF-8 sequence at s that XML 1.0 allows, or 0. */
static size_t xml_char_len(const unsigned char *s)
{
    uint32_t cp;
    size_t n = mf_utf8_next(s, &cp);
    if (n == 0 || (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0xFFFE ||
        cp == 0xFFFF)
        return 0;
    return n;
}

/* Text as XML character data: markup escaped, and bytes XML cannot hold
 * (control characters, invalid UTF-8) replaced by '?'. At most max_chars
 * characters, then an ellipsis. */
static void sb_text(struct sbuf *b, const char *text, size_t max_chars)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t chars = 0;
    while (*s) {
        if (chars++ == max_chars) {
            sb_printf(b, "\xE2\x80\xA6");
            return;
        }
        size_t n = xml_char_len(s);
        switch (n ? *s : '?') {
        case '&':
            sb_printf(b, "&amp;");
            break;
        case '<':
            sb_printf(b, "&lt;");
            break;
        case '>':
            sb_printf(b, "&gt;");
            break;
        case '"':
            sb_printf(b, "&quot;");
            break;
        case '\'':
            sb_printf(b, "&apos;");
            break;
        default:
            if (n == 0) {
                sb_putc(b, '?');
            } else if (sb_reserve(b, n)) {
                memcpy(b->p + b->len, s, n);
                b->len += n;
                b->p[b->len] = '\0';
            }
        }
        s += n ? n : 1;
    }
}

/* ---- Scales ------------------------------------------------------------- */

/* A "nice" step (1, 2, 2.5 or 5 times a power of ten) giving about
 * `target` intervals over `range` (> 0). */
static double nice_step(double range, int target)
{
    double raw = range / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    double m = f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 2.5 ? 2.5 : f <= 5.0 ? 5.0 : 10.0;
    return m * mag;
}

/* Decimals needed to print multiples of step exactly (0 to 6). */
static int step_decimals(double step)
{
    for (int d = 0; d < 6; d++) {
        double scaled = step * pow(10.0, d);
        if (fabs(scaled - round(scaled)) < 1e-6 * scaled)
            return d;
    }
    return 6;
}

struct axis {
    double lo, hi;       /* data range shown, in data units (bytes or seconds) */
    double px_lo, px_hi; /* where lo and hi land */
    double unit;         /* data units per label unit (1024^k bytes; 1, 60, 3600 s) */
    const char *unit_name;
    double step;       /* tick step in label units */
    double first_tick; /* in label units */
    int decimals;
};

static double axis_px(const struct axis *a, double v)
{
    return a->px_lo + (v - a->lo) / (a->hi - a->lo) * (a->px_hi - a->px_lo);
}

/* A byte axis from 0 to at least `top`, in the largest binary unit the top
 * reaches 1.5 times ("1500 MiB" rather than "1.5 GiB" ticks 0.25 apart). */
static void byte_axis(struct axis *a, double top, double px_bottom, double px_top)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!(top > 0.0) || !isfinite(top))
        top = 1024.0 * 1024.0;
    int k = 0;
    while (k < 6 && top / pow(1024.0, k + 1) >= 1.5)
        k++;
    a->unit = pow(1024.0, k);
    a->unit_name = names[k];
    /* Of the nice steps that keep ticks 28 px apart and whose top wastes at
     * most 10 % more height than the tightest one, the one whose tick count
     * is nearest one per 55 px (8.3 GiB: 0..9 by 1, not 0..10 by 2;
     * 548 MiB: 0..600 by 100, not 0..550 by 50 or 0..600 by 200). */
    double v = top / a->unit, max_ticks = fmax(2.0, (px_bottom - px_top) / 28.0);
    double want = fmax(3.0, (px_bottom - px_top) / 55.0), best = INFINITY;
    double tightest = INFINITY;
    for (int pass = 0; pass < 2; pass++) {
        for (int t = 24; t >= 2; t--) { /* coarser steps come last */
            double step = nice_step(v, t);
            double hi = ceil(v / step - 1e-9) * step;
            if (hi / step > max_ticks)
                continue;
            if (pass == 0 && hi < tightest)
                tightest = hi;
            if (pass == 1 && hi <= tightest * 1.1 && fabs(hi / step - want) < best) {
                best = fabs(hi / step - want);
                a->hi = hi;
                a->step = step;
            }
        }
    }
    if (isinf(tightest)) { /* a tiny chart: two ticks */
        a->step = nice_step(v, 2);
        a->hi = ceil(v / a->step - 1e-9) * a->step;
    }
    a->hi *= a->unit;
    a->decimals = step_decimals(a->step);
    a->lo = 0.0;
    a->first_tick = 0.0;
    a->px_lo = px_bottom;
    a->px_hi = px_top;
}

/* A time axis over exactly [lo, hi] seconds (the run fills the width), in
 * s, min or h, with ticks at the multiples of the step inside it. */
static void time_axis(struct axis *a, double lo, double hi, double px_left, double px_right,
                      int target)
{
    if (!(hi > lo))
        hi = lo + 1.0;
    double span = hi - lo;
    a->unit = span >= 7200.0 ? 3600.0 : span >= 120.0 ? 60.0 : 1.0;
    a->unit_name = span >= 7200.0 ? "h" : span >= 120.0 ? "min" : "s";
    a->step = nice_step(span / a->unit, target);
    a->decimals = step_decimals(a->step);
    a->lo = lo;
    a->hi = hi;
    a->first_tick = ceil(lo / a->unit / a->step - 1e-9) * a->step;
    a->px_lo = px_left;
    a->px_hi = px_right;
}

/* ---- The canvas: one chart, two back ends ------------------------------- */

/*
 * The drawing functions below describe the chart once, in SVG's
 * coordinates, through these few primitives; each writes SVG text or
 * paints pixels (raster.c), whichever back end the canvas has.
 */
struct canvas {
    struct sbuf *svg;      /* writing SVG, or NULL */
    struct mf_raster *ras; /* painting pixels, or NULL */
    double clip[4];        /* the plot area (x0, y0, x1, y1) clip-path="url(#plot)" names */
    /* raster: the path and the text being drawn */
    struct stroke_style {
        const char *color;
        double width;
        const char *dash; /* "7 5"; NULL: solid */
        bool clip;        /* to the plot area */
        bool round;       /* round joins and caps */
    } path;
    double pen_x, pen_y, span_x, span_y;
};

struct text_style {
    double size; /* font size, px */
    bool bold;
    enum mf_text_anchor anchor;
    const char *color;
    bool halo; /* a white outline, for text over the data */
};

static void cv_clip(struct canvas *cv, bool clip)
{
    mf_raster_clip(cv->ras, clip, cv->clip[0], cv->clip[1], cv->clip[2], cv->clip[3]);
}

static const char *svg_clip(bool clip)
{
    return clip ? " clip-path=\"url(#plot)\"" : "";
}

/* A filled rectangle; opacity 1 is opaque. */
static void cv_rect(struct canvas *cv, double x, double y, double w, double h, const char *fill,
                    double opacity, bool clip)
{
    if (cv->svg) {
        sb_printf(cv->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\"",
                  x, y, w, h, fill);
        if (opacity < 1.0)
            sb_printf(cv->svg, " fill-opacity=\"%.2f\"", opacity);
        sb_printf(cv->svg, "%s/>\n", svg_clip(clip));
        return;
    }
    cv_clip(cv, clip);
    mf_raster_fill_rect(cv->ras, x, y, x + w, y + h, mf_color_parse(fill), opacity);
    cv_clip(cv, false);
}

/* A straight line; `tooltip` (SVG only) may be NULL. */
static void cv_line(struct canvas *cv, double x1, double y1, double x2, double y2,
                    const struct stroke_style *st, const char *tooltip)
{
    if (cv->svg) {
        sb_printf(cv->svg,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                  "stroke-width=\"%.1f\"",
                  x1, y1, x2, y2, st->color, st->width);
        if (st->dash)
            sb_printf(cv->svg, " stroke-dasharray=\"%s\"", st->dash);
        sb_printf(cv->svg, "%s", svg_clip(st->clip));
        if (tooltip)
            sb_printf(cv->svg, "><title>%s</title></line>\n", tooltip);
        else
            sb_printf(cv->svg, "/>\n");
        return;
    }
    cv_clip(cv, st->clip);
    mf_raster_stroke_begin(cv->ras);
    mf_raster_stroke_segment(cv->ras, x1, y1, x2, y2, st->width, st->round, st->dash);
    mf_raster_stroke_end(cv->ras, mf_color_parse(st->color), 1.0);
    cv_clip(cv, false);
}

/* An open path of straight pieces: begin, points (move starts a new piece), end. */
static void cv_path_begin(struct canvas *cv, const struct stroke_style *st)
{
    if (cv->svg) {
        sb_printf(cv->svg, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\"%s d=\"",
                  st->color, st->width,
                  st->round ? " stroke-linejoin=\"round\" stroke-linecap=\"round\"" : "");
        return;
    }
    cv->path = *st;
    mf_raster_stroke_begin(cv->ras);
}

static void cv_path_point(struct canvas *cv, double x, double y, bool move)
{
    if (cv->svg) {
        sb_printf(cv->svg, "%s%.1f %.1f", move ? "M" : "L", x, y);
        return;
    }
    if (!move)
        mf_raster_stroke_segment(cv->ras, cv->pen_x, cv->pen_y, x, y, cv->path.width,
                                 cv->path.round, cv->path.dash);
    cv->pen_x = x;
    cv->pen_y = y;
}

static void cv_path_end(struct canvas *cv)
{
    if (cv->svg) {
        sb_printf(cv->svg, "\"/>\n");
        return;
    }
    cv_clip(cv, cv->path.clip);
    mf_raster_stroke_end(cv->ras, mf_color_parse(cv->path.color), 1.0);
    cv_clip(cv, false);
}

/* A filled triangle (the OOM marks). */
static void cv_triangle(struct canvas *cv, const double xy[6], const char *fill)
{
    if (cv->svg) {
        sb_printf(cv->svg, "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" fill=\"%s\"/>\n", xy[0],
                  xy[1], xy[2], xy[3], xy[4], xy[5], fill);
        return;
    }
    mf_raster_fill_polygon(cv->ras, xy, 3, mf_color_parse(fill), 1.0);
}

static void cv_circle(struct canvas *cv, double x, double y, double r, const char *fill)
{
    if (cv->svg) {
        sb_printf(cv->svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n", x, y, r,
                  fill);
        return;
    }
    mf_raster_fill_circle(cv->ras, x, y, r, mf_color_parse(fill), 1.0);
}

/*
 * Text in pieces: begin at (x, y) in a style, then spans (each at most
 * max_chars characters, SIZE_MAX: all; a span may change the colour and
 * the weight, NULL and false keep the text's), then end.
 */
static void cv_text_begin(struct canvas *cv, double x, double y, const struct text_style *ts)
{
    if (cv->svg) {
        static const char *const anchors[] = {"", " text-anchor=\"middle\"",
                                              " text-anchor=\"end\""};
        sb_printf(cv->svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\"%s%s fill=\"%s\"%s>", x, y,
                  ts->size, ts->bold ? " font-weight=\"bold\"" : "", anchors[ts->anchor], ts->color,
                  ts->halo ? " " HALO : "");
        return;
    }
    cv->span_x = x;
    cv->span_y = y;
}

static void cv_text_span(struct canvas *cv, const struct text_style *ts, const char *text,
                         size_t max_chars, const char *color, bool bold)
{
    if (cv->svg) {
        if (color || bold)
            sb_printf(cv->svg, "<tspan%s fill=\"%s\">", bold ? " font-weight=\"bold\"" : "",
                      color ? color : ts->color);
        sb_text(cv->svg, text, max_chars);
        if (color || bold)
            sb_printf(cv->svg, "</tspan>");
        return;
    }
    cv->span_x +=
        mf_raster_text(cv->ras, cv->span_x, cv->span_y, ts->size, ts->bold || bold, ts->halo,
                       ts->anchor, mf_color_parse(color ? color : ts->color), text, max_chars);
}

static void cv_text_end(struct canvas *cv)
{
    if (cv->svg)
        sb_printf(cv->svg, "</text>\n");
}

/* One piece of text. */
static void cv_text(struct canvas *cv, double x, double y, const struct text_style *ts,
                    const char *text)
{
    cv_text_begin(cv, x, y, ts);
    cv_text_span(cv, ts, text, SIZE_MAX, NULL, false);
    cv_text_end(cv);
}

/* ---- The chart ---------------------------------------------------------- */

struct chart {
    struct canvas *cv;
    const memfit_analysis *a;
    const struct memfit_run_summary *s;
    const struct mf_series *ser;
    double w, h;                     /* document size */
    double left, right, top, bottom; /* plot area */
    struct axis x, y;
    bool limit_shown;
};

static double text_width(const char *text, double font_px)
{
    size_t chars = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        chars += (*p & 0xC0) != 0x80;
    return (double)chars * font_px * CHAR_WIDTH;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static double ypx(const struct chart *c, double bytes)
{
    return clampd(axis_px(&c->y, bytes), c->top - 2.0, c->bottom + 2.0);
}

static double xpx(const struct chart *c, double t)
{
    return axis_px(&c->x, t);
}

static void draw_title(struct chart *c, const struct memfit_plot_options *o)
{
    struct canvas *cv = c->cv;
    const struct memfit_run_summary *s = c->s;
    size_t max_chars = (size_t)((c->w - 40.0) / (18.0 * CHAR_WIDTH));
    struct text_style ts = {18.0, true, MF_TEXT_START, COLOR_TEXT, false};
    cv_text_begin(cv, 20.0, 30.0, &ts);
    if (o->title) {
        cv_text_span(cv, &ts, o->title, max_chars, NULL, false);
    } else if (s->command[0]) {
        cv_text_span(cv, &ts, "Memory of ", SIZE_MAX, NULL, false);
        cv_text_span(cv, &ts, s->command, max_chars > 10 ? max_chars - 10 : 1, NULL, false);
    } else {
        const char *slash = strrchr(c->a->name, '/');
        cv_text_span(cv, &ts, "Memory of ", SIZE_MAX, NULL, false);
        cv_text_span(cv, &ts, slash ? slash + 1 : c->a->name, max_chars > 10 ? max_chars - 10 : 1,
                     NULL, false);
    }
    cv_text_end(cv);

    /* First subtitle line: the verdict on what the monitor judged (the
     * process tree's RSS where no cgroup limit applied), the one thing to
     * take away. Both lines are cut with an ellipsis where the chart is too
     * narrow. */
    const struct memfit_trend *t = &s->judged_trend;
    static const char *const verdict_colors[] = {COLOR_MUTED, "#2f9e44", "#e8590c", "#c92a2a"};
    static const char *const verdict_text[] = {"insufficient data for a trend", "no leak",
                                               "possible leak", "leak"};
    char line[512], part[160];
    size_t n = 0;
    line[0] = '\0';
    char judged[160];
    mf_format_judged(s, judged, sizeof(judged));
    n += (size_t)snprintf(line + n, sizeof(line) - n, " \xC2\xB7 %s", judged);
    if (!isnan(t->slope_bytes_per_s) && n < sizeof(line)) {
        n += (size_t)snprintf(line + n, sizeof(line) - n,
                              " \xC2\xB7 %+.1f MB/h (MB = 10\xE2\x81\xB6 bytes)",
                              t->slope_bytes_per_s * 3600.0 / 1e6);
        if (t->per_period && n < sizeof(line)) {
            mf_format_duration(t->period_s, part, sizeof(part));
            n += (size_t)snprintf(line + n, sizeof(line) - n, " of the lows per %s period", part);
        }
        if (!isnan(t->r2) && n < sizeof(line))
            n += (size_t)snprintf(line + n, sizeof(line) - n, ", R\xC2\xB2 %.3f", t->r2);
    }
    if (!isnan(t->limit_eta_s) && n < sizeof(line)) {
        mf_format_eta(t->limit_eta_s, part, sizeof(part));
        if (t->limit_eta_s > 0.0)
            snprintf(line + n, sizeof(line) - n,
                     " \xC2\xB7 at this rate the limit is reached in %s", part);
        else
            snprintf(line + n, sizeof(line) - n, " \xC2\xB7 the trend has reached the limit");
    }
    const char *verdict = verdict_text[t->verdict];
    double room = c->w - 40.0 - text_width(verdict, 13.0 * 1.1);
    ts = (struct text_style){13.0, false, MF_TEXT_START, COLOR_TEXT, false};
    cv_text_begin(cv, 20.0, 52.0, &ts);
    cv_text_span(cv, &ts, verdict, SIZE_MAX, verdict_colors[t->verdict], true);
    cv_text_span(cv, &ts, line, room > 0.0 ? (size_t)(room / (13.0 * CHAR_WIDTH)) : 0, NULL, false);
    cv_text_end(cv);

    /* Second line: when, where, how much. */
    n = 0;
    const char *st = s->start_time;
    if (strlen(st) >= 19 && st[10] == 'T' && st[strlen(st) - 1] == 'Z') /* RFC 3339, UTC */
        n += (size_t)snprintf(line, sizeof(line), "started %.10s %.8s UTC", st, st + 11);
    else if (st[0])
        n += (size_t)snprintf(line, sizeof(line), "started %.60s", st);
    else
        n += (size_t)snprintf(line, sizeof(line), "start time unknown");
    if (s->hostname[0])
        n += (size_t)snprintf(line + n, sizeof(line) - n, " on %.60s", s->hostname);
    char d[48], sz[32];
    mf_format_duration(s->duration_s, d, sizeof(d));
    n += (size_t)snprintf(line + n, sizeof(line) - n, " \xC2\xB7 %s, %llu sample%s", d,
                          (unsigned long long)s->n_samples, s->n_samples == 1 ? "" : "s");
    if (s->n_gaps)
        n += (size_t)snprintf(line + n, sizeof(line) - n, ", %llu gap%s",
                              (unsigned long long)s->n_gaps, s->n_gaps == 1 ? "" : "s");
    if (s->limit_bytes) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, " \xC2\xB7 limit %s",
                              memfit_format_size(s->limit_bytes, sz, sizeof(sz)));
        if (!isnan(s->peak_percent))
            n += (size_t)snprintf(line + n, sizeof(line) - n, ", peak %.1f %%", s->peak_percent);
    }
    if (s->n_oom_events)
        snprintf(line + n, sizeof(line) - n, " \xC2\xB7 %llu OOM kill%s",
                 (unsigned long long)s->n_oom_events, s->n_oom_events == 1 ? "" : "s");
    ts = (struct text_style){12.0, false, MF_TEXT_START, COLOR_MUTED, false};
    cv_text_begin(cv, 20.0, 71.0, &ts);
    cv_text_span(cv, &ts, line, (size_t)((c->w - 40.0) / (12.0 * CHAR_WIDTH)), NULL, false);
    cv_text_end(cv);
}

/* A horizontal band between two byte values, with its name at the right. */
static void draw_band(struct chart *c, double lo, double hi, const char *fill, double opacity,
                      const char *label, const char *label_color)
{
    if (!(hi > lo))
        return;
    double y0 = ypx(c, hi), y1 = ypx(c, lo);
    cv_rect(c->cv, c->left, y0, c->right - c->left, y1 - y0, fill, opacity, true);
    struct text_style ts = {10.0, false, MF_TEXT_END, label_color, true};
    if (label && y1 - y0 >= 13.0)
        cv_text(c->cv, c->right - 6.0, y1 - 3.0, &ts, label);
}

static void draw_bands(struct chart *c)
{
    const struct memfit_run_summary *s = c->s;
    if (!c->limit_shown)
        return;
    double limit = (double)s->limit_bytes;
    double warn = isnan(s->warning_percent) ? NAN : s->warning_percent / 100.0 * limit;
    double crit = isnan(s->critical_percent) ? NAN : s->critical_percent / 100.0 * limit;
    char label[64];
    if (!isnan(warn)) {
        snprintf(label, sizeof(label), "warning \xE2\x89\xA5 %g %%", s->warning_percent);
        draw_band(c, warn, isnan(crit) ? limit : crit, "#ffd43b", 0.22, label, "#b08000");
    }
    if (!isnan(crit)) {
        snprintf(label, sizeof(label), "critical \xE2\x89\xA5 %g %%", s->critical_percent);
        draw_band(c, crit, limit, "#ff8787", 0.22, label, "#c92a2a");
    }
    if (s->danger_available_bytes && (double)s->danger_available_bytes < limit)
        draw_band(c, limit - (double)s->danger_available_bytes, limit, "#c92a2a", 0.3, "danger",
                  "#a51d1d");
}

static void draw_grid_and_axes(struct chart *c)
{
    struct canvas *cv = c->cv;
    char label[64];
    struct text_style ts = {11.0, false, MF_TEXT_END, COLOR_MUTED, false};
    struct stroke_style grid = {"#dee2e6", 1.0, NULL, false, false};
    /* Horizontal grid and the byte labels. */
    for (int i = 0; i <= 1000; i++) {
        double v = (double)i * c->y.step * c->y.unit;
        if (v > c->y.hi * (1.0 + 1e-9))
            break;
        double y = axis_px(&c->y, v);
        cv_line(cv, c->left, y, c->right, y, &grid, NULL);
        snprintf(label, sizeof(label), "%.*f %s", c->y.decimals, (double)i * c->y.step,
                 c->y.unit_name);
        cv_text(cv, c->left - 8.0, y + 4.0, &ts, label);
    }
    /* Vertical ticks and the time labels. */
    struct stroke_style vgrid = {"#f1f3f5", 1.0, NULL, false, false};
    struct stroke_style tick = {COLOR_MUTED, 1.0, NULL, false, false};
    ts.anchor = MF_TEXT_MIDDLE;
    for (int i = 0; i <= 1000; i++) {
        double v = (c->x.first_tick + (double)i * c->x.step) * c->x.unit;
        if (v > c->x.hi * (1.0 + 1e-9) + 1e-9)
            break;
        double x = xpx(c, v);
        cv_line(cv, x, c->top, x, c->bottom, &vgrid, NULL);
        cv_line(cv, x, c->bottom, x, c->bottom + 5.0, &tick, NULL);
        snprintf(label, sizeof(label), "%.*f", c->x.decimals, v / c->x.unit);
        cv_text(cv, x, c->bottom + 18.0, &ts, label);
    }
    ts = (struct text_style){12.0, false, MF_TEXT_MIDDLE, COLOR_TEXT, false};
    snprintf(label, sizeof(label), "time since start (%s)", c->x.unit_name);
    cv_text(cv, (c->left + c->right) / 2.0, c->bottom + 36.0, &ts, label);
    cv_path_begin(cv, &tick);
    cv_path_point(cv, c->left, c->top, true);
    cv_path_point(cv, c->left, c->bottom, false);
    cv_path_point(cv, c->right, c->bottom, false);
    cv_path_end(cv);
}

/* Gaps: shaded columns where no sample was taken. */
static void draw_gaps(struct chart *c)
{
    const struct mf_series *ser = c->ser;
    for (size_t i = 1; i < ser->n_samples; i++) {
        if (!ser->samples[i].gap_before)
            continue;
        double x0 = xpx(c, ser->samples[i - 1].t_s), x1 = xpx(c, ser->samples[i].t_s);
        cv_rect(c->cv, x0, c->top, x1 - x0, c->bottom - c->top, "#adb5bd", 0.18, false);
        struct text_style ts = {10.0, false, MF_TEXT_MIDDLE, COLOR_MUTED, false};
        if (x1 - x0 >= 30.0)
            cv_text(c->cv, (x0 + x1) / 2.0, c->bottom - 6.0, &ts, "gap");
    }
}

/*
 * A series as one path, broken at gaps and unknown values. Many samples per
 * pixel column are reduced to that column's first, lowest, highest and
 * last value. A lone point becomes a dot: a second pass over the samples
 * draws the dots after the path.
 */
struct line_state {
    struct chart *c;
    bool dots;  /* this pass draws the dots, not the path */
    double col; /* current pixel column (floor of x) */
    double first, lo, hi, last;
    double t_first, t_lo, t_hi, t_last;
    size_t n_col;        /* values in the column */
    size_t n_seg;        /* points in the current segment */
    double seg_x, seg_y; /* its first point, for a lone dot */
};

static void line_point(struct line_state *ls, double t, double v)
{
    double x = xpx(ls->c, t), y = ypx(ls->c, v);
    if (!ls->dots)
        cv_path_point(ls->c->cv, x, y, ls->n_seg == 0);
    if (!ls->n_seg) {
        ls->seg_x = x;
        ls->seg_y = y;
    }
    ls->n_seg++;
}

static void line_flush_column(struct line_state *ls)
{
    if (!ls->n_col)
        return;
    line_point(ls, ls->t_first, ls->first);
    if (ls->n_col > 2) {
        bool lo_first = ls->t_lo <= ls->t_hi;
        line_point(ls, lo_first ? ls->t_lo : ls->t_hi, lo_first ? ls->lo : ls->hi);
        line_point(ls, lo_first ? ls->t_hi : ls->t_lo, lo_first ? ls->hi : ls->lo);
    }
    if (ls->n_col > 1)
        line_point(ls, ls->t_last, ls->last);
    ls->n_col = 0;
}

static void line_break(struct line_state *ls, const char *color)
{
    line_flush_column(ls);
    if (ls->n_seg == 1 && ls->dots)
        cv_circle(ls->c->cv, ls->seg_x, ls->seg_y, 2.5, color);
    ls->n_seg = 0;
}

static void draw_series_pass(struct chart *c, bool rss, const char *color, bool dots)
{
    const struct mf_series *ser = c->ser;
    struct line_state ls = {.c = c, .dots = dots};
    for (size_t i = 0; i < ser->n_samples; i++) {
        const struct mf_sample *x = &ser->samples[i];
        double v = rss ? x->rss_bytes : x->working_set_bytes;
        if (isnan(v) || x->gap_before)
            line_break(&ls, color);
        if (isnan(v))
            continue;
        double col = floor(xpx(c, x->t_s));
        if (ls.n_col && col != ls.col)
            line_flush_column(&ls);
        if (!ls.n_col) {
            ls.col = col;
            ls.first = ls.lo = ls.hi = v;
            ls.t_first = ls.t_lo = ls.t_hi = x->t_s;
        }
        if (v < ls.lo) {
            ls.lo = v;
            ls.t_lo = x->t_s;
        }
        if (v > ls.hi) {
            ls.hi = v;
            ls.t_hi = x->t_s;
        }
        ls.last = v;
        ls.t_last = x->t_s;
        ls.n_col++;
    }
    line_break(&ls, color);
}

static void draw_series(struct chart *c, bool rss, const char *color, double width)
{
    struct stroke_style st = {color, width, NULL, false, true};
    cv_path_begin(c->cv, &st);
    draw_series_pass(c, rss, color, false);
    cv_path_end(c->cv);
    draw_series_pass(c, rss, color, true);
}

static void draw_trend(struct chart *c)
{
    const struct memfit_trend *t = &c->s->judged_trend;
    if (isnan(t->slope_bytes_per_s) || t->verdict == MEMFIT_LEAK_INSUFFICIENT_DATA)
        return;
    double y0 = t->intercept_bytes + t->slope_bytes_per_s * t->fit_from_s;
    double y1 = t->intercept_bytes + t->slope_bytes_per_s * t->fit_to_s;
    struct stroke_style st = {COLOR_TREND, 1.8, "7 5", true, false};
    cv_line(c->cv, xpx(c, t->fit_from_s), axis_px(&c->y, y0), xpx(c, t->fit_to_s),
            axis_px(&c->y, y1), &st, NULL);
}

static void draw_limit(struct chart *c)
{
    char sz[32], label[64];
    if (!c->limit_shown)
        return;
    double y = ypx(c, (double)c->s->limit_bytes);
    struct stroke_style st = {COLOR_LIMIT, 1.8, NULL, false, false};
    cv_line(c->cv, c->left, y, c->right, y, &st, NULL);
    snprintf(label, sizeof(label), "limit %s", memfit_format_size(c->s->limit_bytes, sz, 32));
    struct text_style ts = {11.0, true, MF_TEXT_START, COLOR_LIMIT, true};
    cv_text(c->cv, c->left + 6.0, y - 5.0, &ts, label);
}

/* The level ribbon: a strip over the plot coloured by the level of each
 * sample until the next one (gaps left blank). Pieces narrower than half a
 * pixel merge into the next, keeping the most severe level among them. */
static bool any_level_known(const struct mf_series *ser)
{
    for (size_t i = 0; i < ser->n_samples; i++)
        if (ser->samples[i].level != LEVEL_UNKNOWN)
            return true;
    return false;
}

static void draw_level_ribbon(struct chart *c)
{
    const struct mf_series *ser = c->ser;
    if (ser->n_samples < 2 || !any_level_known(ser))
        return;
    double y = c->top - 9.0, from = NAN, to = NAN;
    unsigned level = 0;
    for (size_t i = 0; i + 1 < ser->n_samples; i++) {
        const struct mf_sample *x = &ser->samples[i];
        if (ser->samples[i + 1].gap_before)
            continue;
        double x0 = xpx(c, x->t_s), x1 = xpx(c, ser->samples[i + 1].t_s);
        unsigned lv = x->level;
        if (!isnan(from) && (x0 > to + 0.01 || (lv != level && to - from >= 0.5))) {
            cv_rect(c->cv, from, y, to - from, 6.0, level_colors[level], 1.0, false);
            from = NAN;
        }
        if (isnan(from)) {
            from = x0;
            level = lv;
        } else if (lv != LEVEL_UNKNOWN && (level == LEVEL_UNKNOWN || lv > level)) {
            level = lv;
        }
        to = x1;
    }
    if (!isnan(from))
        cv_rect(c->cv, from, y, to - from, 6.0, level_colors[level], 1.0, false);
}

/*
 * Level changes: a dotted line in the new level's colour and its name at the
 * top, on one of two rows. Changes closer than 12 px are one mark, named
 * after the level the burst ends in (a level flapping at a threshold would
 * otherwise paint over the chart; the ribbon shows the flapping); a name
 * that would overlap the one before it on both rows is left out. When the
 * marks would stand closer than 40 px on average, they shrink to short ticks
 * without names.
 */
static void draw_levels(struct chart *c)
{
    const struct mf_series *ser = c->ser;
    double row_end[2] = {-1e9, -1e9};
    /* More marks than fit 40 px apart: short ticks under the strip only. */
    size_t n_marks = 0;
    double last_x = -1e9;
    for (size_t k = 1; k < ser->n_samples; k++) {
        double x = xpx(c, ser->samples[k].t_s);
        if (ser->samples[k].level != ser->samples[k - 1].level && x >= last_x + 12.0) {
            n_marks++;
            last_x = x;
        }
    }
    bool dense = (double)n_marks > (c->right - c->left) / 40.0;
    size_t i = 1;
    while (i < ser->n_samples) {
        if (ser->samples[i].level == ser->samples[i - 1].level) {
            i++;
            continue;
        }
        double x = xpx(c, ser->samples[i].t_s);
        unsigned lv = ser->samples[i].level, n = 1;

        size_t j = i + 1;
        for (; j < ser->n_samples && xpx(c, ser->samples[j].t_s) < x + 12.0; j++) {
            if (ser->samples[j].level != ser->samples[j - 1].level) {
                lv = ser->samples[j].level;
                n++;
            }
        }
        i = j;
        const char *color = level_colors[lv];
        struct stroke_style st = {color, 1.2, dense ? NULL : "2 3", false, false};
        char tip[48];
        snprintf(tip, sizeof(tip), "%u level change%s", n, n == 1 ? "" : "s");
        cv_line(c->cv, x, c->top, x, dense ? c->top + 6.0 : c->bottom, &st, tip);
        if (dense)
            continue;
        const char *name = memfit_analysis_level_name(lv);
        double w = text_width(name, 10.0) + 6.0;
        double lx = fmin(x + 3.0, c->right - w);
        for (int row = 0; row < 2; row++) {
            if (lx <= row_end[row])
                continue;
            struct text_style ts = {10.0, false, MF_TEXT_START, color, true};
            cv_text(c->cv, lx, c->top + 13.0 + 12.0 * row, &ts, name);
            row_end[row] = lx + w;
            break;
        }
    }
}

/* OOM kills: a red line over the plot, a red triangle pointing down at its
 * top, and a bold label beside it at the bottom, where the levels' names
 * and the limit's are not. */
static void draw_ooms(struct chart *c)
{
    const struct mf_series *ser = c->ser;
    double label_end = -1e9;
    for (size_t i = 0; i < ser->n_oom; i++) {
        double x = clampd(xpx(c, ser->oom_t_s[i]), c->left, c->right);
        struct stroke_style st = {COLOR_OOM, 2.0, NULL, false, false};
        cv_line(c->cv, x, c->top, x, c->bottom, &st, NULL);
        double mark[6] = {x, c->top + 11.0, x - 7.0, c->top, x + 7.0, c->top};
        cv_triangle(c->cv, mark, COLOR_OOM);
        double w = text_width("OOM kill", 11.0);
        double lx = x + 9.0 + w > c->right ? x - 9.0 - w : x + 9.0;
        if (lx > label_end) {
            struct text_style ts = {11.0, true, MF_TEXT_START, COLOR_OOM, true};
            cv_text(c->cv, lx, c->bottom - 8.0, &ts, "OOM kill");
            label_end = lx + w + 4.0;
        }
    }
}

/* The legend, in as many rows as the width needs under the time axis
 * title; with draw false only counts the rows (the bottom margin is made
 * to fit them). */
static int draw_legend(struct chart *c, bool draw)
{
    struct item {
        const char *kind; /* "line", "dash", "box", "mark", "levels" */
        const char *color;
        char label[80];
    } items[10];
    int n = 0;
    const struct memfit_run_summary *s = c->s;
    char sz[32];
    items[n++] = (struct item){"line", COLOR_WS, "in use"};
    if (s->rss.n)
        items[n++] = (struct item){"line", COLOR_RSS, "RSS"};
    if (s->limit_bytes) {
        items[n] = (struct item){"line", COLOR_LIMIT, ""};
        snprintf(items[n].label, sizeof(items[n].label), "limit %s%s",
                 memfit_format_size(s->limit_bytes, sz, sizeof(sz)),
                 c->limit_shown ? "" : " (off the scale)");
        n++;
    }
    const struct memfit_trend *t = &s->judged_trend;
    if (!isnan(t->slope_bytes_per_s) && t->verdict != MEMFIT_LEAK_INSUFFICIENT_DATA) {
        items[n] = (struct item){"dash", COLOR_TREND, ""};
        snprintf(items[n].label, sizeof(items[n].label), "trend %+.1f MB/h",
                 t->slope_bytes_per_s * 3600.0 / 1e6);
        n++;
    }
    if (c->limit_shown && !isnan(s->warning_percent))
        items[n++] = (struct item){"box", "#ffd43b", "warning band"};
    if (c->limit_shown && !isnan(s->critical_percent))
        items[n++] = (struct item){"box", "#ff8787", "critical band"};
    if (c->limit_shown && s->danger_available_bytes &&
        (double)s->danger_available_bytes < (double)s->limit_bytes)
        items[n++] = (struct item){"box", "#c92a2a", "danger band"};
    if (c->ser->n_oom)
        items[n++] = (struct item){"mark", COLOR_OOM, "OOM kill"};
    if (s->n_gaps)
        items[n++] = (struct item){"box", "#adb5bd", "gap (no samples)"};
    if (c->ser->n_samples >= 2 && any_level_known(c->ser))
        items[n++] = (struct item){"levels", "", "level (top strip)"};

    double x = c->left, y = c->bottom + 58.0;
    int rows = 1;
    for (int i = 0; i < n; i++) {
        double w = 26.0 + text_width(items[i].label, 11.0) + 18.0;
        if (x + w > c->w - 10.0 && x > c->left) {
            x = c->left;
            y += 18.0;
            rows++;
        }
        const char *k = items[i].kind;
        if (!draw) {
            x += w;
            continue;
        }
        if (strcmp(k, "levels") == 0) {
            for (int j = 0; j < 4; j++)
                cv_rect(c->cv, x + 5.0 * j, y - 7.0, 5.0, 6.0, level_colors[j], 1.0, false);
        } else if (strcmp(k, "box") == 0) {
            cv_rect(c->cv, x, y - 9.0, 20.0, 10.0, items[i].color, 0.5, false);
        } else if (strcmp(k, "mark") == 0) {
            double mark[6] = {x + 10.0, y + 1.0, x + 4.0, y - 8.0, x + 16.0, y - 8.0};
            cv_triangle(c->cv, mark, items[i].color);
        } else {
            struct stroke_style st = {items[i].color, 2.2, strcmp(k, "dash") == 0 ? "5 3" : NULL,
                                      false, false};
            cv_line(c->cv, x, y - 4.0, x + 20.0, y - 4.0, &st, NULL);
        }
        struct text_style ts = {11.0, false, MF_TEXT_START, COLOR_TEXT, false};
        cv_text(c->cv, x + 26.0, y, &ts, items[i].label);
        x += w;
    }
    return rows;
}

/* The y range: the data, the trend's end, and the limit unless it would
 * squash the data into the bottom quarter (it is then named in the legend). */
static double y_top(struct chart *c)
{
    const struct memfit_run_summary *s = c->s;
    double top = s->working_set.max;
    if (s->rss.n)
        top = fmax(top, s->rss.max);
    const struct memfit_trend *t = &s->judged_trend;
    if (!isnan(t->slope_bytes_per_s) && t->verdict != MEMFIT_LEAK_INSUFFICIENT_DATA)
        top = fmax(top, t->intercept_bytes + t->slope_bytes_per_s * t->fit_to_s);
    if (s->limit_bytes && (double)s->limit_bytes <= 4.0 * top) {
        c->limit_shown = true;
        top = fmax(top, (double)s->limit_bytes);
    }
    return top * 1.04;
}

/* Checks the options and lays the chart out (scales, margins) for `cv`. */
static enum memfit_status chart_layout(struct chart *c, const memfit_analysis *a,
                                       const struct memfit_plot_options *o, struct canvas *cv)
{
    if (o->width < 320 || o->width > 10000 || o->height < 240 || o->height > 10000)
        return memfit_fail(MEMFIT_E_RANGE, "chart size %ux%u outside 320x240 to 10000x10000",
                           o->width, o->height);
    const struct memfit_run_summary *s = mf_analysis_selected(a);
    const struct mf_series *ser = mf_analysis_series(a);
    if (!s || ser->n_samples == 0)
        return memfit_fail(MEMFIT_E_NOT_FOUND, "%s: no samples to draw%s", a->info.name,
                           s ? " in the selected run" : "");
    *c = (struct chart){.cv = cv, .a = a, .s = s, .ser = ser, .w = o->width, .h = o->height};
    c->left = 84.0;
    c->right = c->w - 28.0;
    c->top = 100.0;
    double y_max = y_top(c); /* also decides whether the limit is on the scale */
    c->bottom = c->h - 68.0 - 18.0 * (draw_legend(c, false) - 1);
    if (c->bottom - c->top < 60.0)
        c->bottom = c->top + 60.0;
    double t0 = s->start_line ? 0.0 : s->first_sample_s;
    double t1 = s->last_sample_s;
    for (size_t i = 0; i < ser->n_oom; i++)
        t1 = fmax(t1, ser->oom_t_s[i]);
    if (!(t1 > t0)) { /* one instant: put it in the middle of one second */
        t0 = fmax(0.0, t0 - 0.5);
        t1 = t0 + 1.0;
    }
    int x_target = (int)fmax(2.0, (c->right - c->left) / 110.0);
    time_axis(&c->x, t0, t1, c->left, c->right, x_target);
    byte_axis(&c->y, y_max, c->bottom, c->top);
    cv->clip[0] = c->left;
    cv->clip[1] = c->top;
    cv->clip[2] = c->right;
    cv->clip[3] = c->bottom;
    return MEMFIT_OK;
}

/* Everything on the white background, back to front. */
static void chart_draw(struct chart *c, const struct memfit_plot_options *o)
{
    draw_title(c, o);
    draw_bands(c);
    draw_grid_and_axes(c);
    draw_gaps(c);
    draw_limit(c);
    if (c->s->rss.n)
        draw_series(c, true, COLOR_RSS, 1.6);
    draw_series(c, false, COLOR_WS, 2.2);
    draw_trend(c);
    draw_level_ribbon(c);
    draw_levels(c);
    draw_ooms(c);
    draw_legend(c, true);
}

enum memfit_status memfit_plot_svg(const memfit_analysis *a, const struct memfit_plot_options *opts,
                                   char **out_svg, size_t *out_len)
{
    if (!a || !out_svg || !out_len)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_plot_svg: NULL argument");
    struct memfit_plot_options o = opts ? *opts : memfit_plot_options_default();
    struct sbuf b = {0};
    struct canvas cv = {.svg = &b};
    struct chart c;
    enum memfit_status st = chart_layout(&c, a, &o, &cv);
    if (st != MEMFIT_OK)
        return st;
    sb_printf(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
              "viewBox=\"0 0 %u %u\" font-family=\"%s\">\n",
              o.width, o.height, o.width, o.height, FONT);
    sb_printf(&b, "<title>");
    sb_text(&b, o.title ? o.title : "memfit memory chart", 200);
    sb_printf(&b,
              "</title>\n<defs><clipPath id=\"plot\"><rect x=\"%.1f\" y=\"%.1f\" "
              "width=\"%.1f\" height=\"%.1f\"/></clipPath></defs>\n",
              c.left, c.top, c.right - c.left, c.bottom - c.top);
    sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n");
    chart_draw(&c, &o);
    sb_printf(&b, "</svg>\n");
    if (b.failed) {
        memfit_free(b.p);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: out of memory drawing the chart", a->info.name);
    }
    *out_svg = b.p;
    *out_len = b.len;
    return MEMFIT_OK;
}

enum memfit_status memfit_plot_rgb(const memfit_analysis *a, const struct memfit_plot_options *opts,
                                   uint8_t **out_rgb)
{
    if (!a || !out_rgb)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_plot_rgb: NULL argument");
    struct memfit_plot_options o = opts ? *opts : memfit_plot_options_default();
    struct mf_raster ras;
    struct canvas cv = {.ras = &ras};
    struct chart c;
    enum memfit_status st = chart_layout(&c, a, &o, &cv);
    if (st != MEMFIT_OK)
        return st;
    if ((st = mf_raster_init(&ras, o.width, o.height, 0xFFFFFF)) != MEMFIT_OK)
        return st;
    chart_draw(&c, &o);
    *out_rgb = ras.rgb;
    ras.rgb = NULL;
    mf_raster_release(&ras);
    return MEMFIT_OK;
}

enum memfit_status memfit_plot_png(const memfit_analysis *a, const struct memfit_plot_options *opts,
                                   uint8_t **out_png, size_t *out_len)
{
    if (!a || !out_png || !out_len)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_plot_png: NULL argument");
    struct memfit_plot_options o = opts ? *opts : memfit_plot_options_default();
    uint8_t *rgb;
    enum memfit_status st = memfit_plot_rgb(a, &o, &rgb);
    if (st != MEMFIT_OK)
        return st;
    st = memfit_image_encode_png(rgb, o.width, o.height, 3, out_png, out_len);
    memfit_free(rgb);
    if (st == MEMFIT_E_NOMEM)
        return memfit_fail(st, "%s: out of memory encoding the chart", a->info.name);
    return st;
}

enum memfit_status memfit_plot_format_parse(const char *name, enum memfit_plot_format *out)
{
    if (!name || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_plot_format_parse: NULL argument");
    if (strcasecmp(name, "svg") == 0)
        *out = MEMFIT_PLOT_FORMAT_SVG;
    else if (strcasecmp(name, "png") == 0)
        *out = MEMFIT_PLOT_FORMAT_PNG;
    else
        return memfit_fail(MEMFIT_E_RANGE, "chart format '%s': expected svg or png", name);
    return MEMFIT_OK;
}

enum memfit_plot_format memfit_plot_format_of_path(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    const char *dot = path ? strrchr(slash ? slash : path, '.') : NULL;
    return dot && strcasecmp(dot, ".png") == 0 ? MEMFIT_PLOT_FORMAT_PNG : MEMFIT_PLOT_FORMAT_SVG;
}

enum memfit_status memfit_plot_write(const memfit_analysis *a,
                                     const struct memfit_plot_options *opts, const char *path)
{
    if (!a || !path || !path[0])
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_plot_write: no path");
    struct memfit_plot_options o = opts ? *opts : memfit_plot_options_default();
    enum memfit_plot_format format =
        o.format == MEMFIT_PLOT_FORMAT_AUTO ? memfit_plot_format_of_path(path) : o.format;
    void *data = NULL;
    size_t len = 0;
    enum memfit_status st;
    if (format == MEMFIT_PLOT_FORMAT_PNG) {
        uint8_t *png;
        st = memfit_plot_png(a, &o, &png, &len);
        data = png;
    } else if (format == MEMFIT_PLOT_FORMAT_SVG) {
        char *svg;
        st = memfit_plot_svg(a, &o, &svg, &len);
        data = svg;
    } else {
        return memfit_fail(MEMFIT_E_RANGE, "%s: unknown chart format %d", path, (int)format);
    }
    if (st != MEMFIT_OK)
        return st;
    st = mf_file_write_atomic(path, data, len, 0644, true);
    memfit_free(data);
    return st;
}

enum memfit_status memfit_plot_write_svg(const memfit_analysis *a,
                                         const struct memfit_plot_options *opts, const char *path)
{
    struct memfit_plot_options o = opts ? *opts : memfit_plot_options_default();
    o.format = MEMFIT_PLOT_FORMAT_SVG;
    return memfit_plot_write(a, &o, path);
}

enum memfit_status memfit_plot_redraw(const char *log_path,
                                      const struct memfit_analyze_options *analyze,
                                      const struct memfit_plot_options *opts, const char *path,
                                      struct memfit_plot_redraw_info *out)
{
    if (!log_path || !path)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_plot_redraw: NULL argument");
    memfit_analysis *a;
    enum memfit_status st = memfit_analysis_open(log_path, analyze, &a);
    if (st != MEMFIT_OK)
        return st;
    struct memfit_plot_redraw_info info = {0};
    const struct memfit_run_summary *s = mf_analysis_selected(a);
    info.n_samples = s ? s->n_samples : 0;
    info.ended = s && s->has_exit;
    info.last_sample_s = info.n_samples ? s->last_sample_s : NAN;
    if (info.n_samples) { /* none yet: nothing to draw, not an error */
        st = memfit_plot_write(a, opts, path);
        info.written = st == MEMFIT_OK;
    }
    memfit_analysis_close(a);
    if (out && st == MEMFIT_OK)
        *out = info;
    return st;
}
