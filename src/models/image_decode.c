/*
 * Image decoding for the vision models: JPEG (libjpeg-turbo) and PNG
 * (libpng) from memory into 8-bit RGB.
 *
 * The server decodes untrusted uploads, so:
 * - the format is told by the magic bytes, never by a file name;
 * - the declared width and height are checked against the limits before
 *   anything is allocated for the pixels. They are peeked from the header
 *   bytes first (a 100k x 100k PNG that is only a header fails at once with
 *   E_RANGE instead of as a truncated file) and checked again on what the
 *   library parsed;
 * - both libraries report errors through setjmp/longjmp handlers here (the
 *   default libjpeg handler ends the process); every error path frees what it
 *   took; libjpeg warnings that mean corrupt or missing data are errors too,
 *   so a truncated file is E_FORMAT, never a half-grey picture;
 * - a progressive JPEG may have at most MAX_JPEG_SCANS scans (each costs a
 *   pass over the whole image: a few kilobytes of scans could burn minutes);
 * - a PNG's compressed data may not continue past the image: before libpng
 *   runs, its IDAT stream is inflated into a small scratch buffer and stopped
 *   as soon as it yields a byte more than the declared rows need (libpng's
 *   png_read_end would inflate a 1 GiB tail behind a 1x1 image), and at most
 *   MAX_PNG_IDAT_SLACK_BYTES of IDAT may follow the end of the stream;
 * - a progressive JPEG's coefficient buffer (libjpeg keeps every DCT
 *   coefficient of the image, 2 bytes each, outside memfit's allocator) is
 *   computed from the frame and scan headers and refused above
 *   JPEG_COEF_BYTES_PER_PIXEL bytes per pixel of the limit before libjpeg
 *   allocates it;
 * - a decode has a time budget (limits->max_decode_ms): a monotonic clock
 *   read at every libjpeg progress call (one iMCU row of a scan, or one
 *   output scanline), every PNG row and every 4 KiB the IDAT check
 *   inflates. One read of the vDSO clock costs tens of nanoseconds, less
 *   than the row it follows, so no sampling is needed. Whatever the
 *   structural checks miss (a pathological but legal file) stops there.
 *
 * The pixel buffer goes through memfit_malloc; the libraries' own working
 * memory does not (it is bounded by the limits and freed before return).
 *
 * Colour handling follows PIL's Image.open(...).convert("RGB"), the reference
 * pipeline: alpha is dropped (not composited over a background), palettes and
 * low bit depths are expanded, 16-bit samples keep their high byte, CMYK and
 * YCCK JPEGs (Adobe's inverted CMYK, as libjpeg hands it out) become RGB with
 * PIL's formula, gamma/ICC/EXIF orientation are ignored. One difference: PIL
 * clips 16-bit grayscale PNGs to 255 (mode "I" to "L"); here they keep their
 * high byte like every other 16-bit PNG.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h> /* after jpeglib.h: the message codes */
#include <png.h>
#include <zlib.h>

#include "memfit/models.h"

/* At most this many scans in a progressive JPEG (libjpeg-turbo's own tools
 * suggest a limit of this order; real encoders write about 10). */
#define MAX_JPEG_SCANS 256

/* At most this many bytes for one ancillary PNG chunk (text, ICC profile). */
#define MAX_PNG_CHUNK_BYTES (8u << 20)

/* At most this many IDAT bytes may follow the end of the zlib stream (some
 * encoders pad; more is data that no row will ever read). */
#define MAX_PNG_IDAT_SLACK_BYTES 1024u

/* A progressive JPEG's coefficient buffer may take this many bytes per pixel
 * of limits->max_pixels: what a 3-component 4:4:4 image at the limit needs
 * (4:2:0 needs half); the pixel limit alone lets a CMYK one take 8. */
#define JPEG_COEF_BYTES_PER_PIXEL 6u

/* The end of a decode's time budget on memfit_now_ns(), or 0 for none. */
static uint64_t decode_deadline(const struct memfit_image_limits *limits)
{
    return limits->max_decode_ms ? memfit_now_ns() + (uint64_t)limits->max_decode_ms * 1000000u : 0;
}

