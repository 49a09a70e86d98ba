/*
 * Makes JPEGs in memory with libjpeg for the image tests and the bomb corpus
 * (header-only; tests/unit/test_models_image_decode.c and
 * tests/helpers/make_image_bombs.c): a gradient of any size, gray or YCbCr,
 * 4:4:4 or 4:2:0, baseline, progressive, or with a given scan script.
 */
#ifndef MF_JPEG_GEN_H
#define MF_JPEG_GEN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jpeglib.h>

#include "memfit/core.h"

/*
 * A w x h JPEG of a smooth gradient: `components` 1 (gray) or 3 (YCbCr,
 * 4:4:4 when full_chroma, else 4:2:0), progressive or not, or with the
 * n_scans of `script` when not NULL. Returns libjpeg's buffer (free() it)
 * and its size in *size, or NULL when out of memory.
 */
static inline uint8_t *mf_test_make_jpeg(uint32_t w, uint32_t h, int components, bool full_chroma,
                                         bool progressive, const jpeg_scan_info *script,
                                         int n_scans, unsigned long *size)
{
    uint8_t *row = memfit_malloc((size_t)w * (size_t)components);
    if (!row)
        return NULL;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    uint8_t *out = NULL;
    jpeg_mem_dest(&c, &out, size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    if (components == 3 && full_chroma)
        c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
    if (progressive)
        jpeg_simple_progression(&c);
    if (script) {
        c.scan_info = script;
        c.num_scans = n_scans;
    }
    jpeg_start_compress(&c, TRUE);
    for (uint32_t y = 0; y < h; y++) {
        for (uint32_t x = 0; x < w * (uint32_t)components; x++)
            row[x] = (uint8_t)((x / (uint32_t)components + y) & 0xff);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    memfit_free(row);
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

#endif
