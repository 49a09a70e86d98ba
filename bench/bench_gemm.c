/*
 * bench_gemm: one thread's matrix tile (memfit_matmul_rows' kernels) at a
 * ViT-B/14 shape, 257 tokens x 768 -> 3072 (fc1), for F32 weights, Q8_0
 * through the dequantized F32 panel, and Q8_0 through the integer tile
 * (activations quantized to Q8_0) with AVX2 and, where the CPU has it,
 * AVX-VNNI. Prints GFLOP/s (2 x MACs), best of
 * several runs, so the integer tile's gain is seen without the rest of the
 * forward (and is robust on a loaded machine: the best run counts).
 *
 * Without AVX2 (or with MEMFIT_NO_SIMD) only the first line is printed.
 *
 * Usage: bench_gemm [rows (default 3072)] [tokens (default 257)] [k (default 768)]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "memfit/memfit.h"
#include "tensor/kernels.h"

#define RUNS 7

static double best_of(void (*fn)(void *), void *ctx)
{
    double best = 1e30;
    for (int i = 0; i < RUNS; i++) {
        uint64_t t0 = memfit_now_ns();
        fn(ctx);
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        if (s < best)
            best = s;
    }
    return best;
}

struct job {
    enum memfit_type type;
    const void *w;
    size_t w_stride, rows, n, tokens;
    const float *x;
    float *y;
    int path; /* 0 memfit_matmul_rows, 1 dequantized panel, 2 integer tile, 3 with AVX-VNNI */
};

static void run(void *ctx)
{
    struct job *j = ctx;
#if defined(__x86_64__)
    if (j->path == 1) {
        const struct mf_type_traits *t = mf_type_traits(j->type);
        const struct memfit_type_info *ti = memfit_type_get_info(j->type);
        mf_avx2_gemm(j->type, t->to_float, ti->block_size, ti->type_size, j->w, j->w_stride, j->n,
                     0, j->rows, j->x, j->n, j->tokens, j->y, j->rows);
        return;
    }
    if (j->path == 2) {
        mf_avx2_gemm_int8(MEMFIT_TYPE_Q8_0, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n,
                          j->tokens, j->y, j->rows);
        return;
    }
    if (j->path == 3) {
        mf_avxvnni_gemm_int8(MEMFIT_TYPE_Q8_0, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n,
                             j->tokens, j->y, j->rows);
        return;
    }
#endif
    memfit_matmul_rows(j->type, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n * sizeof(float),
                       j->tokens, j->y, j->rows);
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 3072;
    size_t tokens = argc > 2 ? strtoul(argv[2], NULL, 10) : 257;
    size_t n = argc > 3 ? strtoul(argv[3], NULL, 10) : 768;
    if (!rows || !tokens || !n || n % 256) {
        fprintf(stderr, "bench_gemm: rows, tokens > 0 and k a multiple of 256\n");
        return 2;
    }
    float *w = memfit_malloc(rows * n * sizeof(float));
    float *x = memfit_malloc(tokens * n * sizeof(float));
    float *y = memfit_malloc(tokens * rows * sizeof(float));
    uint64_t q_row;
    memfit_type_bytes(MEMFIT_TYPE_Q8_0, n, &q_row);
    uint8_t *wq = memfit_malloc(rows * q_row);
    if (!w || !x || !y || !wq)
        return 1;
    for (size_t i = 0; i < rows * n; i++)
        w[i] = sinf((float)i * 0.37f) * 0.05f;
    for (size_t i = 0; i < tokens * n; i++)
        x[i] = cosf((float)i * 0.11f);
    for (size_t r = 0; r < rows; r++)
        memfit_type_quantize_row(MEMFIT_TYPE_Q8_0, w + r * n, wq + r * q_row, n);
    double flop = 2.0 * (double)rows * (double)tokens * (double)n;
    struct job jobs[] = {
        {MEMFIT_TYPE_F32, w, n * sizeof(float), rows, n, tokens, x, y, 0},
        {MEMFIT_TYPE_Q8_0, wq, q_row, rows, n, tokens, x, y, 1},
        {MEMFIT_TYPE_Q8_0, wq, q_row, rows, n, tokens, x, y, 2},
        {MEMFIT_TYPE_Q8_0, wq, q_row, rows, n, tokens, x, y, 3},
    };
    static const char *const names[] = {"f32 (fma tile)", "q8_0 dequantized panel",
                                        "q8_0 integer tile", "q8_0 integer tile vnni"};
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        if (jobs[i].path && !mf_tensor_simd_active())
            continue; /* the AVX2 paths need AVX2 (and an x86 build) */
        if (jobs[i].path == 3 && !mf_tensor_vnni_active())
            continue;
        double s = best_of(run, &jobs[i]);
        printf("%-24s %zux%zu x %zu tokens: %.2f ms, %.1f GFLOP/s\n", names[i], rows, n, tokens,
               s * 1e3, flop / s / 1e9);
    }
    memfit_free(w);
    memfit_free(x);
    memfit_free(y);
    memfit_free(wq);
    return 0;
}
