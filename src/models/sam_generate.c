/*
 * SAM's automatic mask generator: segment-anything v1's
 * SamAutomaticMaskGenerator.generate on memfit_sam_encode / _decode and the
 * pieces of sam_amg.c, selecting the same masks in the same order.
 *
 * DESIGN. The reference holds a whole batch of crop-size logit masks
 * (points_per_batch x 3 x H x W floats) and pads every kept mask to the full
 * image before its RLE. Here the masks of a batch stay low-res (what the
 * decoder writes) and are taken one at a time: the predicted-IoU filter
 * (before any upsampling: it needs none), the upsampling to the crop as
 * logits, the stability filter, the binarisation, the box and the crop-edge
 * filter, then the RLE of the mask as if zero-padded to the full image,
 * written from the crop mask without the padding. Filters that act per mask
 * commute with this order, so the same masks survive. What does not depend
 * on the image's content is one arena planned by memfit_sam_amg_plan; the
 * records, their RLEs and the NMS bookkeeping grow with what is found and
 * go through the caller's cap and reserve callback.
 *
 * Order of the records, as the reference: per crop, the masks in decoding
 * order (point-major, 3 per point), reordered by the crop's NMS (predicted
 * IoU descending); crops concatenated; with more than one crop, reordered by
 * the cross-crop NMS (1 / crop area descending, ties by position); with
 * min_mask_region_area, reordered by the last NMS (unchanged masks first).
 *
 * Arithmetic that decides which masks pass, as the reference does it:
 * thresholds compared in float32 (torch casts the Python float to the
 * tensor's type), point coordinates in double (numpy) until the prompt,
 * crop boxes, grids, stability, boxes and NMS by the pieces.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "models/sam.h"

#define MAX_CROP_LAYERS      4
#define MAX_CROPS            (1 + 4 + 16 + 64 + 256) /* crop layers 0..4 */
#define MAX_POINTS_PER_SIDE  1024
#define MAX_POINTS_PER_BATCH 65536
#define EDGE_ATOL            20.0f

struct memfit_sam_amg_params memfit_sam_amg_params_default(void)
{
    return (struct memfit_sam_amg_params){
        .points_per_side = 32,
        .points_per_batch = 64,
        .pred_iou_thresh = 0.88,
        .stability_score_thresh = 0.95,
        .stability_score_offset = 1.0,
        .box_nms_thresh = 0.7,
        .crop_n_layers = 0,
        .crop_nms_thresh = 0.7,
        .crop_overlap_ratio = 512.0 / 1500.0,
        .crop_n_points_downscale_factor = 1,
        .point_grids = NULL,
        .min_mask_region_area = 0,
    };
}

static enum memfit_status bad(const char *name, double value, const char *range)
{
    return memfit_fail(MEMFIT_E_RANGE, "sam generate: %s = %g, need %s", name, value, range);
}

