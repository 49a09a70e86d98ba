/*
 * Internal side of the image preprocessing: the PIL-exact resampler (bicubic
 * for DINOv2's memfit_image_transform_apply(), bilinear for SAM's
 * memfit_sam_preprocess()), exposed so tests can compare any resize against
 * PIL's Image.resize(..., BICUBIC or BILINEAR).
 */
#ifndef MF_MODELS_IMAGE_H
#define MF_MODELS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "memfit/models.h"

/*
 * A window of a resize: the source image (in_width x in_height) is resized
 * to width x height as PIL does it, and only the window [x0, x0 + win_width)
 * x [y0, y0 + win_height) of that result is computed (a crop costs only
 * what it keeps; each output pixel is the same as in the full resize).
 */
/* PIL's filters (antialiased: the support widens when downscaling). */
enum mf_resample_filter {
    MF_RESAMPLE_BICUBIC = 0,  /* a = -0.5, support 2 */
    MF_RESAMPLE_BILINEAR = 1, /* triangle, support 1 */
};

struct mf_resample {
    uint32_t in_width, in_height;
    uint32_t width, height;
    uint32_t x0, y0, win_width, win_height;
    enum mf_resample_filter filter; /* zero-initialized: bicubic */
};

/* Largest resized side accepted (PIL's float box coordinates are exact up
 * to 2^24, and every index then fits an int). */
#define MF_RESAMPLE_MAX_SIDE (1u << 24)

/* Scratch bytes mf_image_resample() needs for `r` (0 if the geometry is
 * invalid or the size overflows). */
size_t mf_image_resample_scratch_bytes(const struct mf_resample *r);

/*
 * Computes the window as 8-bit RGB rows (win_width * 3 bytes each) into
 * `out`, using `scratch` (at least mf_image_resample_scratch_bytes(r)
 * bytes, any alignment). Allocates nothing. E_MISUSE for invalid geometry
 * or a scratch too small.
 */
enum memfit_status mf_image_resample(const struct mf_resample *r, const uint8_t *rgb, uint8_t *out,
                                     void *scratch, size_t scratch_bytes);

/*
 * The scratch of a resize into a window kept in the scratch itself: 15 bytes
 * to align the caller's pointer, the 8-bit window (win_width * 3 *
 * win_height bytes rounded up to 16, in *window_bytes when not NULL), then
 * the resampler's scratch. 0 if the geometry is invalid or the size
 * overflows.
 */
size_t mf_image_window_scratch_bytes(const struct mf_resample *r, size_t *window_bytes);

/* Resamples the window into `scratch` (mf_image_window_scratch_bytes, any
 * alignment; E_MISUSE when short) and points *window at it. */
enum memfit_status mf_image_resample_window(const struct mf_resample *r, const uint8_t *rgb,
                                            void *scratch, size_t scratch_bytes,
                                            const uint8_t **window);

#endif
