/* Unit tests of image decoding: parity with PIL on every JPEG and PNG
 * flavour of tests/fixtures/images (made by scripts/make_image_fixtures.py),
 * decompression bombs refused before any large allocation, truncation at
 * every length, corrupted bytes, tiny and empty images, and fault walks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <time.h>
#include <jpeglib.h>
#include <zlib.h>

#include "test_util.h"
#include "image_test.h"
#include "jpeg_gen.h"

/* Decoded RGB against PIL's Image.open(...).convert("RGB"). Asserted: every
 * byte identical (tolerance 0 in index.json). PNG is lossless; for JPEG, PIL
 * on Debian uses the same libjpeg-turbo with the same defaults (islow DCT,
 * fancy upsampling), so the output is identical too; CMYK goes through
 * PIL's own integer formula, replicated. */
static void check_decode(struct image_case *c)
{
    long tolerance = (long)json_integer_value(json_object_get(c->entry, "tolerance"));
    assert_int_equal(c->img.width, c->width);
    assert_int_equal(c->img.height, c->height);
    long worst = 0;
    for (size_t p = 0; p < (size_t)c->width * c->height * 3; p++) {
        long d = labs((long)c->img.rgb[p] - (long)c->want.rgb[p]);
        worst = d > worst ? d : worst;
    }
    if (worst > tolerance)
        fprintf(stderr, "%s: max difference %ld > %ld\n", c->file, worst, tolerance);
    assert_true(worst <= tolerance);
}

static void test_decode_parity(void **state)
{
    (void)state;
    for_each_image_case("decode", 25, true, check_decode);
}

/* PNG's CRC-32 (bitwise; the tests need a few bytes of it). */
static uint32_t crc_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Signature + IHDR (valid CRC) + an empty IDAT + IEND: 57 bytes. */
static size_t make_png_header(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    size_t n = 0;
    memcpy(buf, sig, 8);
    n = 8;
    put_be32(buf + n, 13);
    memcpy(buf + n + 4, "IHDR", 4);
    put_be32(buf + n + 8, w);
    put_be32(buf + n + 12, h);
    buf[n + 16] = 8; /* depth */
    buf[n + 17] = 2; /* RGB */
    buf[n + 18] = buf[n + 19] = buf[n + 20] = 0;
    put_be32(buf + n + 21, crc_of(buf + n + 4, 17));
    n += 25;
    put_be32(buf + n, 0);
    memcpy(buf + n + 4, "IDAT", 4);
    put_be32(buf + n + 8, crc_of(buf + n + 4, 4));
    n += 12;
    put_be32(buf + n, 0);
    memcpy(buf + n + 4, "IEND", 4);
    put_be32(buf + n + 8, crc_of(buf + n + 4, 4));
    return n + 12;
}

/* Appends a chunk (length, type, body, CRC) at buf + n; returns the new n. */
static size_t put_chunk(uint8_t *buf, size_t n, const char *type, const uint8_t *body,
                        size_t length)
{
    put_be32(buf + n, (uint32_t)length);
    memcpy(buf + n + 4, type, 4);
    if (length)
        memcpy(buf + n + 8, body, length);
    put_be32(buf + n + 8 + length, crc_of(buf + n + 4, 4 + length));
    return n + 12 + length;
}

/* A zlib stream of `n_bytes` zeros, streamed (no buffer of that size). */
static uint8_t *deflate_zeros(uint64_t n_bytes, size_t *size)
{
    static const uint8_t zeros[65536];
    size_t cap = (size_t)(n_bytes / 512) + 4096;
    uint8_t *out = memfit_malloc(cap);
    assert_non_null(out);
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit(&z, 9), Z_OK);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    for (uint64_t left = n_bytes;;) {
        size_t take = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
        z.next_in = (Bytef *)zeros;
        z.avail_in = (uInt)take;
        left -= take;
        int ret = deflate(&z, left ? Z_NO_FLUSH : Z_FINISH);
        assert_int_equal(z.avail_in, 0);
        if (!left) {
            assert_int_equal(ret, Z_STREAM_END);
            break;
        }
    }
    *size = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* A w x h RGB PNG whose IDAT chunks hold `first` then (if any) `second`. */
