/*
 * bench_gemm: one thread's matrix tile (memfit_matmul_rows' kernels) at a
 * ViT-B/14 shape, 257 tokens x 768 -> 3072 (fc1), for F32 weights, Q8_0
 * through the dequantized F32 panel, and Q8_0 and Q4_0 through the integer
 * tile (activations quantized to Q8_0) with AVX2 and, where the CPU has
 * them, AVX-VNNI and AVX-512 VNNI; Q4_K and Q6_K through the dequantized
 * panel and their integer tile (activations quantized to Q8_K) with AVX2,
 * AVX-VNNI and AVX-512 VNNI. Prints GFLOP/s (2 x MACs) of the wall time and
 * of the thread's CPU time, best of several runs, so the integer tile's gain
 * is seen without the rest of the forward (and is robust on a loaded
 * machine: the best run counts).
 *
 * Without AVX2 (or with MEMFIT_NO_SIMD) only the first line is printed.
 *
 * Usage: bench_gemm [rows (default 3072)] [tokens (default 257)] [k (default 768)] [FILTER]
 * (FILTER: only the lines whose name contains it, e.g. "q4_k")
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memfit/memfit.h"
#include "tensor/kernels.h"

#define RUNS 7

/* This thread's CPU time in seconds: on a shared machine it leaves out the
 * time other processes had the core (their cache traffic stays in). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The best wall time of RUNS runs, and in *cpu the best thread CPU time. */
static double best_of(void (*fn)(void *), void *ctx, double *cpu)
{
    double best = 1e30;
    *cpu = 1e30;
    for (int i = 0; i < RUNS; i++) {
        uint64_t t0 = memfit_now_ns();
        double c0 = cpu_s();
        fn(ctx);
        double c = cpu_s() - c0;
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        if (s < best)
            best = s;
        if (c < *cpu)
            *cpu = c;
    }
    return best;
}

struct job {
    enum memfit_type type;
    const void *w;
    size_t w_stride, rows, n, tokens;
    const float *x;
    float *y;
    int path; /* 0 memfit_matmul_rows, 1 dequantized panel, 2 integer tile, 3 with AVX-VNNI,
                 4 + isa: the K-quant tile's kernel isa, 7 integer tile avx512vnni */
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
        mf_avx2_gemm_int8(j->type, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n, j->tokens, j->y,
                          j->rows);
        return;
    }
    if (j->path == 3) {
        mf_avxvnni_gemm_int8(j->type, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n, j->tokens,
                             j->y, j->rows);
        return;
    }
    if (j->path == 7) {
        mf_avx512vnni_gemm_int8(j->type, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n, j->tokens,
                                j->y, j->rows);
        return;
    }
    if (j->path >= 4) {
        mf_avx2_gemm_k(j->type, j->path - 4, j->w, j->w_stride, j->n, 0, j->rows, j->x, j->n,
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
    enum memfit_type qtypes[] = {MEMFIT_TYPE_Q8_0, MEMFIT_TYPE_Q4_0, MEMFIT_TYPE_Q4_K,
                                 MEMFIT_TYPE_Q6_K};
    enum { NQ = sizeof(qtypes) / sizeof(qtypes[0]) };
    uint8_t *wq[NQ];
    uint64_t q_row[NQ];
    if (!w || !x || !y)
        return 1;
    for (size_t i = 0; i < rows * n; i++)
        w[i] = sinf((float)i * 0.37f) * 0.05f;
    for (size_t i = 0; i < tokens * n; i++)
        x[i] = cosf((float)i * 0.11f);
    for (size_t q = 0; q < NQ; q++) {
        memfit_type_bytes(qtypes[q], n, &q_row[q]);
        wq[q] = memfit_malloc(rows * q_row[q]);
        if (!wq[q])
            return 1;
        for (size_t r = 0; r < rows; r++)
            memfit_type_quantize_row(qtypes[q], w + r * n, wq[q] + r * q_row[q], n);
    }
    double flop = 2.0 * (double)rows * (double)tokens * (double)n;
#define JOB(q, path)                                                                               \
    {                                                                                              \
        qtypes[q], wq[q], q_row[q], rows, n, tokens, x, y, path                                    \
    }
    struct job jobs[] = {
        {MEMFIT_TYPE_F32, w, n * sizeof(float), rows, n, tokens, x, y, 0},
        JOB(0, 1),
        JOB(0, 2),
        JOB(0, 3),
        JOB(0, 7),
        JOB(1, 2),
        JOB(1, 3),
        JOB(1, 7),
        JOB(2, 1),
        JOB(2, 4),
        JOB(2, 5),
        JOB(2, 6),
        JOB(3, 1),
        JOB(3, 4),
        JOB(3, 5),
        JOB(3, 6),
    };
#undef JOB
    static const char *const path_names[] = {"",
                                             "dequantized panel",
                                             "integer tile",
                                             "integer tile vnni",
                                             "integer tile",
                                             "integer tile vnni",
                                             "integer tile avx512vnni",
                                             "integer tile avx512vnni"};
    for (size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++) {
        int path = jobs[i].path;
        if (path && !mf_tensor_simd_active())
            continue; /* the AVX2 paths need AVX2 (and an x86 build) */
        if ((path == 3 || path == 5) && !mf_tensor_vnni_active())
            continue;
        if ((path == 6 || path == 7) && !mf_tensor_avx512vnni_active())
            continue;
        char name[64];
        snprintf(name, sizeof(name), "%s %s", memfit_type_get_info(jobs[i].type)->name,
                 path ? path_names[path] : "(fma tile)");
        if (argc > 4 && !strstr(name, argv[4]))
            continue;
        double cpu, s = best_of(run, &jobs[i], &cpu);
        printf("%-30s %zux%zu x %zu tokens: %.2f ms, %.1f GFLOP/s (cpu %.2f ms, %.1f GFLOP/s)\n",
               name, rows, n, tokens, s * 1e3, flop / s / 1e9, cpu * 1e3, flop / cpu / 1e9);
    }
    for (size_t q = 0; q < NQ; q++)
        memfit_free(wq[q]);
    memfit_free(w);
    memfit_free(x);
    memfit_free(y);
    return 0;
}
