/*
 * Internal side of the image preprocessing: the PIL-exact bicubic resampler
 * that memfit_image_transform_apply() is built on, exposed so tests can
 * compare any resize against PIL's Image.resize(..., BICUBIC).
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
struct mf_resample {
    uint32_t in_width, in_height;
    uint32_t width, height;
    uint32_t x0, y0, win_width, win_height;
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

#endif
