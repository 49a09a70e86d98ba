/* Unit tests of src/models/sam_generate.c, SAM's automatic mask generator,
 * with the tiny random-weight model of tests/fixtures/sam (input 128) on a
 * small synthetic image: the records' invariants (RLE, area, box, crop box,
 * point, scores against the thresholds), the reference's order and the NMS
 * guarantees, crop layers, small-region removal, the exact plan of the
 * fixed memory, the data cap and reserve callback, the embed callback,
 * parameter errors and allocation failures.
 *
 * PENDING: it needs memfit_sam_open / memfit_sam_encode (src/models/sam.c,
 * sam_encoder.c); `git mv` it to tests/unit/ once they are on the branch
 * (CMake builds tests/unit/test_*.c only). It passed against them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "memfit/models.h"
#include "test_util.h"

static memfit_sam *model;

static int setup(void **state)
{
    (void)state;
    char path[512];
    mf_test_fixture("sam/sam_tiny.pth", path, sizeof(path));
    struct memfit_sam_options opts;
    memfit_sam_options_default(&opts);
    opts.n_threads = 2;
    if (memfit_sam_open(path, &opts, &model) != MEMFIT_OK) {
        fprintf(stderr, "%s: %s\n", path, memfit_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    memfit_sam_close(model);
    return 0;
}

/* A W x H picture: a gradient background, a dark disc, a bright rectangle
 * and a red bar, so the decoder has edges to follow. */
static void make_image(struct memfit_image *img, uint32_t w, uint32_t h)
{
    img->width = w;
    img->height = h;
    img->rgb = memfit_malloc((size_t)w * h * 3);
    assert_non_null(img->rgb);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint8_t *p = img->rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / w);
            p[1] = (uint8_t)(y * 255 / h);
            p[2] = 128;
            double dx = x - 0.3 * w, dy = y - 0.4 * h;
            if (dx * dx + dy * dy < 0.04 * w * w)
                p[0] = p[1] = p[2] = 20;
            if (x > 0.55 * w && x < 0.9 * w && y > 0.2 * h && y < 0.6 * h)
                p[0] = p[1] = p[2] = 240;
            if (x > 0.1 * w && x < 0.8 * w && y > 0.75 * h && y < 0.85 * h) {
                p[0] = 230;
                p[1] = p[2] = 10;
            }
        }
}

static struct memfit_sam_amg_params test_params(void)
{
    struct memfit_sam_amg_params p = memfit_sam_amg_params_default();
    /* Random weights: noisy masks over most of the image, predicted IoU
     * around 0 and stability around 0.1, so the default thresholds would
     * keep nothing and NMS at 0.7 one mask. Keep the masks, filter some. */
    p.points_per_side = 8;
    p.points_per_batch = 24; /* batches of 24, 24, 16 */
    p.pred_iou_thresh = 0.0;
    p.stability_score_thresh = 0.08;
    p.box_nms_thresh = 1.0;
    return p;
}

static float box_iou_xywh(const int32_t a[4], const int32_t b[4])
{
    const float fa[4] = {(float)a[0], (float)a[1], (float)(a[0] + a[2]), (float)(a[1] + a[3])};
    const float fb[4] = {(float)b[0], (float)b[1], (float)(b[0] + b[2]), (float)(b[1] + b[3])};
    return memfit_sam_box_iou(fa, fb);
}

