/* Unit tests of src/models/sam_amg.c, SAM's automatic-mask-generator pieces,
 * on hand-computed cases: point grids, crop boxes of a 1500x1000 image,
 * stability scores (0/0 included), mask boxes, the crop-edge filter, RLE
 * both ways, IoU and NMS (ties, categories, the > threshold), and
 * remove_small_regions with 8-connectivity and its all-small cases, plus
 * allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "memfit/models.h"
#include "test_util.h"

static void test_point_grid(void **state)
{
    (void)state;
    /* n = 2: offset 1/4, linspace(0.25, 0.75, 2); y outer, x fastest. */
    double p[8];
    assert_int_equal(memfit_sam_point_grid(2, p, 8), MEMFIT_OK);
    const double want[8] = {0.25, 0.25, 0.75, 0.25, 0.25, 0.75, 0.75, 0.75};
    for (int i = 0; i < 8; i++)
        assert_true(p[i] == want[i]);

    /* n = 3: 1/6, 1 * ((5/6 - 1/6) / 2) + 1/6, and the last exactly 1 - 1/6
     * (numpy sets the endpoint rather than computing it). */
    double q[18];
    const double sixth = 1.0 / 6.0, step = (1.0 - sixth - sixth) / 2.0;
    assert_int_equal(memfit_sam_point_grid(3, q, 18), MEMFIT_OK);
    assert_true(q[0] == sixth && q[1] == sixth);
    assert_true(q[2] == step + sixth && q[3] == sixth);
    assert_true(fabs(q[2] - 0.5) < 1e-15);
    assert_true(q[6] == sixth && q[7] == step + sixth); /* (0, 1): y moves after x */
    assert_true(q[16] == 1.0 - sixth && q[17] == 1.0 - sixth);
    /* n = 1: the single point is the centre. */
    assert_int_equal(memfit_sam_point_grid(1, q, 2), MEMFIT_OK);
    assert_true(q[0] == 0.5 && q[1] == 0.5);

    assert_int_equal(memfit_sam_point_grid(0, p, 8), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_point_grid(2, p, 7), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_point_grid(SIZE_MAX / 2, p, 8), MEMFIT_E_RANGE);

    /* int(n / scale**i): 32/2^2 = 8, 5/2 = 2 (truncated), 32/1^3 = 32. */
    size_t n = 0;
    assert_int_equal(memfit_sam_layer_points_per_side(32, 2, 2, &n), MEMFIT_OK);
    assert_int_equal(n, 8);
    assert_int_equal(memfit_sam_layer_points_per_side(5, 2, 1, &n), MEMFIT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(memfit_sam_layer_points_per_side(32, 1, 3, &n), MEMFIT_OK);
    assert_int_equal(n, 32);
    assert_int_equal(memfit_sam_layer_points_per_side(3, 2, 2, &n), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_layer_points_per_side(32, 0, 1, &n), MEMFIT_E_RANGE);
}