/* The message of a decode stopped by its budget (after "NAME: FORMAT: "). */
#define OVER_BUDGET "the decode took more than %u ms (the decode time budget)"

static bool past_deadline(uint64_t deadline_ns)
{
    return deadline_ns && memfit_now_ns() > deadline_ns;
}

struct memfit_image_limits memfit_image_limits_default(void)
{
    return (struct memfit_image_limits){.max_pixels = 50000000, .max_dimension = 20000};
}

void memfit_image_free(struct memfit_image *img)
{
    if (!img)
        return;
    memfit_free(img->rgb);
    img->rgb = NULL;
    img->width = 0;
    img->height = 0;
}

/* E_FORMAT for an empty image, E_RANGE beyond the limits. */
static enum memfit_status check_size(const char *name, const char *format, uint64_t width,
                                     uint64_t height, const struct memfit_image_limits *limits)
{
    if (width == 0 || height == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: %s image size %llux%llu is empty", name, format,
                           (unsigned long long)width, (unsigned long long)height);
    if (width > limits->max_dimension || height > limits->max_dimension)
        return memfit_fail(MEMFIT_E_RANGE,
                           "%s: %s image size %llux%llu: a side is beyond the limit of %u pixels",
                           name, format, (unsigned long long)width, (unsigned long long)height,
                           limits->max_dimension);
    if (width * height > limits->max_pixels) /* both < 2^32: no overflow */
        return memfit_fail(
            MEMFIT_E_RANGE, "%s: %s image size %llux%llu: %llu pixels beyond the limit of %llu",
            name, format, (unsigned long long)width, (unsigned long long)height,
            (unsigned long long)(width * height), (unsigned long long)limits->max_pixels);
    return MEMFIT_OK;
}

