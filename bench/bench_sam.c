/*
 * SAM image-encoder benchmark and number check: latency (best of N runs)
 * and peak memory (VmHWM, the mapped weights included) of the encoder on
 * the reference script's hashed 1024^2 input, one model per process so the
 * peak is its own; with --compare DIR, the embedding and the low-res masks
 * of one point prompt against the PyTorch reference's
 * (scripts/make_sam_reference.py --dump MODEL DIR writes them). Also the
 * embedding's cosine against another run's (--cosine FILE, written by
 * --save FILE), for quantized weights. bench/sam_bench.sh runs it.
 *
 *   bench_sam MODEL [--threads T] [--runs N] [--compare DIR] [--save FILE] [--cosine FILE]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "memfit/memfit.h"

static uint64_t peak_rss_bytes(void)
{
    struct memfit_proc_mem pm;
    return memfit_proc_read_ex(NULL, 0, MEMFIT_PROC_STATUS_ONLY, &pm) == MEMFIT_OK ? pm.hwm_bytes
                                                                                   : 0;
}

/* The reference's input: x = k / 500, k from an integer hash of the index. */
static void hashed_input(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t h = (uint32_t)((uint64_t)i * 2654435761u + 5u * 40503u);
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        x[i] = (float)((int)(h % 2001) - 1000) / 500.0f;
    }
}

static float *read_floats(const char *dir, const char *name, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s%s%s", dir ? dir : "", dir ? "/" : "", name);
    FILE *f = fopen(path, "rb");
    float *v = memfit_malloc(n * sizeof(float));
    if (!f || !v || fread(v, sizeof(float), n, f) != n) {
        fprintf(stderr, "bench_sam: cannot read %zu floats from %s\n", n, path);
        exit(1);
    }
    fclose(f);
    return v;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale)
{
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        m = d > m ? d : m;
        s = fabs(b[i]) > s ? fabs(b[i]) : s;
    }
    *scale = s;
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_sam MODEL [--threads T] [--runs N] [--compare DIR] "
                        "[--save FILE] [--cosine FILE]\n");
        return 2;
    }
    unsigned threads = 2, runs = 3;
    const char *compare = NULL, *save = NULL, *cos_with = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        long long v = 0;
        if (strcmp(argv[i], "--threads") == 0 &&
            memfit_parse_int(argv[i + 1], 0, 1024, &v) == MEMFIT_OK)
            threads = (unsigned)v;
        else if (strcmp(argv[i], "--runs") == 0 &&
                 memfit_parse_int(argv[i + 1], 1, 1000, &v) == MEMFIT_OK)
            runs = (unsigned)v;
        else if (strcmp(argv[i], "--compare") == 0)
            compare = argv[i + 1];
        else if (strcmp(argv[i], "--save") == 0)
            save = argv[i + 1];
        else if (strcmp(argv[i], "--cosine") == 0)
            cos_with = argv[i + 1];
    }
    struct memfit_sam_options o;
    memfit_sam_options_default(&o);
    o.n_threads = threads;
    memfit_sam *m;
    if (memfit_sam_open(argv[1], &o, &m) != MEMFIT_OK) {
        fprintf(stderr, "bench_sam: %s\n", memfit_last_error());
        return 1;
    }
    struct memfit_sam_info in;
    memfit_sam_get_info(m, &in);
    size_t eb, db;
    memfit_sam_encode_plan(m, &eb);
    memfit_sam_decode_plan(m, &db);
    size_t wb = eb > db ? eb : db, S = in.image_size;
    size_t ne = (size_t)in.prompt_dim * in.grid * in.grid;
    void *work = mf_map_anon(wb);
    float *x = memfit_malloc(3 * S * S * sizeof(float)), *emb = memfit_malloc(ne * sizeof(float));
    if (!work || !x || !emb) {
        fprintf(stderr, "bench_sam: out of memory\n");
        return 1;
    }
    hashed_input(x, 3 * S * S);
    double best = 1e30;
    for (unsigned r = 0; r < runs; r++) {
        uint64_t t0 = memfit_now_ns();
        if (memfit_sam_encode(m, x, work, eb, emb) != MEMFIT_OK) {
            fprintf(stderr, "bench_sam: %s\n", memfit_last_error());
            return 1;
        }
        double s = (double)(memfit_now_ns() - t0) / 1e9;
        best = s < best ? s : best;
    }
    printf("sam_memfit kind=encoder weights=%s variant=%s threads=%u isa=%s encoder_best_s=%.3f "
           "runs=%u workspace_mib=%.1f weights_mib=%.1f peak_rss_mib=%.1f\n",
           memfit_type_get_info(in.weight_type)->name, in.variant, in.n_threads,
           memfit_tensor_isa(), best, runs, (double)eb / 1048576.0,
           (double)in.weight_bytes / 1048576.0, (double)peak_rss_bytes() / 1048576.0);
    if (save) {
        FILE *f = fopen(save, "wb");
        if (!f || fwrite(emb, sizeof(float), ne, f) != ne || fclose(f) != 0)
            fprintf(stderr, "bench_sam: cannot write %s\n", save);
    }
    if (cos_with) {
        float *ref = read_floats(NULL, cos_with, ne);
        double ab = 0, aa = 0, bb = 0;
        for (size_t i = 0; i < ne; i++)
            ab += (double)emb[i] * ref[i], aa += (double)emb[i] * emb[i],
                bb += (double)ref[i] * ref[i];
        printf("sam_memfit kind=cosine weights=%s cosine=%.6f\n",
               memfit_type_get_info(in.weight_type)->name, ab / sqrt(aa * bb));
        memfit_free(ref);
    }
    if (compare) {
        /* The reference's dump: embedding [C,G,G], the point (300, 200)
         * multimask low-res masks [3, 4G, 4G] and IoU [3]. */
        size_t nl = 3 * (size_t)in.mask_size * in.mask_size;
        float *re = read_floats(compare, "embedding.bin", ne);
        float *rl = read_floats(compare, "low_res.bin", nl);
        float *ri = read_floats(compare, "iou.bin", 3);
        float *low = memfit_malloc(nl * sizeof(float)), iou[3];
        float pt[2] = {300, 200};
        int32_t label = 1;
        struct memfit_sam_prompt pr = {.points = pt, .labels = &label, .n_points = 1};
        double scale, d_emb = max_abs_diff(emb, re, ne, &scale);
        printf("sam_memfit kind=parity embedding_max_abs_diff=%.3g embedding_scale=%.3g", d_emb,
               scale);
        /* The decoder on the reference's embedding (its own error), then on ours. */
        memfit_sam_decode(m, re, &pr, 1, true, work, db, low, iou);
        double d_own = max_abs_diff(low, rl, nl, &scale), d_iou = 0;
        for (int k = 0; k < 3; k++)
            d_iou = fabs(iou[k] - ri[k]) > d_iou ? fabs(iou[k] - ri[k]) : d_iou;
        memfit_sam_decode(m, emb, &pr, 1, true, work, db, low, iou);
        double d_all = max_abs_diff(low, rl, nl, &scale);
        printf(" low_res_decoder_only=%.3g low_res_end_to_end=%.3g low_res_scale=%.3g "
               "iou_max_abs_diff=%.3g\n",
               d_own, d_all, scale, d_iou);
        memfit_free(re);
        memfit_free(rl);
        memfit_free(ri);
        memfit_free(low);
    }
    mf_unmap_anon(work, wb);
    memfit_free(x);
    memfit_free(emb);
    memfit_sam_close(m);
    return 0;
}
