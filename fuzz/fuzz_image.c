/*
 * libFuzzer target for image decoding and preprocessing: decodes the input
 * (JPEG or PNG, with limits small enough to keep each run fast) and, when it
 * decodes, runs both transform modes on it with the scratch the transform
 * asked for.
 */
#include <stdint.h>
#include <stdlib.h>

#include "memfit/memfit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct memfit_image_limits limits = {.max_pixels = 1u << 18, .max_dimension = 4096};
    struct memfit_image img;
    if (memfit_image_decode(data, size, "fuzz", &limits, &img) != MEMFIT_OK)
        return 0;
    for (int mode = 0; mode < 2; mode++) {
        struct memfit_image_transform t = memfit_image_transform_default();
        t.mode = (enum memfit_image_resize)mode;
        if (mode == 1 && img.width * (uint64_t)img.height > 65536)
            continue; /* the uncropped mode's output grows with the input */
        uint32_t w, h;
        if (memfit_image_transform_size(&t, img.width, img.height, &w, &h) != MEMFIT_OK)
            __builtin_trap(); /* every decoded image has a valid size */
        size_t n = (size_t)3 * w * h;
        size_t scratch_bytes = memfit_image_transform_scratch_bytes(&t, img.width, img.height);
        float *out = memfit_malloc(n * sizeof(float));
        void *scratch = memfit_malloc(scratch_bytes);
        if (out && scratch &&
            memfit_image_transform_apply(&t, &img, out, n, scratch, scratch_bytes) != MEMFIT_OK)
            __builtin_trap(); /* with the scratch it asked for, it cannot fail */
        memfit_free(scratch);
        memfit_free(out);
    }
    memfit_image_free(&img);
    return 0;
}