static void test_crop_boxes(void **state)
{
    (void)state;
    size_t n = 0;
    assert_int_equal(memfit_sam_crop_box_count(0, &n), MEMFIT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(memfit_sam_crop_box_count(2, &n), MEMFIT_OK);
    assert_int_equal(n, 1 + 4 + 16);
    assert_int_equal(memfit_sam_crop_box_count(16, &n), MEMFIT_E_RANGE);

    /* Image h = 1000, w = 1500, 1 layer, ratio 512/1500 (the default):
     *   n = 2, short = 1000
     *   overlap = int(512/1500 * 1000 * (2/2)) = int(341.33) = 341
     *   crop_w = ceil((341 * 1 + 1500) / 2) = ceil(920.5) = 921
     *   crop_h = ceil((341 * 1 + 1000) / 2) = ceil(670.5) = 671
     *   x0 in {0, 921 - 341 = 580}, y0 in {0, 671 - 341 = 330}
     *   x1 = min(x0 + 921, 1500): 921, 1500 (1501 clipped)
     *   y1 = min(y0 + 671, 1000): 671, 1000 (1001 clipped)
     * x0 is the outer loop. */
    assert_int_equal(memfit_sam_crop_box_count(1, &n), MEMFIT_OK);
    assert_int_equal(n, 5);
    int32_t boxes[5 * 4];
    uint32_t layers[5];
    assert_int_equal(memfit_sam_crop_boxes(1000, 1500, 1, 512.0 / 1500.0, boxes, layers, 5),
                     MEMFIT_OK);
    const int32_t want[5 * 4] = {
        0,   0,   1500, 1000, /* the whole image */
        0,   0,   921,  671,  /* x0 0, y0 0 */
        0,   330, 921,  1000, /* x0 0, y0 330 */
        580, 0,   1500, 671,  /* x0 580, y0 0 */
        580, 330, 1500, 1000, /* x0 580, y0 330 */
    };
    const uint32_t want_layers[5] = {0, 1, 1, 1, 1};
    for (int i = 0; i < 20; i++)
        assert_int_equal(boxes[i], want[i]);
    for (int i = 0; i < 5; i++)
        assert_int_equal(layers[i], want_layers[i]);

    /* 0 layers: the image only; layers may be NULL. */
    assert_int_equal(memfit_sam_crop_boxes(7, 9, 0, 0.5, boxes, NULL, 1), MEMFIT_OK);
    assert_int_equal(boxes[2], 9);
    assert_int_equal(boxes[3], 7);

    boxes[0] = -1;
    assert_int_equal(memfit_sam_crop_boxes(1000, 1500, 1, 0.3, boxes, layers, 4), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_crop_boxes(0, 1500, 1, 0.3, boxes, layers, 5), MEMFIT_E_RANGE);
    assert_int_equal(memfit_sam_crop_boxes(10, 10, 1, NAN, boxes, layers, 5), MEMFIT_E_RANGE);
    assert_int_equal(boxes[0], -1); /* nothing written on failure */
}

static void test_stability(void **state)
{
    (void)state;
    /* Three 2x3 masks, threshold 0, offset 1: counts of > 1 over counts of
     * > -1. Mask 0: > 1 are {1.5, 2} (1.0 is not > 1), > -1 are
     * {-0.5, 0.5, 1.5, 2, 1}: 2/5. Mask 1: nothing > -1: 0/0 = NaN.
     * Mask 2: everything above both: 6/6. */
    const float logits[18] = {
        -2.0f, -0.5f, 0.5f,  1.5f,  2.0f,  1.0f,  /* mask 0 */
        -5.0f, -5.0f, -1.0f, -5.0f, -5.0f, -5.0f, /* mask 1 */
        3.0f,  3.0f,  3.0f,  3.0f,  3.0f,  3.0f,  /* mask 2 */
    };
    float scores[3];
    assert_int_equal(memfit_sam_stability_scores(logits, 3, 2, 3, 0.0, 1.0, scores), MEMFIT_OK);
    assert_true(scores[0] == 2.0f / 5.0f);
    assert_true(isnan(scores[1]));
    assert_true(!(scores[1] >= 0.95f)); /* NaN fails the filter */
    assert_true(scores[2] == 1.0f);
    assert_int_equal(memfit_sam_stability_scores(logits, 2, SIZE_MAX, 2, 0.0, 1.0, scores),
                     MEMFIT_E_RANGE);
}

static void test_mask_to_box(void **state)
{
    (void)state;
    /* An L: the column x = 1 for y = 1..3 and the foot y = 3, x = 1..3. */
    const uint8_t l_shape[4 * 5] = {
        0, 0, 0, 0, 0, /* */
        0, 1, 0, 0, 0, /* */
        0, 1, 0, 0, 0, /* */
        0, 1, 1, 1, 0, /* */
    };
    int32_t box[4];
    assert_int_equal(memfit_sam_mask_to_box(l_shape, 4, 5, box), MEMFIT_OK);
    assert_int_equal(box[0], 1); /* inclusive: x_max 3, not 4 */
    assert_int_equal(box[1], 1);
    assert_int_equal(box[2], 3);
    assert_int_equal(box[3], 3);

    const uint8_t empty[4 * 5] = {0};
    box[0] = box[1] = box[2] = box[3] = 9;
    assert_int_equal(memfit_sam_mask_to_box(empty, 4, 5, box), MEMFIT_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(box[i], 0);
    /* One pixel at the corner (4, 3): [4, 3, 4, 3]. */
    uint8_t one[4 * 5] = {0};
    one[3 * 5 + 4] = 1;
    assert_int_equal(memfit_sam_mask_to_box(one, 4, 5, box), MEMFIT_OK);
    assert_true(box[0] == 4 && box[1] == 3 && box[2] == 4 && box[3] == 3);
}

static void test_near_crop_edge(void **state)
{
    (void)state;
    const int32_t orig[4] = {0, 0, 1500, 1000};
    const int32_t crop_a[4] = {0, 0, 921, 671};
    const int32_t crop_d[4] = {580, 330, 1500, 1000};
    /* x1 915 is 6 from the crop's 921, which is not an image edge. */
    const int32_t b1[4] = {100, 100, 915, 300};
    assert_true(memfit_sam_box_near_crop_edge(b1, crop_a, orig, 20.0f));
    /* Near x0 = 0 and y0 = 0, but those are image edges too. */
    const int32_t b2[4] = {5, 5, 100, 100};
    assert_false(memfit_sam_box_near_crop_edge(b2, crop_a, orig, 20.0f));
    /* Uncropped by (580, 330): x0 590 is 10 from the crop's 580. */
    const int32_t b3[4] = {10, 300, 200, 600};
    assert_true(memfit_sam_box_near_crop_edge(b3, crop_d, orig, 20.0f));
    /* Uncropped: [1080, 430, 1480, 990]; x1 is exactly 20 (close) from 1500
     * and y1 10 from 1000, both image edges; x0, y0 far from 580, 330. */
    const int32_t b4[4] = {500, 100, 900, 660};
    assert_false(memfit_sam_box_near_crop_edge(b4, crop_d, orig, 20.0f));
    /* 21 from the crop's x0 580: not close. */
    const int32_t b5[4] = {21, 100, 200, 200};
    assert_false(memfit_sam_box_near_crop_edge(b5, crop_d, orig, 20.0f));
}

static void check_rle(const uint8_t *mask, size_t h, size_t w, const uint32_t *want, size_t n_want,
                      uint64_t area)
{
    uint32_t *counts = NULL;
    size_t n = 0;
    assert_int_equal(memfit_sam_mask_to_rle(mask, h, w, &counts, &n), MEMFIT_OK);
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(counts[i], want[i]);
    assert_int_equal(memfit_sam_rle_area(counts, n), area);
    uint8_t back[64];
    memset(back, 7, sizeof(back));
    assert_int_equal(memfit_sam_rle_to_mask(counts, n, h, w, back), MEMFIT_OK);
    for (size_t i = 0; i < h * w; i++)
        assert_int_equal(back[i], mask[i] != 0);
    memfit_free(counts);
}

static void test_rle(void **state)
{
    (void)state;
    /* 3x4, first pixel 1. Column-major: columns (1,1,0) (1,0,0) (0,0,1)
     * (0,1,1) -> 1 1 0 1 0 0 0 0 1 0 1 1 -> zeros first: 0, then runs
     * 2 1 1 4 1 1 2. Area = 2 + 1 + 1 + 2 = 6. */
    const uint8_t a[12] = {
        1, 1, 0, 0, /* */
        1, 0, 0, 1, /* */
        0, 0, 1, 1, /* */
    };
    const uint32_t want_a[8] = {0, 2, 1, 1, 4, 1, 1, 2};
    check_rle(a, 3, 4, want_a, 8, 6);

    /* First pixel 0. Columns (0,0,0) (0,1,1) (0,1,0) (0,0,0) ->
     * 0 0 0 0 1 1 0 1 0 0 0 0 -> 4 2 1 1 4, area 3. */
    const uint8_t b[12] = {
        0, 0, 0, 0, /* */
        0, 1, 1, 0, /* */
        0, 1, 0, 0, /* */
    };
    const uint32_t want_b[5] = {4, 2, 1, 1, 4};
    check_rle(b, 3, 4, want_b, 5, 3);

    const uint8_t zeros[12] = {0};
    const uint32_t want_zeros[1] = {12};
    check_rle(zeros, 3, 4, want_zeros, 1, 0);
    uint8_t ones[12];
    memset(ones, 255, sizeof(ones)); /* any nonzero byte is set */
    const uint32_t want_ones[2] = {0, 12};
    check_rle(ones, 3, 4, want_ones, 2, 12);

    uint32_t *counts = NULL;
    size_t n = 0;
    assert_int_equal(memfit_sam_mask_to_rle(a, 0, 4, &counts, &n), MEMFIT_E_RANGE);
    uint8_t back[12];
    const uint32_t bad[2] = {4, 7}; /* sums to 11, not 12 */
    assert_int_equal(memfit_sam_rle_to_mask(bad, 2, 3, 4, back), MEMFIT_E_RANGE);
}

static void test_iou_nms(void **state)
{
    (void)state;
    const float a[4] = {0, 0, 2, 2}, b[4] = {1, 1, 3, 3}, dot[4] = {1, 1, 1, 1};
    /* intersection 1, union 4 + 4 - 1 = 7 (no +1 on the sides) */
    assert_true(memfit_sam_box_iou(a, b) == 1.0f / 7.0f);
    assert_true(isnan(memfit_sam_box_iou(dot, dot)));

    /* Threshold 0.5, boxes visited by score:
     *   0: [0,0,10,10]  0.9   kept first
     *   3: [0,0,10,5]   0.85  IoU with 0 = 50/100 = 0.5, not > 0.5: kept
     *   1: [1,1,11,11]  0.8   IoU with 0 = 81/119 = 0.68 > 0.5: suppressed
     *   2: [20,20,30,30] 0.7  disjoint: kept */
    const float boxes[16] = {0, 0, 10, 10, 1, 1, 11, 11, 20, 20, 30, 30, 0, 0, 10, 5};
    const float scores[4] = {0.9f, 0.8f, 0.7f, 0.85f};
    size_t keep[4], n_keep = 0;
    assert_int_equal(memfit_sam_nms(boxes, scores, NULL, 4, 0.5f, keep, &n_keep), MEMFIT_OK);
    assert_int_equal(n_keep, 3);
    assert_int_equal(keep[0], 0);
    assert_int_equal(keep[1], 3);
    assert_int_equal(keep[2], 2);

    /* batched: box 1 is in its own category, so box 0 does not suppress it. */
    const int32_t cats[4] = {0, 1, 0, 0};
    assert_int_equal(memfit_sam_nms(boxes, scores, cats, 4, 0.5f, keep, &n_keep), MEMFIT_OK);
    assert_int_equal(n_keep, 4);
    assert_int_equal(keep[0], 0);
    assert_int_equal(keep[1], 3);
    assert_int_equal(keep[2], 1);
    assert_int_equal(keep[3], 2);

    /* Equal scores on identical boxes: the lower index wins (stable). */
    const float same[8] = {0, 0, 4, 4, 0, 0, 4, 4};
    const float tie[2] = {0.5f, 0.5f};
    assert_int_equal(memfit_sam_nms(same, tie, NULL, 2, 0.7f, keep, &n_keep), MEMFIT_OK);
    assert_int_equal(n_keep, 1);
    assert_int_equal(keep[0], 0);

    assert_int_equal(memfit_sam_nms(boxes, scores, NULL, 0, 0.5f, keep, &n_keep), MEMFIT_OK);
    assert_int_equal(n_keep, 0);
}

static void check_mask(const uint8_t *got, const uint8_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

static void test_small_regions_islands(void **state)
{
    (void)state;
    /* The 3x3 block and (3,3) touch only diagonally: one island of 10 with
     * 8-connectivity. The pair at the bottom right is an island of 2. */
    uint8_t m[36] = {
        1, 1, 1, 0, 0, 0, /* */
        1, 1, 1, 0, 0, 0, /* */
        1, 1, 1, 0, 0, 0, /* */
        0, 0, 0, 1, 0, 0, /* */
        0, 0, 0, 0, 0, 0, /* */
        0, 0, 0, 0, 1, 1, /* */
    };
    const uint8_t want[36] = {
        1, 1, 1, 0, 0, 0, /* */
        1, 1, 1, 0, 0, 0, /* */
        1, 1, 1, 0, 0, 0, /* */
        0, 0, 0, 1, 0, 0, /* (3,3) stays: 8-connected to the block */
        0, 0, 0, 0, 0, 0, /* */
        0, 0, 0, 0, 0, 0, /* */
    };
    bool changed = false;
    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 3.0, MEMFIT_SAM_REGION_ISLANDS, &changed),
        MEMFIT_OK);
    assert_true(changed);
    check_mask(m, want, 36);

    /* Nothing below 2: untouched, not changed. */
    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 2.0, MEMFIT_SAM_REGION_ISLANDS, &changed),
        MEMFIT_OK);
    assert_false(changed);
    check_mask(m, want, 36);

    /* Every island small (10 and 2 < 100): the largest is kept. */
    m[5 * 6 + 4] = m[5 * 6 + 5] = 1;
    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 100.0, MEMFIT_SAM_REGION_ISLANDS, &changed),
        MEMFIT_OK);
    assert_true(changed);
    check_mask(m, want, 36);

    /* A single small island is kept, and the reference still reports it
     * changed. */
    uint8_t single[36] = {0};
    single[7] = 1;
    assert_int_equal(
        memfit_sam_remove_small_regions(single, 6, 6, 5.0, MEMFIT_SAM_REGION_ISLANDS, &changed),
        MEMFIT_OK);
    assert_true(changed);
    assert_int_equal(single[7], 1);

    /* Two equal small islands: the first labeled (top left) is kept. */
    uint8_t twins[36] = {0};
    twins[0] = twins[1] = 1;                 /* (0,0) (0,1) */
    twins[4 * 6 + 4] = twins[4 * 6 + 5] = 1; /* (4,4) (4,5) */
    assert_int_equal(
        memfit_sam_remove_small_regions(twins, 6, 6, 5.0, MEMFIT_SAM_REGION_ISLANDS, &changed),
        MEMFIT_OK);
    assert_true(twins[0] && twins[1] && !twins[4 * 6 + 4] && !twins[4 * 6 + 5]);

    /* No island at all: nothing is small, unchanged. */
    uint8_t none[36] = {0};
    assert_int_equal(
        memfit_sam_remove_small_regions(none, 6, 6, 5.0, MEMFIT_SAM_REGION_ISLANDS, &changed),
        MEMFIT_OK);
    assert_false(changed);
}

