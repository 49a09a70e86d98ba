/*
 * bench_open [GiB]: opening a tensor set must cost O(metadata), not O(file).
 * Makes a sparse GGUF of the given size (default 1 GiB: 256 F32 tensors of
 * 1024x1024, plus a 32000-token vocabulary) in TMPDIR, then prints the time
 * of memfit_tensors_open (best and median of 50) and the RSS growth right
 * after the first open. Goals: < 5 ms whatever the size, < 2 MB RSS.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memfit/memfit.h"

static void put(FILE *f, const void *p, size_t n)
{
    if (fwrite(p, 1, n, f) != n) {
        perror("bench_open: write");
        exit(1);
    }
}
static void u32(FILE *f, uint32_t v)
{
    put(f, &v, 4);
}
static void u64(FILE *f, uint64_t v)
{
    put(f, &v, 8);
}
static void str(FILE *f, const char *s)
{
    u64(f, strlen(s));
    put(f, s, strlen(s));
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int gib = argc > 1 ? atoi(argv[1]) : 1; /* lint: allow: a bench argument */
    if (gib < 1 || gib > 64)
        gib = 1;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[4096];
    snprintf(path, sizeof(path), "%s/bench_open-%d.gguf", dir, (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint64_t n_tensors = 256ull * (uint64_t)gib, tensor_bytes = 1024 * 1024 * 4;
    put(f, "GGUF", 4);
    u32(f, 3);
    u64(f, n_tensors);
    u64(f, 2);
    str(f, "general.architecture");
    u32(f, 8);
    str(f, "llama");
    str(f, "tokenizer.ggml.tokens");
    u32(f, 9);
    u32(f, 8);
    u64(f, 32000);
    for (int i = 0; i < 32000; i++) {
        char tok[32];
        snprintf(tok, sizeof(tok), "tok%d", i);
        str(f, tok);
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        char name[64];
        snprintf(name, sizeof(name), "blk.%llu.ffn_up.weight", (unsigned long long)i);
        str(f, name);
        u32(f, 2);
        u64(f, 1024);
        u64(f, 1024);
        u32(f, 0);
        u64(f, i * tensor_bytes);
    }
    long pos = ftell(f);
    long data_start = (pos + 31) / 32 * 32;
    fclose(f);
    int fd = open(path, O_WRONLY);
    if (fd < 0 || ftruncate(fd, (off_t)(data_start + (long)(n_tensors * tensor_bytes))) != 0) {
        perror("bench_open: truncate");
        unlink(path);
        return 1;
    }
    close(fd);

    long rss_before = rss_kib();
    memfit_tensors *set;
    uint64_t t0 = memfit_now_ns();
    enum memfit_status st = memfit_tensors_open(path, NULL, &set);
    uint64_t first_ns = memfit_now_ns() - t0;
    long rss_after = rss_kib();
    if (st != MEMFIT_OK) {
        fprintf(stderr, "bench_open: %s\n", memfit_last_error());
        unlink(path);
        return 1;
    }
    struct memfit_alloc_stats stats;
    memfit_alloc_get_stats(&stats);
    printf("file: %.2f GiB sparse GGUF, %zu tensors, header %ld bytes\n",
           (double)memfit_tensors_file_bytes(set) / (1 << 30), memfit_tensors_count(set),
           data_start);
    memfit_tensors_close(set);
    enum { RUNS = 50 };
    double ms[RUNS];
    for (int i = 0; i < RUNS; i++) {
        t0 = memfit_now_ns();
        if (memfit_tensors_open(path, NULL, &set) != MEMFIT_OK)
            return 1;
        ms[i] = (double)(memfit_now_ns() - t0) / 1e6;
        memfit_tensors_close(set);
    }
    qsort(ms, RUNS, sizeof(ms[0]), cmp);
    printf("open: first %.3f ms, best %.3f ms, median %.3f ms (goal < 5 ms)\n",
           (double)first_ns / 1e6, ms[0], ms[RUNS / 2]);
    printf("rss growth after first open: %ld KiB (goal < 2048 KiB); heap held by the set: "
           "%llu bytes\n",
           rss_after - rss_before, (unsigned long long)stats.total_live_bytes);
    unlink(path);
    return 0;
}