enum memfit_status memfit_sam_amg_params_check(const struct memfit_sam_amg_params *p)
{
    if (!p)
        return memfit_fail(MEMFIT_E_MISUSE, "sam generate: NULL parameters");
    if (p->points_per_batch < 1 || p->points_per_batch > MAX_POINTS_PER_BATCH)
        return bad("points_per_batch", p->points_per_batch, "1..65536");
    if (p->crop_n_layers > MAX_CROP_LAYERS)
        return bad("crop_n_layers", p->crop_n_layers, "0..4");
    if ((p->points_per_side == 0) == (p->point_grids == NULL))
        return memfit_fail(MEMFIT_E_RANGE,
                           "sam generate: points_per_side = %u with%s "
                           "point_grids, need exactly one of them",
                           p->points_per_side, p->point_grids ? "" : "out");
    if (p->point_grids) {
        for (uint32_t l = 0; l <= p->crop_n_layers; l++) {
            const struct memfit_sam_point_grid *g = &p->point_grids[l];
            if (!g->points || g->n_points == 0 || g->n_points > (size_t)1 << 24)
                return memfit_fail(MEMFIT_E_RANGE,
                                   "sam generate: point_grids[%u]: %zu points, need 1..2^24", l,
                                   g->points ? g->n_points : 0);
            for (size_t i = 0; i < 2 * g->n_points; i++)
                if (!isfinite(g->points[i]))
                    return memfit_fail(MEMFIT_E_RANGE,
                                       "sam generate: point_grids[%u]: point %zu is not finite", l,
                                       i / 2);
        }
    } else {
        if (p->points_per_side > MAX_POINTS_PER_SIDE)
            return bad("points_per_side", p->points_per_side, "1..1024");
        if (p->crop_n_points_downscale_factor < 1)
            return bad("crop_n_points_downscale_factor", p->crop_n_points_downscale_factor, ">= 1");
        size_t n;
        if (memfit_sam_layer_points_per_side(p->points_per_side, p->crop_n_points_downscale_factor,
                                             p->crop_n_layers, &n) != MEMFIT_OK)
            return memfit_fail(MEMFIT_E_RANGE,
                               "sam generate: crop_n_points_downscale_factor = %u leaves no "
                               "point in crop layer %u (points_per_side %u)",
                               p->crop_n_points_downscale_factor, p->crop_n_layers,
                               p->points_per_side);
    }
    if (!isfinite(p->pred_iou_thresh))
        return bad("pred_iou_thresh", p->pred_iou_thresh, "a finite value");
    if (!isfinite(p->stability_score_thresh))
        return bad("stability_score_thresh", p->stability_score_thresh, "a finite value");
    if (!isfinite(p->stability_score_offset) || p->stability_score_offset < 0)
        return bad("stability_score_offset", p->stability_score_offset, ">= 0");
    if (!(p->box_nms_thresh >= 0 && p->box_nms_thresh <= 1))
        return bad("box_nms_thresh", p->box_nms_thresh, "0..1");
    if (!(p->crop_nms_thresh >= 0 && p->crop_nms_thresh <= 1))
        return bad("crop_nms_thresh", p->crop_nms_thresh, "0..1");
    if (!isfinite(p->crop_overlap_ratio) || p->crop_overlap_ratio < 0)
        return bad("crop_overlap_ratio", p->crop_overlap_ratio, ">= 0");
    return MEMFIT_OK;
}

/* ---- the plan --------------------------------------------------------------- */

/* Byte offsets into the arena (64-byte aligned), and the sizes they hold. */
struct layout {
    struct memfit_sam_info info;
    size_t n_crops;
    int32_t boxes[MAX_CROPS * 4]; /* XYXY */
    uint32_t layers[MAX_CROPS];
    size_t max_grid_points; /* of the built grids (0 with point_grids) */
    size_t decode_bytes, encode_bytes, pre_bytes;
    size_t small_region_bytes; /* allocated by memfit_sam_remove_small_regions */
    size_t decode_work, low_res, iou, prompts, points, labels, embedding, post, logits, mask,
        crop_rgb, grid, pixels, encode_work, pre_scratch;
    size_t total; /* arena bytes, with 63 to align its start */
};

static bool add(struct layout *L, size_t *offset, size_t count, size_t size)
{
    size_t bytes, start = (L->total + 63) & ~(size_t)63;
    if (start < L->total || mf_mul_overflow(count, size, &bytes) ||
        mf_add_overflow(start, bytes, &L->total))
        return false;
    *offset = start;
    return true;
}

static enum memfit_status plan_layout(const memfit_sam *m, const struct memfit_sam_amg_params *p,
                                      bool own_embedding, uint32_t width, uint32_t height,
                                      struct layout *L)
{
    enum memfit_status st = memfit_sam_amg_params_check(p);
    if (st != MEMFIT_OK)
        return st;
    if (width == 0 || height == 0 || width > INT32_MAX || height > INT32_MAX ||
        (uint64_t)width * height > UINT32_MAX)
        return memfit_fail(MEMFIT_E_RANGE,
                           "sam generate: image %ux%u (need 1..2^32 - 1 pixels, sides < 2^31)",
                           width, height);
    memset(L, 0, sizeof(*L));
    memfit_sam_get_info(m, &L->info);
    const struct memfit_sam_info *in = &L->info;
    st = memfit_sam_crop_box_count(p->crop_n_layers, &L->n_crops);
    if (st == MEMFIT_OK)
        st = memfit_sam_crop_boxes((int32_t)height, (int32_t)width, p->crop_n_layers,
                                   p->crop_overlap_ratio, L->boxes, L->layers, L->n_crops);
    if (st == MEMFIT_OK)
        st = memfit_sam_decode_plan(m, &L->decode_bytes);
    if (st == MEMFIT_OK && own_embedding)
        st = memfit_sam_encode_plan(m, &L->encode_bytes);
    if (st != MEMFIT_OK)
        return st;