/* The pixel buffer (width * height * 3 bytes, checked by check_size). */
static uint8_t *alloc_pixels(uint32_t width, uint32_t height)
{
    size_t bytes;
    if (__builtin_mul_overflow((size_t)width * height, (size_t)3, &bytes))
        return NULL;
    return memfit_malloc_in(MEMFIT_ALLOC_MODEL, bytes);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- JPEG ---------------------------------------------------------------- */

struct jpeg_ctx {
    struct jpeg_error_mgr mgr; /* first: libjpeg hands back a pointer to it */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    enum memfit_status status;
    uint64_t deadline_ns; /* 0: none */
    uint32_t budget_ms;
    char message[JMSG_LENGTH_MAX + 64];
};

static _Noreturn void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_ctx *ctx = (struct jpeg_ctx *)cinfo->err;
    ctx->status = cinfo->err->msg_code == JERR_OUT_OF_MEMORY ? MEMFIT_E_NOMEM : MEMFIT_E_FORMAT;
    cinfo->err->format_message(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

/* Warnings (level -1) that leave the pixels intact; every other warning
 * means corrupt or missing data and is an error. */
static bool jpeg_warning_is_benign(int code)
{
    return code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM ||
           code == JWRN_BOGUS_ICC;
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0 && !jpeg_warning_is_benign(cinfo->err->msg_code))
        jpeg_on_error(cinfo);
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    struct jpeg_ctx *ctx = (struct jpeg_ctx *)cinfo->err;
    if (cinfo->is_decompressor && d->input_scan_number > MAX_JPEG_SCANS) {
        ctx->status = MEMFIT_E_FORMAT;
        snprintf(ctx->message, sizeof(ctx->message), "more than %d progressive scans",
                 MAX_JPEG_SCANS);
        longjmp(ctx->jump, 1);
    }
    if (past_deadline(ctx->deadline_ns)) {
        ctx->status = MEMFIT_E_TIMEOUT;
        snprintf(ctx->message, sizeof(ctx->message), OVER_BUDGET, ctx->budget_ms);
        longjmp(ctx->jump, 1);
    }
}

/* The bytes libjpeg allocates for the whole-image coefficient buffer of a
 * progressive (multi-scan) JPEG: every component's blocks, padded to whole
 * iMCUs, 64 coefficients of 2 bytes each. Valid after jpeg_read_header. */
static uint64_t jpeg_coef_bytes(const struct jpeg_decompress_struct *cinfo)
{
    uint64_t total = 0;
    for (int ci = 0; ci < cinfo->num_components; ci++) {
        const jpeg_component_info *c = &cinfo->comp_info[ci];
        uint64_t w = c->width_in_blocks, h = c->height_in_blocks;
        uint64_t hs = c->h_samp_factor > 0 ? (uint64_t)c->h_samp_factor : 1;
        uint64_t vs = c->v_samp_factor > 0 ? (uint64_t)c->v_samp_factor : 1;
        w = (w + hs - 1) / hs * hs;
        h = (h + vs - 1) / vs * vs;
        total += w * h * DCTSIZE2 * sizeof(JCOEF); /* each < 2^13 blocks a side: no overflow */
    }
    return total;
}

/*
 * Finds the frame header (SOFn) by walking the marker segments, so that a
 * huge declared size is refused even when the file stops right after it.
 * Returns false when there is none in the bytes given (libjpeg then reports
 * what is wrong).
 */
static bool jpeg_peek_size(const uint8_t *p, size_t size, uint32_t *width, uint32_t *height)
{
    size_t pos = 2;
    while (pos + 4 <= size) {
        if (p[pos] != 0xFF)
            return false;
        uint8_t marker = p[pos + 1];
        if (marker == 0xFF) { /* fill byte */
            pos++;
            continue;
        }
        if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {
            pos += 2; /* no length */
            continue;
        }
        if (marker == 0xD9 || marker == 0xDA)
            return false; /* EOI or SOS before any frame header */
        size_t len = (size_t)p[pos + 2] << 8 | p[pos + 3];
        if (len < 2)
            return false;
        bool sof =
            marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
        if (sof) {
            if (len < 7 || pos + 9 > size)
                return false;
            *height = (uint32_t)p[pos + 5] << 8 | p[pos + 6];
            *width = (uint32_t)p[pos + 7] << 8 | p[pos + 8];
            return true;
        }
        pos += 2 + len;
    }
    return false;
}

/* PIL's CMYK to RGB (Convert.c cmyk2rgb) on libjpeg's inverted (Adobe)
 * CMYK samples: PIL undoes the inversion first, so c = 255 - sample. */
static uint8_t cmyk_channel(uint8_t inv_c, uint8_t inv_k)
{
    int nk = inv_k; /* 255 - k */
    int c = 255 - inv_c;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static enum memfit_status decode_jpeg(const uint8_t *data, size_t size, const char *name,
                                      const struct memfit_image_limits *limits,
                                      struct memfit_image *out)
{
    uint32_t peek_w, peek_h;
    if (jpeg_peek_size(data, size, &peek_w, &peek_h)) {
        enum memfit_status st = check_size(name, "JPEG", peek_w, peek_h, limits);
        if (st != MEMFIT_OK)
            return st;
    }

    struct jpeg_decompress_struct cinfo;
    struct jpeg_ctx ctx;
    /* volatile: read after a longjmp back into this frame */
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    memset(&ctx, 0, sizeof(ctx));
    cinfo.err = jpeg_std_error(&ctx.mgr);
    ctx.mgr.error_exit = jpeg_on_error;
    ctx.mgr.emit_message = jpeg_on_message;
    ctx.status = MEMFIT_OK;
    ctx.deadline_ns = decode_deadline(limits);
    ctx.budget_ms = limits->max_decode_ms;
    if (setjmp(ctx.jump)) {
        jpeg_destroy_decompress(&cinfo);
        memfit_free(row);
        memfit_free(pixels);
        return memfit_fail(ctx.status, "%s: JPEG: %s", name, ctx.message);
    }
    jpeg_create_decompress(&cinfo);
    ctx.progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &ctx.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    enum memfit_status st = check_size(name, "JPEG", cinfo.image_width, cinfo.image_height, limits);
    bool cmyk = false;
    if (st == MEMFIT_OK) {
        switch (cinfo.jpeg_color_space) {
        case JCS_GRAYSCALE:
        case JCS_YCbCr:
        case JCS_RGB:
            cinfo.out_color_space = JCS_RGB;
            break;
        case JCS_CMYK:
        case JCS_YCCK:
            cinfo.out_color_space = JCS_CMYK;
            cmyk = true;
            break;
        default:
            st = memfit_fail(MEMFIT_E_FORMAT,
                             "%s: JPEG: unsupported colour space %d (%d components)", name,
                             (int)cinfo.jpeg_color_space, cinfo.num_components);
        }
    }
    if (st == MEMFIT_OK && jpeg_has_multiple_scans(&cinfo)) {
        /* libjpeg allocates the whole coefficient buffer in jpeg_start_decompress */
        uint64_t coef = jpeg_coef_bytes(&cinfo);
        uint64_t max_coef;
        if (__builtin_mul_overflow(limits->max_pixels, (uint64_t)JPEG_COEF_BYTES_PER_PIXEL,
                                   &max_coef))
            max_coef = UINT64_MAX;
        if (coef > max_coef)
            st = memfit_fail(MEMFIT_E_RANGE,
                             "%s: JPEG: a progressive %ux%u image with %d components needs %llu "
                             "bytes of coefficients, beyond the limit of %llu",
                             name, (unsigned)cinfo.image_width, (unsigned)cinfo.image_height,
                             cinfo.num_components, (unsigned long long)coef,
                             (unsigned long long)max_coef);
    }
    if (st != MEMFIT_OK) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    jpeg_start_decompress(&cinfo);
    uint32_t width = cinfo.output_width, height = cinfo.output_height;
    if (width != cinfo.image_width || height != cinfo.image_height ||
        cinfo.output_components != (cmyk ? 4 : 3)) {
        jpeg_destroy_decompress(&cinfo);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: JPEG: unexpected output layout", name);
    }
    pixels = alloc_pixels(width, height);
    if (cmyk && pixels)
        row = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (size_t)width * 4);
    if (!pixels || (cmyk && !row)) {
        jpeg_destroy_decompress(&cinfo);
        memfit_free(row);
        memfit_free(pixels);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: no memory for %ux%u pixels", name, width, height);
    }
    while (cinfo.output_scanline < height) {
        uint32_t y = cinfo.output_scanline;
        uint8_t *dst = pixels + (size_t)y * width * 3;
        JSAMPROW rows[1] = {cmyk ? row : dst};
        if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) /* suspension: cannot happen from memory */
            break;
        if (cmyk) {
            for (uint32_t x = 0; x < width; x++) {
                const uint8_t *s = row + (size_t)x * 4;
                dst[3 * x + 0] = cmyk_channel(s[0], s[3]);
                dst[3 * x + 1] = cmyk_channel(s[1], s[3]);
                dst[3 * x + 2] = cmyk_channel(s[2], s[3]);
            }
        }
    }
    if (cinfo.output_scanline < height) {
        jpeg_destroy_decompress(&cinfo);
        memfit_free(row);
        memfit_free(pixels);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: JPEG: data ends at row %u of %u", name,
                           (unsigned)cinfo.output_scanline, height);
    }
    jpeg_finish_decompress(&cinfo); /* reads up to EOI: a cut file fails here */
    jpeg_destroy_decompress(&cinfo);
    memfit_free(row);
    out->width = width;
    out->height = height;
    out->rgb = pixels;
    return MEMFIT_OK;
}

