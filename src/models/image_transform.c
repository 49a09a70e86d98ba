/*
 * Image preprocessing for the vision models: the resize + centre crop +
 * normalise transform of DINOv2's evaluation pipeline, reproducing PIL and
 * torchvision to the last bit, and the PIL resampler it is built on (also
 * SAM's, with the bilinear filter: sam_image.c).
 *
 * The resampler follows PIL's Resample.c (the facts, in our own code):
 * separable, horizontal pass first, then vertical; a pass is skipped when its
 * side does not change. Per output index i of an axis in -> out:
 *   scale = in / out, filterscale = max(scale, 1),
 *   support = filter support (bicubic 2, bilinear 1) * filterscale
 *   center = (i + 0.5) * scale
 *   xmin = max((int)(center - support + 0.5), 0)
 *   xmax = min((int)(center + support + 0.5), in)
 *   w_x = f((x - center + 0.5) / filterscale), x in [xmin, xmax),
 *         f the filter (bicubic with a = -0.5, or bilinear's triangle
 *         1 - |x|), the weights divided by their sum (when not 0),
 *         then rounded to fixed point with 22 fractional bits (away from 0);
 *   value = clamp((2^21 + sum(sample * w)) >> 22, 0, 255)
 * so every pass rounds to 8 bits, as PIL's does. All in double and int32
 * exactly as there, so the results are identical, not just close.
 *
 * torchvision's parts: the short side becomes `resize` and the long side
 * int(resize * long / short) (computed in double); the crop starts at
 * int(round((size - crop) / 2.0)) with Python's round (half to even); the
 * values are (v / 255 - mean) / std in float, which a 256-entry table per
 * channel gives exactly.
 *
 * Only the cropped window is computed (a resampled pixel does not depend on
 * its neighbours in the output), and the scratch needed is known up front.
 */
#include <math.h>
#include <string.h>

#include "models/image.h"

