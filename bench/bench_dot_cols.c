/*
 * bench_dot_cols: what the multi-column dots (kernels.h, mf_vec_dot_cols_fn)
 * gain when several sequences decode together. For Q4_0 and Q8_0 a weight
 * matrix larger than the caches (rows of 2048, Qwen1.5-1.8B's width) is
 * multiplied with 1, 2, 4 and 8 Q8_0 activation rows, once with the type's
 * vec_dot per (row, column) -- the LLM forward's dot path before the
 * multi-column kernels -- and once with the active multi-column kernel.
 * Figures: weight GB/s (weight bytes per pass over the time) and that times
 * the columns ("token-GB/s": the weight bytes one token alone would have
 * read), best of RUNS, one thread.
 *
 * Then the rows x columns kernels (vec_dot_rows_cols: AVX-512 VNNI, and Q4_0 with AVX2) against the
 * multi-row kernel column by column, in the forward's 128-row chunks: weight GB/s per pass.
 *
 * Usage: bench_dot_cols [matrix MB (default 32)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memfit/memfit.h"
#include "tensor/kernels.h"

#define ROW      2048
#define RUNS     5
#define MAX_COLS 8

/* A deterministic value in [-1, 1) for element i (Knuth's multiplicative hash). */
static float pseudo(size_t i)
{
    uint32_t h = (uint32_t)i * 2654435761u;
    return (float)(h >> 8) / 8388608.0f - 1.0f;
}

/* Seconds for the best of RUNS passes over all rows with nc columns; `cols` NULL: vec_dot. */
static double time_pass(const struct mf_type_traits *t, mf_vec_dot_cols_fn cols, const uint8_t *w,
                        size_t rows, size_t row_bytes, const void *const *act, size_t nc,
                        float *sink)
{
    double best = 1e30;
    float out[MAX_COLS];
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = memfit_now_ns();
        float acc = 0;
        for (size_t i = 0; i < rows; i++) {
            const uint8_t *row = w + i * row_bytes;
            if (cols)
                cols(ROW, row, act, nc, out);
            else
                for (size_t c = 0; c < nc; c++)
                    out[c] = t->vec_dot(ROW, row, act[c]);
            acc += out[nc - 1];
        }
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        *sink += acc;
        best = s < best ? s : best;
    }
    return best;
}

/* Seconds for the best of RUNS passes of the rows x columns kernel (`rc`) or, without it, of
 * the multi-row kernel column by column, in chunks of 128 rows as the LLM forward runs them. */
static double time_rows_cols(const struct mf_type_traits *t, bool rc, const uint8_t *w, size_t rows,
                             size_t row_bytes, const void *const *act, size_t nc, float *sink)
{
    static float out[MAX_COLS * 128];
    double best = 1e30;
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = memfit_now_ns();
        for (size_t i = 0; i < rows; i += 128) {
            size_t m = rows - i < 128 ? rows - i : 128;
            if (rc)
                t->vec_dot_rows_cols(ROW, w + i * row_bytes, row_bytes, act, nc, out, 128, m);
            else
                for (size_t c = 0; c < nc; c++)
                    mf_vec_dot_rows(t, ROW, w + i * row_bytes, row_bytes, act[c], out + c * 128, m);
        }
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        *sink += out[0];
        best = s < best ? s : best;
    }
    return best;
}

/* The rows x columns kernels (AVX-512 VNNI: Q4_0, Q8_0, Q4_K, Q6_K) against the one-row kernels
 * column by column, 1 and 4 columns: what 4 decoding sequences cost against one. */