    size_t max_area = 0, max_sub_area = 0;
    for (size_t c = 0; c < L->n_crops; c++) {
        const int32_t *b = L->boxes + 4 * c;
        uint32_t cw = (uint32_t)(b[2] - b[0]), ch = (uint32_t)(b[3] - b[1]);
        size_t area = (size_t)cw * ch;
        size_t pre = mf_sam_preprocess_scratch_bytes(cw, ch, in->image_size);
        if (pre == 0)
            return memfit_fail(MEMFIT_E_RANGE,
                               "sam generate: crop %zu (%ux%u) does not resize to %u a side", c, cw,
                               ch, in->image_size);
        if (own_embedding && pre > L->pre_bytes)
            L->pre_bytes = pre;
        max_area = area > max_area ? area : max_area;
        if (c > 0 && area > max_sub_area)
            max_sub_area = area;
    }
    if (!p->point_grids) {
        size_t n; /* layer 0 has the most points (the factor is >= 1) */
        memfit_sam_layer_points_per_side(p->points_per_side, p->crop_n_points_downscale_factor, 0,
                                         &n);
        L->max_grid_points = n * n;
    }
    size_t ppb = p->points_per_batch, mask_floats = (size_t)in->mask_size * in->mask_size;
    size_t n_masks = ppb * memfit_sam_mask_count(true), plane = (size_t)in->image_size;
    bool ok = add(L, &L->decode_work, L->decode_bytes, 1) &&
              add(L, &L->low_res, n_masks, mask_floats * sizeof(float)) &&
              add(L, &L->iou, n_masks, sizeof(float)) &&
              add(L, &L->prompts, ppb, sizeof(struct memfit_sam_prompt)) &&
              add(L, &L->points, ppb * 2, sizeof(float)) &&
              add(L, &L->labels, ppb, sizeof(int32_t)) &&
              add(L, &L->embedding, (size_t)in->prompt_dim * in->grid * in->grid, sizeof(float)) &&
              add(L, &L->post, plane * plane, sizeof(float)) &&
              add(L, &L->logits, max_area, sizeof(float)) && add(L, &L->mask, max_area, 1) &&
              add(L, &L->crop_rgb, max_sub_area, 3) &&
              add(L, &L->grid, L->max_grid_points * 2, sizeof(double));
    if (ok && own_embedding)
        ok = add(L, &L->pixels, 3 * plane * plane, sizeof(float)) &&
             add(L, &L->encode_work, L->encode_bytes, 1) &&
             add(L, &L->pre_scratch, L->pre_bytes, 1);
    if (!ok || mf_add_overflow(L->total, 63, &L->total))
        return memfit_fail(MEMFIT_E_RANGE, "sam generate: the workspace of a %ux%u image overflows",
                           width, height);
    if (p->min_mask_region_area > 0)
        L->small_region_bytes = (size_t)width * height * 8;
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_amg_plan(const memfit_sam *m,
                                       const struct memfit_sam_amg_params *params,
                                       const struct memfit_sam_amg_hooks *hooks, uint32_t width,
                                       uint32_t height, size_t *fixed_bytes)
{
    if (!m || !params || !fixed_bytes)
        return memfit_fail(MEMFIT_E_MISUSE, "sam generate plan: NULL argument");
    struct layout L;
    enum memfit_status st = plan_layout(m, params, !hooks || !hooks->embed, width, height, &L);
    size_t total;
    if (st == MEMFIT_OK && mf_add_overflow(L.total, L.small_region_bytes, &total))
        st = memfit_fail(MEMFIT_E_RANGE, "sam generate: the workspace overflows");
    if (st == MEMFIT_OK)
        *fixed_bytes = total;
    return st;
}

/* ---- the data-dependent memory ------------------------------------------------ */

struct gen {
    memfit_sam *m;
    const struct memfit_image *img;
    const struct memfit_sam_amg_params *p;
    struct memfit_sam_amg_hooks hooks;
    struct layout *L;
    uint8_t *arena; /* 64-byte aligned */
    uint64_t data_bytes;