/* Checks every record and the set; returns the number of distinct crops. */
static size_t check_records(const struct memfit_sam_masks *out,
                            const struct memfit_sam_amg_params *p, uint32_t w, uint32_t h)
{
    size_t n_crops = 0;
    int32_t crops[64 * 4];
    uint8_t *mask = memfit_malloc((size_t)w * h);
    assert_non_null(mask);
    for (size_t i = 0; i < out->n_masks; i++) {
        const struct memfit_sam_mask *r = &out->masks[i];
        assert_int_equal(r->width, w);
        assert_int_equal(r->height, h);
        assert_int_equal(memfit_sam_rle_to_mask(r->counts, r->n_counts, h, w, mask), MEMFIT_OK);
        uint64_t set = 0;
        for (size_t k = 0; k < (size_t)w * h; k++)
            set += mask[k];
        assert_int_equal(r->area, set);
        assert_int_equal(r->area, memfit_sam_rle_area(r->counts, r->n_counts));
        /* counts alternate: no zero-length run but the first */
        for (size_t k = 1; k < r->n_counts; k++)
            assert_true(r->counts[k] > 0);
        int32_t box[4];
        assert_int_equal(memfit_sam_mask_to_box(mask, h, w, box), MEMFIT_OK);
        if (set > 0) {
            assert_int_equal(r->bbox[0], box[0]);
            assert_int_equal(r->bbox[1], box[1]);
            assert_int_equal(r->bbox[2], box[2] - box[0]);
            assert_int_equal(r->bbox[3], box[3] - box[1]);
        }
        /* the mask lies in its crop, and so does its point */
        const int32_t *c = r->crop_box;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++)
                if (mask[(size_t)y * w + x])
                    assert_true((int32_t)x >= c[0] && (int32_t)x < c[0] + c[2] &&
                                (int32_t)y >= c[1] && (int32_t)y < c[1] + c[3]);
        assert_true(r->point_coords[0] > c[0] && r->point_coords[0] < c[0] + c[2]);
        assert_true(r->point_coords[1] > c[1] && r->point_coords[1] < c[1] + c[3]);
        if (p->pred_iou_thresh > 0)
            assert_true(r->predicted_iou > (float)p->pred_iou_thresh);
        if (p->stability_score_thresh > 0)
            assert_true(r->stability_score >= (float)p->stability_score_thresh);
        size_t k;
        for (k = 0; k < n_crops; k++)
            if (memcmp(crops + 4 * k, c, 4 * sizeof(int32_t)) == 0)
                break;
        if (k == n_crops) {
            assert_true(n_crops < 64);
            memcpy(crops + 4 * n_crops++, c, 4 * sizeof(int32_t));
        }
    }
    memfit_free(mask);

    /* NMS: no two kept boxes overlap past the thresholds (a box suppressed
     * only what it overlapped by more, and the last NMS saw these boxes) */
    double t = p->box_nms_thresh > p->crop_nms_thresh ? p->box_nms_thresh : p->crop_nms_thresh;
    for (size_t i = 0; i < out->n_masks; i++)
        for (size_t j = i + 1; j < out->n_masks; j++) {
            float iou = box_iou_xywh(out->masks[i].bbox, out->masks[j].bbox);
            assert_false(iou > (float)t);
            if (memcmp(out->masks[i].crop_box, out->masks[j].crop_box, 16) == 0)
                assert_false(iou > (float)p->box_nms_thresh);
        }
    /* order: smaller crops first (1 / area descending); within a crop,
     * predicted IoU descending (without the small-region NMS, which
     * reorders by "unchanged") */
    if (p->min_mask_region_area == 0)
        for (size_t i = 1; i < out->n_masks; i++) {
            const struct memfit_sam_mask *a = &out->masks[i - 1], *b = &out->masks[i];
            int64_t area_a = (int64_t)a->crop_box[2] * a->crop_box[3];
            int64_t area_b = (int64_t)b->crop_box[2] * b->crop_box[3];
            assert_true(area_a <= area_b);
            if (memcmp(a->crop_box, b->crop_box, 16) == 0)
                assert_true(a->predicted_iou >= b->predicted_iou);
        }
    return n_crops;
}

static void generate(const struct memfit_sam_amg_params *p, const struct memfit_image *img,
                     const struct memfit_sam_amg_hooks *hooks, struct memfit_sam_masks *out)
{
    enum memfit_status st = memfit_sam_generate(model, img, p, hooks, out);
    if (st != MEMFIT_OK)
        fprintf(stderr, "generate: %s\n", memfit_last_error());
    assert_int_equal(st, MEMFIT_OK);
}

