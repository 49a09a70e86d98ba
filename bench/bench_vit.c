/*
 * DINOv2 forward benchmark: latency (best of N runs) and peak memory (VmHWM)
 * of one model at one batch and size, one configuration per process so the
 * peak is its own. bench/dinov2_bench.sh runs it beside PyTorch.
 *
 *   bench_vit MODEL [--batch B] [--size S] [--threads T] [--runs N]
 *   bench_vit --convert SRC DST TYPE     (writes a GGUF in TYPE: f32, f16, q8_0, q4_0, ...)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "memfit/memfit.h"

/* The process's peak RSS (VmHWM) in bytes, 0 when unreadable. */
static uint64_t peak_rss_bytes(void)
{
    struct memfit_proc_mem pm;
    return memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &pm) == MEMFIT_OK ? pm.hwm_bytes
                                                                                   : 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--convert") == 0) {
        enum memfit_type type;
        memfit_vit *m;
        if (memfit_type_from_name(argv[4], &type) != MEMFIT_OK ||
            memfit_vit_open(argv[2], NULL, &m) != MEMFIT_OK) {
            fprintf(stderr, "bench_vit: %s\n", memfit_last_error());
            return 1;
        }
        enum memfit_status st = memfit_vit_write_gguf(m, argv[3], type);
        memfit_vit_close(m);
        if (st != MEMFIT_OK)
            fprintf(stderr, "bench_vit: %s\n", memfit_last_error());
        return st == MEMFIT_OK ? 0 : 1;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: bench_vit MODEL [--batch B] [--size S] [--threads T] [--runs N]\n");
        return 2;
    }
    unsigned batch = 1, size = 224, threads = 2, runs = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        unsigned v = (unsigned)strtoul(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--batch") == 0)
            batch = v;
        else if (strcmp(argv[i], "--size") == 0)
            size = v;
        else if (strcmp(argv[i], "--threads") == 0)
            threads = v;
        else if (strcmp(argv[i], "--runs") == 0)
            runs = v;
    }
    struct memfit_vit_options o;
    memfit_vit_options_default(&o);
    o.n_threads = threads;
    memfit_vit *m;
    if (memfit_vit_open(argv[1], &o, &m) != MEMFIT_OK) {
        fprintf(stderr, "bench_vit: %s\n", memfit_last_error());
        return 1;
    }
    struct memfit_vit_info info;
    memfit_vit_get_info(m, &info);
    size_t bytes, per;
    memfit_vit_plan(m, batch, size, size, &bytes);
    memfit_vit_output_floats(m, MEMFIT_VIT_OUTPUT_CLS, size, size, &per);
    void *work = mf_map_anon(bytes);
    size_t n_in = (size_t)batch * 3 * size * size;
    float *x = memfit_malloc(n_in * sizeof(float)), *out = memfit_malloc(per * batch * 4);
    if (!work || !x || !out)
        return 1;
    for (size_t i = 0; i < n_in; i++)
        x[i] = (float)((i * 2654435761u) % 2001) / 500.0f - 2.0f;
    double best = 1e30;
    for (unsigned r = 0; r < runs; r++) {
        uint64_t t0 = memfit_now_ns();
        if (memfit_vit_forward(m, x, batch, size, size, MEMFIT_VIT_OUTPUT_CLS, false, work, bytes,
                               out, per * batch) != MEMFIT_OK) {
            fprintf(stderr, "bench_vit: %s\n", memfit_last_error());
            return 1;
        }
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        if (s < best)
            best = s;
    }
    printf("memfit %-5s batch=%u %ux%u latency_s=%.4f peak_rss_mib=%.1f workspace_mib=%.1f "
           "threads=%u isa=%s\n",
           memfit_type_get_info(info.weight_type)->name, batch, size, size, best,
           (double)peak_rss_bytes() / 1048576.0, (double)bytes / 1048576.0, info.n_threads,
           memfit_tensor_isa());
    mf_unmap_anon(work, bytes);
    memfit_free(x);
    memfit_free(out);
    memfit_vit_close(m);
    return 0;
}
