/*
 * bench_dot: how fast the tensor kernels stream weights. For each weight
 * type a 64 MB matrix (rows of 4096 elements, larger than any cache) is
 * multiplied with one activation vector, with the scalar and the SIMD
 * kernels; the figure is GB/s of weight bytes read. Then quantization
 * speed per type, in MB/s of F32 input. Best of several runs, one thread.
 *
 * Usage: bench_dot [matrix MB (default 64)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"
#include "tensor/blocks.h"
#include "tensor/kernels.h"

#define ROW  4096
#define RUNS 5

/* fp16 scale offsets inside each block, so random blocks hold sane values. */
struct bench_type {
    enum memfit_type type;
    int scale_off[2];
};

static const struct bench_type types[] = {
    {MEMFIT_TYPE_F32, {-1, -1}},   {MEMFIT_TYPE_F16, {-1, -1}}, {MEMFIT_TYPE_BF16, {-1, -1}},
    {MEMFIT_TYPE_Q8_0, {0, -1}},   {MEMFIT_TYPE_Q4_0, {0, -1}}, {MEMFIT_TYPE_Q4_1, {0, 2}},
    {MEMFIT_TYPE_Q5_0, {0, -1}},   {MEMFIT_TYPE_Q5_1, {0, 2}},  {MEMFIT_TYPE_Q2_K, {80, 82}},
    {MEMFIT_TYPE_Q3_K, {108, -1}}, {MEMFIT_TYPE_Q4_K, {0, 2}},  {MEMFIT_TYPE_Q5_K, {0, 2}},
    {MEMFIT_TYPE_Q6_K, {208, -1}},
};

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static float rnd_float(void)
{
    return ((float)(rnd() >> 8) / 16777216.0f - 0.5f) * 2.0f;
}

static void fill_weights(const struct bench_type *bt, uint8_t *w, size_t bytes)
{
    const struct memfit_type_info *info = memfit_type_get_info(bt->type);
    if (!info->is_quantized) {
        size_t n = bytes / info->type_size;
        for (size_t i = 0; i < n; i++) {
            float v = rnd_float() * 0.05f;
            if (bt->type == MEMFIT_TYPE_F32)
                memcpy(w + 4 * i, &v, 4);
            else {
                uint16_t h =
                    bt->type == MEMFIT_TYPE_F16 ? memfit_fp32_to_fp16(v) : memfit_fp32_to_bf16(v);
                memcpy(w + 2 * i, &h, 2);
            }
        }
        return;
    }
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)rnd();
    for (size_t b = 0; b < bytes / info->type_size; b++) {
        for (int k = 0; k < 2; k++) {
            if (bt->scale_off[k] < 0)
                continue;
            uint16_t h = memfit_fp32_to_fp16(0.001f + 0.01f * (rnd_float() + 1.0f));
            memcpy(w + b * info->type_size + (size_t)bt->scale_off[k], &h, 2);
        }
    }
}

/* Seconds for the best of RUNS passes of dot over all rows; *sink keeps the work alive. */
static double time_matvec(mf_vec_dot_fn dot, const uint8_t *w, size_t rows, size_t row_bytes,
                          const void *act, float *sink)
{
    double best = 1e30;
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = memfit_now_ns();
        float acc = 0;
        for (size_t i = 0; i < rows; i++)
            acc += dot(ROW, w + i * row_bytes, act);
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        *sink += acc;
        best = s < best ? s : best;
    }
    return best;
}

static double time_quantize(mf_from_float_fn q, const float *x, size_t n, void *dst)
{
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        uint64_t t0 = memfit_now_ns();
        for (size_t i = 0; i < n; i += ROW)
            q(x + i, (uint8_t *)dst + (i / ROW) * (size_t)(ROW * 4), ROW);
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        best = s < best ? s : best;
    }
    return best;
}

/* Seconds for the best of RUNS NF4 matrix-vector products with the given row kernel. */
static double time_nf4(mf_nf4_dot_fn dot, const struct memfit_nf4_matrix *m, const void *act,
                       float *y, float *sink)
{
    double best = 1e30;
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = memfit_now_ns();
        mf_nf4_matvec_rows_with(dot, m, 0, m->rows, act, y);
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        *sink += y[0];
        best = s < best ? s : best;
    }
    return best;
}

/* NF4 as bitsandbytes stores it (blocks of 64, double-quantized absmax): the row
 * kernels through the matrix function, GB/s of codes and absmax bytes. */
