/*
 * The model-independent pieces of SAM's automatic mask generator: point
 * grids, crop boxes, stability scores, mask boxes, the crop-edge filter,
 * uncompressed RLE, torchvision-style NMS and the small-region cleanup.
 *
 * Each reproduces the arithmetic of segment-anything v1 (utils/amg.py) and
 * torchvision (nms, batched_nms) so that a pipeline built on them selects
 * the same masks: numpy's linspace in double, Python's int() truncation and
 * float division, float32 comparisons where the reference compares tensors.
 *
 * remove_small_regions labels 8-connected components with a BFS. The
 * reference uses cv2.connectedComponentsWithStats, whose labeling for
 * 8-connectivity is block based (2x2 blocks, BBDT/Spaghetti): labels are
 * numbered by the first 2x2 block of each component in block raster order.
 * Seeding the BFS in that order gives the same numbering, which matters only
 * for the tie-break of "keep the largest island" (np.argmax takes the first).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "memfit/models.h"

#define MAX_CROP_LAYERS 15

enum memfit_status memfit_sam_point_grid(size_t n_per_side, double *points, size_t n_values)
{
    size_t n_points, need;
    if (n_per_side == 0)
        return memfit_fail(MEMFIT_E_RANGE, "sam point grid: n_per_side 0");
    if (mf_mul_overflow(n_per_side, n_per_side, &n_points) || mf_mul_overflow(n_points, 2, &need))
        return memfit_fail(MEMFIT_E_RANGE, "sam point grid: n_per_side %zu overflows", n_per_side);
    if (n_values < need)
        return memfit_fail(MEMFIT_E_RANGE, "sam point grid: room for %zu values, %zu needed",
                           n_values, need);
    /* numpy linspace: start + i * ((stop - start) / (n - 1)), the last one
     * set to stop; one point is start. */
    double offset = 1.0 / (2.0 * (double)n_per_side);
    double start = offset, stop = 1.0 - offset;
    double step = n_per_side > 1 ? (stop - start) / (double)(n_per_side - 1) : 0.0;
    for (size_t y = 0; y < n_per_side; y++) {
        double vy = y + 1 == n_per_side && n_per_side > 1 ? stop : (double)y * step + start;
        for (size_t x = 0; x < n_per_side; x++) {
            double vx = x + 1 == n_per_side && n_per_side > 1 ? stop : (double)x * step + start;
            double *p = points + 2 * (y * n_per_side + x);
            p[0] = vx;
            p[1] = vy;
        }
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_layer_points_per_side(size_t n_per_side, size_t scale, size_t layer,
                                                    size_t *out)
{
    if (scale == 0)
        return memfit_fail(MEMFIT_E_RANGE, "sam layer points: scale 0");
    /* int(n / scale**i): truncated division, repeated (floor(floor(a/b)/c)
     * = floor(a/(b*c)) for positive integers), and no overflow of scale^i. */
    size_t n = n_per_side;
    for (size_t i = 0; i < layer && n > 0; i++)
        n /= scale;
    if (n == 0)
        return memfit_fail(MEMFIT_E_RANGE,
                           "sam layer points: %zu per side / %zu^%zu leaves no points", n_per_side,
                           scale, layer);
    *out = n;
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_crop_box_count(size_t n_layers, size_t *out)
{
    if (n_layers > MAX_CROP_LAYERS)
        return memfit_fail(MEMFIT_E_RANGE, "sam crop boxes: %zu layers, at most %d", n_layers,
                           MAX_CROP_LAYERS);
    size_t count = 1;
    for (size_t i = 1; i <= n_layers; i++)
        count += (size_t)1 << (2 * i);
    *out = count;
    return MEMFIT_OK;
}

/* int(math.ceil((overlap * (n - 1) + len) / n)): the numerator is an exact
 * integer, the division Python's true division in double. */
static int64_t crop_len(int64_t len, int64_t n, int64_t overlap)
{
    return (int64_t)ceil((double)(overlap * (n - 1) + len) / (double)n);
}

enum memfit_status memfit_sam_crop_boxes(int32_t im_h, int32_t im_w, size_t n_layers,
                                         double overlap_ratio, int32_t *boxes, uint32_t *layers,
                                         size_t n_boxes)
{
    size_t count = 0;
    enum memfit_status st = memfit_sam_crop_box_count(n_layers, &count);
    if (st != MEMFIT_OK)
        return st;
    if (im_h <= 0 || im_w <= 0)
        return memfit_fail(MEMFIT_E_RANGE, "sam crop boxes: image %dx%d (h x w)", (int)im_h,
                           (int)im_w);
    if (!isfinite(overlap_ratio) || overlap_ratio < 0.0 || overlap_ratio > 1.0)
        return memfit_fail(MEMFIT_E_RANGE, "sam crop boxes: overlap ratio %g not in [0, 1]",
                           overlap_ratio);
    if (n_boxes < count)
        return memfit_fail(MEMFIT_E_RANGE, "sam crop boxes: room for %zu boxes, %zu needed",
                           n_boxes, count);
    /* Check every coordinate before writing any, so a failure writes nothing. */
    int64_t short_side = im_h < im_w ? im_h : im_w;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            int32_t *b = boxes;
            b[0] = 0;
            b[1] = 0;
            b[2] = im_w;
            b[3] = im_h;
            if (layers)
                layers[0] = 0;
        }
        size_t k = 1;
        for (size_t layer = 0; layer < n_layers; layer++) {
            int64_t n = (int64_t)1 << (layer + 1);
            /* overlap_ratio * short_side * (2 / n), left to right, truncated */
            int64_t overlap = (int64_t)(overlap_ratio * (double)short_side * (2.0 / (double)n));
            int64_t crop_w = crop_len(im_w, n, overlap);
            int64_t crop_h = crop_len(im_h, n, overlap);
            for (int64_t ix = 0; ix < n; ix++) {
                int64_t x0 = (crop_w - overlap) * ix;
                for (int64_t iy = 0; iy < n; iy++) {
                    int64_t y0 = (crop_h - overlap) * iy;
                    int64_t x1 = x0 + crop_w < im_w ? x0 + crop_w : im_w;
                    int64_t y1 = y0 + crop_h < im_h ? y0 + crop_h : im_h;
                    if (pass == 0) {
                        if (x0 < INT32_MIN || x0 > INT32_MAX || y0 < INT32_MIN || y0 > INT32_MAX ||
                            x1 < INT32_MIN || y1 < INT32_MIN)
                            return memfit_fail(MEMFIT_E_RANGE,
                                               "sam crop boxes: layer %zu crop %lld,%lld "
                                               "beyond int32",
                                               layer + 1, (long long)x0, (long long)y0);
                    } else {
                        int32_t *b = boxes + 4 * k;
                        b[0] = (int32_t)x0;
                        b[1] = (int32_t)y0;
                        b[2] = (int32_t)x1;
                        b[3] = (int32_t)y1;
                        if (layers)
                            layers[k] = (uint32_t)(layer + 1);
                    }
                    k++;
                }
            }
        }
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_stability_scores(const float *logits, size_t n_masks, size_t h,
                                               size_t w, double mask_threshold, double offset,
                                               float *scores)
{
    size_t area, total;
    if (mf_mul_overflow(h, w, &area) || mf_mul_overflow(area, n_masks, &total))
        return memfit_fail(MEMFIT_E_RANGE, "sam stability: %zu masks of %zux%zu overflow", n_masks,
                           h, w);
    /* The reference adds the Python floats in double; torch then compares the
     * float32 tensor with the scalar cast to float32. */
    float hi = (float)(mask_threshold + offset);
    float lo = (float)(mask_threshold - offset);
    for (size_t m = 0; m < n_masks; m++) {
        const float *p = logits + m * area;
        size_t n_hi = 0, n_lo = 0;
        for (size_t i = 0; i < area; i++) {
            n_hi += p[i] > hi;
            n_lo += p[i] > lo;
        }
        /* int / int is float32 true division in torch; 0 / 0 is NaN. */
        scores[m] = n_lo == 0 ? NAN : (float)n_hi / (float)n_lo;
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_mask_to_box(const uint8_t *mask, size_t h, size_t w, int32_t box[4])
{
    if (h > INT32_MAX || w > INT32_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "sam mask box: mask %zux%zu beyond int32", h, w);
    size_t x_min = w, x_max = 0, y_min = h, y_max = 0;
    bool any = false;
    for (size_t y = 0; y < h; y++) {
        const uint8_t *row = mask + y * w;
        for (size_t x = 0; x < w; x++) {
            if (!row[x])
                continue;
            any = true;
            x_min = x < x_min ? x : x_min;
            x_max = x > x_max ? x : x_max;
            y_min = y < y_min ? y : y_min;
            y_max = y;
        }
    }
    if (!any) {
        box[0] = box[1] = box[2] = box[3] = 0;
        return MEMFIT_OK;
    }
    box[0] = (int32_t)x_min;
    box[1] = (int32_t)y_min;
    box[2] = (int32_t)x_max;
    box[3] = (int32_t)y_max;
    return MEMFIT_OK;
}

/* torch.isclose with rtol 0 on float32: |a - b| <= atol. */
static bool near(float a, float b, float atol)
{
    return a == b || fabsf(a - b) <= atol;
}

bool memfit_sam_box_near_crop_edge(const int32_t box[4], const int32_t crop_box[4],
                                   const int32_t orig_box[4], float atol)
{
    int64_t off[4] = {crop_box[0], crop_box[1], crop_box[0], crop_box[1]};
    for (int i = 0; i < 4; i++) {
        float v = (float)((int64_t)box[i] + off[i]);
        if (near(v, (float)crop_box[i], atol) && !near(v, (float)orig_box[i], atol))
            return true;
    }
    return false;
}

enum memfit_status memfit_sam_mask_to_rle(const uint8_t *mask, size_t h, size_t w,
                                          uint32_t **counts, size_t *n_counts)
{
    size_t area;
    if (mf_mul_overflow(h, w, &area) || area == 0 || area > UINT32_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "sam rle: mask %zux%zu empty or beyond 2^32 pixels", h,
                           w);
    /* Column-major order: pixel k is mask[(k % h) * w + k / h]. */
    uint8_t prev = 0;
    size_t n = 1;
    for (size_t x = 0; x < w; x++)
        for (size_t y = 0; y < h; y++) {
            uint8_t v = mask[y * w + x] != 0;
            n += v != prev;
            prev = v;
        }
    /* Counting from a virtual 0 before the first pixel makes a leading 1
     * start a new run, so counts[0] is 0 then, as in the reference. */
    uint32_t *out = memfit_malloc(n * sizeof(*out));
    if (!out)
        return MEMFIT_E_NOMEM;
    size_t k = 0;
    uint32_t run = 0;
    prev = 0;
    for (size_t x = 0; x < w; x++)
        for (size_t y = 0; y < h; y++) {
            uint8_t v = mask[y * w + x] != 0;
            if (v != prev) {
                out[k++] = run;
                run = 0;
                prev = v;
            }
            run++;
        }
    out[k++] = run;
    *counts = out;
    *n_counts = k;
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_rle_to_mask(const uint32_t *counts, size_t n_counts, size_t h,
                                          size_t w, uint8_t *mask)
{
    size_t area, sum = 0;
    if (mf_mul_overflow(h, w, &area))
        return memfit_fail(MEMFIT_E_RANGE, "sam rle: mask %zux%zu overflows", h, w);
    for (size_t i = 0; i < n_counts; i++)
        if (mf_add_overflow(sum, counts[i], &sum))
            return memfit_fail(MEMFIT_E_RANGE, "sam rle: counts overflow");
    if (sum != area)
        return memfit_fail(MEMFIT_E_RANGE, "sam rle: counts sum to %zu, mask %zux%zu has %zu", sum,
                           h, w, area);
    size_t k = 0;
    for (size_t i = 0; i < n_counts; i++) {
        uint8_t v = (uint8_t)(i & 1);
        for (uint32_t j = 0; j < counts[i]; j++, k++)
            mask[(k % h) * w + k / h] = v;
    }
    return MEMFIT_OK;
}

uint64_t memfit_sam_rle_area(const uint32_t *counts, size_t n_counts)
{
    uint64_t area = 0;
    for (size_t i = 1; i < n_counts; i += 2)
        area += counts[i];
    return area;
}

enum memfit_status memfit_sam_rle_to_coco(const uint32_t *counts, size_t n_counts, char **out)
{
    /* At most 7 characters per count (a 33-bit difference in 5-bit groups). */
    if (n_counts > (SIZE_MAX - 1) / 7)
        return memfit_fail(MEMFIT_E_RANGE, "rle: %zu counts", n_counts);
    char *s = memfit_malloc(n_counts * 7 + 1);
    if (!s)
        return MEMFIT_E_NOMEM;
    size_t p = 0;
    for (size_t i = 0; i < n_counts; i++) {
        int64_t x = counts[i];
        if (i > 2)
            x -= counts[i - 2];
        bool more = true;
        while (more) {
            int c = (int)(x & 0x1f);
            x >>= 5; /* arithmetic: a negative difference keeps its sign */
            more = (c & 0x10) ? x != -1 : x != 0;
            if (more)
                c |= 0x20;
            s[p++] = (char)(c + 48);
        }
    }
    s[p] = '\0';
    *out = s;
    return MEMFIT_OK;
}

float memfit_sam_box_iou(const float a[4], const float b[4])
{
    float area_a = (a[2] - a[0]) * (a[3] - a[1]);
    float area_b = (b[2] - b[0]) * (b[3] - b[1]);
    float xx1 = a[0] > b[0] ? a[0] : b[0];
    float yy1 = a[1] > b[1] ? a[1] : b[1];
    float xx2 = a[2] < b[2] ? a[2] : b[2];
    float yy2 = a[3] < b[3] ? a[3] : b[3];
    float iw = xx2 - xx1 > 0.0f ? xx2 - xx1 : 0.0f;
    float ih = yy2 - yy1 > 0.0f ? yy2 - yy1 : 0.0f;
    float inter = iw * ih;
    return inter / (area_a + area_b - inter);
}

struct scored {
    float score;
    size_t index;
};

/* Descending by score, NaN first (torch's descending sort puts NaN as the
 * largest), ties by index: a total order, so qsort gives a stable result. */
static int by_score_desc(const void *pa, const void *pb)
{
    const struct scored *a = pa, *b = pb;
    bool na = isnan(a->score), nb = isnan(b->score);
    if (na != nb)
        return na ? -1 : 1;
    if (!na && a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

enum memfit_status memfit_sam_nms(const float *boxes, const float *scores,
                                  const int32_t *categories, size_t n, float iou_threshold,
                                  size_t *keep, size_t *n_keep)
{
    size_t bytes;
    if (mf_mul_overflow(n, sizeof(struct scored) + 1, &bytes))
        return memfit_fail(MEMFIT_E_RANGE, "sam nms: %zu boxes overflow", n);
    if (n == 0) {
        *n_keep = 0;
        return MEMFIT_OK;
    }
    struct scored *order = memfit_malloc(n * sizeof(*order));
    uint8_t *suppressed = memfit_calloc(n, 1);
    if (!order || !suppressed) {
        memfit_free(order);
        memfit_free(suppressed);
        return MEMFIT_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        order[i].score = scores[i];
        order[i].index = i;
    }
    qsort(order, n, sizeof(*order), by_score_desc);
    size_t kept = 0;
    for (size_t a = 0; a < n; a++) {
        if (suppressed[a])
            continue;
        size_t i = order[a].index;
        keep[kept++] = i;
        for (size_t b = a + 1; b < n; b++) {
            size_t j = order[b].index;
            if (suppressed[b] || (categories && categories[i] != categories[j]))
                continue;
            if (memfit_sam_box_iou(boxes + 4 * i, boxes + 4 * j) > iou_threshold)
                suppressed[b] = 1;
        }
    }
    memfit_free(order);
    memfit_free(suppressed);
    *n_keep = kept;
    return MEMFIT_OK;
}

/* Labels the 8-connected components of the pixels equal to `fg` from 1, in
 * the order of their first 2x2 block (see the top of the file); 0 is every
 * other pixel. `queue` holds h*w entries. Returns the number of labels + 1. */
static uint32_t label_components(const uint8_t *mask, size_t h, size_t w, uint8_t fg,
                                 uint32_t *labels, uint32_t *queue)
{
    uint32_t next = 1;
    memset(labels, 0, h * w * sizeof(*labels));
    for (size_t by = 0; by < h; by += 2)
        for (size_t bx = 0; bx < w; bx += 2)
            for (size_t s = 0; s < 4; s++) {
                size_t sy = by + s / 2, sx = bx + s % 2;
                if (sy >= h || sx >= w)
                    continue;
                size_t seed = sy * w + sx;
                if ((mask[seed] != 0) != fg || labels[seed])
                    continue;
                size_t head = 0, tail = 0;
                labels[seed] = next;
                queue[tail++] = (uint32_t)seed;
                while (head < tail) {
                    size_t p = queue[head++], py = p / w, px = p % w;
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++) {
                            if ((dy < 0 && py == 0) || (dy > 0 && py + 1 == h) ||
                                (dx < 0 && px == 0) || (dx > 0 && px + 1 == w))
                                continue;
                            size_t q = (size_t)((ptrdiff_t)p + dy * (ptrdiff_t)w + dx);
                            if ((mask[q] != 0) == fg && !labels[q]) {
                                labels[q] = next;
                                queue[tail++] = (uint32_t)q;
                            }
                        }
                }
                next++;
            }
    return next;
}

enum memfit_status memfit_sam_remove_small_regions(uint8_t *mask, size_t h, size_t w,
                                                   double area_thresh,
                                                   enum memfit_sam_region_mode mode, bool *changed)
{
    size_t area;
    if (mode != MEMFIT_SAM_REGION_HOLES && mode != MEMFIT_SAM_REGION_ISLANDS)
        return memfit_fail(MEMFIT_E_RANGE, "sam small regions: mode %d", (int)mode);
    if (mf_mul_overflow(h, w, &area) || area >= UINT32_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "sam small regions: mask %zux%zu too large", h, w);
    if (area == 0) {
        *changed = false;
        return MEMFIT_OK;
    }
    uint32_t *labels = memfit_malloc(area * sizeof(*labels));
    uint32_t *scratch = memfit_malloc(area * sizeof(*scratch));
    if (!labels || !scratch) {
        memfit_free(labels);
        memfit_free(scratch);
        return MEMFIT_E_NOMEM;
    }
    bool holes = mode == MEMFIT_SAM_REGION_HOLES;
    /* Holes are the regions of the unset pixels, islands those of the set. */
    uint32_t n_labels = label_components(mask, h, w, holes ? 0 : 1, labels, scratch);
    /* The queue is done with; reuse it for the region sizes, then for the
     * per-label keep flags (sizes[l] for l >= 1; n_labels <= area). */
    uint32_t *sizes = scratch;
    memset(sizes, 0, n_labels * sizeof(*sizes));
    for (size_t i = 0; i < area; i++)
        sizes[labels[i]]++;
    size_t n_small = 0, largest = 0;
    for (uint32_t l = 1; l < n_labels; l++) {
        n_small += (double)sizes[l] < area_thresh;
        if (largest == 0 || sizes[l] > sizes[largest])
            largest = l;
    }
    if (n_small == 0) {
        memfit_free(labels);
        memfit_free(scratch);
        *changed = false;
        return MEMFIT_OK;
    }
    /* fill[l]: whether the output is set on label l (label 0 is the pixels
     * outside every region: set for holes, as they are the mask; unset for
     * islands). Holes: the mask plus the small holes. Islands: the large
     * ones, or the largest when all are small. */
    uint32_t *fill = scratch;
    bool any_large = false;
    for (uint32_t l = 1; l < n_labels; l++) {
        bool small = (double)sizes[l] < area_thresh;
        any_large |= !small;
        fill[l] = holes ? small : !small;
    }
    fill[0] = holes;
    if (!holes && !any_large)
        fill[largest] = 1;
    for (size_t i = 0; i < area; i++)
        mask[i] = fill[labels[i]] != 0;
    memfit_free(labels);
    memfit_free(scratch);
    *changed = true;
    return MEMFIT_OK;
}