static void bench_rows_cols(uint8_t *w, size_t bytes, float *sink)
{
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_K,
                                             MEMFIT_TYPE_Q6_K};
    static int8_t actbuf[MAX_COLS][ROW * 2];
    float x[ROW];
    printf("%-5s %4s %16s %16s %8s\n", "type", "cols", "rows GB/s", "rows_cols GB/s", "speedup");
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *tr = mf_type_traits(types[t]);
        uint64_t rb = 0;
        if (!tr || !tr->vec_dot_rows_cols || memfit_type_bytes(types[t], ROW, &rb) != MEMFIT_OK)
            continue;
        const struct mf_type_traits *at = mf_type_traits(tr->vec_dot_type);
        const void *acts[MAX_COLS];
        for (size_t c = 0; c < MAX_COLS; c++) {
            for (size_t i = 0; i < ROW; i++)
                x[i] = pseudo(c * ROW + i + 7);
            at->from_float(x, actbuf[c], ROW);
            acts[c] = actbuf[c];
        }
        size_t rows = bytes / (size_t)rb;
        for (size_t r = 0; r < rows; r++) {
            for (size_t i = 0; i < ROW; i++)
                x[i] = pseudo((r + 3000) * ROW * 5 + i) * 0.05f;
            mf_type_traits_scalar(types[t])->from_float(x, w + r * (size_t)rb, ROW);
        }
        double gb = (double)(rows * (size_t)rb) / 1e9;
        for (size_t nc = 1; nc <= 4; nc += 3) {
            double tv = time_rows_cols(tr, false, w, rows, (size_t)rb, acts, nc, sink);
            double tc = time_rows_cols(tr, true, w, rows, (size_t)rb, acts, nc, sink);
            printf("%-5s %4zu %16.2f %16.2f %7.2fx\n", memfit_type_get_info(types[t])->name, nc,
                   gb / tv, gb / tc, tv / tc);
        }
    }
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 32;
    if (mb == 0)
        mb = 32;
    size_t bytes = mb << 20;
    printf("bench_dot_cols: %zu MB weight matrix, rows of %d, one thread, best of %d; kernels: "
           "%s\n",
           mb, ROW, RUNS, memfit_tensor_isa());
    uint8_t *w = memfit_malloc(bytes);
    uint8_t *act = memfit_malloc((size_t)MAX_COLS * ROW * 2);
    float *x = memfit_malloc(ROW * sizeof(float));
    if (!w || !act || !x) {
        fprintf(stderr, "bench_dot_cols: %s\n", memfit_last_error());
        return 1;
    }
    const void *acts[MAX_COLS];
    const struct mf_type_traits *q8 = mf_type_traits(MEMFIT_TYPE_Q8_0);
    for (size_t c = 0; c < MAX_COLS; c++) {
        for (size_t i = 0; i < ROW; i++)
            x[i] = pseudo(c * ROW + i + 1);
        acts[c] = act + c * (size_t)ROW * 2;
        q8->from_float(x, act + c * (size_t)ROW * 2, ROW);
    }
    static const enum memfit_type types[] = {MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q8_0};
    static const size_t ncs[] = {1, 2, 4, 8};
    float sink = 0;
    printf("%-5s %4s %14s %14s %14s %14s %8s\n", "type", "cols", "vec_dot GB/s", "cols GB/s",
           "vec_dot tokGB/s", "cols tokGB/s", "speedup");
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        const struct mf_type_traits *tr = mf_type_traits(types[t]);
        mf_vec_dot_cols_fn cols = mf_type_dot_cols(types[t]);
        uint64_t rb = 0;
        if (!tr || !cols || memfit_type_bytes(types[t], ROW, &rb) != MEMFIT_OK)
            continue;
        size_t rows = bytes / (size_t)rb;
        /* Quantized random weights (sane scales). */
        float *src = memfit_malloc(ROW * sizeof(float));
        if (!src)
            return 1;
        for (size_t r = 0; r < rows; r++) {
            for (size_t i = 0; i < ROW; i++)
                src[i] = pseudo((r + 1000) * ROW * 7 + i) * 0.05f;
            mf_type_traits_scalar(types[t])->from_float(src, w + r * (size_t)rb, ROW);
        }
        memfit_free(src);
        double gb = (double)(rows * (size_t)rb) / 1e9;
        for (size_t k = 0; k < sizeof(ncs) / sizeof(ncs[0]); k++) {
            size_t nc = ncs[k];
            double tv = time_pass(tr, NULL, w, rows, (size_t)rb, acts, nc, &sink);
            double tc = time_pass(tr, cols, w, rows, (size_t)rb, acts, nc, &sink);
            printf("%-5s %4zu %14.2f %14.2f %14.2f %14.2f %7.2fx\n",
                   memfit_type_get_info(types[t])->name, nc, gb / tv, gb / tc, gb * nc / tv,
                   gb * nc / tc, tv / tc);
        }
    }
    bench_rows_cols(w, bytes, &sink);
    printf("(checksum %g)\n", (double)sink);
    memfit_free(w);
    memfit_free(act);
    memfit_free(x);
    return 0;
}
