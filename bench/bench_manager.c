/*
 * Benchmarks of the manager (bench/manager_bench.sh runs them all):
 *
 *   bench_manager [PAIRS_PER_THREAD]   the hot path: acquire + release of a
 *       model that is already loaded (what every request pays), on one
 *       thread and on two threads sharing the model, in ns per pair
 *       (default 2000000 pairs).
 *   bench_manager --cycle FILE...      the DINOv2 driver's load -> infer ->
 *       unload cycle per weight file, cold (the file's page cache dropped
 *       first): load time, first (cold) and second forward at 224 x 224,
 *       (THREADS forward threads, default 2), and this process's RSS and its cgroup's working set
 * before the load, after load + infer, and after unload. One table row per file. bench_manager
 * --memory             prints "RSS WORKING_SET USAGE JUDGED" (bytes) of the parent process and its
 * cgroup, for the PyTorch side of manager_bench.sh (same measuring code for both sides).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memfit/memfit.h"

static char weights[64];

static enum memfit_status plan(void *config, const char *identity, struct memfit_budget_cost *out)
{
    (void)config;
    (void)identity;
    *out = (struct memfit_budget_cost){{1 << 20, 0, 0, 0}};
    return MEMFIT_OK;
}

static enum memfit_status load(void *config, const char *identity,
                               const struct memfit_budget_cost *reserved, void **out)
{
    (void)config;
    (void)identity;
    (void)reserved;
    *out = weights;
    return MEMFIT_OK;
}

static void unload(void *config, void *model)
{
    (void)config;
    (void)model;
}

static const struct memfit_model_driver driver = {
    .family = "bench", .plan = plan, .load = load, .unload = unload};

struct run {
    memfit_manager *mgr;
    long pairs;
    long failures;
};

static void *pairs_main(void *arg)
{
    struct run *r = arg;
    for (long i = 0; i < r->pairs; i++) {
        memfit_handle *h;
        if (memfit_manager_acquire(r->mgr, "model", 1000, &h) != MEMFIT_OK) {
            r->failures++;
            continue;
        }
        if (memfit_handle_model(h) != weights)
            r->failures++;
        memfit_manager_release(h);
    }
    return NULL;
}

static double measure(memfit_manager *mgr, int threads, long pairs, long *failures)
{
    pthread_t t[2];
    struct run runs[2];
    uint64_t t0 = memfit_now_ns();
    for (int i = 0; i < threads; i++) {
        runs[i] = (struct run){mgr, pairs, 0};
        pthread_create(&t[i], NULL, pairs_main, &runs[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        *failures += runs[i].failures;
    }
    uint64_t elapsed = memfit_now_ns() - t0;
    return (double)elapsed / (double)(pairs * threads);
}

/* ---- The load -> infer -> unload cycle --------------------------------------- */

struct memory {
    uint64_t rss, working_set, usage;
    uint64_t judged; /* what the manager's pressure levels use (memfit_pressure_bytes) */
};

static struct memory measure_memory(pid_t pid)
{
    struct memory m = {MEMFIT_SYS_UNKNOWN, MEMFIT_SYS_UNKNOWN, MEMFIT_SYS_UNKNOWN,
                       MEMFIT_SYS_UNKNOWN};
    struct memfit_proc_mem p;
    if (memfit_proc_read(NULL, pid, &p) == MEMFIT_OK)
        m.rss = p.rss_bytes;
    static struct memfit_cgroup cg; /* large (paths) */
    if (memfit_cgroup_read(NULL, pid, &cg) == MEMFIT_OK) {
        m.working_set = cg.working_set_bytes;
        m.usage = cg.usage_bytes;
        /* Only the bytes matter here: a cgroup without a limit gets one. */
        static struct memfit_sample s;
        memset(&s, 0, sizeof(s));
        s.have_cgroup = true;
        s.limit_source = MEMFIT_LIMIT_CGROUP;
        s.cgroup = cg;
        if (s.cgroup.limit_bytes == MEMFIT_SYS_UNKNOWN)
            s.cgroup.limit_bytes = UINT64_MAX - 1;
        m.judged = memfit_pressure_bytes(&s, NULL);
    }
    return m;
}

static double mb(uint64_t bytes)
{
    return bytes == MEMFIT_SYS_UNKNOWN ? -1.0 : (double)bytes / 1e6;
}