static void test_records(void **state)
{
    (void)state;
    struct memfit_image img;
    make_image(&img, 160, 120);
    struct memfit_sam_amg_params p = test_params();
    struct memfit_sam_masks out;
    generate(&p, &img, NULL, &out);
    fprintf(stderr, "160x120, 8x8 points: %zu masks\n", out.n_masks);
    assert_true(out.n_masks > 0);
    assert_int_equal(check_records(&out, &p, 160, 120), 1);
    for (size_t i = 0; i < out.n_masks; i++) {
        const int32_t whole[4] = {0, 0, 160, 120};
        assert_memory_equal(out.masks[i].crop_box, whole, sizeof(whole));
        /* layer 0's points: (k + 0.5) / 8 of the side */
        double fx = out.masks[i].point_coords[0] / 160 * 8 - 0.5;
        assert_true(fabs(fx - round(fx)) < 1e-9);
    }
    /* NMS at 0.98 leaves the masks whose boxes differ enough */
    struct memfit_sam_amg_params nms = p;
    nms.box_nms_thresh = 0.98;
    struct memfit_sam_masks fewer_nms;
    generate(&nms, &img, NULL, &fewer_nms);
    check_records(&fewer_nms, &nms, 160, 120);
    fprintf(stderr, "  %zu after NMS at 0.98\n", fewer_nms.n_masks);
    assert_true(fewer_nms.n_masks >= 1 && fewer_nms.n_masks < out.n_masks);
    memfit_sam_masks_free(&fewer_nms);

    /* the same run again gives the same records */
    struct memfit_sam_masks again;
    generate(&p, &img, NULL, &again);
    assert_int_equal(again.n_masks, out.n_masks);
    for (size_t i = 0; i < out.n_masks; i++) {
        assert_int_equal(again.masks[i].n_counts, out.masks[i].n_counts);
        assert_memory_equal(again.masks[i].counts, out.masks[i].counts,
                            out.masks[i].n_counts * sizeof(uint32_t));
    }
    memfit_sam_masks_free(&again);

    /* default thresholds: a subset of these masks, the filters hold */
    struct memfit_sam_amg_params strict = p;
    strict.pred_iou_thresh = 0.5;
    strict.stability_score_thresh = 0.8;
    struct memfit_sam_masks fewer;
    generate(&strict, &img, NULL, &fewer);
    check_records(&fewer, &strict, 160, 120);
    assert_true(fewer.n_masks <= out.n_masks);
    memfit_sam_masks_free(&fewer);
    memfit_sam_masks_free(&out);
    memfit_sam_masks_free(&out); /* twice is fine */
    memfit_image_free(&img);
}

static void test_crop_layers(void **state)
{
    (void)state;
    struct memfit_image img;
    make_image(&img, 150, 200);
    struct memfit_sam_amg_params p = test_params();
    p.crop_n_layers = 1;
    p.crop_n_points_downscale_factor = 2; /* 4x4 points in the crops */
    struct memfit_sam_masks out;
    generate(&p, &img, NULL, &out);
    size_t n_crops = check_records(&out, &p, 150, 200);
    fprintf(stderr, "150x200, 1 crop layer: %zu masks from %zu crops\n", out.n_masks, n_crops);
    int32_t boxes[5 * 4];
    assert_int_equal(memfit_sam_crop_boxes(200, 150, 1, p.crop_overlap_ratio, boxes, NULL, 5),
                     MEMFIT_OK);
    const int32_t orig[4] = {0, 0, 150, 200};
    for (size_t i = 0; i < out.n_masks; i++) {
        const struct memfit_sam_mask *r = &out.masks[i];
        size_t c;
        for (c = 0; c < 5; c++)
            if (r->crop_box[0] == boxes[4 * c] && r->crop_box[1] == boxes[4 * c + 1] &&
                r->crop_box[2] == boxes[4 * c + 2] - boxes[4 * c] &&
                r->crop_box[3] == boxes[4 * c + 3] - boxes[4 * c + 1])
                break;
        assert_true(c < 5);
        /* no kept mask of a sub-crop touches the crop's inner edges */
        const int32_t in_crop[4] = {r->bbox[0] - boxes[4 * c], r->bbox[1] - boxes[4 * c + 1],
                                    r->bbox[0] + r->bbox[2] - boxes[4 * c],
                                    r->bbox[1] + r->bbox[3] - boxes[4 * c + 1]};
        if (r->area > 0)
            assert_false(memfit_sam_box_near_crop_edge(in_crop, boxes + 4 * c, orig, 20.0f));
    }
    memfit_sam_masks_free(&out);
    memfit_image_free(&img);
}