    /* The records: bbox and crop_box hold XYXY until the end. */
    struct memfit_sam_mask *recs;
    size_t n_recs, cap_recs;
};

static enum memfit_status data_grow(struct gen *g, size_t bytes)
{
    uint64_t cap = g->hooks.max_data_bytes;
    if (cap && (bytes > cap || g->data_bytes > cap - bytes))
        return memfit_fail(MEMFIT_E_BUDGET,
                           "sam generate: masks need %llu bytes more, past the cap of %llu "
                           "(%llu in use)",
                           (unsigned long long)bytes, (unsigned long long)cap,
                           (unsigned long long)g->data_bytes);
    if (bytes > INT64_MAX)
        return memfit_fail(MEMFIT_E_RANGE, "sam generate: %zu bytes of masks", bytes);
    if (g->hooks.reserve) {
        enum memfit_status st = g->hooks.reserve(g->hooks.reserve_user, (int64_t)bytes);
        if (st != MEMFIT_OK)
            return st;
    }
    g->data_bytes += bytes;
    return MEMFIT_OK;
}

static void data_shrink(struct gen *g, size_t bytes)
{
    if (bytes == 0)
        return;
    g->data_bytes -= bytes;
    if (g->hooks.reserve)
        (void)g->hooks.reserve(g->hooks.reserve_user, -(int64_t)bytes);
}

/* An allocation counted as data: the cap and the callback first. */
static void *data_alloc(struct gen *g, size_t count, size_t size, enum memfit_status *st)
{
    size_t bytes;
    if (mf_mul_overflow(count, size, &bytes)) {
        *st = memfit_fail(MEMFIT_E_RANGE, "sam generate: %zu x %zu bytes overflow", count, size);
        return NULL;
    }
    *st = data_grow(g, bytes);
    if (*st != MEMFIT_OK)
        return NULL;
    void *ptr = memfit_malloc_in(MEMFIT_ALLOC_MODEL, bytes ? bytes : 1);
    if (!ptr) {
        data_shrink(g, bytes);
        *st = MEMFIT_E_NOMEM;
    }
    return ptr;
}

static void data_free(struct gen *g, void *ptr, size_t count, size_t size)
{
    if (!ptr)
        return;
    memfit_free(ptr);
    data_shrink(g, count * size);
}

static void drop_record(struct gen *g, struct memfit_sam_mask *r)
{
    data_free(g, r->counts, r->n_counts, sizeof(uint32_t));
    r->counts = NULL;
}

/* Room for one more record (the array doubles, counted at its capacity). */
static enum memfit_status reserve_record(struct gen *g)
{
    if (g->n_recs < g->cap_recs)
        return MEMFIT_OK;
    size_t cap = g->cap_recs ? 2 * g->cap_recs : 64, bytes;
    if (mf_mul_overflow(cap, sizeof(*g->recs), &bytes))
        return memfit_fail(MEMFIT_E_RANGE, "sam generate: %zu masks overflow", cap);
    enum memfit_status st = data_grow(g, bytes - g->cap_recs * sizeof(*g->recs));
    if (st != MEMFIT_OK)
        return st;
    struct memfit_sam_mask *recs = memfit_realloc(g->recs, bytes);
    if (!recs) {
        data_shrink(g, bytes - g->cap_recs * sizeof(*g->recs));
        return MEMFIT_E_NOMEM;
    }
    g->recs = recs;
    g->cap_recs = cap;
    return MEMFIT_OK;
}

/* ---- RLE of a crop mask placed in the zero image ------------------------------- */

struct rle_writer {
    uint32_t *out; /* NULL: count only */
    size_t n;
    uint64_t run;
    uint8_t prev;
};

static void rle_put(struct rle_writer *w, uint8_t v, uint64_t count)
{
    if (count == 0)
        return;
    if (v != w->prev) {
        if (w->out)
            w->out[w->n] = (uint32_t)w->run;
        w->n++;
        w->run = 0;
        w->prev = v;
    }
    w->run += count;
}

/*
 * The column-major runs of an H x W image that is zero except for the
 * ch x cw mask (row-major, nonzero = set) at (x0, y0): what the reference's
 * uncrop_masks + mask_to_rle_pytorch give, without the padded image.
 * Returns the number of counts (written when `out` is not NULL).
 */
static size_t rle_uncrop(const uint8_t *mask, size_t cw, size_t ch, size_t x0, size_t y0, size_t W,
                         size_t H, uint32_t *out)
{
    struct rle_writer w = {.out = out};
    rle_put(&w, 0, (uint64_t)x0 * H);
    for (size_t x = 0; x < cw; x++) {
        rle_put(&w, 0, y0);
        for (size_t y = 0; y < ch; y++)
            rle_put(&w, mask[y * cw + x] != 0, 1);
        rle_put(&w, 0, H - y0 - ch);
    }
    rle_put(&w, 0, (uint64_t)(W - x0 - cw) * H);
    if (out)
        out[w.n] = (uint32_t)w.run;
    return w.n + 1;
}

/* ---- NMS over a range of records ------------------------------------------------ */

enum nms_score { SCORE_IOU, SCORE_CROP_AREA, SCORE_GIVEN };

/*
 * NMS over records [first, first + n) with their boxes (or `boxes` when not
 * NULL, XYXY floats) and the scores of `kind` (`scores` for SCORE_GIVEN),
 * then reorders them as the kept indices and drops the others.
 */
static enum memfit_status nms_records(struct gen *g, size_t first, size_t n, float iou_thresh,
                                      enum nms_score kind, float *given_boxes,
                                      const float *given_scores)
{
    if (n == 0)
        return MEMFIT_OK;
    struct memfit_sam_mask *r = g->recs + first;
    enum memfit_status st;
    float *boxes = given_boxes ? NULL : data_alloc(g, n, 4 * sizeof(float), &st);
    if (!given_boxes && !boxes)
        return st;
    float *scores = data_alloc(g, n, sizeof(float), &st);
    size_t *keep = scores ? data_alloc(g, n, sizeof(size_t), &st) : NULL;
    struct memfit_sam_mask *kept = keep ? data_alloc(g, n, sizeof(*kept), &st) : NULL;
    if (kept) {
        const float *b = given_boxes ? given_boxes : boxes;
        for (size_t i = 0; i < n; i++) {
            if (!given_boxes)
                for (int k = 0; k < 4; k++)
                    boxes[4 * i + (size_t)k] = (float)r[i].bbox[k];
            if (kind == SCORE_IOU) {
                scores[i] = r[i].predicted_iou;
            } else if (kind == SCORE_CROP_AREA) {
                /* torch: 1 / int64 area, true division in float32 */
                int64_t area = (int64_t)(r[i].crop_box[2] - r[i].crop_box[0]) *
                               (r[i].crop_box[3] - r[i].crop_box[1]);
                scores[i] = 1.0f / (float)area;
            } else {
                scores[i] = given_scores[i];
            }
        }
        size_t n_keep = 0;
        st = memfit_sam_nms(b, scores, NULL, n, iou_thresh, keep, &n_keep);
        if (st == MEMFIT_OK) {
            uint8_t *is_kept = (uint8_t *)scores; /* scores are no longer needed */
            memset(is_kept, 0, n);
            for (size_t i = 0; i < n_keep; i++) {
                kept[i] = r[keep[i]];
                is_kept[keep[i]] = 1;
            }
            for (size_t i = 0; i < n; i++)
                if (!is_kept[i])
                    drop_record(g, &r[i]);
            memcpy(r, kept, n_keep * sizeof(*kept));
            /* the records after the range move up */
            memmove(r + n_keep, r + n, (g->n_recs - first - n) * sizeof(*r));
            g->n_recs -= n - n_keep;
        }
    }
    data_free(g, kept, n, sizeof(*kept));
    data_free(g, keep, n, sizeof(size_t));
    data_free(g, scores, n, sizeof(float));
    data_free(g, boxes, n, 4 * sizeof(float));
    return st;
}

/* ---- one crop ------------------------------------------------------------------- */

#define AT(g, field, type) ((type *)((g)->arena + (g)->L->field))

/* Copies the crop out of the image (rows of cw pixels). */
static void copy_crop(const struct memfit_image *img, const int32_t *box, uint8_t *dst)
{
    size_t cw = (size_t)(box[2] - box[0]);
    for (int32_t y = box[1]; y < box[3]; y++)
        memcpy(dst + (size_t)(y - box[1]) * cw * 3,
               img->rgb + ((size_t)y * img->width + (size_t)box[0]) * 3, cw * 3);
}

static enum memfit_status embed(struct gen *g, size_t c, const int32_t *box,
                                const struct memfit_image *crop, float *embedding)
{
    if (g->hooks.embed)
        return g->hooks.embed(g->hooks.embed_user, c, box, crop, embedding);
    const struct layout *L = g->L;
    float *pixels = AT(g, pixels, float);
    enum memfit_status st = mf_sam_preprocess_into(crop, L->info.image_size, pixels,
                                                   g->arena + L->pre_scratch, L->pre_bytes);
    if (st == MEMFIT_OK)
        st = memfit_sam_encode(g->m, pixels, g->arena + L->encode_work, L->encode_bytes, embedding);
    return st;
}

/* Scores, filters and stores mask k of the batch (point `pt` of the crop). */
static enum memfit_status one_mask(struct gen *g, size_t c, const float *low_res, float iou,
                                   const double pt[2], uint32_t rw, uint32_t rh)
{
    const struct memfit_sam_amg_params *p = g->p;
    const struct layout *L = g->L;
    const int32_t *box = L->boxes + 4 * c;
    uint32_t cw = (uint32_t)(box[2] - box[0]), ch = (uint32_t)(box[3] - box[1]);
    size_t area = (size_t)cw * ch;
    if (p->pred_iou_thresh > 0.0 && !(iou > (float)p->pred_iou_thresh))
        return MEMFIT_OK;
    float *logits = AT(g, logits, float);
    memfit_sam_postprocess(low_res, L->info.mask_size, L->info.image_size, rw, rh, cw, ch,
                           AT(g, post, float), logits);
    float stability;
    enum memfit_status st =
        memfit_sam_stability_scores(logits, 1, ch, cw, 0.0, p->stability_score_offset, &stability);
    if (st != MEMFIT_OK)
        return st;
    if (p->stability_score_thresh > 0.0 && !(stability >= (float)p->stability_score_thresh))
        return MEMFIT_OK;
    uint8_t *mask = AT(g, mask, uint8_t);
    for (size_t i = 0; i < area; i++)
        mask[i] = logits[i] > 0.0f; /* Sam.mask_threshold */
    int32_t mbox[4];
    st = memfit_sam_mask_to_box(mask, ch, cw, mbox);
    if (st != MEMFIT_OK)
        return st;
    const int32_t orig[4] = {0, 0, (int32_t)g->img->width, (int32_t)g->img->height};
    if (memfit_sam_box_near_crop_edge(mbox, box, orig, EDGE_ATOL))
        return MEMFIT_OK;

    st = reserve_record(g);
    if (st != MEMFIT_OK)
        return st;
    size_t W = g->img->width, H = g->img->height;
    size_t n = rle_uncrop(mask, cw, ch, (size_t)box[0], (size_t)box[1], W, H, NULL);
    uint32_t *counts = data_alloc(g, n, sizeof(uint32_t), &st);
    if (!counts)
        return st;
    rle_uncrop(mask, cw, ch, (size_t)box[0], (size_t)box[1], W, H, counts);
    struct memfit_sam_mask *r = &g->recs[g->n_recs++];
    *r = (struct memfit_sam_mask){
        .counts = counts,
        .n_counts = n,
        .height = (uint32_t)H,
        .width = (uint32_t)W,
        .bbox = {mbox[0], mbox[1], mbox[2], mbox[3]}, /* the crop's frame until its NMS */
        .predicted_iou = iou,
        .point_coords = {pt[0], pt[1]},
        .stability_score = stability,
        .crop_box = {box[0], box[1], box[2], box[3]},
    };
    return MEMFIT_OK;
}

static enum memfit_status process_crop(struct gen *g, size_t c, const double *grid, size_t n_points)
{
    const struct memfit_sam_amg_params *p = g->p;
    const struct layout *L = g->L;
    const int32_t *box = L->boxes + 4 * c;
    uint32_t cw = (uint32_t)(box[2] - box[0]), ch = (uint32_t)(box[3] - box[1]);
    struct memfit_image crop = *g->img;
    if (c > 0) { /* the whole image is crop 0 */
        crop = (struct memfit_image){.width = cw, .height = ch, .rgb = AT(g, crop_rgb, uint8_t)};
        copy_crop(g->img, box, crop.rgb);
    }
    float *embedding = AT(g, embedding, float);
    enum memfit_status st = embed(g, c, box, &crop, embedding);
    if (st != MEMFIT_OK)
        return st;