static void test_small_regions_holes(void **state)
{
    (void)state;
    /* The unset (1,1) and (2,2) touch diagonally: one hole of 2 with
     * 8-connectivity (two holes of 1 with 4-connectivity). The outer
     * background is a region of 36 - 14 - 2 = 20. */
    uint8_t m[36] = {
        1, 1, 1, 1, 0, 0, /* */
        1, 0, 1, 1, 0, 0, /* */
        1, 1, 0, 1, 0, 0, /* */
        1, 1, 1, 1, 0, 0, /* */
        0, 0, 0, 0, 0, 0, /* */
        0, 0, 0, 0, 0, 0, /* */
    };
    uint8_t orig[36];
    memcpy(orig, m, sizeof(m));
    bool changed = true;
    /* area < 2 is small: the hole of 2 is not, so nothing changes (with
     * 4-connectivity both single pixels would be filled). */
    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 2.0, MEMFIT_SAM_REGION_HOLES, &changed),
        MEMFIT_OK);
    assert_false(changed);
    check_mask(m, orig, 36);

    /* area < 3: the hole is filled, the outer background (20) stays. */
    const uint8_t want[36] = {
        1, 1, 1, 1, 0, 0, /* */
        1, 1, 1, 1, 0, 0, /* */
        1, 1, 1, 1, 0, 0, /* */
        1, 1, 1, 1, 0, 0, /* */
        0, 0, 0, 0, 0, 0, /* */
        0, 0, 0, 0, 0, 0, /* */
    };
    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 3.0, MEMFIT_SAM_REGION_HOLES, &changed),
        MEMFIT_OK);
    assert_true(changed);
    check_mask(m, want, 36);

    /* Every unset region small (< 100): holes mode keeps no largest, so the
     * border-touching background is filled too: all set. */
    memcpy(m, orig, sizeof(m));
    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 100.0, MEMFIT_SAM_REGION_HOLES, &changed),
        MEMFIT_OK);
    assert_true(changed);
    for (int i = 0; i < 36; i++)
        assert_int_equal(m[i], 1);

    assert_int_equal(
        memfit_sam_remove_small_regions(m, 6, 6, 3.0, (enum memfit_sam_region_mode)7, &changed),
        MEMFIT_E_RANGE);
}

