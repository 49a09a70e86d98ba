/*
 * PNG encoding into memory (libpng), for the pictures memfit hands back:
 * segmentation masks (grayscale) and overlays (RGB), and the monitor's
 * charts. It sits in core because both the monitor and the models layer
 * use it. Errors come back through libpng's longjmp into one place that
 * frees what was taken.
 */
#include <png.h>
#include <setjmp.h>
#include <string.h>

#include "memfit/core.h"

struct sink {
    uint8_t *data;
    size_t len, cap;
    bool failed;
};

static void sink_write(png_structp png, png_bytep bytes, png_size_t n)
{
    struct sink *s = png_get_io_ptr(png);
    if (s->failed)
        return;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n)
            cap *= 2;
        uint8_t *p = memfit_realloc(s->data, cap);
        if (!p) {
            s->failed = true;
            return;
        }
        s->data = p;
        s->cap = cap;
    }
    memcpy(s->data + s->len, bytes, n);
    s->len += n;
}

static void sink_flush(png_structp png)
{
    (void)png;
}

static void on_error(png_structp png, png_const_charp msg)
{
    memfit_fail(MEMFIT_E_IO, "png: %s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

enum memfit_status memfit_image_encode_png(const uint8_t *pixels, uint32_t width, uint32_t height,
                                           uint32_t channels, uint8_t **out, size_t *out_len)
{
    if (!pixels || !out || !out_len || width == 0 || height == 0 ||
        (channels != 1 && channels != 3))
        return memfit_fail(MEMFIT_E_MISUSE, "png: %ux%u with %u channels", width, height, channels);
    struct sink s = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        return MEMFIT_E_NOMEM;
    }
    volatile enum memfit_status st = MEMFIT_OK;
    if (setjmp(png_jmpbuf(png))) {
        /* A sink that ran out of memory drops the rows: libpng then errs on the end. */
        st = s.failed ? MEMFIT_E_NOMEM : MEMFIT_E_IO;
    } else {
        png_set_write_fn(png, &s, sink_write, sink_flush);
        png_set_IHDR(png, info, width, height, 8,
                     channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_set_compression_level(png, 6);
        png_write_info(png, info);
        for (uint32_t y = 0; y < height && !s.failed; y++)
            png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
        png_write_end(png, NULL);
    }
    png_destroy_write_struct(&png, &info);
    if (st == MEMFIT_OK && s.failed)
        st = MEMFIT_E_NOMEM;
    if (st != MEMFIT_OK) {
        memfit_free(s.data);
        return st;
    }
    *out = s.data;
    *out_len = s.len;
    return MEMFIT_OK;
}
