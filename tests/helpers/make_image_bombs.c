/*
 * make_image_bombs DIR: writes the image bomb corpus of
 * tests/integration/serve_bombs.sh into DIR, built at test time with zlib
 * and libjpeg (no Python imaging on a fresh machine):
 *   ok.png, ok.jpg                 16x16 controls that decode
 *   png_huge_size.png              IHDR 65535 x 65535, a few bytes of data
 *   png_inflate_1gib.png           a 1x1 image whose IDAT inflates to 1 GiB of zeros (~1 MB)
 *   png_bad_crc.png                ok.png with its IDAT CRC flipped
 *   png_truncated.png              a 64x64 PNG cut in the middle of its IDAT
 *   jpeg_huge_size.jpg             ok.jpg with its frame header saying 65500 x 65500
 *   jpeg_many_scans.jpg            8x8 gray, progressive, 704 scans (every coefficient
 *                                  refined bit by bit)
 *   jpeg_300_scans.jpg             the first 300 of those scans (under 10 KB: a fuzz seed)
 *   jpeg_many_scans_color.jpg      16x16 YCbCr, 2112 scans
 *   jpeg_many_scans_big.jpg        1024x1024 gray, 704 scans
 *   jpeg_bad_marker.jpg            ok.jpg with its SOS marker turned into an unknown one
 *   jpeg_bad_length.jpg            ok.jpg with a DQT segment longer than the file
 *   jpeg_truncated.jpg             a 64x64 progressive JPEG cut at 60 %
 * Exit status 0, or 1 with a message on stderr.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <zlib.h>

#include "jpeg_gen.h"
#include "memfit/memfit.h"

static const char *dir;

static void die(const char *what)
{
    fprintf(stderr, "make_image_bombs: %s\n", what);
    exit(1);
}

static void write_file(const char *name, const uint8_t *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        die(path);
}

/* ---- PNG ------------------------------------------------------------------ */

struct buf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        uint8_t *p = memfit_realloc(b->p, cap);
        if (!p)
            die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_be32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void put_chunk(struct buf *b, const char *type, const uint8_t *body, size_t n)
{
    put_be32(b, (uint32_t)n);
    size_t at = b->n;
    put(b, type, 4);
    if (n)
        put(b, body, n);
    put_be32(b, (uint32_t)crc32(0, b->p + at, (uInt)(4 + n)));
}

/* Signature and IHDR of an 8-bit RGB image. */
static void png_start(struct buf *b, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    put(b, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24),
                        (uint8_t)(w >> 16),
                        (uint8_t)(w >> 8),
                        (uint8_t)w,
                        (uint8_t)(h >> 24),
                        (uint8_t)(h >> 16),
                        (uint8_t)(h >> 8),
                        (uint8_t)h,
                        8,
                        2,
                        0,
                        0,
                        0};
    put_chunk(b, "IHDR", ihdr, sizeof(ihdr));
}

/* A zlib stream of `n` bytes from gen(i) (streamed: no buffer of that size). */
static struct buf deflate_gen(uint64_t n, uint8_t (*gen)(uint64_t))
{
    struct buf out = {0};
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, 15, 9, Z_RLE) != Z_OK)
        die("deflateInit");
    static uint8_t in[1 << 16], tmp[1 << 16];
    uint64_t done = 0;
    int ret;
    do {
        size_t take = n - done < sizeof(in) ? (size_t)(n - done) : sizeof(in);
        for (size_t i = 0; i < take; i++)
            in[i] = gen(done + i);
        done += take;
        z.next_in = in;
        z.avail_in = (uInt)take;
        do {
            z.next_out = tmp;
            z.avail_out = sizeof(tmp);
            ret = deflate(&z, done == n ? Z_FINISH : Z_NO_FLUSH);
            put(&out, tmp, sizeof(tmp) - z.avail_out);
        } while (z.avail_out == 0);
    } while (done < n);
    if (ret != Z_STREAM_END)
        die("deflate");
    deflateEnd(&z);
    return out;
}

static uint8_t gen_zero(uint64_t i)
{
    (void)i;
    return 0;
}

/* Rows of a small gradient: filter byte 0, then RGB; width fixed by png_w. */
static uint64_t png_w;
static uint8_t gen_rows(uint64_t i)
{
    uint64_t row = 1 + png_w * 3;
    uint64_t x = i % row;
    return x == 0 ? 0 : (uint8_t)((x * 7 + (i / row) * 13) & 0xff);
}

static struct buf make_png(uint32_t w, uint32_t h)
{
    struct buf b = {0};
    png_start(&b, w, h);
    png_w = w;
    struct buf z = deflate_gen((uint64_t)h * (1 + (uint64_t)w * 3), gen_rows);
    put_chunk(&b, "IDAT", z.p, z.n);
    put_chunk(&b, "IEND", NULL, 0);
    memfit_free(z.p);
    return b;
}

