/*
 * memfit models: the model families (ViT/DINOv2 now; LLMs and SAM later),
 * their input preprocessing, and the memory plan of each forward pass.
 */
#ifndef MEMFIT_MODELS_H
#define MEMFIT_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Images (src/models/image*.c) ======================================= */

/* An 8-bit RGB image, rows top to bottom, pixels R, G, B interleaved. */
struct memfit_image {
    uint32_t width;
    uint32_t height;
    uint8_t *rgb; /* width * height * 3 bytes, owned by the image */
};

/* Limits applied while decoding untrusted input, before any large allocation
 * (the declared size is checked as soon as the header is read). */
struct memfit_image_limits {
    uint64_t max_pixels;    /* default 50e6 (e.g. 7071 x 7071) */
    uint32_t max_dimension; /* default 20000 */
};

MEMFIT_API struct memfit_image_limits memfit_image_limits_default(void);

/*
 * Decodes a JPEG (baseline, progressive, grayscale, CMYK/YCCK) or PNG (any
 * bit depth, palette, grayscale, alpha dropped) from memory into RGB.
 * Detected by content. E_FORMAT for corrupt/truncated/unknown data, E_RANGE
 * when the declared size breaks the limits (decompression bombs) — both
 * checked before the pixel buffer is allocated. `name` is used in messages.
 *
 * The pixels are those of PIL's Image.open(data).convert("RGB"): alpha is
 * dropped, not composited over a background (a transparent pixel keeps its
 * stored colour); palettes and 1/2/4-bit samples are expanded; 16-bit
 * samples keep their high byte (PIL clips 16-bit grayscale instead: the one
 * difference); CMYK/YCCK becomes RGB with PIL's formula; gamma, ICC profiles
 * and EXIF orientation are ignored, as PIL's open() ignores them. A 0x0 image
 * is E_FORMAT; a JPEG with more than 256 progressive scans is E_FORMAT.
 * `limits` NULL means memfit_image_limits_default(); `name` NULL, "image".
 * `out` is written only on success (free it with memfit_image_free). The
 * pixels are allocated with memfit_malloc; the libraries' own working memory
 * is not counted. Thread-safe (no shared state).
 */
MEMFIT_API enum memfit_status memfit_image_decode(const void *data, size_t size, const char *name,
                                                  const struct memfit_image_limits *limits,
                                                  struct memfit_image *out);

/* Reads and decodes a file (E_IO / E_NOT_FOUND naming the path; the path is
 * the name in messages). */
MEMFIT_API enum memfit_status memfit_image_load(const char *path,
                                                const struct memfit_image_limits *limits,
                                                struct memfit_image *out);

/* Frees the pixels; accepts an image already freed or zeroed. */
MEMFIT_API void memfit_image_free(struct memfit_image *img);

/* How an image becomes the model's input tensor. */
enum memfit_image_resize {
    /* The reference evaluation transform: shorter side to `resize` (256)
     * with bicubic resampling as PIL does it, then a centre crop of `crop`
     * (224). */
    MEMFIT_IMAGE_RESIZE_CROP = 0,
    /* No crop: resize (bicubic, PIL-style) to the nearest multiple of
     * `multiple` (14) of each side, keeping the size when it already is.
     * Halves round up (21 -> 28), and a side is at least `multiple`. */
    MEMFIT_IMAGE_RESIZE_MULTIPLE = 1,
};

struct memfit_image_transform {
    enum memfit_image_resize mode;
    uint32_t resize;   /* shorter side, for RESIZE_CROP (default 256) */
    uint32_t crop;     /* square crop side, for RESIZE_CROP (default 224) */
    uint32_t multiple; /* for RESIZE_MULTIPLE (default 14) */
    float mean[3];     /* default ImageNet (0.485, 0.456, 0.406) */
    float std[3];      /* default ImageNet (0.229, 0.224, 0.225) */
};

MEMFIT_API struct memfit_image_transform memfit_image_transform_default(void);

/*
 * The output size the transform gives for an input of width x height.
 * E_RANGE for an empty input, crop > resize, resize or multiple outside
 * 1..65536, a resized side beyond 2^24, a non-finite mean/std or a zero
 * std; E_MISUSE for an unknown mode. Out-parameters only written on success.
 */
MEMFIT_API enum memfit_status memfit_image_transform_size(const struct memfit_image_transform *t,
                                                          uint32_t width, uint32_t height,
                                                          uint32_t *out_width,
                                                          uint32_t *out_height);

/*
 * Applies the transform: resize, crop, scale to [0,1], normalise, and writes
 * planar float CHW (3 x out_height x out_width) into `out`, which holds
 * `out_floats` floats (E_RANGE if too small). `scratch`/`scratch_bytes` may
 * be NULL/0 to let it allocate its intermediate rows itself; otherwise
 * memfit_image_transform_scratch_bytes() tells how much it needs, so a
 * planned caller allocates nothing here (a smaller scratch is E_RANGE; any
 * alignment is fine).
 *
 * The values are those of torchvision's Resize/CenterCrop/ToTensor/
 * Normalize on a PIL image, bit for bit: PIL's bicubic resampling (a = -0.5,
 * support scaled when downscaling, 8-bit fixed point per pass), the crop at
 * round((size - crop) / 2) half to even, (v / 255 - mean) / std in float.
 * Only the cropped window is resampled. Thread-safe; `img` is not modified.
 */
MEMFIT_API enum memfit_status memfit_image_transform_apply(const struct memfit_image_transform *t,
                                                           const struct memfit_image *img,
                                                           float *out, size_t out_floats,
                                                           void *scratch, size_t scratch_bytes);

/* Scratch bytes memfit_image_transform_apply() needs for a width x height
 * input (rows, coefficient tables: 0.8 MB for 1920x1080 to the 224 crop);
 * 0 when the transform or the size is invalid (transform_size says why). */
MEMFIT_API size_t memfit_image_transform_scratch_bytes(const struct memfit_image_transform *t,
                                                       uint32_t width, uint32_t height);

/* ==== end of images section ============================================ */

/*
 * Spacer: sections are edited separately; keep this comment between them so
 * their changes never touch the same lines.
 */

/* ==== Vision transformers: DINOv2 (src/models/vit*.c) =================== */

/* (section owned by the ViT engine) */

/* ==== end of ViT section ================================================ */

#ifdef __cplusplus
}
#endif

#endif