static void test_small_regions(void **state)
{
    (void)state;
    struct memfit_image img;
    make_image(&img, 160, 120);
    struct memfit_sam_amg_params p = test_params();
    p.min_mask_region_area = 40;
    struct memfit_sam_masks out;
    generate(&p, &img, NULL, &out);
    check_records(&out, &p, 160, 120);
    /* the cleanup is idempotent: a second pass changes no pixel */
    uint8_t *mask = memfit_malloc(160 * 120), *again = memfit_malloc(160 * 120);
    assert_true(mask && again);
    for (size_t i = 0; i < out.n_masks; i++) {
        const struct memfit_sam_mask *r = &out.masks[i];
        assert_int_equal(memfit_sam_rle_to_mask(r->counts, r->n_counts, 120, 160, mask), MEMFIT_OK);
        memcpy(again, mask, 160 * 120);
        bool changed;
        assert_int_equal(
            memfit_sam_remove_small_regions(again, 120, 160, 40, MEMFIT_SAM_REGION_HOLES, &changed),
            MEMFIT_OK);
        assert_int_equal(memfit_sam_remove_small_regions(again, 120, 160, 40,
                                                         MEMFIT_SAM_REGION_ISLANDS, &changed),
                         MEMFIT_OK);
        assert_memory_equal(again, mask, 160 * 120);
    }
    memfit_free(mask);
    memfit_free(again);
    memfit_sam_masks_free(&out);
    memfit_image_free(&img);
}

/* ---- memory: the plan, the cap, the reserve callback, the embed callback ---- */

struct probe {
    size_t fixed_bytes;
    uint64_t baseline;
    int64_t reserved, peak_reserved;
    int64_t refuse_after; /* refuse a grow once this much is reserved (0: never) */
    size_t n_embeds;
    float *embedding; /* the whole image's, when given */
};

static uint64_t live_bytes(void)
{
    struct memfit_alloc_stats s;
    memfit_alloc_get_stats(&s);
    return s.total_live_bytes;
}

static enum memfit_status probe_reserve(void *user, int64_t bytes)
{
    struct probe *pr = user;
    if (bytes > 0 && pr->refuse_after && pr->reserved + bytes > pr->refuse_after)
        return memfit_fail(MEMFIT_E_BUDGET, "probe: refused");
    pr->reserved += bytes;
    if (pr->reserved > pr->peak_reserved)
        pr->peak_reserved = pr->reserved;
    return MEMFIT_OK;
}

/* At the first embedding nothing data-dependent exists yet: what is live
 * beyond the baseline is exactly the planned fixed memory. */
static enum memfit_status probe_embed(void *user, size_t crop_index, const int32_t crop_box[4],
                                      const struct memfit_image *crop, float *embedding)
{
    struct probe *pr = user;
    if (pr->n_embeds++ == 0)
        assert_int_equal(live_bytes() - pr->baseline, pr->fixed_bytes);
    assert_int_equal(crop_index, 0);
    assert_int_equal(crop_box[2], (int32_t)crop->width);
    struct memfit_sam_info info;
    memfit_sam_get_info(model, &info);
    memcpy(embedding, pr->embedding,
           (size_t)info.prompt_dim * info.grid * info.grid * sizeof(float));
    return MEMFIT_OK;
}