static void nf4_rows(uint8_t *w, size_t bytes, const float *x, uint8_t *act, float *sink)
{
    size_t rows = bytes / (ROW / 2 + ROW / 64), nb = rows * (ROW / 64);
    static float nested[1 << 16], map[256];
    float *y = memfit_malloc(rows * sizeof(float));
    if (!y || nb / 256 + 1 > sizeof(nested) / sizeof(nested[0]))
        return;
    for (size_t i = 0; i < rows * (ROW / 2 + ROW / 64); i++)
        w[i] = (uint8_t)rnd();
    for (size_t i = 0; i <= nb / 256; i++)
        nested[i] = 0.01f + 0.001f * rnd_float();
    memfit_nf4_dynamic_map(map);
    struct memfit_nf4_matrix m = {.codes = w,
                                  .rows = rows,
                                  .cols = ROW,
                                  .blocksize = 64,
                                  .double_quant = true,
                                  .absmax = w + rows * (ROW / 2),
                                  .nested_absmax = nested,
                                  .nested_map = map,
                                  .nested_blocksize = 256,
                                  .offset = 0.02f};
    mf_type_traits_scalar(MEMFIT_TYPE_Q8_0)->from_float(x, act, ROW);
    double gb = (double)(rows * (ROW / 2 + ROW / 64)) / 1e9;
    double ts = time_nf4(mf_nf4_dot_scalar, &m, act, y, sink);
    mf_nf4_dot_fn k[3] = {mf_nf4_dot_kernel_simd(), mf_nf4_dot_kernel_avx512(),
                          mf_nf4_dot_kernel_vnni512()};
    const char *names[3] = {"nf4", "nf4/512", "nf4/vnni"};
    for (int i = 0; i < 3; i++) {
        if (!k[i])
            continue;
        double tv = time_nf4(k[i], &m, act, y, sink);
        printf("%-7s %9s %12.2f %12.2f %7.1fx\n", names[i], "q8_0", gb / ts, gb / tv, ts / tv);
    }
    memfit_free(y);
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 64;
    if (mb == 0)
        mb = 64;
    size_t bytes = mb << 20;
    bool have_simd = mf_type_traits_simd(MEMFIT_TYPE_F32) != NULL;
    printf("bench_dot: %zu MB weight matrix per type, rows of %d, one thread, best of %d\n", mb,
           ROW, RUNS);
    printf("SIMD kernels: %s\n\n", have_simd ? "avx2+fma+f16c" : "none on this CPU");
    uint8_t *w = memfit_malloc(bytes + 4096);
    float *x = memfit_malloc(ROW * sizeof(float));
    uint8_t *act = memfit_malloc(ROW * sizeof(float));
    if (!w || !x || !act) {
        fprintf(stderr, "bench_dot: %s\n", memfit_last_error());
        return 1;
    }
    for (int i = 0; i < ROW; i++)
        x[i] = rnd_float();
    float sink = 0;
    printf("%-6s %10s %12s %12s %8s\n", "type", "act", "scalar GB/s", "simd GB/s", "speedup");
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *s = mf_type_traits_scalar(types[t].type);
        const struct mf_type_traits *v = have_simd ? mf_type_traits_simd(types[t].type) : NULL;
        size_t row_bytes = 0;
        uint64_t rb;
        if (memfit_type_bytes(types[t].type, ROW, &rb) == MEMFIT_OK)
            row_bytes = (size_t)rb;
        size_t rows = bytes / row_bytes;
        fill_weights(&types[t], w, rows * row_bytes);
        mf_type_traits_scalar(s->vec_dot_type)->from_float(x, act, ROW);
        double gb = (double)(rows * row_bytes) / 1e9;
        double ts = time_matvec(s->vec_dot, w, rows, row_bytes, act, &sink);
        const char *act_name = memfit_type_get_info(s->vec_dot_type)->name;
        if (v && v->vec_dot != s->vec_dot) {
            double tv = time_matvec(v->vec_dot, w, rows, row_bytes, act, &sink);
            printf("%-6s %10s %12.2f %12.2f %7.1fx\n", memfit_type_get_info(types[t].type)->name,
                   act_name, gb / ts, gb / tv, ts / tv);
        } else {
            printf("%-6s %10s %12.2f %12s %8s\n", memfit_type_get_info(types[t].type)->name,
                   act_name, gb / ts, "-", "-");
        }
    }

    nf4_rows(w, bytes, x, act, &sink);

    static const enum memfit_type qtypes[] = {MEMFIT_TYPE_F16,  MEMFIT_TYPE_BF16, MEMFIT_TYPE_Q8_0,
                                              MEMFIT_TYPE_Q8_K, MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q4_K,
                                              MEMFIT_TYPE_Q6_K};
    size_t qn = (bytes / 4) / ROW * ROW; /* F32 input filling the same buffer size */
    if (qn > (16u << 20) / 4)
        qn = (16u << 20) / 4;
    float *src = memfit_malloc(qn * sizeof(float));
    if (!src) {
        fprintf(stderr, "bench_dot: %s\n", memfit_last_error());
        return 1;
    }
    for (size_t i = 0; i < qn; i++)
        src[i] = rnd_float();
    double in_mb = (double)(qn * sizeof(float)) / 1e6;
    printf("\nquantize %.0f MB of F32\n%-6s %12s %12s\n", in_mb, "type", "scalar MB/s",
           "simd MB/s");
    for (size_t t = 0; t < sizeof(qtypes) / sizeof(qtypes[0]); t++) {
        const struct mf_type_traits *s = mf_type_traits_scalar(qtypes[t]);
        const struct mf_type_traits *v = have_simd ? mf_type_traits_simd(qtypes[t]) : NULL;
        double ts = time_quantize(s->from_float, src, qn, w);
        if (v && v->from_float != s->from_float)
            printf("%-6s %12.0f %12.0f\n", memfit_type_get_info(qtypes[t])->name, in_mb / ts,
                   in_mb / time_quantize(v->from_float, src, qn, w));
        else
            printf("%-6s %12.0f %12s\n", memfit_type_get_info(qtypes[t])->name, in_mb / ts, "-");
    }
    /* NF4 (bitsandbytes layout, blocks of 64), scalar only. */
    uint64_t t0 = memfit_now_ns();
    memfit_nf4_quantize(src, qn, 64, w, (float *)(w + qn / 2 + 64));
    printf("%-6s %12.0f %12s\n", "nf4", in_mb / ((double)(memfit_now_ns() - t0) / 1e9), "-");
    printf("\n(checksum %g)\n", (double)sink);
    memfit_free(src);
    memfit_free(w);
    memfit_free(x);
    memfit_free(act);
    return 0;
}