static uint8_t *make_png(uint32_t w, uint32_t h, const uint8_t *first, size_t n_first,
                         const uint8_t *second, size_t n_second, size_t *size)
{
    uint8_t *buf = memfit_malloc(57 + 24 + n_first + n_second);
    assert_non_null(buf);
    size_t n = make_png_header(buf, w, h) - 24; /* drop the empty IDAT and IEND */
    n = put_chunk(buf, n, "IDAT", first, n_first);
    if (second)
        n = put_chunk(buf, n, "IDAT", second, n_second);
    n = put_chunk(buf, n, "IEND", NULL, 0);
    *size = n;
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Compressed data past the image is refused before it is inflated: 50 MB of
 * zeros behind a 1x1 image fail at once (loosely: under a second). */
static void test_idat_bombs(void **state)
{
    (void)state;
    struct memfit_image img = {0};
    size_t n_zeros, n_row, size;
    /* the control: one black pixel, exactly the 4 bytes its row needs */
    uint8_t *row = deflate_zeros(4, &n_row);
    uint8_t *png = make_png(1, 1, row, n_row, NULL, 0, &size);
    assert_int_equal(memfit_image_decode(png, size, "ok.png", NULL, &img), MEMFIT_OK);
    assert_int_equal(img.rgb[0] | img.rgb[1] | img.rgb[2], 0);
    memfit_image_free(&img);
    memfit_free(png);

    /* one stream that inflates to 4 + 50 MB for a 1x1 image */
    uint8_t *zeros = deflate_zeros(4 + (50u << 20), &n_zeros);
    png = make_png(1, 1, zeros, n_zeros, NULL, 0, &size);
    double t0 = now_s();
    assert_int_equal(memfit_image_decode(png, size, "long.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_true(now_s() - t0 < 1.0);
    assert_non_null(strstr(memfit_last_error(), "long.png: PNG: compressed data continues"));
    assert_null(img.rgb);
    memfit_free(png);

    /* a 64x64 image whose stream holds 50 MB where 64 * 193 bytes are due */
    png = make_png(64, 64, zeros, n_zeros, NULL, 0, &size);
    t0 = now_s();
    assert_int_equal(memfit_image_decode(png, size, "big.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_true(now_s() - t0 < 1.0);
    assert_non_null(strstr(memfit_last_error(), "past the image"));
    memfit_free(png);

    /* a complete 1x1 stream, then a second IDAT of 50 MB compressed zeros */
    png = make_png(1, 1, row, n_row, zeros, n_zeros, &size);
    t0 = now_s();
    assert_int_equal(memfit_image_decode(png, size, "tail.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_true(now_s() - t0 < 1.0);
    assert_non_null(strstr(memfit_last_error(), "tail.png: PNG: compressed data continues"));
    memfit_free(png);

    /* a few bytes of padding after the stream's end are tolerated */
    static const uint8_t pad[16];
    png = make_png(1, 1, row, n_row, pad, sizeof(pad), &size);
    enum memfit_status st = memfit_image_decode(png, size, "pad.png", NULL, &img);
    assert_int_equal(st, MEMFIT_OK);
    memfit_image_free(&img);
    memfit_free(png);
    memfit_free(zeros);
    memfit_free(row);
}

/* SOI + SOF0 (3 components, 8 bits) and nothing else. */
static size_t make_jpeg_header(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t head[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08};
    memcpy(buf, head, sizeof(head));
    size_t n = sizeof(head);
    buf[n++] = (uint8_t)(h >> 8);
    buf[n++] = (uint8_t)h;
    buf[n++] = (uint8_t)(w >> 8);
    buf[n++] = (uint8_t)w;
    buf[n++] = 3;
    for (int c = 1; c <= 3; c++) {
        buf[n++] = (uint8_t)c;
        buf[n++] = c == 1 ? 0x22 : 0x11;
        buf[n++] = c == 1 ? 0 : 1;
    }
    return n;
}

/* Runs first, while the process's allocation peak is still small. */
static void test_decompression_bombs(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct memfit_image img = {0};
    struct memfit_alloc_stats before, after;
    memfit_alloc_get_stats(&before);

    size_t n = make_png_header(buf, 100000, 100000);
    assert_int_equal(memfit_image_decode(buf, n, "bomb.png", NULL, &img), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "bomb.png"));
    assert_non_null(strstr(memfit_last_error(), "100000x100000"));
    assert_null(img.rgb);
    /* the header alone, cut before IDAT: still E_RANGE (not "truncated") */
    assert_int_equal(memfit_image_decode(buf, 33, "bomb.png", NULL, &img), MEMFIT_E_RANGE);
    /* within the side limit but beyond the pixel limit */
    n = make_png_header(buf, 10000, 10000);
    assert_int_equal(memfit_image_decode(buf, n, "wide.png", NULL, &img), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "pixels"));
    n = make_png_header(buf, 20001, 1);
    assert_int_equal(memfit_image_decode(buf, n, "long.png", NULL, &img), MEMFIT_E_RANGE);

    n = make_jpeg_header(buf, 65535, 65535);
    assert_int_equal(memfit_image_decode(buf, n, "bomb.jpg", NULL, &img), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "bomb.jpg"));
    assert_non_null(strstr(memfit_last_error(), "65535x65535"));
    n = make_jpeg_header(buf, 9000, 9000);
    assert_int_equal(memfit_image_decode(buf, n, "big.jpg", NULL, &img), MEMFIT_E_RANGE);

    memfit_alloc_get_stats(&after);
    /* nothing of the size of the pixels was ever allocated */
    assert_true(after.peak_bytes < before.peak_bytes + 65536);
    assert_null(img.rgb);

    /* tighter limits on a real image: exactly at the limit passes */
    size_t size;
    uint8_t *jpg = read_fixture("baseline420.jpg", &size); /* 61 x 37 */
    struct memfit_image_limits lim = {.max_pixels = 61 * 37, .max_dimension = 61};
    assert_int_equal(memfit_image_decode(jpg, size, "x.jpg", &lim, &img), MEMFIT_OK);
    memfit_image_free(&img);
    lim.max_dimension = 60;
    assert_int_equal(memfit_image_decode(jpg, size, "x.jpg", &lim, &img), MEMFIT_E_RANGE);
    lim.max_dimension = 61;
    lim.max_pixels = 61 * 37 - 1;
    assert_int_equal(memfit_image_decode(jpg, size, "x.jpg", &lim, &img), MEMFIT_E_RANGE);
    memfit_free(jpg);
    uint8_t *png = read_fixture("rgb8.png", &size);
    assert_int_equal(memfit_image_decode(png, size, "x.png", &lim, &img), MEMFIT_E_RANGE);
    memfit_free(png);
}

static void test_empty_and_tiny(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct memfit_image img = {0};
    size_t n = make_png_header(buf, 0, 0);
    assert_int_equal(memfit_image_decode(buf, n, "zero.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "zero.png"));
    n = make_png_header(buf, 5, 0);
    assert_int_equal(memfit_image_decode(buf, n, "zero.png", NULL, &img), MEMFIT_E_FORMAT);
    n = make_jpeg_header(buf, 0, 0);
    assert_int_equal(memfit_image_decode(buf, n, "zero.jpg", NULL, &img), MEMFIT_E_FORMAT);
    n = make_jpeg_header(buf, 7, 0); /* height 0 = DNL, not supported */
    assert_int_equal(memfit_image_decode(buf, n, "zero.jpg", NULL, &img), MEMFIT_E_FORMAT);
    /* a valid header whose pixel data is missing */
    n = make_png_header(buf, 4, 4);
    assert_int_equal(memfit_image_decode(buf, n, "nodata.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "nodata.png"));

    assert_int_equal(memfit_image_decode(NULL, 0, "empty", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "empty"));
    assert_int_equal(memfit_image_decode("GIF89a\1\0\1\0", 10, "a.gif", NULL, &img),
                     MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "unknown image format"));
    assert_int_equal(memfit_image_decode("\xFF\xD8", 2, "short", NULL, &img), MEMFIT_E_FORMAT);
    assert_int_equal(memfit_image_decode("BM", 2, NULL, NULL, &img), MEMFIT_E_FORMAT);
    assert_null(img.rgb);

    /* the format comes from the bytes, not the name */
    size_t size;
    uint8_t *png = read_fixture("tiny1x1.png", &size);
    assert_int_equal(memfit_image_decode(png, size, "photo.jpg", NULL, &img), MEMFIT_OK);
    assert_int_equal(img.width, 1);
    assert_int_equal(img.height, 1);
    assert_int_equal(img.rgb[0], 12);
    assert_int_equal(img.rgb[1], 200);
    assert_int_equal(img.rgb[2], 99);
    memfit_image_free(&img);
    memfit_image_free(&img); /* freed twice: a no-op */
    memfit_image_free(NULL);
    assert_null(img.rgb);
    memfit_free(png);

    assert_int_equal(memfit_image_load("/nonexistent/x.png", NULL, &img), MEMFIT_E_NOT_FOUND);
    assert_non_null(strstr(memfit_last_error(), "/nonexistent/x.png"));
    assert_int_equal(memfit_image_load("/", NULL, &img), MEMFIT_E_IO);
    assert_int_equal(memfit_image_decode(NULL, 5, "x", NULL, &img), MEMFIT_E_MISUSE);
}

/* Every prefix of a valid file fails with E_FORMAT (the decoders read up to
 * IEND / EOI) and leaks nothing. */
static void test_truncated(void **state)
{
    (void)state;
    static const char *files[] = {"baseline420.jpg", "progressive.jpg", "cmyk.jpg",
                                  "gray.jpg",        "rgb8.png",        "rgb8_interlaced.png",
                                  "palette4.png",    "rgb16.png",       "tiny1x1.jpg"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t size;
        uint8_t *data = read_fixture(files[f], &size);
        uint64_t live = mf_alloc_live_count();
        for (size_t len = 0; len < size; len++) {
            struct memfit_image img = {0};
            /* an exact-size copy so ASan sees any read past the end */
            uint8_t *cut = memfit_malloc(len ? len : 1);
            assert_non_null(cut);
            memcpy(cut, data, len);
            enum memfit_status st = memfit_image_decode(cut, len, files[f], NULL, &img);
            if (st != MEMFIT_E_FORMAT)
                fprintf(stderr, "%s cut at %zu: %s\n", files[f], len, memfit_status_name(st));
            assert_int_equal(st, MEMFIT_E_FORMAT);
            assert_non_null(strstr(memfit_last_error(), files[f]));
            assert_null(img.rgb);
            memfit_free(cut);
        }
        assert_int_equal(mf_alloc_live_count(), live);
        memfit_free(data);
    }
}

/* Corrupted bytes never crash: the result is a clean error or an image. A
 * corrupted PNG pixel chunk is always caught (by zlib or by its CRC). */
static void test_corrupt(void **state)
{
    (void)state;
    static const char *files[] = {"baseline420.jpg", "progressive.jpg",   "cmyk.jpg",
                                  "rgb8.png",        "palette8_trns.png", "rgb8_interlaced.png"};
    uint32_t seed = 12345;
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t size;
        uint8_t *data = read_fixture(files[f], &size);
        for (int trial = 0; trial < 400; trial++) {
            uint8_t *copy = memfit_malloc(size);
            assert_non_null(copy);
            memcpy(copy, data, size);
            int n_flips = 1 + trial % 4;
            for (int k = 0; k < n_flips; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % size;
                seed = seed * 1103515245u + 12345u;
                copy[at] ^= (uint8_t)(1 + (seed >> 16) % 255);
            }
            struct memfit_image img = {0};
            enum memfit_status st = memfit_image_decode(copy, size, files[f], NULL, &img);
            assert_true(st == MEMFIT_OK || st == MEMFIT_E_FORMAT || st == MEMFIT_E_RANGE);
            if (st == MEMFIT_OK) {
                assert_non_null(img.rgb);
                memfit_image_free(&img);
            } else {
                assert_non_null(strstr(memfit_last_error(), files[f]));
            }
            memfit_free(copy);
        }
        memfit_free(data);
    }
    /* a flipped byte inside the PNG pixel data, then in its CRC */
    size_t size;
    uint8_t *png = read_fixture("rgb8.png", &size);
    uint8_t *idat = memmem(png, size, "IDAT", 4);
    assert_non_null(idat);
    uint32_t idat_len =
        (uint32_t)idat[-4] << 24 | (uint32_t)idat[-3] << 16 | (uint32_t)idat[-2] << 8 | idat[-1];
    struct memfit_image img = {0};
    idat[10] ^= 0x40;
    assert_int_equal(memfit_image_decode(png, size, "bits.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "bits.png"));
    idat[10] ^= 0x40;
    idat[4 + idat_len] ^= 0x01;
    assert_int_equal(memfit_image_decode(png, size, "crc.png", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "CRC"));
    memfit_free(png);
    /* garbage in the JPEG entropy-coded data: an error, not a grey image */
    uint8_t *jpg = read_fixture("baseline420.jpg", &size);
    uint8_t *sos = memmem(jpg, size, "\xFF\xDA", 2);
    assert_non_null(sos);
    for (uint8_t *p = sos + 20; p < jpg + size - 40; p++)
        *p = 0xFF;
    assert_int_equal(memfit_image_decode(jpg, size, "bad.jpg", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "bad.jpg"));
    memfit_free(jpg);
}

/* A JPEG from tests/jpeg_gen.h, never NULL here. */
static uint8_t *make_jpeg(uint32_t w, uint32_t h, int components, bool full_chroma,
                          bool progressive, const jpeg_scan_info *script, int n_scans,
                          unsigned long *size)
{
    uint8_t *jpg =
        mf_test_make_jpeg(w, h, components, full_chroma, progressive, script, n_scans, size);
    assert_non_null(jpg);
    return jpg;
}

/* A valid progressive JPEG of 8x8 gray pixels with 704 scans: every
 * coefficient in its own band, each refined bit by bit (Al 10 .. 0). */
static uint8_t *make_many_scans_jpeg(unsigned long *size)
{
    static jpeg_scan_info script[11 + 63 * 11];
    int n = 0;
    for (int k = 0; k < 64; k++)
        for (int al = 10; al >= 0; al--) {
            script[n] = (jpeg_scan_info){.comps_in_scan = 1,
                                         .component_index = {0},
                                         .Ss = k,
                                         .Se = k,
                                         .Ah = al == 10 ? 0 : al + 1,
                                         .Al = al};
            n++;
        }
    return make_jpeg(8, 8, 1, false, false, script, n, size);
}

/* Too many progressive scans are refused (each costs a pass over the whole
 * image); repeating a scan is refused as an inconsistent progression. */
static void test_scan_bomb(void **state)
{
    (void)state;
    unsigned long n;
    uint8_t *many = make_many_scans_jpeg(&n);
    struct memfit_image img = {0};
    assert_int_equal(memfit_image_decode(many, n, "scans.jpg", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "scans.jpg"));
    assert_non_null(strstr(memfit_last_error(), "more than 256 progressive scans"));
    free(many); /* lint: allow: libjpeg's jpeg_mem_dest buffer */

    size_t size;
    uint8_t *jpg = read_fixture("progressive.jpg", &size);
    /* repeat the last scan (its SOS up to EOI) many times */
    uint8_t *last = NULL;
    for (uint8_t *p = jpg; p + 1 < jpg + size; p++)
        if (p[0] == 0xFF && p[1] == 0xDA)
            last = p;
    assert_non_null(last);
    size_t scan = (size_t)(jpg + size - 2 - last), head = (size_t)(last - jpg);
    size_t copies = 300, total = head + copies * scan + 2;
    uint8_t *bomb = memfit_malloc(total);
    assert_non_null(bomb);
    memcpy(bomb, jpg, head);
    for (size_t i = 0; i < copies; i++)
        memcpy(bomb + head + i * scan, last, scan);
    bomb[total - 2] = 0xFF;
    bomb[total - 1] = 0xD9;
    assert_int_equal(memfit_image_decode(bomb, total, "repeat.jpg", NULL, &img), MEMFIT_E_FORMAT);
    assert_non_null(strstr(memfit_last_error(), "repeat.jpg"));
    memfit_free(bomb);
    memfit_free(jpg);
}

/* A decode past limits.max_decode_ms stops with E_TIMEOUT naming the image
 * and the budget, PNG and JPEG (baseline and progressive) alike; without a
 * budget the same files decode. */
static void test_time_budget(void **state)
{
    (void)state;
    struct memfit_image img = {0};
    struct memfit_image_limits lim = memfit_image_limits_default();
    assert_int_equal(lim.max_decode_ms, 0);
    lim.max_decode_ms = 1;

    /* PNG: 3000 x 3000 black, 27 MB of rows from a small zlib stream */
    size_t n_z, size;
    uint8_t *z = deflate_zeros(3000ull * (1 + 3000 * 3), &n_z);
    uint8_t *png = make_png(3000, 3000, z, n_z, NULL, 0, &size);
    memfit_free(z);
    double t0 = now_s();
    assert_int_equal(memfit_image_decode(png, size, "slow.png", &lim, &img), MEMFIT_E_TIMEOUT);
    assert_true(now_s() - t0 < 0.5);
    assert_non_null(strstr(memfit_last_error(), "slow.png: PNG: the decode took more than 1 ms"));
    assert_null(img.rgb);
    assert_int_equal(memfit_image_decode(png, size, "slow.png", NULL, &img), MEMFIT_OK);
    memfit_image_free(&img);
    memfit_free(png);

    for (int progressive = 0; progressive < 2; progressive++) {
        unsigned long n;
        uint8_t *jpg = make_jpeg(3000, 3000, 3, false, progressive, NULL, 0, &n);
        t0 = now_s();
        assert_int_equal(memfit_image_decode(jpg, n, "slow.jpg", &lim, &img), MEMFIT_E_TIMEOUT);
        assert_true(now_s() - t0 < 0.5);
        assert_non_null(
            strstr(memfit_last_error(), "slow.jpg: JPEG: the decode took more than 1 ms"));
        assert_null(img.rgb);
        assert_int_equal(memfit_image_decode(jpg, n, "slow.jpg", NULL, &img), MEMFIT_OK);
        memfit_image_free(&img);
        free(jpg); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    }
}

/* A progressive JPEG's whole-image coefficient buffer is bounded by the
 * pixel limit (6 bytes a pixel) before libjpeg allocates it: the same
 * 100 x 100 picture passes in 4:2:0 and is refused in 4:4:4 under a limit of
 * 10000 pixels; a baseline 4:4:4 one (no such buffer) passes. */
static void test_coefficient_limit(void **state)
{
    (void)state;
    struct memfit_image img = {0};
    struct memfit_image_limits lim = {.max_pixels = 10000, .max_dimension = 1000};
    unsigned long n;
    uint8_t *jpg = make_jpeg(100, 100, 3, true, true, NULL, 0, &n);
    assert_int_equal(memfit_image_decode(jpg, n, "full.jpg", &lim, &img), MEMFIT_E_RANGE);
    assert_non_null(strstr(memfit_last_error(), "full.jpg: JPEG: a progressive 100x100 image"));
    assert_non_null(strstr(memfit_last_error(), "beyond the limit of 60000"));
    free(jpg); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    jpg = make_jpeg(100, 100, 3, false, true, NULL, 0, &n);
    assert_int_equal(memfit_image_decode(jpg, n, "sub.jpg", &lim, &img), MEMFIT_OK);
    memfit_image_free(&img);
    free(jpg); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    jpg = make_jpeg(100, 100, 3, true, false, NULL, 0, &n);
    assert_int_equal(memfit_image_decode(jpg, n, "base.jpg", &lim, &img), MEMFIT_OK);
    memfit_image_free(&img);
    free(jpg); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
}

struct walk_ctx {
    const uint8_t *data;
    size_t size;
    const char *path;
    struct memfit_image img;
};

static enum memfit_status walk_decode(void *p)
{
    struct walk_ctx *c = p;
    if (c->path)
        return memfit_image_load(c->path, NULL, &c->img);
    return memfit_image_decode(c->data, c->size, "walk", NULL, &c->img);
}

static void walk_cleanup(void *p)
{
    memfit_image_free(&((struct walk_ctx *)p)->img);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    static const char *files[] = {"baseline420.jpg",         "cmyk.jpg",
                                  "progressive.jpg",         "rgb8.png",
                                  "palette4_interlaced.png", "gray16.png"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        struct walk_ctx c = {0};
        uint8_t *data = read_fixture(files[f], &c.size);
        c.data = data;
        assert_true(mf_test_alloc_failures(walk_decode, walk_cleanup, &c) >= 2);
        memfit_free(data);
    }
    char buf[512];
    struct walk_ctx c = {.path = mf_test_fixture("images/gray.jpg", buf, sizeof(buf))};
    assert_true(mf_test_alloc_failures(walk_decode, walk_cleanup, &c) >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decompression_bombs), /* first: checks the allocation peak */
        cmocka_unit_test(test_decode_parity),       cmocka_unit_test(test_empty_and_tiny),
        cmocka_unit_test(test_truncated),           cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_scan_bomb),           cmocka_unit_test(test_idat_bombs),
        cmocka_unit_test(test_time_budget),         cmocka_unit_test(test_coefficient_limit),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