/* ---- PNG ----------------------------------------------------------------- */

struct png_ctx {
    const uint8_t *data;
    size_t size;
    size_t pos;
    enum memfit_status status;
    uint64_t deadline_ns; /* 0: none */
    uint32_t budget_ms;
    char message[256];
};

static void png_on_error(png_structp png, png_const_charp message)
{
    struct png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof(ctx->message), "%s", message);
    if (ctx->status == MEMFIT_OK)
        ctx->status = MEMFIT_E_FORMAT;
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp message)
{
    (void)png; /* ancillary problems (a bad text chunk, a CRC in tEXt): pixels are fine */
    (void)message;
}

static void png_on_read(png_structp png, png_bytep out, size_t n)
{
    struct png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->size - ctx->pos) {
        snprintf(ctx->message, sizeof(ctx->message),
                 "data ends at byte %zu (truncated file; %zu more bytes needed)", ctx->size,
                 n - (ctx->size - ctx->pos));
        ctx->status = MEMFIT_E_FORMAT;
        png_longjmp(png, 1);
    }
    memcpy(out, ctx->data + ctx->pos, n);
    ctx->pos += n;
}

/* After each row (of each pass when interlaced): the time budget. */
static void png_on_row(png_structp png, png_uint_32 row, int pass)
{
    (void)row;
    (void)pass;
    struct png_ctx *ctx = png_get_io_ptr(png);
    if (past_deadline(ctx->deadline_ns)) {
        ctx->status = MEMFIT_E_TIMEOUT;
        snprintf(ctx->message, sizeof(ctx->message), OVER_BUDGET, ctx->budget_ms);
        png_longjmp(png, 1);
    }
}