/* Drops the file's clean pages from the page cache: the next load is cold. */
static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static int cycle(int n_files, char **files)
{
    memfit_log_set_level(MEMFIT_LOG_WARN);
    long long threads = 2;
    if (getenv("THREADS") && memfit_parse_int(getenv("THREADS"), 1, 4096, &threads) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: THREADS: %s\n", memfit_last_error());
        return 2;
    }
    /* The models through the engines layer, as `serve` opens them. */
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/memfit-bench-%d.yaml", dir && *dir ? dir : "/tmp",
             (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    /* Sources are relative to the manifest's directory: name files absolutely. */
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd)))
        cwd[0] = '\0';
    fprintf(f, "budget: 4GB\nkeep_alive: never\nmodels:\n");
    for (int i = 0; i < n_files; i++) {
        bool abs = files[i][0] == '/';
        fprintf(
            f, "  - {name: m%d, family: dinov2, sources: [\"%s%s%s\"], options: {threads: %lld}}\n",
            i, abs ? "" : cwd, abs ? "" : "/", files[i], threads);
    }
    fclose(f);
    struct memfit_engines_options eo;
    memfit_engines_options_default(&eo);
    eo.manifest_path = path;
    memfit_engines *engines = NULL;
    enum memfit_status st = memfit_engines_open(&eo, &engines);
    unlink(path);
    if (st != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 1;
    }
    memfit_manager *mgr = memfit_engines_manager(engines);
    const uint32_t size = 224;
    struct memfit_image img = {size, size, memfit_malloc(3u * size * size)};
    float out[4096];
    for (size_t i = 0; img.rgb && i < 3u * size * size; i++)
        img.rgb[i] = (uint8_t)(i % 251);
    const struct memfit_image *imgs[1] = {&img};
    struct memfit_embed_params ep;
    memfit_embed_params_default(&ep);
    ep.transform.mode = MEMFIT_IMAGE_RESIZE_MULTIPLE; /* 224 stays 224 */
    printf("%-16s %8s %8s %8s %8s | %20s | %20s | %20s\n", "", "", "", "", "", "RSS MB",
           "cgroup working set", "judged (pressure)");
    printf("%-16s %8s %8s %8s %8s | %6s %6s %6s | %6s %6s %6s | %6s %6s %6s\n", "file", "size MB",
           "load ms", "1st fwd", "2nd fwd", "before", "loaded", "unload", "before", "loaded",
           "unload", "before", "loaded", "unload");
    int rc = 0;
    for (int i = 0; i < n_files; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%d", i);
        struct stat stt;
        double size_mb = stat(files[i], &stt) == 0 ? (double)stt.st_size / 1e6 : -1.0;
        drop_cache(files[i]);
        memfit_heap_trim();
        struct memory before = measure_memory(0);
        uint64_t t0 = memfit_now_ns();
        memfit_handle *h;
        if (memfit_manager_acquire(mgr, name, -1, &h) != MEMFIT_OK) {
            fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
            rc = 1;
            continue;
        }
        uint64_t t1 = memfit_now_ns();
        st = memfit_engine_embed(h, imgs, 1, &ep, out, 4096, NULL);
        uint64_t t2 = memfit_now_ns();
        if (st == MEMFIT_OK)
            st = memfit_engine_embed(h, imgs, 1, &ep, out, 4096, NULL);
        uint64_t t3 = memfit_now_ns();
        memfit_manager_release(h);
        if (st != MEMFIT_OK) {
            fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
            rc = 1;
        }
        struct memory loaded = measure_memory(0);
        if (memfit_manager_unload(mgr, name) != MEMFIT_OK) {
            fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
            rc = 1;
        }
        struct memory after = measure_memory(0);
        const char *base = strrchr(files[i], '/');
        printf("%-16s %8.1f %8.1f %8.1f %8.1f | %6.0f %6.0f %6.0f | %6.0f %6.0f %6.0f | %6.0f "
               "%6.0f %6.0f\n",
               base ? base + 1 : files[i], size_mb, (double)(t1 - t0) / 1e6,
               (double)(t2 - t1) / 1e6, (double)(t3 - t2) / 1e6, mb(before.rss), mb(loaded.rss),
               mb(after.rss), mb(before.working_set), mb(loaded.working_set), mb(after.working_set),
               mb(before.judged), mb(loaded.judged), mb(after.judged));
        fflush(stdout);
    }
    memfit_free(img.rgb);
    memfit_engines_close(engines);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--memory") == 0) {
        struct memory m = measure_memory(getppid());
        printf("%llu %llu %llu %llu\n", (unsigned long long)m.rss,
               (unsigned long long)m.working_set, (unsigned long long)m.usage,
               (unsigned long long)m.judged);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "--cycle") == 0)
        return cycle(argc - 2, argv + 2);
    long long pairs_arg = 2000000;
    if (argc > 1 && memfit_parse_int(argv[1], 1, 1000000000, &pairs_arg) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 2;
    }
    long pairs = (long)pairs_arg;
    struct memfit_manager_options o;
    memfit_manager_options_default(&o);
    o.budget_bytes = 64 << 20;
    o.reaper_thread = false;
    memfit_manager *mgr;
    if (memfit_manager_create(&o, &mgr) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 1;
    }
    struct memfit_model_options mo;
    memfit_model_options_default(&mo);
    mo.name = "model";
    mo.driver = &driver;
    mo.keep_alive_s = MEMFIT_KEEP_ALIVE_NEVER_UNLOAD;
    /* A few other models, so the lookup is not trivially the first entry. */
    static const char *const others[] = {"dino-s", "dino-b", "sam", "qwen"};
    for (int i = 0; i < 4; i++) {
        struct memfit_model_options other = mo;
        other.name = others[i];
        memfit_manager_register(mgr, &other);
    }
    if (memfit_manager_register(mgr, &mo) != MEMFIT_OK ||
        memfit_manager_load(mgr, "model", 0) != MEMFIT_OK) {
        fprintf(stderr, "bench_manager: %s\n", memfit_last_error());
        return 1;
    }
    long failures = 0;
    measure(mgr, 1, pairs / 10, &failures); /* warm up */
    double one = measure(mgr, 1, pairs, &failures);
    double two = measure(mgr, 2, pairs, &failures);
    printf("acquire+release of a loaded model (5 registered):\n");
    printf("  1 thread : %.1f ns per pair (%ld pairs)\n", one, pairs);
    printf("  2 threads: %.1f ns per pair (%ld pairs each, wall time / all pairs)\n", two, pairs);
    memfit_manager_destroy(mgr);
    if (failures) {
        fprintf(stderr, "bench_manager: %ld failed acquires\n", failures);
        return 1;
    }
    return 0;
}