static void test_memory(void **state)
{
    (void)state;
    struct memfit_image img;
    make_image(&img, 160, 120);
    struct memfit_sam_amg_params p = test_params();
    struct memfit_sam_info info;
    memfit_sam_get_info(model, &info);

    /* the embedding the default path computes */
    size_t enc_bytes, S = info.image_size;
    assert_int_equal(memfit_sam_encode_plan(model, &enc_bytes), MEMFIT_OK);
    float *pixels = memfit_malloc(3 * S * S * sizeof(float));
    void *work = memfit_malloc(enc_bytes + 64);
    float *emb = memfit_malloc((size_t)info.prompt_dim * info.grid * info.grid * sizeof(float));
    assert_true(pixels && work && emb);
    assert_int_equal(memfit_sam_preprocess(&img, info.image_size, pixels), MEMFIT_OK);
    assert_int_equal(
        memfit_sam_encode(model, pixels, (void *)(((uintptr_t)work + 63) & ~63ull), enc_bytes, emb),
        MEMFIT_OK);

    struct probe pr = {.embedding = emb};
    struct memfit_sam_amg_hooks hooks = {
        .embed = probe_embed, .embed_user = &pr, .reserve = probe_reserve, .reserve_user = &pr};
    assert_int_equal(memfit_sam_amg_plan(model, &p, &hooks, 160, 120, &pr.fixed_bytes), MEMFIT_OK);
    size_t with_encoder;
    assert_int_equal(memfit_sam_amg_plan(model, &p, NULL, 160, 120, &with_encoder), MEMFIT_OK);
    assert_true(with_encoder >= pr.fixed_bytes + enc_bytes + 3 * S * S * sizeof(float));
    fprintf(stderr, "plan 160x120: %zu bytes with the embed callback, %zu without\n",
            pr.fixed_bytes, with_encoder);

    pr.baseline = live_bytes();
    struct memfit_sam_masks out, ref;
    generate(&p, &img, &hooks, &out);
    assert_int_equal(pr.n_embeds, 1);
    /* what stays reserved is the records' data */
    assert_int_equal(pr.reserved, (int64_t)out.data_bytes);
    assert_true(out.data_bytes >= out.n_masks * sizeof(struct memfit_sam_mask));
    /* the callback's embedding gives the default path's records */
    generate(&p, &img, NULL, &ref);
    assert_int_equal(ref.n_masks, out.n_masks);
    for (size_t i = 0; i < out.n_masks; i++) {
        assert_int_equal(ref.masks[i].n_counts, out.masks[i].n_counts);
        assert_memory_equal(ref.masks[i].counts, out.masks[i].counts,
                            out.masks[i].n_counts * sizeof(uint32_t));
        assert_true(ref.masks[i].predicted_iou == out.masks[i].predicted_iou);
    }
    int64_t peak = pr.peak_reserved;
    memfit_sam_masks_free(&out);
    pr.baseline = live_bytes(); /* ref's records are live from here on */

    /* a cap below the peak: E_BUDGET, and everything given back */
    pr.reserved = pr.peak_reserved = 0;
    pr.n_embeds = 0;
    hooks.max_data_bytes = (uint64_t)peak / 2;
    assert_int_equal(memfit_sam_generate(model, &img, &p, &hooks, &out), MEMFIT_E_BUDGET);
    assert_int_equal(pr.reserved, 0);
    /* the callback refusing: its status, and everything given back */
    hooks.max_data_bytes = 0;
    pr.refuse_after = peak / 3;
    assert_int_equal(memfit_sam_generate(model, &img, &p, &hooks, &out), MEMFIT_E_BUDGET);
    assert_int_equal(pr.reserved, 0);
    assert_int_equal(live_bytes(), pr.baseline);

    memfit_sam_masks_free(&ref);
    memfit_free(pixels);
    memfit_free(work);
    memfit_free(emb);
    memfit_image_free(&img);
}