/* The bytes of filtered scanlines a PNG's IDAT stream must inflate to, from
 * the IHDR fields; 0 for values libpng will refuse anyway. */
static uint64_t png_raw_bytes(uint32_t width, uint32_t height, int bit_depth, int color_type,
                              int interlace)
{
    int n_channels = color_type == 0   ? 1
                     : color_type == 2 ? 3
                     : color_type == 3 ? 1
                     : color_type == 4 ? 2
                     : color_type == 6 ? 4
                                       : 0;
    uint64_t bits = (uint64_t)n_channels * (uint64_t)bit_depth;
    if (!bits || !width || !height)
        return 0;
    if (!interlace)
        return (uint64_t)height * (1 + ((uint64_t)width * bits + 7) / 8);
    static const uint32_t x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
    static const uint32_t dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    uint64_t total = 0;
    for (int k = 0; k < 7; k++) {
        uint64_t w = width > x0[k] ? (width - x0[k] + dx[k] - 1) / dx[k] : 0;
        uint64_t h = height > y0[k] ? (height - y0[k] + dy[k] - 1) / dy[k] : 0;
        if (w && h)
            total += h * (1 + (w * bits + 7) / 8);
    }
    return total;
}

/* Refuses a PNG whose IDAT stream inflates to more than its rows need, or
 * that carries more than MAX_PNG_IDAT_SLACK_BYTES of IDAT after the stream's
 * end. Reads only chunk headers and inflates at most one byte past the image;
 * anything it cannot judge (cut file, bad zlib data, odd IHDR) is left to
 * libpng, which reports it. */
