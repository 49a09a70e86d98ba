/*
 * bench_image [WIDTH HEIGHT]: the cost of preparing one photo for DINOv2.
 * Encodes a WIDTH x HEIGHT (default 1920x1080) JPEG in memory with libjpeg
 * (quality 90, 4:2:0, a photo-like mix of gradients, edges and noise), then
 * prints the time of memfit_image_decode and of memfit_image_transform_apply
 * (the default 256 / 224 crop with a planned scratch), best and median of 30
 * runs each, and the scratch the transform needs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "memfit/memfit.h"

static uint8_t *make_jpeg(uint32_t w, uint32_t h, unsigned long *size)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    uint8_t *out = NULL;
    jpeg_mem_dest(&c, &out, size);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = memfit_malloc((size_t)w * 3);
    if (!row) {
        fprintf(stderr, "bench_image: out of memory\n");
        exit(1);
    }
    uint32_t seed = 1;
    for (uint32_t y = 0; y < h; y++) {
        for (uint32_t x = 0; x < w; x++) {
            seed = seed * 1103515245u + 12345u;
            uint8_t noise = (uint8_t)(seed >> 24) & 15;
            row[3 * x + 0] = (uint8_t)(x * 255 / w + noise);
            row[3 * x + 1] = (uint8_t)(y * 255 / h);
            row[3 * x + 2] = ((x / 64 + y / 64) % 2) ? 220 : (uint8_t)(40 + noise);
        }
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    memfit_free(row);
    return out;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define RUNS 30

int main(int argc, char **argv)
{
    long long w = 1920, h = 1080;
    if (argc == 3 && (memfit_parse_int(argv[1], 1, 20000, &w) != MEMFIT_OK ||
                      memfit_parse_int(argv[2], 1, 20000, &h) != MEMFIT_OK)) {
        fprintf(stderr, "usage: bench_image [WIDTH HEIGHT]\n");
        return 2;
    }
    unsigned long size;
    uint8_t *jpg = make_jpeg((uint32_t)w, (uint32_t)h, &size);
    struct memfit_image_transform t = memfit_image_transform_default();
    size_t scratch_bytes = memfit_image_transform_scratch_bytes(&t, (uint32_t)w, (uint32_t)h);
    uint32_t ow, oh;
    if (memfit_image_transform_size(&t, (uint32_t)w, (uint32_t)h, &ow, &oh) != MEMFIT_OK) {
        fprintf(stderr, "bench_image: %s\n", memfit_last_error());
        return 1;
    }
    size_t n = (size_t)3 * ow * oh;
    float *out = memfit_malloc(n * sizeof(float));
    void *scratch = memfit_malloc(scratch_bytes);
    if (!out || !scratch) {
        fprintf(stderr, "bench_image: out of memory\n");
        return 1;
    }
    double dec[RUNS], tr[RUNS];
    for (int i = 0; i < RUNS; i++) {
        struct memfit_image img;
        uint64_t t0 = memfit_now_ns();
        if (memfit_image_decode(jpg, size, "bench.jpg", NULL, &img) != MEMFIT_OK) {
            fprintf(stderr, "bench_image: %s\n", memfit_last_error());
            return 1;
        }
        uint64_t t1 = memfit_now_ns();
        if (memfit_image_transform_apply(&t, &img, out, n, scratch, scratch_bytes) != MEMFIT_OK) {
            fprintf(stderr, "bench_image: %s\n", memfit_last_error());
            return 1;
        }
        uint64_t t2 = memfit_now_ns();
        dec[i] = (double)(t1 - t0) / 1e6;
        tr[i] = (double)(t2 - t1) / 1e6;
        memfit_image_free(&img);
    }
    qsort(dec, RUNS, sizeof(double), cmp);
    qsort(tr, RUNS, sizeof(double), cmp);
    printf("bench_image: %lldx%lld JPEG (%lu bytes) -> 3x%ux%u floats\n", w, h, size, oh, ow);
    printf("decode     best %.2f ms  median %.2f ms\n", dec[0], dec[RUNS / 2]);
    printf("transform  best %.2f ms  median %.2f ms  (scratch %zu bytes)\n", tr[0], tr[RUNS / 2],
           scratch_bytes);
    printf("total      median %.2f ms\n", dec[RUNS / 2] + tr[RUNS / 2]);
    free(jpg); /* lint: allow: libjpeg's jpeg_mem_dest buffer */
    memfit_free(out);
    memfit_free(scratch);
    return 0;
}