    uint32_t rw, rh;
    memfit_sam_resized_size(L->info.image_size, cw, ch, &rw, &rh);
    /* apply_coords: x * (new_w / old_w) in double, as numpy */
    double sx = (double)rw / (double)cw, sy = (double)rh / (double)ch;
    struct memfit_sam_prompt *prompts = AT(g, prompts, struct memfit_sam_prompt);
    float *pts = AT(g, points, float);
    int32_t *labels = AT(g, labels, int32_t);
    float *low_res = AT(g, low_res, float), *iou = AT(g, iou, float);
    size_t n_out = memfit_sam_mask_count(true),
           mask_floats = (size_t)L->info.mask_size * L->info.mask_size;
    size_t first = g->n_recs;
    for (size_t b0 = 0; b0 < n_points; b0 += p->points_per_batch) {
        size_t nb = n_points - b0 < p->points_per_batch ? n_points - b0 : p->points_per_batch;
        if (g->hooks.cancelled && g->hooks.cancelled(g->hooks.cancel_user))
            return memfit_fail(MEMFIT_E_CANCELLED, "sam: mask generation cancelled at point %zu",
                               b0);
        for (size_t i = 0; i < nb; i++) {
            const double *q = grid + 2 * (b0 + i);
            pts[2 * i] = (float)(q[0] * cw * sx);
            pts[2 * i + 1] = (float)(q[1] * ch * sy);
            labels[i] = 1;
            prompts[i] = (struct memfit_sam_prompt){
                .points = pts + 2 * i, .labels = labels + i, .n_points = 1};
        }
        st = memfit_sam_decode(g->m, embedding, prompts, nb, true, g->arena + L->decode_work,
                               L->decode_bytes, low_res, iou);
        if (st != MEMFIT_OK)
            return st;
        for (size_t k = 0; k < nb * n_out; k++) {
            const double *q = grid + 2 * (b0 + k / n_out);
            const double pt[2] = {q[0] * cw, q[1] * ch}; /* grid * [w, h] in float64 */
            st = one_mask(g, c, low_res + k * mask_floats, iou[k], pt, rw, rh);
            if (st != MEMFIT_OK)
                return st;
        }
    }
    st = nms_records(g, first, g->n_recs - first, (float)p->box_nms_thresh, SCORE_IOU, NULL, NULL);
    if (st != MEMFIT_OK)
        return st;
    for (size_t i = first; i < g->n_recs; i++) { /* back to the image's frame */
        struct memfit_sam_mask *r = &g->recs[i];
        r->bbox[0] += box[0];
        r->bbox[1] += box[1];
        r->bbox[2] += box[0];
        r->bbox[3] += box[1];
        r->point_coords[0] += box[0];
        r->point_coords[1] += box[1];
    }
    return MEMFIT_OK;
}

/* ---- small regions ---------------------------------------------------------------- */

/* The reference's postprocess_small_regions: per mask holes then islands,
 * the boxes of the new masks, NMS preferring unchanged masks. A changed
 * mask gets its new RLE and box at once (the reference updates only the
 * kept ones; the others are dropped by the NMS anyway). */
static enum memfit_status small_regions(struct gen *g)
{
    size_t n = g->n_recs, W = g->img->width, H = g->img->height;
    if (n == 0)
        return MEMFIT_OK;
    double min_area = (double)g->p->min_mask_region_area;
    enum memfit_status st;
    float *boxes = data_alloc(g, n, 4 * sizeof(float), &st);
    if (!boxes)
        return st;
    float *scores = data_alloc(g, n, sizeof(float), &st);
    uint8_t *mask = AT(g, logits, uint8_t); /* W x H bytes fit in the logits */
    for (size_t i = 0; scores && i < n && st == MEMFIT_OK; i++) {
        struct memfit_sam_mask *r = &g->recs[i];
        bool holes = false, islands = false;
        st = memfit_sam_rle_to_mask(r->counts, r->n_counts, H, W, mask);
        if (st == MEMFIT_OK)
            st = memfit_sam_remove_small_regions(mask, H, W, min_area, MEMFIT_SAM_REGION_HOLES,
                                                 &holes);
        if (st == MEMFIT_OK)
            st = memfit_sam_remove_small_regions(mask, H, W, min_area, MEMFIT_SAM_REGION_ISLANDS,
                                                 &islands);
        int32_t box[4];
        if (st == MEMFIT_OK)
            st = memfit_sam_mask_to_box(mask, H, W, box);
        if (st != MEMFIT_OK)
            break;
        for (int k = 0; k < 4; k++)
            boxes[4 * i + (size_t)k] = (float)box[k];
        bool changed = holes || islands;
        scores[i] = changed ? 0.0f : 1.0f;
        if (!changed)
            continue;
        size_t n_counts = rle_uncrop(mask, W, H, 0, 0, W, H, NULL);
        uint32_t *counts = data_alloc(g, n_counts, sizeof(uint32_t), &st);
        if (!counts)
            break;
        rle_uncrop(mask, W, H, 0, 0, W, H, counts);
        drop_record(g, r);
        r->counts = counts;
        r->n_counts = n_counts;
        memcpy(r->bbox, box, sizeof(box));
    }
    if (scores && st == MEMFIT_OK) {
        double t = g->p->box_nms_thresh > g->p->crop_nms_thresh ? g->p->box_nms_thresh
                                                                : g->p->crop_nms_thresh;
        st = nms_records(g, 0, n, (float)t, SCORE_GIVEN, boxes, scores);
    }
    data_free(g, scores, n, sizeof(float));
    data_free(g, boxes, n, 4 * sizeof(float));
    return st;
}

/* ---- the generator ------------------------------------------------------------------- */

void memfit_sam_masks_free(struct memfit_sam_masks *masks)
{
    if (!masks)
        return;
    for (size_t i = 0; masks->masks && i < masks->n_masks; i++)
        memfit_free(masks->masks[i].counts);
    memfit_free(masks->masks);
    memset(masks, 0, sizeof(*masks));
}

static enum memfit_status run(struct gen *g)
{
    const struct memfit_sam_amg_params *p = g->p;
    const struct layout *L = g->L;
    enum memfit_status st = MEMFIT_OK;
    uint32_t layer = UINT32_MAX;
    const double *grid = NULL;
    size_t n_points = 0;
    for (size_t c = 0; c < L->n_crops && st == MEMFIT_OK; c++) {
        if (L->layers[c] != layer) {
            layer = L->layers[c];
            if (p->point_grids) {
                grid = p->point_grids[layer].points;
                n_points = p->point_grids[layer].n_points;
            } else {
                size_t n;
                memfit_sam_layer_points_per_side(p->points_per_side,
                                                 p->crop_n_points_downscale_factor, layer, &n);
                n_points = n * n;
                st = memfit_sam_point_grid(n, AT(g, grid, double), 2 * L->max_grid_points);
                grid = AT(g, grid, double);
            }
        }
        if (st == MEMFIT_OK)
            st = process_crop(g, c, grid, n_points);
    }
    if (st == MEMFIT_OK && L->n_crops > 1)
        st = nms_records(g, 0, g->n_recs, (float)p->crop_nms_thresh, SCORE_CROP_AREA, NULL, NULL);
    if (st == MEMFIT_OK && p->min_mask_region_area > 0)
        st = small_regions(g);
    return st;
}

enum memfit_status memfit_sam_generate(memfit_sam *m, const struct memfit_image *img,
                                       const struct memfit_sam_amg_params *params,
                                       const struct memfit_sam_amg_hooks *hooks,
                                       struct memfit_sam_masks *out)
{
    if (!m || !img || !img->rgb || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "sam generate: NULL argument");
    struct memfit_sam_amg_params defaults = memfit_sam_amg_params_default();
    struct layout layout; /* 7 KB: the crop boxes */
    struct gen g = {.m = m, .img = img, .p = params ? params : &defaults, .L = &layout};
    if (hooks)
        g.hooks = *hooks;
    enum memfit_status st = plan_layout(m, g.p, !g.hooks.embed, img->width, img->height, g.L);
    void *arena = NULL;
    if (st == MEMFIT_OK) {
        arena = memfit_malloc_in(MEMFIT_ALLOC_MODEL, g.L->total);
        if (!arena)
            st = MEMFIT_E_NOMEM;
        g.arena = (uint8_t *)(((uintptr_t)arena + 63) & ~(uintptr_t)63);
    }
    if (st == MEMFIT_OK)
        st = run(&g);
    memfit_free(arena);
    if (st != MEMFIT_OK) {
        for (size_t i = 0; i < g.n_recs; i++)
            drop_record(&g, &g.recs[i]);
        data_free(&g, g.recs, g.cap_recs, sizeof(*g.recs));
        return st;
    }
    for (size_t i = 0; i < g.n_recs; i++) { /* XYXY -> XYWH, the area */
        struct memfit_sam_mask *r = &g.recs[i];
        r->area = memfit_sam_rle_area(r->counts, r->n_counts);
        r->bbox[2] -= r->bbox[0];
        r->bbox[3] -= r->bbox[1];
        r->crop_box[2] -= r->crop_box[0];
        r->crop_box[3] -= r->crop_box[1];
    }
    *out =
        (struct memfit_sam_masks){.masks = g.recs, .n_masks = g.n_recs, .data_bytes = g.data_bytes};
    return MEMFIT_OK;
}