static void test_params_errors(void **state)
{
    (void)state;
    struct memfit_sam_amg_params p = memfit_sam_amg_params_default();
    assert_int_equal(memfit_sam_amg_params_check(&p), MEMFIT_OK);
    assert_int_equal(p.points_per_side, 32);
    assert_int_equal(p.points_per_batch, 64);
    assert_true(p.crop_overlap_ratio == 512.0 / 1500.0);
    struct memfit_sam_amg_params q;
#define EXPECT_RANGE(field, value)                                                                 \
    do {                                                                                           \
        q = p;                                                                                     \
        q.field = value;                                                                           \
        assert_int_equal(memfit_sam_amg_params_check(&q), MEMFIT_E_RANGE);                         \
        assert_non_null(strstr(memfit_last_error(), #field));                                      \
    } while (0)
    EXPECT_RANGE(points_per_batch, 0);
    EXPECT_RANGE(points_per_side, 2000);
    EXPECT_RANGE(crop_n_layers, 5);
    EXPECT_RANGE(pred_iou_thresh, NAN);
    EXPECT_RANGE(stability_score_thresh, INFINITY);
    EXPECT_RANGE(stability_score_offset, -1.0);
    EXPECT_RANGE(box_nms_thresh, 1.5);
    EXPECT_RANGE(crop_nms_thresh, -0.1);
    EXPECT_RANGE(crop_overlap_ratio, NAN);
    EXPECT_RANGE(crop_n_points_downscale_factor, 0);
    EXPECT_RANGE(points_per_side, 0); /* and no grids */
    q = p;
    q.crop_n_layers = 3;
    q.points_per_side = 4;
    q.crop_n_points_downscale_factor = 2; /* 4 / 2^3 = 0 points */
    assert_int_equal(memfit_sam_amg_params_check(&q), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "crop_n_points_downscale_factor"));
    /* both a side and grids, then grids with a bad point */
    double pts[4] = {0.5, 0.5, NAN, 0.1};
    struct memfit_sam_point_grid grid = {pts, 1};
    q = p;
    q.point_grids = &grid;
    assert_int_equal(memfit_sam_amg_params_check(&q), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "point_grids"));
    q.points_per_side = 0;
    assert_int_equal(memfit_sam_amg_params_check(&q), MEMFIT_OK);
    grid.n_points = 2;
    assert_int_equal(memfit_sam_amg_params_check(&q), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_amg_params_check(NULL), MEMFIT_E_MISUSE);

    /* the generator refuses them too, and an empty image; out untouched */
    struct memfit_image img;
    make_image(&img, 16, 16);
    struct memfit_sam_masks out = {.n_masks = 77};
    q = p;
    q.points_per_batch = 0;
    assert_int_equal(memfit_sam_generate(model, &img, &q, NULL, &out), MEMFIT_E_RANGE);
    size_t bytes = 5;
    assert_int_equal(memfit_sam_amg_plan(model, &q, NULL, 16, 16, &bytes), MEMFIT_E_RANGE);
    assert_int_equal(bytes, 5);
    img.width = 0;
    assert_int_equal(memfit_sam_generate(model, &img, &p, NULL, &out), MEMFIT_E_RANGE);
    assert_int_equal(out.n_masks, 77);
    assert_int_equal(memfit_sam_generate(model, NULL, &p, NULL, &out), MEMFIT_E_MISUSE);
    img.width = 16;
    memfit_image_free(&img);
}

/* A user grid (one point per layer) runs as points_per_side does. */
static void test_point_grids(void **state)
{
    (void)state;
    struct memfit_image img;
    make_image(&img, 160, 120);
    struct memfit_sam_amg_params p = test_params();
    p.points_per_side = 2;
    struct memfit_sam_masks a, b;
    generate(&p, &img, NULL, &a);
    double pts[8];
    assert_int_equal(memfit_sam_point_grid(2, pts, 8), MEMFIT_OK);
    struct memfit_sam_point_grid grid = {pts, 4};
    p.points_per_side = 0;
    p.point_grids = &grid;
    generate(&p, &img, NULL, &b);
    assert_int_equal(a.n_masks, b.n_masks);
    for (size_t i = 0; i < a.n_masks; i++)
        assert_memory_equal(a.masks[i].counts, b.masks[i].counts,
                            a.masks[i].n_counts * sizeof(uint32_t));
    memfit_sam_masks_free(&a);
    memfit_sam_masks_free(&b);
    memfit_image_free(&img);
}

struct walk_ctx {
    struct memfit_image img;
    struct memfit_sam_amg_params p;
    struct memfit_sam_masks out;
};

static enum memfit_status walk_generate(void *ctx)
{
    struct walk_ctx *c = ctx;
    return memfit_sam_generate(model, &c->img, &c->p, NULL, &c->out);
}

static void walk_cleanup(void *ctx)
{
    struct walk_ctx *c = ctx;
    memfit_sam_masks_free(&c->out);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct walk_ctx c = {.p = test_params()};
    make_image(&c.img, 64, 48);
    c.p.points_per_side = 3;
    c.p.points_per_batch = 4;
    c.p.crop_n_layers = 1;
    c.p.crop_n_points_downscale_factor = 2;
    c.p.min_mask_region_area = 10;
    assert_true(mf_test_alloc_failures(walk_generate, walk_cleanup, &c) >= 3);
    memfit_image_free(&c.img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records),        cmocka_unit_test(test_crop_layers),
        cmocka_unit_test(test_small_regions),  cmocka_unit_test(test_memory),
        cmocka_unit_test(test_params_errors),  cmocka_unit_test(test_point_grids),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
