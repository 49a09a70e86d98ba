/*
 * SAM's pre- and post-processing, as the reference's ResizeLongestSide,
 * Sam.preprocess and Sam.postprocess_masks do them.
 *
 * Preprocess: the longest side becomes image_size with PIL's BILINEAR
 * resize (what torchvision's resize of a PIL image calls: antialiased, 8-bit
 * per pass; the resampler of image_transform.c with the triangle filter),
 * then (v - pixel_mean) / pixel_std in float32 on the 0..255 values (the
 * reference subtracts a float32 tensor from the uint8 one: torch promotes
 * to float32 and rounds each step), a table per channel giving those exact
 * floats; the rest of the S x S square is 0 (F.pad after the normalisation).
 *
 * Postprocess: two bilinear resizes (F.interpolate, align_corners=False)
 * with a crop between them; the second reads the first one's output in
 * place (its rows are image_size floats apart), and of the first only the
 * rows the crop keeps are computed.
 */
#include <string.h>

#include "models/image.h"
#include "models/sam.h"

/* Sam.pixel_mean / pixel_std, float32 buffers in the reference. */
static const float pixel_mean[3] = {123.675f, 116.28f, 103.53f};
static const float pixel_std[3] = {58.395f, 57.12f, 57.375f};

void memfit_sam_resized_size(uint32_t image_size, uint32_t width, uint32_t height,
                             uint32_t *out_width, uint32_t *out_height)
{
    uint32_t longest = width > height ? width : height;
    uint32_t w = 0, h = 0;
    if (longest > 0) {
        /* the reference's float arithmetic: scale = S * 1.0 / max(h, w),
         * int(side * scale + 0.5) */
        double scale = (double)image_size / (double)longest;
        w = (uint32_t)((double)width * scale + 0.5);
        h = (uint32_t)((double)height * scale + 0.5);
    }
    if (out_width)
        *out_width = w;
    if (out_height)
        *out_height = h;
}

/* The resize of an image of width x height; E_RANGE (a message set when
 * `report`) when it is empty or would resize to an empty side (PIL refuses
 * a zero size too). */
static enum memfit_status plan_resize(uint32_t width, uint32_t height, uint32_t image_size,
                                      struct mf_resample *r, bool report)
{
    if (width == 0 || height == 0 || image_size == 0)
        return !report ? MEMFIT_E_RANGE
                       : memfit_fail(MEMFIT_E_RANGE,
                                     "sam preprocess: image %ux%u to side %u (need > 0)", width,
                                     height, image_size);
    if (width > MF_RESAMPLE_MAX_SIDE || height > MF_RESAMPLE_MAX_SIDE ||
        image_size > MF_RESAMPLE_MAX_SIDE)
        return !report ? MEMFIT_E_RANGE
                       : memfit_fail(MEMFIT_E_RANGE,
                                     "sam preprocess: image %ux%u to side %u: a side beyond %u",
                                     width, height, image_size, MF_RESAMPLE_MAX_SIDE);
    uint32_t rw, rh;
    memfit_sam_resized_size(image_size, width, height, &rw, &rh);
    if (rw == 0 || rh == 0)
        return !report ? MEMFIT_E_RANGE
                       : memfit_fail(MEMFIT_E_RANGE,
                                     "sam preprocess: image %ux%u resizes to %ux%u (a side of 0)",
                                     width, height, rw, rh);
    *r = (struct mf_resample){
        .in_width = width,
        .in_height = height,
        .width = rw,
        .height = rh,
        .win_width = rw,
        .win_height = rh,
        .filter = MF_RESAMPLE_BILINEAR,
    };
    return MEMFIT_OK;
}

size_t mf_sam_preprocess_scratch_bytes(uint32_t width, uint32_t height, uint32_t image_size)
{
    struct mf_resample r;
    if (plan_resize(width, height, image_size, &r, false) != MEMFIT_OK)
        return 0;
    return mf_image_window_scratch_bytes(&r, NULL);
}

enum memfit_status mf_sam_preprocess_into(const struct memfit_image *img, uint32_t image_size,
                                          float *out, void *scratch, size_t scratch_bytes)
{
    if (!img || !img->rgb || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "sam preprocess: NULL image or output");
    struct mf_resample r;
    enum memfit_status st = plan_resize(img->width, img->height, image_size, &r, true);
    if (st != MEMFIT_OK)
        return st;
    if (mf_image_window_scratch_bytes(&r, NULL) == 0)
        return memfit_fail(MEMFIT_E_RANGE, "sam preprocess: %ux%u to %ux%u: scratch too large",
                           img->width, img->height, r.width, r.height);
    const uint8_t *window = NULL;
    st = mf_image_resample_window(&r, img->rgb, scratch, scratch_bytes, &window);
    if (st != MEMFIT_OK)
        return st;

    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            lut[c][v] = ((float)v - pixel_mean[c]) / pixel_std[c];
    size_t side = image_size, plane = side * side;
    for (int c = 0; c < 3; c++) {
        float *dst = out + (size_t)c * plane;
        for (size_t y = 0; y < r.height; y++) {
            const uint8_t *src = window + y * r.width * 3 + (size_t)c;
            float *row = dst + y * side;
            for (size_t x = 0; x < r.width; x++)
                row[x] = lut[c][src[3 * x]];
            memset(row + r.width, 0, (side - r.width) * sizeof(float));
        }
        memset(dst + (size_t)r.height * side, 0, (side - r.height) * side * sizeof(float));
    }
    return MEMFIT_OK;
}

enum memfit_status memfit_sam_preprocess(const struct memfit_image *img, uint32_t image_size,
                                         float *out)
{
    if (!img || !img->rgb || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "sam preprocess: NULL image or output");
    size_t need = mf_sam_preprocess_scratch_bytes(img->width, img->height, image_size);
    if (need == 0) /* says why */
        return mf_sam_preprocess_into(img, image_size, out, NULL, 0);
    void *scratch = memfit_malloc_in(MEMFIT_ALLOC_MODEL, need);
    if (!scratch)
        return memfit_fail(MEMFIT_E_NOMEM, "sam preprocess: no memory for %zu bytes of scratch",
                           need);
    enum memfit_status st = mf_sam_preprocess_into(img, image_size, out, scratch, need);
    memfit_free(scratch);
    return st;
}

void memfit_sam_postprocess(const float *low_res, uint32_t mask_size, uint32_t image_size,
                            uint32_t resized_w, uint32_t resized_h, uint32_t width, uint32_t height,
                            float *scratch, float *out)
{
    if (!low_res || !scratch || !out || mask_size == 0 || image_size == 0 || resized_w == 0 ||
        resized_h == 0 || resized_w > image_size || resized_h > image_size || width == 0 ||
        height == 0)
        return;
    /* rows [0, resized_h) of the image_size square: all the crop keeps */
    memfit_resize_bilinear(low_res, mask_size, mask_size, mask_size, scratch, image_size,
                           image_size, image_size, 0, resized_h);
    memfit_resize_bilinear(scratch, resized_h, resized_w, image_size, out, height, width, width, 0,
                           height);
}