static enum memfit_status check_png_idat(const uint8_t *data, size_t size, const char *name,
                                         uint64_t deadline_ns, uint32_t budget_ms)
{
    if (size < 33 || memcmp(data + 12, "IHDR", 4) != 0)
        return MEMFIT_OK;
    uint64_t want = png_raw_bytes(be32(data + 16), be32(data + 20), data[24], data[25], data[28]);
    if (!want)
        return MEMFIT_OK;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit(&z) != Z_OK)
        return memfit_fail(MEMFIT_E_NOMEM, "%s: PNG: cannot create the inflater", name);
    uint8_t scratch[4096];
    uint64_t n_out = 0, n_after_end = 0;
    int ended = 0, broken = 0;
    enum memfit_status st = MEMFIT_OK;
    for (size_t pos = 8; pos + 12 <= size && st == MEMFIT_OK && !broken;) {
        uint32_t length = be32(data + pos);
        if (length > size - pos - 12)
            break; /* cut: libpng says so */
        const uint8_t *type = data + pos + 4, *body = data + pos + 8;
        pos += 12 + (size_t)length;
        if (memcmp(type, "IEND", 4) == 0)
            break;
        if (memcmp(type, "IDAT", 4) != 0)
            continue;
        if (ended) {
            n_after_end += length;
            continue;
        }
        z.next_in = (Bytef *)body;
        z.avail_in = length;
        while (z.avail_in > 0) {
            if (past_deadline(deadline_ns)) {
                st = memfit_fail(MEMFIT_E_TIMEOUT, "%s: PNG: " OVER_BUDGET, name, budget_ms);
                break;
            }
            uint64_t room = want + 1 - n_out; /* one byte past the image is enough */
            z.next_out = scratch;
            z.avail_out = room < sizeof(scratch) ? (uInt)room : (uInt)sizeof(scratch);
            uInt before = z.avail_out;
            int ret = inflate(&z, Z_NO_FLUSH);
            n_out += before - z.avail_out;
            if (n_out > want) {
                st = memfit_fail(MEMFIT_E_FORMAT,
                                 "%s: PNG: compressed data continues past the image (%llu bytes "
                                 "of rows expected)",
                                 name, (unsigned long long)want);
                break;
            }
            if (ret == Z_STREAM_END) {
                ended = 1;
                n_after_end += z.avail_in;
                break;
            }
            if (ret != Z_OK) {
                broken = 1; /* bad data: libpng reports it */
                break;
            }
        }
    }
    inflateEnd(&z);
    if (st == MEMFIT_OK && n_after_end > MAX_PNG_IDAT_SLACK_BYTES)
        st = memfit_fail(MEMFIT_E_FORMAT,
                         "%s: PNG: compressed data continues past the image (%llu bytes)", name,
                         (unsigned long long)n_after_end);
    return st;
}

static enum memfit_status decode_png(const uint8_t *data, size_t size, const char *name,
                                     const struct memfit_image_limits *limits,
                                     struct memfit_image *out)
{
    /* signature (8), IHDR length (4) and type (4), width (4), height (4) */
    if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
        enum memfit_status st = check_size(name, "PNG", be32(data + 16), be32(data + 20), limits);
        if (st != MEMFIT_OK)
            return st;
    }
    const uint64_t deadline_ns = decode_deadline(limits);
    enum memfit_status idat_st =
        check_png_idat(data, size, name, deadline_ns, limits->max_decode_ms);
    if (idat_st != MEMFIT_OK)
        return idat_st;

    struct png_ctx ctx = {.data = data,
                          .size = size,
                          .pos = 0,
                          .status = MEMFIT_OK,
                          .deadline_ns = deadline_ns,
                          .budget_ms = limits->max_decode_ms};
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    if (!png)
        return memfit_fail(MEMFIT_E_NOMEM, "%s: PNG: cannot create the decoder", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: PNG: cannot create the decoder", name);
    }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        memfit_free(rows);
        memfit_free(pixels);
        if (ctx.status == MEMFIT_E_NOMEM || ctx.status == MEMFIT_E_TIMEOUT)
            return memfit_fail(ctx.status, "%s: PNG: %s", name, ctx.message);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: PNG: %s", name, ctx.message);
    }
    png_set_read_fn(png, &ctx, png_on_read);
    if (ctx.deadline_ns)
        png_set_read_status_fn(png, png_on_row);
    png_set_user_limits(png, limits->max_dimension, limits->max_dimension);
    png_set_chunk_malloc_max(png, MAX_PNG_CHUNK_BYTES);
    png_read_info(png, info);

    png_uint_32 width, height;
    int bit_depth, color_type, interlace;
    png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    enum memfit_status st = check_size(name, "PNG", width, height, limits);
    if (st != MEMFIT_OK) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16)
        png_set_strip_16(png); /* keeps the high byte, as PIL does */
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_strip_alpha(png); /* also the alpha a palette's tRNS would add */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)width * 3) {
        png_destroy_read_struct(&png, &info, NULL);
        return memfit_fail(MEMFIT_E_FORMAT, "%s: PNG: colour type %d, depth %d is not supported",
                           name, color_type, bit_depth);
    }
    pixels = alloc_pixels(width, height);
    if (pixels)
        rows = memfit_malloc_in(MEMFIT_ALLOC_MODEL, (size_t)height * sizeof(png_bytep));
    if (!pixels || !rows) {
        png_destroy_read_struct(&png, &info, NULL);
        memfit_free(rows);
        memfit_free(pixels);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: no memory for %ux%u pixels", name, (unsigned)width,
                           (unsigned)height);
    }
    for (png_uint_32 y = 0; y < height; y++)
        rows[y] = pixels + (size_t)y * width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* reads up to IEND: a cut file fails here */
    png_destroy_read_struct(&png, &info, NULL);
    memfit_free(rows);
    out->width = width;
    out->height = height;
    out->rgb = pixels;
    return MEMFIT_OK;
}