#define PRECISION_BITS 22

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* PIL's BILINEAR: the triangle filter of support 1. */
static double triangle(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* One axis of a resize (in -> out samples). */
struct axis {
    uint32_t in;
    double (*filter)(double);
    double scale, filterscale, support;
    int ksize; /* coefficients stored per output index */
};

static void axis_init(struct axis *a, enum mf_resample_filter filter, uint32_t in, uint32_t out)
{
    bool linear = filter == MF_RESAMPLE_BILINEAR;
    a->in = in;
    a->filter = linear ? triangle : bicubic;
    a->scale = (double)in / out;
    a->filterscale = a->scale < 1.0 ? 1.0 : a->scale;
    a->support = (linear ? 1.0 : 2.0) * a->filterscale;
    a->ksize = (int)ceil(a->support) * 2 + 1; /* in <= 2^24: no overflow */
}

/* The input range [xmin, xmin + len) that output index i reads. */
static void axis_bounds(const struct axis *a, uint32_t i, int *xmin, int *len, double *center)
{
    double c = (i + 0.5) * a->scale;
    int lo = (int)(c - a->support + 0.5);
    int hi = (int)(c + a->support + 0.5);
    if (lo < 0)
        lo = 0;
    if (hi > (int)a->in)
        hi = (int)a->in;
    *xmin = lo;
    *len = hi - lo;
    if (center)
        *center = c;
}

/* Fixed-point coefficients of output indices [first, first + n): k holds
 * n * ksize values, bounds n pairs (xmin - origin, len). */
static void axis_coeffs(const struct axis *a, uint32_t first, uint32_t n, int origin, int32_t *k,
                        int32_t *bounds)
{
    double ss = 1.0 / a->filterscale;
    for (uint32_t j = 0; j < n; j++) {
        int xmin, len;
        double center;
        axis_bounds(a, first + j, &xmin, &len, &center);
        double ww = 0.0;
        for (int x = 0; x < len; x++)
            ww += a->filter((x + xmin - center + 0.5) * ss);
        int32_t *kj = k + (size_t)j * (size_t)a->ksize;
        for (int x = 0; x < len; x++) {
            double w = a->filter((x + xmin - center + 0.5) * ss);
            if (ww != 0.0)
                w /= ww;
            kj[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        bounds[2 * j] = xmin - origin;
        bounds[2 * j + 1] = len;
    }
}

static inline uint8_t clip8(int32_t v)
{
    if (v < 0)
        return 0;
    v >>= PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* dst row r, pixel j = sum over x of src row r, pixel bounds[2j] + x. */
static void pass_horizontal(const uint8_t *src, size_t src_stride, uint32_t n_rows,
                            const int32_t *k, const int32_t *bounds, int ksize, uint32_t n_cols,
                            uint8_t *dst, size_t dst_stride)
{
    for (uint32_t r = 0; r < n_rows; r++) {
        const uint8_t *s = src + r * src_stride;
        uint8_t *d = dst + r * dst_stride;
        for (uint32_t j = 0; j < n_cols; j++) {
            const int32_t *kj = k + (size_t)j * (size_t)ksize;
            const uint8_t *p = s + (size_t)bounds[2 * j] * 3;
            int len = bounds[2 * j + 1];
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < len; x++) {
                s0 += p[3 * x + 0] * kj[x];
                s1 += p[3 * x + 1] * kj[x];
                s2 += p[3 * x + 2] * kj[x];
            }
            d[3 * j + 0] = clip8(s0);
            d[3 * j + 1] = clip8(s1);
            d[3 * j + 2] = clip8(s2);
        }
    }
}

/* dst row i = sum over y of src row bounds[2i] + y (n_cols pixels each). */
static void pass_vertical(const uint8_t *src, size_t src_stride, uint32_t n_cols, const int32_t *k,
                          const int32_t *bounds, int ksize, uint32_t n_out, uint8_t *dst,
                          size_t dst_stride)
{
    for (uint32_t i = 0; i < n_out; i++) {
        const int32_t *ki = k + (size_t)i * (size_t)ksize;
        const uint8_t *s = src + (size_t)bounds[2 * i] * src_stride;
        int len = bounds[2 * i + 1];
        uint8_t *d = dst + i * dst_stride;
        for (uint32_t c = 0; c < n_cols * 3; c++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < len; y++)
                acc += s[(size_t)y * src_stride + c] * ki[y];
            d[c] = clip8(acc);
        }
    }
}

/* ---- the resampler's plan -------------------------------------------------- */

struct layout {
    bool need_h, need_v;
    struct axis ax, ay;
    uint32_t row0, n_rows; /* source rows the vertical pass reads */
    size_t kh_off, bh_off, kv_off, bv_off, tmp_off, total;
};

static bool geometry_ok(const struct mf_resample *r)
{
    return (r->filter == MF_RESAMPLE_BICUBIC || r->filter == MF_RESAMPLE_BILINEAR) && r->in_width &&
           r->in_height && r->width && r->height && r->win_width && r->win_height &&
           r->in_width <= MF_RESAMPLE_MAX_SIDE && r->in_height <= MF_RESAMPLE_MAX_SIDE &&
           r->width <= MF_RESAMPLE_MAX_SIDE && r->height <= MF_RESAMPLE_MAX_SIDE &&
           r->x0 <= r->width && r->win_width <= r->width - r->x0 && r->y0 <= r->height &&
           r->win_height <= r->height - r->y0;
}

/* Adds `count` items of `size` bytes at a 16-byte aligned offset. */
static bool reserve(size_t *total, size_t *offset, size_t count, size_t size)
{
    size_t bytes, start = (*total + 15) & ~(size_t)15;
    if (start < *total || __builtin_mul_overflow(count, size, &bytes) ||
        __builtin_add_overflow(start, bytes, total))
        return false;
    *offset = start;
    return true;
}

static bool plan_layout(const struct mf_resample *r, struct layout *L)
{
    if (!geometry_ok(r))
        return false;
    memset(L, 0, sizeof(*L));
    L->need_h = r->width != r->in_width;
    L->need_v = r->height != r->in_height;
    L->row0 = r->y0;
    L->n_rows = r->win_height;
    if (L->need_v) {
        axis_init(&L->ay, r->filter, r->in_height, r->height);
        int first, len, last_min, last_len;
        axis_bounds(&L->ay, r->y0, &first, &len, NULL);
        axis_bounds(&L->ay, r->y0 + r->win_height - 1, &last_min, &last_len, NULL);
        L->row0 = (uint32_t)first;
        L->n_rows = (uint32_t)(last_min + last_len - first);
        if (!reserve(&L->total, &L->kv_off, (size_t)r->win_height * (size_t)L->ay.ksize, 4) ||
            !reserve(&L->total, &L->bv_off, (size_t)r->win_height * 2, 4))
            return false;
    }
    if (L->need_h) {
        axis_init(&L->ax, r->filter, r->in_width, r->width);
        if (!reserve(&L->total, &L->kh_off, (size_t)r->win_width * (size_t)L->ax.ksize, 4) ||
            !reserve(&L->total, &L->bh_off, (size_t)r->win_width * 2, 4))
            return false;
    }
    if (L->need_h && L->need_v) {
        size_t row_bytes;
        if (__builtin_mul_overflow((size_t)r->win_width, (size_t)3, &row_bytes) ||
            !reserve(&L->total, &L->tmp_off, (size_t)L->n_rows, row_bytes))
            return false;
    }
    return !__builtin_add_overflow(L->total, 15, &L->total); /* to align the caller's pointer */
}

size_t mf_image_resample_scratch_bytes(const struct mf_resample *r)
{
    struct layout L;
    return plan_layout(r, &L) ? L.total : 0;
}

enum memfit_status mf_image_resample(const struct mf_resample *r, const uint8_t *rgb, uint8_t *out,
                                     void *scratch, size_t scratch_bytes)
{
    struct layout L;
    if (!r || !rgb || !out || !plan_layout(r, &L))
        return memfit_fail(MEMFIT_E_MISUSE, "image resample: invalid geometry");
    if (scratch_bytes < L.total || (!scratch && L.total > 15))
        return memfit_fail(MEMFIT_E_MISUSE, "image resample: scratch of %zu bytes, %zu needed",
                           scratch_bytes, L.total);
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
    size_t in_stride = (size_t)r->in_width * 3, out_stride = (size_t)r->win_width * 3;
    int32_t *kh = (int32_t *)(base + L.kh_off), *bh = (int32_t *)(base + L.bh_off);
    int32_t *kv = (int32_t *)(base + L.kv_off), *bv = (int32_t *)(base + L.bv_off);

    if (L.need_h)
        axis_coeffs(&L.ax, r->x0, r->win_width, 0, kh, bh);
    if (L.need_v)
        axis_coeffs(&L.ay, r->y0, r->win_height, (int)L.row0, kv, bv);

    if (L.need_h && L.need_v) {
        uint8_t *tmp = base + L.tmp_off;
        pass_horizontal(rgb + (size_t)L.row0 * in_stride, in_stride, L.n_rows, kh, bh, L.ax.ksize,
                        r->win_width, tmp, out_stride);
        pass_vertical(tmp, out_stride, r->win_width, kv, bv, L.ay.ksize, r->win_height, out,
                      out_stride);
    } else if (L.need_h) {
        pass_horizontal(rgb + (size_t)r->y0 * in_stride, in_stride, r->win_height, kh, bh,
                        L.ax.ksize, r->win_width, out, out_stride);
    } else if (L.need_v) {
        pass_vertical(rgb + (size_t)L.row0 * in_stride + (size_t)r->x0 * 3, in_stride, r->win_width,
                      kv, bv, L.ay.ksize, r->win_height, out, out_stride);
    } else {
        for (uint32_t y = 0; y < r->win_height; y++)
            memcpy(out + y * out_stride, rgb + (size_t)(r->y0 + y) * in_stride + (size_t)r->x0 * 3,
                   out_stride);
    }
    return MEMFIT_OK;
}

/* ---- the public transform -------------------------------------------------- */

struct memfit_image_transform memfit_image_transform_default(void)
{
    return (struct memfit_image_transform){
        .mode = MEMFIT_IMAGE_RESIZE_CROP,
        .resize = 256,
        .crop = 224,
        .multiple = 14,
        .mean = {0.485f, 0.456f, 0.406f},
        .std = {0.229f, 0.224f, 0.225f},
    };
}

/* Python's int(round(v / 2.0)) for v >= 0: halves go to the even integer. */
static uint32_t half_round_even(uint32_t v)
{
    uint32_t q = v / 2;
    if (v % 2 && q % 2)
        q++;
    return q;
}

/* Validates t and the input size and fills the resample geometry. */
static enum memfit_status plan(const struct memfit_image_transform *t, uint32_t width,
                               uint32_t height, struct mf_resample *r)
{
    if (!t)
        return memfit_fail(MEMFIT_E_MISUSE, "image transform: NULL transform");
    if (width == 0 || height == 0)
        return memfit_fail(MEMFIT_E_RANGE, "image transform: empty input %ux%u", width, height);
    if (width > MF_RESAMPLE_MAX_SIDE || height > MF_RESAMPLE_MAX_SIDE)
        return memfit_fail(MEMFIT_E_RANGE, "image transform: input %ux%u: a side beyond %u", width,
                           height, MF_RESAMPLE_MAX_SIDE);
    for (int c = 0; c < 3; c++)
        if (!isfinite(t->mean[c]) || !isfinite(t->std[c]) || t->std[c] == 0.0f)
            return memfit_fail(MEMFIT_E_RANGE,
                               "image transform: channel %d: mean %g, std %g (finite, std != 0)", c,
                               (double)t->mean[c], (double)t->std[c]);
    uint64_t rw, rh;
    memset(r, 0, sizeof(*r));
    r->in_width = width;
    r->in_height = height;
    switch (t->mode) {
    case MEMFIT_IMAGE_RESIZE_CROP: {
        if (t->resize == 0 || t->resize > 65536 || t->crop == 0 || t->crop > t->resize)
            return memfit_fail(MEMFIT_E_RANGE,
                               "image transform: resize %u, crop %u (need 1 <= crop <= resize "
                               "<= 65536)",
                               t->resize, t->crop);
        uint64_t shorter = width <= height ? width : height;
        uint64_t longer = width <= height ? height : width;
        uint64_t new_long = (uint64_t)((double)((uint64_t)t->resize * longer) / (double)shorter);
        rw = width <= height ? t->resize : new_long;
        rh = width <= height ? new_long : t->resize;
        break;
    }
    case MEMFIT_IMAGE_RESIZE_MULTIPLE: {
        uint64_t m = t->multiple;
        if (m == 0 || m > 65536)
            return memfit_fail(MEMFIT_E_RANGE, "image transform: multiple %u (need 1..65536)",
                               t->multiple);
        uint64_t nw = (width + m / 2) / m, nh = (height + m / 2) / m;
        rw = (nw ? nw : 1) * m;
        rh = (nh ? nh : 1) * m;
        break;
    }
    default:
        return memfit_fail(MEMFIT_E_MISUSE, "image transform: unknown mode %d", (int)t->mode);
    }
    if (rw > MF_RESAMPLE_MAX_SIDE || rh > MF_RESAMPLE_MAX_SIDE)
        return memfit_fail(
            MEMFIT_E_RANGE, "image transform: input %ux%u resizes to %llux%llu, a side beyond %u",
            width, height, (unsigned long long)rw, (unsigned long long)rh, MF_RESAMPLE_MAX_SIDE);
    r->width = (uint32_t)rw;
    r->height = (uint32_t)rh;
    if (t->mode == MEMFIT_IMAGE_RESIZE_CROP) {
        r->x0 = half_round_even(r->width - t->crop);
        r->y0 = half_round_even(r->height - t->crop);
        r->win_width = r->win_height = t->crop;
    } else {
        r->win_width = r->width;
        r->win_height = r->height;
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_image_transform_size(const struct memfit_image_transform *t,
                                               uint32_t width, uint32_t height, uint32_t *out_width,
                                               uint32_t *out_height)
{
    struct mf_resample r;
    enum memfit_status st = plan(t, width, height, &r);
    if (st != MEMFIT_OK)
        return st;
    if (out_width)
        *out_width = r.win_width;
    if (out_height)
        *out_height = r.win_height;
    return MEMFIT_OK;
}

size_t mf_image_window_scratch_bytes(const struct mf_resample *r, size_t *window_bytes)
{
    size_t resample = mf_image_resample_scratch_bytes(r), bytes, total;
    if (resample == 0 ||
        __builtin_mul_overflow((size_t)r->win_width * 3, (size_t)r->win_height, &bytes) ||
        __builtin_add_overflow(bytes, 15, &bytes))
        return 0;
    bytes &= ~(size_t)15;
    if (__builtin_add_overflow(bytes, resample, &total) ||
        __builtin_add_overflow(total, 15, &total))
        return 0;
    if (window_bytes)
        *window_bytes = bytes;
    return total;
}

enum memfit_status mf_image_resample_window(const struct mf_resample *r, const uint8_t *rgb,
                                            void *scratch, size_t scratch_bytes,
                                            const uint8_t **window)
{
    size_t window_bytes, need = mf_image_window_scratch_bytes(r, &window_bytes);
    if (need == 0 || !scratch || scratch_bytes < need)
        return memfit_fail(MEMFIT_E_MISUSE, "image resample: scratch of %zu bytes, %zu needed",
                           scratch ? scratch_bytes : 0, need);
    uint8_t *win = (uint8_t *)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
    uint8_t *rest = win + window_bytes;
    enum memfit_status st =
        mf_image_resample(r, rgb, win, rest, scratch_bytes - (size_t)(rest - (uint8_t *)scratch));
    if (st == MEMFIT_OK)
        *window = win;
    return st;
}

size_t memfit_image_transform_scratch_bytes(const struct memfit_image_transform *t, uint32_t width,
                                            uint32_t height)
{
    struct mf_resample r;
    if (plan(t, width, height, &r) != MEMFIT_OK)
        return 0;
    return mf_image_window_scratch_bytes(&r, NULL);
}

enum memfit_status memfit_image_transform_apply(const struct memfit_image_transform *t,
                                                const struct memfit_image *img, float *out,
                                                size_t out_floats, void *scratch,
                                                size_t scratch_bytes)
{
    if (!img || !img->rgb || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "image transform: NULL image or output");
    struct mf_resample r;
    enum memfit_status st = plan(t, img->width, img->height, &r);
    if (st != MEMFIT_OK)
        return st;
    size_t n_pixels = (size_t)r.win_width * r.win_height;
    if (out_floats / 3 < n_pixels)
        return memfit_fail(MEMFIT_E_RANGE,
                           "image transform: output of %zu floats, %zu needed (3 x %u x %u)",
                           out_floats, 3 * n_pixels, r.win_height, r.win_width);
    size_t need = mf_image_window_scratch_bytes(&r, NULL);
    if (need == 0)
        return memfit_fail(MEMFIT_E_RANGE, "image transform: %ux%u to %ux%u: scratch too large",
                           img->width, img->height, r.width, r.height);
    void *owned = NULL;
    if (!scratch) {
        owned = scratch = memfit_malloc_in(MEMFIT_ALLOC_MODEL, need);
        if (!owned)
            return memfit_fail(MEMFIT_E_NOMEM,
                               "image transform: no memory for %zu bytes of "
                               "scratch",
                               need);
        scratch_bytes = need;
    } else if (scratch_bytes < need) {
        return memfit_fail(MEMFIT_E_RANGE, "image transform: scratch of %zu bytes, %zu needed",
                           scratch_bytes, need);
    }
    const uint8_t *window = NULL;
    st = mf_image_resample_window(&r, img->rgb, scratch, scratch_bytes, &window);
    if (st == MEMFIT_OK) {
        float lut[3][256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++)
                lut[c][v] = ((float)v / 255.0f - t->mean[c]) / t->std[c];
        for (size_t i = 0; i < n_pixels; i++) {
            out[i] = lut[0][window[3 * i + 0]];
            out[n_pixels + i] = lut[1][window[3 * i + 1]];
            out[2 * n_pixels + i] = lut[2][window[3 * i + 2]];
        }
    }
    memfit_free(owned);
    return st;
}