struct op_ctx {
    uint32_t *counts;
    size_t n;
    uint8_t mask[36];
    size_t keep[4];
};

static enum memfit_status rle_op(void *p)
{
    struct op_ctx *c = p;
    static const uint8_t m[12] = {1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1};
    return memfit_sam_mask_to_rle(m, 3, 4, &c->counts, &c->n);
}

static void rle_cleanup(void *p)
{
    struct op_ctx *c = p;
    memfit_free(c->counts);
}

static enum memfit_status nms_op(void *p)
{
    struct op_ctx *c = p;
    static const float boxes[8] = {0, 0, 4, 4, 1, 1, 4, 4};
    static const float scores[2] = {0.2f, 0.9f};
    return memfit_sam_nms(boxes, scores, NULL, 2, 0.5f, c->keep, &c->n);
}

static enum memfit_status regions_op(void *p)
{
    struct op_ctx *c = p;
    bool changed;
    memset(c->mask, 0, sizeof(c->mask));
    c->mask[0] = c->mask[20] = c->mask[21] = 1;
    enum memfit_status st =
        memfit_sam_remove_small_regions(c->mask, 6, 6, 2.0, MEMFIT_SAM_REGION_ISLANDS, &changed);
    if (st != MEMFIT_OK)
        assert_int_equal(c->mask[0], 1); /* untouched on failure */
    return st;
}

static void test_fault_injection(void **state)
{
    (void)state;
    struct op_ctx c;
    assert_int_equal(mf_test_alloc_failures(rle_op, rle_cleanup, &c), 2);
    assert_int_equal(mf_test_alloc_failures(nms_op, NULL, &c), 3);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.keep[0], 1);
    assert_int_equal(mf_test_alloc_failures(regions_op, NULL, &c), 3);
    assert_int_equal(c.mask[0], 0);
    assert_int_equal(c.mask[20], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_point_grid),
        cmocka_unit_test(test_crop_boxes),
        cmocka_unit_test(test_stability),
        cmocka_unit_test(test_mask_to_box),
        cmocka_unit_test(test_near_crop_edge),
        cmocka_unit_test(test_rle),
        cmocka_unit_test(test_iou_nms),
        cmocka_unit_test(test_small_regions_islands),
        cmocka_unit_test(test_small_regions_holes),
        cmocka_unit_test(test_fault_injection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