/* ---- entry points -------------------------------------------------------- */

enum memfit_status memfit_image_decode(const void *data, size_t size, const char *name,
                                       const struct memfit_image_limits *limits,
                                       struct memfit_image *out)
{
    if (!out || (!data && size))
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_image_decode: NULL argument");
    if (!name)
        name = "image";
    struct memfit_image_limits defaults = memfit_image_limits_default();
    if (!limits)
        limits = &defaults;
    const uint8_t *p = data;
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return decode_jpeg(p, size, name, limits, out);
    if (size >= 8 && memcmp(p, png_magic, 8) == 0)
        return decode_png(p, size, name, limits, out);
    if (size == 0)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: empty file, not an image", name);
    return memfit_fail(MEMFIT_E_FORMAT,
                       "%s: unknown image format (first bytes %02x %02x %02x %02x; "
                       "JPEG and PNG are supported)",
                       name, p[0], size > 1 ? p[1] : 0, size > 2 ? p[2] : 0, size > 3 ? p[3] : 0);
}

enum memfit_status memfit_image_load(const char *path, const struct memfit_image_limits *limits,
                                     struct memfit_image *out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_image_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f)
        return memfit_fail(errno == ENOENT ? MEMFIT_E_NOT_FOUND : MEMFIT_E_IO, "%s: %s", path,
                           strerror(errno));
    /* The file size is not trusted for the image's size, only for the read:
     * the limits still apply to what the header declares. */
    struct memfit_image_limits defaults = memfit_image_limits_default();
    const struct memfit_image_limits *lim = limits ? limits : &defaults;
    struct stat st_file;
    if (fstat(fileno(f), &st_file) != 0) {
        int err = errno;
        fclose(f);
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(st_file.st_mode)) {
        fclose(f);
        return memfit_fail(MEMFIT_E_IO, "%s: not a regular file", path);
    }
    long end = (long)st_file.st_size;
    /* A compressed image is never larger than a few bytes per pixel plus
     * metadata; refuse absurd files before reading them into memory. */
    uint64_t max_file = lim->max_pixels * 8 + (64u << 20);
    if ((uint64_t)end > max_file) {
        fclose(f);
        return memfit_fail(MEMFIT_E_RANGE, "%s: file size %ld beyond the limit of %llu bytes", path,
                           end, (unsigned long long)max_file);
    }
    uint8_t *buf = memfit_malloc_in(MEMFIT_ALLOC_MODEL, end > 0 ? (size_t)end : 1);
    if (!buf) {
        fclose(f);
        return memfit_fail(MEMFIT_E_NOMEM, "%s: no memory to read %ld bytes", path, end);
    }
    size_t got = fread(buf, 1, (size_t)end, f);
    int read_error = ferror(f);
    fclose(f);
    if (read_error || got != (size_t)end) {
        memfit_free(buf);
        return memfit_fail(MEMFIT_E_IO, "%s: short read (%zu of %ld bytes)", path, got, end);
    }
    enum memfit_status st = memfit_image_decode(buf, got, path, lim, out);
    memfit_free(buf);
    return st;
}