static void png_bombs(void)
{
    struct buf ok = make_png(16, 16);
    write_file("ok.png", ok.p, ok.n);
    /* IDAT CRC: ok.png is signature, IHDR (25 bytes), IDAT, IEND (12) */
    ok.p[ok.n - 12 - 1] ^= 0xFF;
    write_file("png_bad_crc.png", ok.p, ok.n);
    memfit_free(ok.p);

    struct buf big = make_png(64, 64);
    write_file("png_truncated.png", big.p, 33 + (big.n - 33) / 2);
    memfit_free(big.p);

    struct buf huge = {0};
    png_start(&huge, 65535, 65535);
    struct buf z = deflate_gen(65536, gen_zero);
    put_chunk(&huge, "IDAT", z.p, z.n);
    put_chunk(&huge, "IEND", NULL, 0);
    write_file("png_huge_size.png", huge.p, huge.n);
    memfit_free(z.p);
    memfit_free(huge.p);

    struct buf inflate = {0};
    png_start(&inflate, 1, 1);
    z = deflate_gen(1ull << 30, gen_zero);
    put_chunk(&inflate, "IDAT", z.p, z.n);
    put_chunk(&inflate, "IEND", NULL, 0);
    write_file("png_inflate_1gib.png", inflate.p, inflate.n);
    memfit_free(z.p);
    memfit_free(inflate.p);
}

/* ---- JPEG ----------------------------------------------------------------- */

/* A JPEG from tests/jpeg_gen.h (4:2:0 when in colour). */
static uint8_t *make_jpeg(uint32_t w, uint32_t h, int components, bool progressive,
                          const jpeg_scan_info *script, int n_scans, unsigned long *size)
{
    uint8_t *jpg = mf_test_make_jpeg(w, h, components, false, progressive, script, n_scans, size);
    if (!jpg)
        die("out of memory");
    return jpg;
}

/* The scan script refining every coefficient of each component bit by bit:
 * 64 bands x 11 bit positions (Al 10 .. 0, libjpeg's most for 8-bit samples) per
 * component. */
static int many_scans(int components, jpeg_scan_info *script)
{
    int n = 0;
    for (int ci = 0; ci < components; ci++)
        for (int k = 0; k < 64; k++)
            for (int al = 10; al >= 0; al--)
                script[n++] = (jpeg_scan_info){.comps_in_scan = 1,
                                               .component_index = {ci},
                                               .Ss = k,
                                               .Se = k,
                                               .Ah = al == 10 ? 0 : al + 1,
                                               .Al = al};
    return n;
}

/* The offset of the first marker `m` (0xFF m), or 0. */
static size_t find_marker(const uint8_t *p, size_t n, uint8_t m)
{
    for (size_t i = 2; i + 1 < n; i++)
        if (p[i] == 0xFF && p[i + 1] == m)
            return i;
    return 0;
}

static void jpeg_bombs(void)
{
    unsigned long n;
    uint8_t *ok = make_jpeg(16, 16, 3, false, NULL, 0, &n);
    write_file("ok.jpg", ok, n);
    uint8_t *copy = memfit_malloc(n);
    if (!copy)
        die("out of memory");

    size_t sof = find_marker(ok, n, 0xC0);
    if (!sof)
        die("no SOF0 in ok.jpg");
    memcpy(copy, ok, n);
    copy[sof + 5] = copy[sof + 7] = 0xFF; /* height, width: 65500 */
    copy[sof + 6] = copy[sof + 8] = 0xDC;
    write_file("jpeg_huge_size.jpg", copy, n);

    size_t sos = find_marker(ok, n, 0xDA);
    if (!sos)
        die("no SOS in ok.jpg");
    memcpy(copy, ok, n);
    copy[sos + 1] = 0x4D; /* no such marker */
    write_file("jpeg_bad_marker.jpg", copy, n);

    size_t dqt = find_marker(ok, n, 0xDB);
    if (!dqt)
        die("no DQT in ok.jpg");
    memcpy(copy, ok, n);
    copy[dqt + 2] = copy[dqt + 3] = 0xFF; /* 65535 bytes: past the end of the file */
    write_file("jpeg_bad_length.jpg", copy, n);
    memfit_free(copy);
    free(ok); /* lint: allow: libjpeg's jpeg_mem_dest buffer */

    uint8_t *prog = make_jpeg(64, 64, 3, true, NULL, 0, &n);
    write_file("jpeg_truncated.jpg", prog, n * 6 / 10);
    free(prog); /* lint: allow: libjpeg's jpeg_mem_dest buffer */

    static jpeg_scan_info script[3 * 64 * 11];
    int n_scans = many_scans(1, script);
    uint8_t *scans = make_jpeg(8, 8, 1, false, script, n_scans, &n);
    write_file("jpeg_many_scans.jpg", scans, n);
    free(scans); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    scans = make_jpeg(8, 8, 1, false, script, 300, &n);
    write_file("jpeg_300_scans.jpg", scans, n);
    free(scans); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    scans = make_jpeg(1024, 1024, 1, false, script, n_scans, &n);
    write_file("jpeg_many_scans_big.jpg", scans, n);
    free(scans); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    n_scans = many_scans(3, script);
    scans = make_jpeg(16, 16, 3, false, script, n_scans, &n);
    write_file("jpeg_many_scans_color.jpg", scans, n);
    free(scans); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_image_bombs DIR\n");
        return 2;
    }
    dir = argv[1];
    png_bombs();
    jpeg_bombs();
    return 0;
}
